//! SSH commit signatures (RELIABILITY T4): whether the commits the follower
//! is about to apply were signed, git-style (`gpg.format=ssh`), by a key in
//! an OpenSSH allowed-signers file.
//!
//! SSHSIG is verified here by hand for ssh-ed25519 with the workspace's
//! ed25519-dalek and sha2 rather than through a second, differently
//! versioned copy of the same crypto stack. The rules follow
//! `ssh-keygen -Y verify -n git` (the tests use it as the oracle), with two
//! deliberate differences: validity windows are judged at the `now` the
//! caller passes, not at the commit's committer date as `git verify-commit`
//! does, because whoever holds a key can backdate a commit past its
//! `valid-before`; and timestamps without a `Z` are read as UTC, because the
//! engine never consults a local time zone.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};

/// The SSHSIG namespace git signs commits in.
const NAMESPACE: &str = "git";
const MAGIC: &[u8] = b"SSHSIG";
const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const ARMOR_END: &str = "-----END SSH SIGNATURE-----";
const ED25519: &str = "ssh-ed25519";

/// The most commits [`SignatureMode::All`] checks in one go. Past it the
/// range is refused rather than walked: an unbounded walk back to the root
/// of a large history would stall the follower.
pub const MAX_COMMITS: usize = 10_000;

/// A line of an allowed-signers file that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct SignersError {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

/// The keys allowed to sign commits, from an OpenSSH allowed-signers file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    principals: String,
    key: [u8; 32],
    fingerprint: String,
    /// Such a line vouches for certificates the key issued, never for
    /// signatures by the key itself; certificates are not supported, so it
    /// matches nothing.
    cert_authority: bool,
    /// `None` allows every namespace, as OpenSSH does.
    namespaces: Option<String>,
    valid_after: Option<jiff::Timestamp>,
    valid_before: Option<jiff::Timestamp>,
}

impl Entry {
    fn allows(&self, key: &[u8; 32], now: jiff::Timestamp) -> bool {
        !self.cert_authority
            && &self.key == key
            && self.namespaces.as_deref().is_none_or(|patterns| match_pattern_list(NAMESPACE, patterns))
            && self.valid_after.is_none_or(|after| now >= after)
            && self.valid_before.is_none_or(|before| now <= before)
    }
}

impl AllowedSigners {
    /// Parses an allowed-signers file; `origin` names it in errors. A line
    /// that cannot be used is an error rather than skipped, so that a typo
    /// never silently drops a signer (or, with `namespaces`, widens one).
    pub fn parse(text: &str, origin: &str) -> Result<AllowedSigners, SignersError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(line).map_err(|message| SignersError {
                origin: origin.to_owned(),
                line: index + 1,
                message,
            })?;
            entries.push(entry);
        }
        Ok(AllowedSigners { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each line's principals and key fingerprint, for logging which
    /// signers are in force.
    pub fn signers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|entry| (entry.principals.as_str(), entry.fingerprint.as_str()))
    }

    /// The principals of the first line that lets `key` sign for git at `now`.
    fn principals_for(&self, key: &[u8; 32], now: jiff::Timestamp) -> Option<&str> {
        self.entries.iter().find(|entry| entry.allows(key, now)).map(|entry| entry.principals.as_str())
    }
}

