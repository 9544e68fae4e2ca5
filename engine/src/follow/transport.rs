//! How the mirror authenticates to a repository's server and checks who
//! that server is: an SSH key and a known_hosts file for `ssh://` (and
//! scp-like `git@host:path`) URLs, a `user:token` file for `https://`.
//!
//! Secrets stay in their files: errors name the file, never its content,
//! and URLs are shown without their user info.

use std::path::{Path, PathBuf};

/// Where the credentials for fetching the policy repository are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchCredentials {
    /// The private key offered to an SSH server.
    pub ssh_private_key: Option<PathBuf>,
    /// The host keys an SSH server must present (OpenSSH known_hosts
    /// format, unhashed, as `ssh-keyscan` writes it). Without it no SSH
    /// server is trusted.
    pub ssh_known_hosts: Option<PathBuf>,
    /// A file holding `user:token` for HTTP(S) basic authentication.
    pub http_credentials: Option<PathBuf>,
}

/// `url` with any user info (`user:token@`) taken out, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The host and port an SSH URL names: `ssh://[user@]host[:port]/path`
/// or scp-like `[user@]host:path` (port 22).
fn ssh_endpoint(url: &str) -> Option<(String, u16)> {
    if let Ok(parsed) = url::Url::parse(url) {
        if parsed.scheme() == "ssh" || parsed.scheme() == "git+ssh" {
            return Some((parsed.host_str()?.trim_matches(['[', ']']).to_owned(), parsed.port().unwrap_or(22)));
        }
        return None;
    }
    let (authority, _) = url.split_once(':')?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty() && !host.contains('/')).then(|| (host.to_owned(), 22))
}

/// The name a host goes by in known_hosts: `host`, or `[host]:port` off 22.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") }
}

/// Whether `known_hosts` lists `key` (of type `key_type`, raw bytes) for
/// the host at `host:port`.
pub fn host_key_known(known_hosts: &str, host: &str, port: u16, key_type: &str, key: &[u8]) -> bool {
    use base64::Engine as _;
    let name = known_hosts_name(host, port);
    known_hosts.lines().any(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            // `@revoked` and `@cert-authority` lines never vouch for a key.
            return false;
        }
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(kind), Some(encoded)) = (fields.next(), fields.next(), fields.next()) else {
            return false;
        };
        let listed = hosts.split(',').any(|h| h == name);
        listed
            && kind == key_type
            && base64::engine::general_purpose::STANDARD.decode(encoded).is_ok_and(|bytes| bytes == key)
    })
}

fn read_secret(path: &Path, what: &str) -> Result<String, git2::Error> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|e| git2::Error::from_str(&format!("failed to read the {what} {}: {e}", path.display())))
}

/// The callbacks a fetch of `url` runs with: credentials on request, and
/// an SSH host key check against the known hosts (HTTPS certificates are
/// checked by libgit2 against the system's roots).
pub fn callbacks<'a>(credentials: &'a FetchCredentials, url: &'a str) -> git2::RemoteCallbacks<'a> {
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut tried = false;
    callbacks.credentials(move |_url, username, allowed| {
        // libgit2 asks again after a refusal; a second offer of the same key
        // would only loop.
        if std::mem::replace(&mut tried, true) {
            return Err(git2::Error::from_str("the server refused the configured credentials"));
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            let key = credentials
                .ssh_private_key
                .as_deref()
                .ok_or_else(|| git2::Error::from_str("the server wants an SSH key; set policies.ssh.privateKey"))?;
            return git2::Cred::ssh_key(username.unwrap_or("git"), None, key, None);
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            let path = credentials.http_credentials.as_deref().ok_or_else(|| {
                git2::Error::from_str("the server wants a user and token; set policies.httpCredentialsFile")
            })?;
            let text = read_secret(path, "HTTP credentials file")?;
            let (user, token) = text
                .split_once(':')
                .ok_or_else(|| git2::Error::from_str(&format!("{} must hold `user:token`", path.display())))?;
            return git2::Cred::userpass_plaintext(user, token);
        }
        Err(git2::Error::from_str("the server asked for a kind of credential patchward does not offer"))
    });
    callbacks.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
        };
        let path = credentials.ssh_known_hosts.as_deref().ok_or_else(|| {
            git2::Error::from_str("no SSH server is trusted without known hosts; set policies.ssh.knownHosts")
        })?;
        let known = std::fs::read_to_string(path)
            .map_err(|e| git2::Error::from_str(&format!("failed to read the known hosts {}: {e}", path.display())))?;
        let (_, port) = ssh_endpoint(url).unwrap_or_else(|| (host.to_owned(), 22));
        let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
            return Err(git2::Error::from_str("the SSH server's host key could not be read"));
        };
        if host_key_known(&known, host, port, kind.name(), key) {
            Ok(git2::CertificateCheckStatus::CertificateOk)
        } else {
            Err(git2::Error::from_str(&format!(
                "the {} host key of {} is not in {}",
                kind.name(),
                known_hosts_name(host, port),
                path.display()
            )))
        }
    });
    callbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_info_in_messages() {
        assert_eq!(redact_url("https://bot:s3cret@git.example.com/p.git"), "https://git.example.com/p.git");
        assert_eq!(redact_url("https://git.example.com/p.git"), "https://git.example.com/p.git");
        assert_eq!(redact_url("/srv/policies"), "/srv/policies");
    }

    #[test]
    fn ssh_urls_name_their_host_and_port() {
        assert_eq!(ssh_endpoint("ssh://git@127.0.0.1:2222/srv/p.git"), Some(("127.0.0.1".into(), 2222)));
        assert_eq!(ssh_endpoint("ssh://git@forge/p.git"), Some(("forge".into(), 22)));
        assert_eq!(ssh_endpoint("git@forge.example.com:team/p.git"), Some(("forge.example.com".into(), 22)));
        assert_eq!(ssh_endpoint("https://forge/p.git"), None);
        assert_eq!(ssh_endpoint("/srv/p.git"), None);
    }

    #[test]
    fn a_host_key_is_known_only_for_its_host_port_and_type() {
        use base64::Engine as _;
        let key = b"raw host key bytes";
        let encoded = base64::engine::general_purpose::STANDARD.encode(key);
        let known = format!(
            "# comment\n@revoked [other]:2222 ssh-ed25519 {encoded}\nforge,10.0.0.1 ssh-ed25519 {encoded}\n\
             [127.0.0.1]:2222 ssh-ed25519 {encoded} a comment\n"
        );
        assert!(host_key_known(&known, "forge", 22, "ssh-ed25519", key));
        assert!(host_key_known(&known, "10.0.0.1", 22, "ssh-ed25519", key));
        assert!(host_key_known(&known, "127.0.0.1", 2222, "ssh-ed25519", key));
        assert!(!host_key_known(&known, "127.0.0.1", 22, "ssh-ed25519", key), "another port");
        assert!(!host_key_known(&known, "forge", 22, "ssh-rsa", key), "another type");
        assert!(!host_key_known(&known, "forge", 22, "ssh-ed25519", b"another key"));
        assert!(!host_key_known(&known, "other", 2222, "ssh-ed25519", key), "revoked lines vouch for nothing");
    }
}
