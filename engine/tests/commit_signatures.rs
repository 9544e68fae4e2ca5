//! SSH commit signatures on real repositories (RELIABILITY T4): commits are
//! made and signed with the git CLI and keys from `ssh-keygen`, and every
//! status is checked against `ssh-keygen -Y verify -n git` run on the
//! signature and payload read back with `git cat-file`, independently of
//! libgit2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use patchward::follow::signature::{AllowedSigners, SignatureMode, SignatureStatus, check_range, verify_commit};

const NOW: &str = "2026-11-24T12:00:00Z";
/// NOW as `ssh-keygen -O verify-time=` takes it.
const NOW_SSH: &str = "20261124120000Z";

fn now() -> jiff::Timestamp {
    NOW.parse().unwrap()
}

fn run(program: &str, args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Admin")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Admin")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        // The private key file must do the signing, not whatever agent the
        // developer running the tests has.
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let mut input = child.stdin.take().unwrap();
    // A program that does not read its input may exit before we write it.
    if let Err(e) = input.write_all(stdin.unwrap_or_default()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{program}'s input: {e}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_stdin(dir, args, None)
}

fn git_stdin(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let output = run("git", args, dir, stdin);
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let repo = root.join("policy");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        Fixture { _dir: dir, root, repo }
    }

    /// A new ed25519 key: its private key file and its public key line.
    fn key(&self, name: &str) -> (PathBuf, String) {
        let path = self.root.join(name);
        let output = run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name], &self.root, None);
        assert!(output.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&output.stderr));
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        (path, public.trim().to_owned())
    }

    fn commit(&self, message: &str, key: Option<&Path>) -> String {
        match key {
            Some(key) => {
                let signing_key = format!("user.signingkey={}.pub", key.display());
                git(
                    &self.repo,
                    &[
                        "-c",
                        "gpg.format=ssh",
                        "-c",
                        &signing_key,
                        "-c",
                        "commit.gpgsign=true",
                        "commit",
                        "-S",
                        "-q",
                        "--allow-empty",
                        "-m",
                        message,
                    ],
                );
            }
            None => {
                git(&self.repo, &["-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", message]);
            }
        }
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    fn raw_commit(&self, sha: &str) -> Vec<u8> {
        let output = run("git", &["cat-file", "commit", sha], &self.repo, None);
        assert!(output.status.success());
        output.stdout
    }

    /// A commit object with `base`'s content and `signature` as its gpgsig,
    /// written without git's signing machinery.
    fn graft(&self, base: &str, signature: &str) -> String {
        let (_, payload) = split_signature(&self.raw_commit(base));
        let payload = String::from_utf8(payload).unwrap();
        let (headers, message) = payload.split_once("\n\n").unwrap();
        let indented = signature.trim_end().replace('\n', "\n ");
        let object = format!("{headers}\ngpgsig {indented}\n\n{message}");
        git_stdin(&self.repo, &["hash-object", "-t", "commit", "-w", "--stdin"], Some(object.as_bytes()))
    }

    fn allowed_signers(&self, text: &str) -> (PathBuf, AllowedSigners) {
        let path = self.root.join("allowed_signers");
        std::fs::write(&path, text).unwrap();
        let signers = AllowedSigners::parse(text, &path.display().to_string()).unwrap();
        (path, signers)
    }

    /// Our status for `sha`, after asserting that `ssh-keygen` agrees on
    /// whether it is good for `principal`.
    fn check(&self, sha: &str, signers_text: &str, principal: &str) -> SignatureStatus {
        let (path, signers) = self.allowed_signers(signers_text);
        let repo = git2::Repository::open(&self.repo).unwrap();
        let status = verify_commit(&repo, git2::Oid::from_str(sha).unwrap(), &signers, now()).unwrap();
        let oracle = self.oracle(sha, &path, principal);
        assert_eq!(status.is_good(), oracle, "ssh-keygen says good = {oracle}, we say {status:?}");
        if let SignatureStatus::Good { principal: ours, .. } = &status {
            assert!(ours.split(',').any(|p| p == principal), "{ours} lists {principal}");
        }
        status
    }

    fn oracle(&self, sha: &str, allowed_signers: &Path, principal: &str) -> bool {
        let (signature, payload) = split_signature(&self.raw_commit(sha));
        let Some(signature) = signature else { return false };
        let sig_path = self.root.join(format!("{sha}.sig"));
        std::fs::write(&sig_path, signature).unwrap();
        let allowed = allowed_signers.display().to_string();
        let sig = sig_path.display().to_string();
        let verify_time = format!("verify-time={NOW_SSH}");
        let args = ["-Y", "verify", "-f", &allowed, "-I", principal, "-n", "git", "-s", &sig, "-O", &verify_time];
        run("ssh-keygen", &args, &self.root, Some(&payload)).status.success()
    }
}