fn parse_line(line: &str) -> Result<Entry, String> {
    let (principals, rest) = if let Some(quoted) = line.strip_prefix('"') {
        let end = quoted.find('"').ok_or("the quoted principals have no closing quote")?;
        let rest = &quoted[end + 1..];
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return Err("expected whitespace after the quoted principals".into());
        }
        (&quoted[..end], rest)
    } else {
        line.split_once(char::is_whitespace).unwrap_or((line, ""))
    };
    if principals.is_empty() {
        return Err("the principals are empty".into());
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Err(format!("missing key after the principals `{principals}`"));
    }

    let first = rest.split_whitespace().next().unwrap_or_default();
    let (options, rest) = if is_key_type(first) { ("", rest) } else { split_options(rest)? };
    let mut entry = Entry {
        principals: principals.to_owned(),
        key: [0; 32],
        fingerprint: String::new(),
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
    };
    parse_options(options, &mut entry)?;

    let mut words = rest.split_whitespace();
    let key_type = words.next().ok_or("missing key after the options")?;
    if key_type != ED25519 {
        return Err(if is_key_type(key_type) {
            format!("unsupported key type `{key_type}` (only {ED25519} keys are supported)")
        } else {
            format!("unknown key type `{key_type}`")
        });
    }
    let encoded = words.next().ok_or_else(|| format!("missing base64 key after `{key_type}`"))?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("the {key_type} key is not valid base64: {e}"))?;
    entry.key = ed25519_key(&blob).map_err(|e| format!("the {key_type} key is not usable: {e}"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&entry.key)
        .map_err(|_| format!("the {key_type} key is not a valid ed25519 point"))?;
    entry.fingerprint = fingerprint(&blob);
    Ok(entry)
}

/// Whether `word` names an SSH key type: what tells the key from the
/// options, which come between principals and key only when present.
fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
}

/// Splits `namespaces="a,b",cert-authority ssh-ed25519 AAAA` after the
/// options, which end at the first whitespace outside quotes.
fn split_options(text: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&text[..at], text[at..].trim_start())),
            _ => {}
        }
    }
    if quoted { Err("the options have an unclosed quote".into()) } else { Err("missing key after the options".into()) }
}

fn parse_options(mut text: &str, entry: &mut Entry) -> Result<(), String> {
    while !text.is_empty() {
        let name_end = text.find(['=', ',']).unwrap_or(text.len());
        let name = text[..name_end].to_ascii_lowercase();
        text = &text[name_end..];
        let value = match text.strip_prefix('=') {
            Some(after) => {
                let (value, after) = dequote(after).map_err(|e| format!("option `{name}`: {e}"))?;
                text = after;
                Some(value)
            }
            None => None,
        };
        match (name.as_str(), value) {
            ("cert-authority", None) => entry.cert_authority = true,
            ("namespaces", Some(value)) => set_once(&mut entry.namespaces, value, &name)?,
            ("valid-after", Some(value)) => set_once(&mut entry.valid_after, parse_time(&value)?, &name)?,
            ("valid-before", Some(value)) => set_once(&mut entry.valid_before, parse_time(&value)?, &name)?,
            ("cert-authority", Some(_)) => return Err("option `cert-authority` takes no value".into()),
            ("namespaces" | "valid-after" | "valid-before", None) => {
                return Err(format!("option `{name}` needs a quoted value"));
            }
            _ => return Err(format!("unknown option `{name}`")),
        }
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.is_empty() {
            return Err(format!("expected `,` after option `{name}`"));
        }
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("option `{name}` is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// Reads a `"..."` value (OpenSSH requires the quotes), returning it and
/// what follows.
fn dequote(text: &str) -> Result<(String, &str), String> {
    let body = text.strip_prefix('"').ok_or("the value must be quoted")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("the value has no closing quote".into())
}

/// `YYYYMMDD[HHMM[SS]][Z]`, as `ssh-keygen` writes validity bounds.
fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    let bad = || format!("`{text}` is not a time of the form YYYYMMDD[HHMM[SS]][Z]");
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let field = |range: std::ops::Range<usize>| digits.get(range).map_or(Ok(0), str::parse::<i16>);
    let (Ok(year), Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) =
        (field(0..4), field(4..6), field(6..8), field(8..10), field(10..12), field(12..14))
    else {
        return Err(bad());
    };
    let datetime = jiff::civil::DateTime::new(year, month as i8, day as i8, hour as i8, minute as i8, second as i8, 0)
        .map_err(|_| bad())?;
    jiff::tz::TimeZone::UTC.to_timestamp(datetime).map_err(|_| bad())
}

/// OpenSSH's `match_pattern_list`: comma-separated `*`/`?` globs, where a
/// matching `!pattern` vetoes the whole list.
fn match_pattern_list(name: &str, patterns: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, pattern),
        };
        if glob(name.as_bytes(), pattern.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

fn glob(name: &[u8], pattern: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(&name[skip..], rest)),
        Some((b'?', rest)) => !name.is_empty() && glob(&name[1..], rest),
        Some((c, rest)) => name.first() == Some(c) && glob(&name[1..], rest),
    }
}

/// OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the key blob's
/// SHA-256, as `ssh-keygen -l` prints it.
fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// An SSH wire-format reader: big-endian u32s and u32-length-prefixed strings.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("it ends early".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() { Ok(()) } else { Err(format!("{} bytes follow its end", self.0.len())) }
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The 32-byte key of an `ssh-ed25519` public key blob.
fn ed25519_key(blob: &[u8]) -> Result<[u8; 32], String> {
    let mut reader = Reader(blob);
    let key_type = reader.string()?;
    if key_type != ED25519.as_bytes() {
        return Err(format!("its blob is of type `{}`", String::from_utf8_lossy(key_type)));
    }
    let key = <[u8; 32]>::try_from(reader.string()?).map_err(|_| "its key is not 32 bytes".to_owned())?;
    reader.end()?;
    Ok(key)
}

/// A decoded SSHSIG blob (OpenSSH's PROTOCOL.sshsig).
struct SshSig<'a> {
    key_blob: &'a [u8],
    key: [u8; 32],
    namespace: &'a [u8],
    reserved: &'a [u8],
    hash_algorithm: &'a [u8],
    signature: [u8; 64],
}

fn dearmor(armored: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(armored).map_err(|_| "the signature is not text".to_owned())?.trim();
    let Some(body) = text.strip_prefix(ARMOR_BEGIN) else {
        let first = text.lines().next().unwrap_or_default();
        return Err(format!("not an SSH signature (it starts with `{first}`)"));
    };
    let body = body.strip_suffix(ARMOR_END).ok_or_else(|| format!("the signature does not end with `{ARMOR_END}`"))?;
    let base64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(base64).map_err(|e| format!("the signature is not base64: {e}"))
}

fn parse_sshsig(blob: &[u8]) -> Result<SshSig<'_>, String> {
    let structure = |e: String| format!("the SSHSIG blob is malformed: {e}");
    let mut reader = Reader(blob);
    if reader.take(MAGIC.len()).map_err(structure)? != MAGIC {
        return Err("the signature blob does not start with SSHSIG".into());
    }
    let version = reader.u32().map_err(structure)?;
    if version != 1 {
        return Err(format!("SSHSIG version {version} is not supported"));
    }
    let key_blob = reader.string().map_err(structure)?;
    let namespace = reader.string().map_err(structure)?;
    let reserved = reader.string().map_err(structure)?;
    let hash_algorithm = reader.string().map_err(structure)?;
    let signature_blob = reader.string().map_err(structure)?;
    reader.end().map_err(structure)?;

    let key = {
        let mut key_reader = Reader(key_blob);
        let key_type = key_reader.string().map_err(|e| format!("the signing key is malformed: {e}"))?;
        if key_type != ED25519.as_bytes() {
            return Err(format!(
                "signed with a `{}` key {}; only {ED25519} keys are supported",
                String::from_utf8_lossy(key_type),
                fingerprint(key_blob)
            ));
        }
        ed25519_key(key_blob).map_err(|e| format!("the signing key is malformed: {e}"))?
    };
    if hash_algorithm != b"sha512" && hash_algorithm != b"sha256" {
        return Err(format!("unknown hash algorithm `{}`", String::from_utf8_lossy(hash_algorithm)));
    }
    let mut sig_reader = Reader(signature_blob);
    let sig_type = sig_reader.string().map_err(|e| format!("the signature is malformed: {e}"))?;
    if sig_type != ED25519.as_bytes() {
        return Err(format!("an {ED25519} key made a `{}` signature", String::from_utf8_lossy(sig_type)));
    }
    let signature = <[u8; 64]>::try_from(sig_reader.string().map_err(|e| format!("the signature is malformed: {e}"))?)
        .map_err(|_| "the ed25519 signature is not 64 bytes".to_owned())?;
    sig_reader.end().map_err(|e| format!("the signature is malformed: {e}"))?;
    Ok(SshSig { key_blob, key, namespace, reserved, hash_algorithm, signature })
}

