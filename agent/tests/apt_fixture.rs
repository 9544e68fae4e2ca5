//! The apt fixture (`support::apt`) is real: a signed repository on
//! 127.0.0.1 that a sandboxed apt 2.6 trusts, upgrades from, and refuses
//! when the key is wrong or a file was tampered with.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

use support::apt::{AptRepo, AptSandbox, Deb, other_key, percent_decode, sha256_hex};

/// The binaries of source `pwlib` at source version `v`: `libpw1` carries
/// an epoch the source lacks (`Source: pwlib (v)`), `pw-tools` does not.
fn pwlib(v: &str) -> Vec<Deb> {
    vec![
        Deb::new("libpw1", &format!("1:{v}"), "amd64")
            .source(&format!("pwlib ({v})"))
            .file("/usr/share/pwlib/libpw1.VERSION", format!("{v}\n")),
        Deb::new("pw-tools", v, "amd64")
            .source("pwlib")
            .depends(&format!("libpw1 (= 1:{v})"))
            .file("/usr/share/pwlib/tools.VERSION", format!("{v}\n")),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}:\n{}\n{}", output.status, text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(p, v)| (p.to_string(), v.to_string())).collect()
}

/// A device at 1.0-1 whose repository now also offers 1.0-2.
fn device_at_1_0_1(tmp: &tempfile::TempDir) -> (AptRepo, AptSandbox) {
    let mut repo = AptRepo::new(&tmp.path().join("repo"), "stable", &pwlib("1.0-1"));
    let sandbox = AptSandbox::new(&tmp.path().join("device"), &repo.url(), &repo.key(), "stable");
    let debs: Vec<PathBuf> = pwlib("1.0-1").iter().map(|deb| deb.build(&tmp.path().join("debs"))).collect();
    sandbox.dpkg_install(&debs);
    repo.publish(&[pwlib("1.0-1"), pwlib("1.0-2")].concat());
    (repo, sandbox)
}

#[test]
fn a_sandbox_upgrades_both_binaries_of_a_source_from_the_signed_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sandbox) = device_at_1_0_1(&tmp);
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-1"), ("pw-tools", "1.0-1")]));
    assert_eq!(sandbox.installed_lines(), ["libpw1 1:1.0-1 pwlib 1.0-1", "pw-tools 1.0-1 pwlib 1.0-1"]);
    // Builds are deterministic: the served 1.0-1 debs are the ones installed.
    for deb in pwlib("1.0-1") {
        let served = std::fs::read(repo.file(&repo.pool_path(&deb))).unwrap();
        assert_eq!(served, std::fs::read(tmp.path().join("debs").join(deb.file_name())).unwrap());
    }

    ok(sandbox.apt_get(&["update", "--error-on=any"]));
    assert_eq!(repo.requests(), ["/dists/stable/InRelease", "/dists/stable/main/binary-amd64/Packages"]);

    let simulated = ok(sandbox.apt_get(&["install", "-s", "libpw1=1:1.0-2", "pw-tools=1.0-2"]));
    // "Inst libpw1 [1:1.0-1] (1:1.0-2 patchward-test:stable [amd64])": LABEL:SUITE.
    assert!(simulated.contains("Inst libpw1 [1:1.0-1] (1:1.0-2 patchward-test:stable [amd64])"), "{simulated}");
    assert!(simulated.contains("Inst pw-tools [1.0-1] (1.0-2 patchward-test:stable [amd64])"), "{simulated}");
    assert!(!simulated.contains("Remv"), "{simulated}");

    let uris = ok(sandbox.apt_get(&[
        "install",
        "--print-uris",
        "-qq",
        "-o",
        "Acquire::ForceHash=SHA256",
        "libpw1=1:1.0-2",
        "pw-tools=1.0-2",
    ]));
    let mut files = Vec::new();
    for line in uris.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [url, file, size, hash] = fields[..] else { panic!("unexpected line {line:?}") };
        let url = url.trim_matches('\'');
        // apt percent-encodes the '%' of "%3a": the URL says %253a.
        let path = percent_decode(url.strip_prefix(&repo.url()).unwrap_or_else(|| panic!("{url} not of the repo")));
        let served = std::fs::read(repo.file(&path)).unwrap();
        assert_eq!(size, served.len().to_string(), "{line}");
        assert_eq!(hash, format!("SHA256:{}", sha256_hex(&served)), "{line}");
        files.push(file.to_owned());
    }
    // In apt's order (here pw-tools first), not the command line's.
    files.sort();
    assert_eq!(files, ["libpw1_1%3a1.0-2_amd64.deb", "pw-tools_1.0-2_amd64.deb"]);
    let url = format!("'{}/pool/main/p/pwlib/libpw1_1%253a1.0-2_amd64.deb'", repo.url());
    assert!(uris.lines().any(|line| line.starts_with(&format!("{url} libpw1_1%3a1.0-2_amd64.deb "))), "{uris}");

    repo.clear_requests();
    ok(sandbox.apt_get(&["install", "-y", "libpw1=1:1.0-2", "pw-tools=1.0-2"]));
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-2"), ("pw-tools", "1.0-2")]));
    assert_eq!(sandbox.installed_lines(), ["libpw1 1:1.0-2 pwlib 1.0-2", "pw-tools 1.0-2 pwlib 1.0-2"]);
    let mut fetched = repo.requests();
    fetched.sort();
    assert_eq!(fetched, pwlib("1.0-2").iter().map(|deb| format!("/{}", repo.pool_path(deb))).collect::<Vec<_>>());
    let installed = std::fs::read_to_string(sandbox.root.join("usr/share/pwlib/libpw1.VERSION")).unwrap();
    assert_eq!(installed, "1.0-2\n");
}