/// Splits a raw commit into its gpgsig (continuation lines unindented) and
/// the payload that was signed: the commit without that header.
fn split_signature(raw: &[u8]) -> (Option<String>, Vec<u8>) {
    let text = std::str::from_utf8(raw).unwrap();
    let (headers, message) = text.split_once("\n\n").unwrap();
    let mut signature: Option<String> = None;
    let mut kept = Vec::new();
    let mut in_signature = false;
    for line in headers.split('\n') {
        if let Some(first) = line.strip_prefix("gpgsig ") {
            signature = Some(format!("{first}\n"));
            in_signature = true;
        } else if let (true, Some(more)) = (in_signature, line.strip_prefix(' ')) {
            signature.as_mut().unwrap().push_str(&format!("{more}\n"));
        } else {
            in_signature = false;
            kept.push(line);
        }
    }
    (signature, format!("{}\n\n{message}", kept.join("\n")).into_bytes())
}

fn fingerprint(fx: &Fixture, key: &Path) -> String {
    let public = format!("{}.pub", key.display());
    let output = run("ssh-keygen", &["-l", "-E", "sha256", "-f", &public], &fx.root, None);
    String::from_utf8(output.stdout).unwrap().split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn a_commit_signed_by_an_allowed_key_is_good() {
    let fx = Fixture::new();
    let (key, public) = fx.key("ada");
    let sha = fx.commit("signed policy", Some(&key));
    let status = fx.check(&sha, &format!("ada@example.com {public}\n"), "ada@example.com");
    assert_eq!(
        status,
        SignatureStatus::Good { principal: "ada@example.com".into(), fingerprint: fingerprint(&fx, &key) }
    );
    assert_eq!(status.to_string(), "good");

    let status =
        fx.check(&sha, &format!("ops@example.com,ada@example.com namespaces=\"git\" {public}\n"), "ada@example.com");
    assert!(
        matches!(status, SignatureStatus::Good { principal, .. } if principal == "ops@example.com,ada@example.com")
    );
}

#[test]
fn an_unsigned_commit_is_unsigned() {
    let fx = Fixture::new();
    let (_, public) = fx.key("ada");
    let sha = fx.commit("unsigned policy", None);
    assert_eq!(fx.check(&sha, &format!("ada@example.com {public}\n"), "ada@example.com"), SignatureStatus::Unsigned);

    let repo = git2::Repository::open(&fx.repo).unwrap();
    let missing = git2::Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
    let error = verify_commit(&repo, missing, &AllowedSigners::default(), now()).unwrap_err();
    assert_eq!(error.code(), git2::ErrorCode::NotFound, "a missing commit is an error, not unsigned");
}

#[test]
fn a_key_not_in_the_list_is_unknown() {
    let fx = Fixture::new();
    let (_, ada) = fx.key("ada");
    let (mallory, _) = fx.key("mallory");
    let sha = fx.commit("signed by someone else", Some(&mallory));
    let status = fx.check(&sha, &format!("ada@example.com {ada}\n"), "ada@example.com");
    assert_eq!(status, SignatureStatus::UnknownKey { fingerprint: fingerprint(&fx, &mallory) });
    assert_eq!(status.as_str(), "unknown-key");
}

#[test]
fn a_signature_over_other_content_is_invalid() {
    let fx = Fixture::new();
    let (key, public) = fx.key("ada");
    let signed = fx.commit("signed policy", Some(&key));
    let unsigned = fx.commit("evil policy", None);
    let (signature, _) = split_signature(&fx.raw_commit(&signed));
    let forged = fx.graft(&unsigned, &signature.unwrap());
    let signers = format!("ada@example.com {public}\n");
    let status = fx.check(&forged, &signers, "ada@example.com");
    assert_eq!(status, SignatureStatus::Invalid { fingerprint: fingerprint(&fx, &key) });
    assert_eq!(status.as_str(), "bad-signature");

    // A tampered message with everything else kept.
    let raw = String::from_utf8(fx.raw_commit(&signed)).unwrap().replace("signed policy", "signed policy, edited");
    let tampered = git_stdin(&fx.repo, &["hash-object", "-t", "commit", "-w", "--stdin"], Some(raw.as_bytes()));
    assert!(matches!(fx.check(&tampered, &signers, "ada@example.com"), SignatureStatus::Invalid { .. }));
}

#[test]
fn a_signature_made_for_another_namespace_is_invalid() {
    let fx = Fixture::new();
    let (key, public) = fx.key("ada");
    let base = fx.commit("policy", None);
    // Sign exactly what the grafted commit's payload will be, but as a file.
    let (_, payload) = split_signature(&fx.raw_commit(&base));
    std::fs::write(fx.root.join("payload"), &payload).unwrap();
    let key_path = key.display().to_string();
    let output = run("ssh-keygen", &["-q", "-Y", "sign", "-f", &key_path, "-n", "file", "payload"], &fx.root, None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let signature = std::fs::read_to_string(fx.root.join("payload.sig")).unwrap();
    let sha = fx.graft(&base, &signature);
    let status = fx.check(&sha, &format!("ada@example.com {public}\n"), "ada@example.com");
    assert_eq!(status, SignatureStatus::Invalid { fingerprint: fingerprint(&fx, &key) });
}

#[test]
fn a_garbled_or_pgp_signature_is_malformed() {
    let fx = Fixture::new();
    let (_, public) = fx.key("ada");
    let base = fx.commit("policy", None);
    let signers = format!("ada@example.com {public}\n");
    for signature in [
        "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n",
        "-----BEGIN PGP SIGNATURE-----\niQEzBAABCAAdFiEE\n-----END PGP SIGNATURE-----\n",
    ] {
        let sha = fx.graft(&base, signature);
        let status = fx.check(&sha, &signers, "ada@example.com");
        assert!(matches!(status, SignatureStatus::Malformed { .. }), "{status:?}");
    }
}

#[test]
fn a_key_allowed_only_for_other_namespaces_or_times_is_not_good() {
    let fx = Fixture::new();
    let (key, public) = fx.key("ada");
    let sha = fx.commit("signed policy", Some(&key));
    let unknown = SignatureStatus::UnknownKey { fingerprint: fingerprint(&fx, &key) };
    for options in [
        "namespaces=\"file\"",
        "valid-before=\"20200101Z\"",
        "valid-after=\"20270101000000Z\"",
        "namespaces=\"file\",valid-after=\"20200101Z\"",
    ] {
        let status = fx.check(&sha, &format!("ada@example.com {options} {public}\n"), "ada@example.com");
        assert_eq!(status, unknown, "{options}");
    }
    let window = "namespaces=\"file,git\",valid-after=\"20260101Z\",valid-before=\"20261231235959Z\"";
    assert!(fx.check(&sha, &format!("ada@example.com {window} {public}\n"), "ada@example.com").is_good());
}

#[test]
fn modes_decide_which_commits_must_be_signed() {
    let fx = Fixture::new();
    let (key, public) = fx.key("ada");
    let first = fx.commit("first", Some(&key));
    let middle = fx.commit("unsigned middle", None);
    let tip = fx.commit("signed tip", Some(&key));
    for sha in [&first, &middle, &tip] {
        fx.check(sha, &format!("ada@example.com {public}\n"), "ada@example.com");
    }
    let (_, signers) = fx.allowed_signers(&format!("ada@example.com {public}\n"));
    let repo = git2::Repository::open(&fx.repo).unwrap();
    let oid = |sha: &str| git2::Oid::from_str(sha).unwrap();
    let check =
        |applied: Option<&str>, mode| check_range(&repo, applied.map(oid), oid(&tip), &signers, mode, now()).unwrap();

    let verdict = check(Some(&first), SignatureMode::Tip);
    assert!(verdict.accepted, "{}", verdict.reason());
    assert!(verdict.tip_status.is_good() && verdict.problems.is_empty());
    assert!(verdict.reason().contains("is signed by ada@example.com"), "{}", verdict.reason());

    let verdict = check(Some(&first), SignatureMode::All);
    assert!(!verdict.accepted);
    assert_eq!(verdict.problems, [(middle.clone(), SignatureStatus::Unsigned)]);
    assert_eq!(verdict.reason(), format!("commit {} is unsigned", &middle[..7]));

    let verdict = check(None, SignatureMode::All);
    assert_eq!(verdict.problems, [(middle.clone(), SignatureStatus::Unsigned)], "back to the root");

    let verdict = check(Some(&middle), SignatureMode::All);
    assert!(verdict.accepted, "only commits after the applied one count: {}", verdict.reason());

    let verdict = check(Some(&first), SignatureMode::Off);
    assert!(verdict.accepted);
    assert_eq!(verdict.reason(), "signature checks are off");

    // An unsigned tip fails every mode but off, and names the tip.
    let unsigned_tip = fx.commit("unsigned tip", None);
    let verdict = check_range(&repo, Some(oid(&tip)), oid(&unsigned_tip), &signers, SignatureMode::Tip, now()).unwrap();
    assert!(!verdict.accepted);
    assert_eq!(verdict.reason(), format!("commit {} is unsigned", &unsigned_tip[..7]));
}

#[test]
fn mode_all_checks_what_a_merge_brings_in() {
    let fx = Fixture::new();
    let (key, public) = fx.key("ada");
    let (mallory, _) = fx.key("mallory");
    let base = fx.commit("base", Some(&key));
    git(&fx.repo, &["checkout", "-q", "-b", "side"]);
    let side = fx.commit("side work", Some(&mallory));
    git(&fx.repo, &["checkout", "-q", "main"]);
    let main = fx.commit("main work", Some(&key));
    let signing_key = format!("user.signingkey={}.pub", key.display());
    git(&fx.repo, &["-c", "gpg.format=ssh", "-c", &signing_key, "merge", "-q", "-S", "--no-ff", "-m", "merge", "side"]);
    let merge = git(&fx.repo, &["rev-parse", "HEAD"]);
    let signers_text = format!("ada@example.com {public}\n");
    for sha in [&base, &side, &main, &merge] {
        fx.check(sha, &signers_text, "ada@example.com");
    }
    let (_, signers) = fx.allowed_signers(&signers_text);
    let repo = git2::Repository::open(&fx.repo).unwrap();
    let oid = |sha: &str| git2::Oid::from_str(sha).unwrap();
    let verdict = check_range(&repo, Some(oid(&base)), oid(&merge), &signers, SignatureMode::All, now()).unwrap();
    assert!(!verdict.accepted);
    let unknown = SignatureStatus::UnknownKey { fingerprint: fingerprint(&fx, &mallory) };
    assert_eq!(verdict.problems, [(side.clone(), unknown.clone())]);
    assert_eq!(
        verdict.reason(),
        format!("commit {} is signed by unknown key {}", &side[..7], fingerprint(&fx, &mallory))
    );
    let verdict = check_range(&repo, Some(oid(&base)), oid(&merge), &signers, SignatureMode::Tip, now()).unwrap();
    assert!(verdict.accepted, "{}", verdict.reason());
}

#[test]
fn mode_all_refuses_to_walk_an_unbounded_history() {
    let fx = Fixture::new();
    let count = patchward::follow::signature::MAX_COMMITS + 1;
    let mut stream = String::new();
    for n in 1..=count {
        let message = format!("commit {n}");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Ada Admin <ada@example.com> {} +0000\ndata {}\n{message}\n",
            1_700_000_000 + n,
            message.len()
        ));
    }
    git_stdin(&fx.repo, &["fast-import", "--quiet"], Some(stream.as_bytes()));
    let repo = git2::Repository::open(&fx.repo).unwrap();
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let signers = AllowedSigners::default();
    let verdict = check_range(&repo, None, tip, &signers, SignatureMode::All, now()).unwrap();
    assert!(!verdict.accepted && verdict.too_many_commits && verdict.problems.is_empty());
    assert!(verdict.reason().contains("more than 10000 new commits"), "{}", verdict.reason());

    let parent = repo.find_commit(tip).unwrap().parent_id(0).unwrap();
    let verdict = check_range(&repo, Some(parent), tip, &signers, SignatureMode::All, now()).unwrap();
    assert!(!verdict.too_many_commits);
    assert_eq!(verdict.problems, [(tip.to_string(), SignatureStatus::Unsigned)]);
}

#[test]
fn a_bad_allowed_signers_file_names_the_line() {
    let fx = Fixture::new();
    let (_, public) = fx.key("ada");
    let text = format!("# policy signers\nada@example.com {public}\nbob@example.com namespaces=git {public}\n");
    let error = AllowedSigners::parse(&text, "policy/allowed_signers").unwrap_err();
    assert_eq!((error.origin.as_str(), error.line), ("policy/allowed_signers", 3));
    assert!(error.to_string().starts_with("policy/allowed_signers:3: option `namespaces`"), "{error}");

    let text = format!("ada@example.com {public}\nbob@example.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n");
    let error = AllowedSigners::parse(&text, "signers").unwrap_err().to_string();
    assert!(error.starts_with("signers:2: unsupported key type `ssh-rsa`"), "{error}");
}