/// What PROTOCOL.sshsig has the key sign: not the message but a hash of
/// it, bound to the namespace so a signature made for one use (say, files)
/// cannot be replayed as another (commits).
fn signed_data(sig: &SshSig<'_>, message: &[u8]) -> Vec<u8> {
    let hash = if sig.hash_algorithm == b"sha256" {
        Sha256::digest(message).to_vec()
    } else {
        Sha512::digest(message).to_vec()
    };
    let mut data = MAGIC.to_vec();
    put_string(&mut data, sig.namespace);
    put_string(&mut data, sig.reserved);
    put_string(&mut data, sig.hash_algorithm);
    put_string(&mut data, &hash);
    data
}

/// Judges an armored SSH signature over `message`.
pub fn verify_sshsig(
    armored: &[u8],
    message: &[u8],
    signers: &AllowedSigners,
    now: jiff::Timestamp,
) -> SignatureStatus {
    let blob = match dearmor(armored) {
        Ok(blob) => blob,
        Err(reason) => return SignatureStatus::Malformed { reason },
    };
    let sig = match parse_sshsig(&blob) {
        Ok(sig) => sig,
        Err(reason) => return SignatureStatus::Malformed { reason },
    };
    let fingerprint = fingerprint(sig.key_blob);
    let Some(principals) = signers.principals_for(&sig.key, now) else {
        return SignatureStatus::UnknownKey { fingerprint };
    };
    if sig.namespace != NAMESPACE.as_bytes() {
        return SignatureStatus::Invalid { fingerprint };
    }
    let verified = ed25519_dalek::VerifyingKey::from_bytes(&sig.key).is_ok_and(|key| {
        key.verify_strict(&signed_data(&sig, message), &ed25519_dalek::Signature::from_bytes(&sig.signature)).is_ok()
    });
    if verified {
        SignatureStatus::Good { principal: principals.to_owned(), fingerprint }
    } else {
        SignatureStatus::Invalid { fingerprint }
    }
}

/// How a commit's signature stands against the allowed signers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No `gpgsig` header.
    Unsigned,
    /// A signature that is not a usable SSHSIG (a PGP one, say, or an
    /// unsupported key type).
    Malformed {
        reason: String,
    },
    /// Signed by a key no line allows for git now: absent, restricted to
    /// other namespaces, outside its validity window, or a cert-authority.
    UnknownKey {
        fingerprint: String,
    },
    /// Signed by an allowed key, but not over this commit (or not for git).
    Invalid {
        fingerprint: String,
    },
    Good {
        principal: String,
        fingerprint: String,
    },
}

impl SignatureStatus {
    /// The audit log's word for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureStatus::Unsigned => "unsigned",
            SignatureStatus::Malformed { .. } => "malformed-signature",
            SignatureStatus::UnknownKey { .. } => "unknown-key",
            SignatureStatus::Invalid { .. } => "bad-signature",
            SignatureStatus::Good { .. } => "good",
        }
    }

    pub fn is_good(&self) -> bool {
        matches!(self, SignatureStatus::Good { .. })
    }

    /// A phrase that follows "commit 1a2b3c4 ...".
    pub fn describe(&self) -> String {
        match self {
            SignatureStatus::Unsigned => "is unsigned".into(),
            SignatureStatus::Malformed { reason } => format!("has a malformed signature: {reason}"),
            SignatureStatus::UnknownKey { fingerprint } => format!("is signed by unknown key {fingerprint}"),
            SignatureStatus::Invalid { fingerprint } => format!("has a bad signature from key {fingerprint}"),
            SignatureStatus::Good { principal, fingerprint } => format!("is signed by {principal} ({fingerprint})"),
        }
    }
}