#[test]
fn a_strangers_key_fails_the_update() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&tmp.path().join("repo"), "stable", &pwlib("1.0-1"));
    let stranger = other_key(tmp.path());
    let sandbox = AptSandbox::new(&tmp.path().join("device"), &repo.url(), &stranger, "stable");
    let update = sandbox.apt_get(&["update", "--error-on=any"]);
    assert_eq!(update.status.code(), Some(100), "{}", text(&update.stderr));
    assert!(text(&update.stderr).contains("NO_PUBKEY"), "{}", text(&update.stderr));
    // Without earlier lists even a plain update fails: "is not signed".
    let plain = sandbox.apt_get(&["update"]);
    assert_eq!(plain.status.code(), Some(100), "{}", text(&plain.stderr));
    assert!(text(&plain.stderr).contains("is not signed"), "{}", text(&plain.stderr));
}

#[test]
fn a_key_that_changes_after_a_good_update_is_only_a_warning_without_error_on_any() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&tmp.path().join("repo"), "stable", &pwlib("1.0-1"));
    let key = tmp.path().join("trusted.gpg");
    std::fs::copy(repo.key(), &key).unwrap();
    let sandbox = AptSandbox::new(&tmp.path().join("device"), &repo.url(), &key, "stable");
    ok(sandbox.apt_get(&["update", "--error-on=any"]));
    std::fs::copy(other_key(tmp.path()), &key).unwrap();
    // The old lists stay in use: exit 0, with a warning.
    let plain = sandbox.apt_get(&["update"]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
    assert!(text(&plain.stderr).contains("NO_PUBKEY"), "{}", text(&plain.stderr));
    let strict = sandbox.apt_get(&["update", "--error-on=any"]);
    assert_eq!(strict.status.code(), Some(100), "{}", text(&strict.stderr));
}

#[test]
fn a_tampered_pool_deb_fails_the_install_with_a_hash_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sandbox) = device_at_1_0_1(&tmp);
    ok(sandbox.apt_get(&["update", "--error-on=any"]));
    repo.tamper(&repo.pool_path(&pwlib("1.0-2")[1]));
    let install = sandbox.apt_get(&["install", "-y", "libpw1=1:1.0-2", "pw-tools=1.0-2"]);
    assert_eq!(install.status.code(), Some(100), "{}", text(&install.stderr));
    assert!(text(&install.stderr).contains("Hash Sum mismatch"), "{}", text(&install.stderr));
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-1"), ("pw-tools", "1.0-1")]));
}

#[test]
fn a_tampered_packages_file_fails_the_update() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&tmp.path().join("repo"), "stable", &pwlib("1.0-1"));
    let sandbox = AptSandbox::new(&tmp.path().join("device"), &repo.url(), &repo.key(), "stable");
    repo.tamper("dists/stable/main/binary-amd64/Packages");
    let update = sandbox.apt_get(&["update", "--error-on=any"]);
    assert_eq!(update.status.code(), Some(100), "{}", text(&update.stderr));
    assert!(text(&update.stderr).contains("Hash Sum mismatch"), "{}", text(&update.stderr));
}

#[test]
fn apt_without_the_dpkg_options_is_refused_by_the_sandboxs_dpkg() {
    let tmp = tempfile::tempdir().unwrap();
    let (_repo, sandbox) = device_at_1_0_1(&tmp);
    let mut update = sandbox.command("apt-get");
    ok(update.args(["update", "--error-on=any"]).output().unwrap());
    let mut install = sandbox.command("apt-get");
    let install = install.args(["install", "-y", "libpw1=1:1.0-2", "pw-tools=1.0-2"]).output().unwrap();
    // dpkg's stderr reaches apt's stdout; apt's own error is on stderr.
    let (stdout, stderr) = (text(&install.stdout), text(&install.stderr));
    assert_eq!(install.status.code(), Some(100), "{stdout}\n{stderr}");
    assert!(stdout.contains("patchward apt fixture: refusing"), "{stdout}\n{stderr}");
    assert!(stderr.contains("bin/dpkg returned an error code (2)"), "{stdout}\n{stderr}");
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-1"), ("pw-tools", "1.0-1")]));

    // What the agent adds on its own when run with --root: enough.
    let root = sandbox.root.display();
    let mut agent_like = sandbox.command("apt-get");
    agent_like.args(["-o", &format!("DPkg::Options::=--root={root}")]);
    agent_like.args(["-o", &format!("DPkg::Options::=--admindir={root}/var/lib/dpkg")]);
    agent_like.args(["-o", &format!("Dir::State::status={root}/var/lib/dpkg/status")]);
    ok(agent_like.args(["install", "-y", "libpw1=1:1.0-2", "pw-tools=1.0-2"]).output().unwrap());
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-2"), ("pw-tools", "1.0-2")]));
}

#[test]
fn the_server_answers_pipelined_get_head_and_404_on_one_connection() {
    use std::io::{Read as _, Write as _};
    let tmp = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&tmp.path().join("repo"), "stable", &pwlib("1.0-1"));
    let release = std::fs::read(repo.file("dists/stable/Release")).unwrap();
    let mut stream = std::net::TcpStream::connect(repo.url().trim_start_matches("http://")).unwrap();
    stream
        .write_all(
            b"HEAD /dists/stable/Release HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /dists/stable/../stable/Release HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /dists/stable/Rel%65ase?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = text(&answer);
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", release.len());
    assert!(answer.starts_with(&head), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 404 Not Found\r\n").count(), 1, "{answer}");
    assert!(answer.ends_with(&format!("Connection: close\r\n\r\n{}", text(&release))), "{answer}");
    assert_eq!(repo.requests(), ["/dists/stable/Release", "/dists/stable/../stable/Release", "/dists/stable/Release"]);
}