impl fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Judges the signature of `commit`. Errors are git's only (the commit
/// cannot be read); every problem with the signature is a status.
pub fn verify_commit(
    repo: &git2::Repository,
    commit: git2::Oid,
    signers: &AllowedSigners,
    now: jiff::Timestamp,
) -> Result<SignatureStatus, git2::Error> {
    // libgit2 reports a missing object with the same NotFound as a missing
    // signature: look the commit up first so that absence is never "unsigned".
    repo.find_commit(commit)?;
    match repo.extract_signature(&commit, None) {
        Ok((signature, signed)) => Ok(verify_sshsig(&signature, &signed, signers, now)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(SignatureStatus::Unsigned),
        Err(e) => Err(e),
    }
}

/// Which commits must carry a good signature before the follower applies a
/// tip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// Signatures are not required.
    #[default]
    Off,
    /// The tip must be signed; what it merged in need not be.
    Tip,
    /// Every commit new since the applied revision must be signed.
    All,
}

/// Whether a tip may be applied, as far as signatures go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: bool,
    pub mode: SignatureMode,
    /// The tip's full sha.
    pub tip: String,
    /// Recorded in every mode, `off` included, for the audit log.
    pub tip_status: SignatureStatus,
    /// The commits that fail the mode, by full sha, in walk order (newest
    /// first).
    pub problems: Vec<(String, SignatureStatus)>,
    /// [`SignatureMode::All`] found more than [`MAX_COMMITS`] commits to
    /// check and refused without checking them.
    pub too_many_commits: bool,
}

impl Verdict {
    /// One line for the operator: the first problem, or why it passed.
    pub fn reason(&self) -> String {
        if self.too_many_commits {
            return format!(
                "more than {MAX_COMMITS} new commits up to {} would need signature checks; refusing to walk them all",
                short(&self.tip)
            );
        }
        if let Some((commit, status)) = self.problems.first() {
            let more = match self.problems.len() - 1 {
                0 => String::new(),
                1 => " (and 1 more commit fails the signature check)".into(),
                n => format!(" (and {n} more commits fail the signature check)"),
            };
            return format!("commit {} {}{more}", short(commit), status.describe());
        }
        match self.mode {
            SignatureMode::Off => "signature checks are off".into(),
            SignatureMode::Tip => format!("commit {} {}", short(&self.tip), self.tip_status.describe()),
            SignatureMode::All => format!("every new commit up to {} is signed by an allowed key", short(&self.tip)),
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// Judges the commits from `applied` (exclusive; `None` for the root) to
/// `tip` under `mode`.
pub fn check_range(
    repo: &git2::Repository,
    applied: Option<git2::Oid>,
    tip: git2::Oid,
    signers: &AllowedSigners,
    mode: SignatureMode,
    now: jiff::Timestamp,
) -> Result<Verdict, git2::Error> {
    let tip_status = verify_commit(repo, tip, signers, now)?;
    let mut verdict = Verdict {
        accepted: true,
        mode,
        tip: tip.to_string(),
        tip_status: tip_status.clone(),
        problems: Vec::new(),
        too_many_commits: false,
    };
    match mode {
        SignatureMode::Off => {}
        SignatureMode::Tip => {
            if !tip_status.is_good() {
                verdict.problems.push((tip.to_string(), tip_status));
            }
        }
        SignatureMode::All => {
            let mut walk = repo.revwalk()?;
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
            walk.push(tip)?;
            if let Some(applied) = applied {
                walk.hide(applied)?;
            }
            let mut commits = Vec::new();
            for oid in walk {
                commits.push(oid?);
                if commits.len() > MAX_COMMITS {
                    verdict.accepted = false;
                    verdict.too_many_commits = true;
                    return Ok(verdict);
                }
            }
            for oid in commits {
                let status = if oid == tip { tip_status.clone() } else { verify_commit(repo, oid, signers, now)? };
                if !status.is_good() {
                    verdict.problems.push((oid.to_string(), status));
                }
            }
        }
    }
    verdict.accepted = verdict.problems.is_empty();
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `ssh-keygen -t ed25519`; the fingerprint is `ssh-keygen -l`'s.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2YIy25PE4QCnYSIB6rj1IB2TFdoybWvcvwnGdtTgoj";
    const FINGERPRINT: &str = "SHA256:P67F30q6cnFgc0vo3P93ktk7sefQlKSKanUq6mTmpUU";
    /// `ssh-keygen -Y sign -f KEY -n git` of MESSAGE.
    const SIGNATURE: &str = "-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgHZgjLbk8ThAKdhIgHquPUgHZMV
2jJta9y/CcZ21OCiMAAAADZ2l0AAAAAAAAAAZzaGE1MTIAAABTAAAAC3NzaC1lZDI1NTE5
AAAAQLjLuvcKuOh8QglUTVTY3yRncV8gZx+sV0F6DlOY7jCVTMUFK6o2FIJTAr0AW5vdoF
eMdZn7XOFYzb0LIKcZGAI=
-----END SSH SIGNATURE-----
";
    const MESSAGE: &[u8] = b"hello patchward\n";

    fn now() -> jiff::Timestamp {
        "2026-11-24T12:00:00Z".parse().unwrap()
    }

    fn parse(text: &str) -> AllowedSigners {
        AllowedSigners::parse(text, "allowed_signers").unwrap()
    }

    fn error(text: &str) -> String {
        AllowedSigners::parse(text, "allowed_signers").unwrap_err().to_string()
    }

    fn verify(signers: &str) -> SignatureStatus {
        verify_sshsig(SIGNATURE.as_bytes(), MESSAGE, &parse(signers), now())
    }

    #[test]
    fn parses_principals_options_and_comments() {
        let signers = parse(&format!(
            "# who may sign policy commits\n\n  ada@example.com {KEY} ada's laptop\n\
             \"bob@example.com,carol@example.com\" namespaces=\"git,file\",valid-after=\"20260101\" {KEY}\n\
             dan@example.com Cert-Authority {KEY}\r\n"
        ));
        assert_eq!(signers.len(), 3);
        let [ada, bob, dan] = &signers.entries[..] else { panic!() };
        assert_eq!((ada.principals.as_str(), ada.fingerprint.as_str()), ("ada@example.com", FINGERPRINT));
        assert_eq!(bob.principals, "bob@example.com,carol@example.com");
        assert_eq!(bob.namespaces.as_deref(), Some("git,file"));
        assert_eq!(bob.valid_after, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert!(dan.cert_authority && !ada.cert_authority);
        assert_eq!(signers.signers().next(), Some(("ada@example.com", FINGERPRINT)));
        assert!(AllowedSigners::parse("# nobody\n\n", "x").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let ok = format!("ada@example.com {KEY}\n");
        let cases = [
            ("ada@example.com ssh-rsa AAAAB3NzaC1yc2E=", "unsupported key type `ssh-rsa`"),
            ("ada@example.com ecdsa-sha2-nistp256 AAAA", "unsupported key type `ecdsa-sha2-nistp256`"),
            ("ada@example.com ssh-ed25519 not*base64", "not valid base64"),
            ("ada@example.com ssh-ed25519", "missing base64 key after `ssh-ed25519`"),
            ("ada@example.com", "missing key after the principals"),
            ("ada@example.com ssh-ed25519 AAAAC3NzaC1yc2E=", "not usable"),
            (&format!("ada@example.com nonsense {KEY}"), "unknown option `nonsense`"),
            (&format!("ada@example.com namespaces=git {KEY}"), "option `namespaces`: the value must be quoted"),
            (&format!("ada@example.com namespaces=\"git {KEY}"), "unclosed quote"),
            (&format!("ada@example.com valid-before=\"tomorrow\" {KEY}"), "`tomorrow` is not a time"),
            (&format!("ada@example.com valid-before=\"20261341\" {KEY}"), "`20261341` is not a time"),
            (&format!("ada@example.com namespaces=\"git\",namespaces=\"file\" {KEY}"), "given twice"),
            (&format!("\"ada@example.com {KEY}"), "no closing quote"),
        ];
        for (line, expected) in cases {
            let message = error(&format!("{ok}# a comment\n{line}\n"));
            assert!(message.starts_with("allowed_signers:3: "), "{line}: {message}");
            assert!(message.contains(expected), "{line}: {message}");
        }
    }

    #[test]
    fn verifies_a_real_ssh_keygen_signature() {
        let good = SignatureStatus::Good { principal: "ada@example.com".into(), fingerprint: FINGERPRINT.into() };
        assert_eq!(verify(&format!("ada@example.com {KEY}")), good);
        assert_eq!(
            verify_sshsig(
                SIGNATURE.as_bytes(),
                b"hello patchward!\n",
                &parse(&format!("ada@example.com {KEY}")),
                now()
            ),
            SignatureStatus::Invalid { fingerprint: FINGERPRINT.into() }
        );
        assert_eq!(verify(""), SignatureStatus::UnknownKey { fingerprint: FINGERPRINT.into() });
    }

    #[test]
    fn only_lines_allowing_git_now_count() {
        let unknown = SignatureStatus::UnknownKey { fingerprint: FINGERPRINT.into() };
        for options in [
            "namespaces=\"file\"",
            "namespaces=\"*,!git\"",
            "cert-authority",
            "valid-after=\"20270101Z\"",
            "valid-before=\"20261124115959\"",
        ] {
            assert_eq!(verify(&format!("ada@example.com {options} {KEY}")), unknown, "{options}");
        }
        for options in ["namespaces=\"file,g?t\"", "valid-after=\"202611241200Z\",valid-before=\"20261124120000Z\""] {
            assert!(verify(&format!("ada@example.com {options} {KEY}")).is_good(), "{options}");
        }
        let later = format!("ada@example.com namespaces=\"file\" {KEY}\nbob@example.com {KEY}");
        assert!(matches!(verify(&later), SignatureStatus::Good { principal, .. } if principal == "bob@example.com"));
    }

    #[test]
    fn malformed_signatures_say_why() {
        let signers = parse(&format!("ada@example.com {KEY}"));
        let malformed = |armored: &str| match verify_sshsig(armored.as_bytes(), MESSAGE, &signers, now()) {
            SignatureStatus::Malformed { reason } => reason,
            other => panic!("{armored}: {other:?}"),
        };
        assert!(malformed("-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----").contains("not an SSH"));
        assert!(malformed("-----BEGIN SSH SIGNATURE-----\n!!\n-----END SSH SIGNATURE-----").contains("base64"));
        let lines: Vec<&str> = SIGNATURE.lines().collect();
        let truncated = [&lines[..3], &lines[5..]].concat().join("\n");
        assert!(malformed(&truncated).contains("malformed"), "{}", malformed(&truncated));
    }

    #[test]
    fn status_words_for_the_audit_log() {
        assert_eq!(SignatureStatus::Unsigned.to_string(), "unsigned");
        assert_eq!(SignatureStatus::UnknownKey { fingerprint: String::new() }.as_str(), "unknown-key");
        assert_eq!(SignatureStatus::Invalid { fingerprint: String::new() }.as_str(), "bad-signature");
        assert_eq!(SignatureStatus::Good { principal: String::new(), fingerprint: String::new() }.as_str(), "good");
    }

    #[test]
    fn modes_read_lowercase() {
        let modes: Vec<SignatureMode> = serde_json::from_str(r#"["off", "tip", "all"]"#).unwrap();
        assert_eq!(modes, [SignatureMode::Off, SignatureMode::Tip, SignatureMode::All]);
        assert_eq!(SignatureMode::default(), SignatureMode::Off);
        assert!(serde_json::from_str::<SignatureMode>(r#""Tip""#).is_err());
    }
}
