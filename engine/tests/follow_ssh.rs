//! The reconciler follows a repository over SSH: a real OpenSSH server on
//! 127.0.0.1 (its own host key and authorized key, in a temp dir), a deploy
//! key, and the server's host key checked against known_hosts: an unknown
//! host key and a refused client key both keep the last good state.

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;

use patchward::clock::{Clock, FakeClock};
use patchward::daemon::reconcile::{PolicyOrigin, Reconciler, ReconcilerSettings};
use patchward::daemon::status::ConditionType;
use patchward::daemon::{Engine, EngineSettings};
use patchward::follow::transport::FetchCredentials;
use patchward::policy::PolicyLimits;
use patchward::store::Store;
use support::{example_policy_repository, git};

/// An sshd of our own, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "patchward-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
}

fn start_sshd(dir: &Path, authorized: &Path) -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(sshd.exists(), "this test needs OpenSSH's server (apt-get install openssh-server; .ci/run does)");
    // sshd insists on its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    keygen(&dir.join("host_key"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\nAuthorizedKeysFile {authorized}\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nAllowTcpForwarding no\nX11Forwarding no\n",
            host = dir.join("host_key").display(),
            pid = dir.join("sshd.pid").display(),
            authorized = authorized.display(),
        ),
    )
    .unwrap();
    let child = Command::new(sshd).arg("-D").arg("-e").arg("-f").arg(&config).spawn().expect("sshd starts");
    // Dropping it stops it, whatever happens below.
    let sshd = Sshd { child, port };
    // Ready when it accepts a connection (a real process starting, not time
    // passing: bounded by attempts).
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return sshd;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("sshd did not start listening on port {port}");
}

fn follow(data: &Path, url: String, credentials: FetchCredentials) -> (Arc<Engine>, Reconciler) {
    let store = Arc::new(Store::open(data).unwrap());
    let (key, _) = patchward::keys::load_or_create(&data.join(patchward::keys::KEY_FILE)).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
    let engine = Arc::new(Engine::new(store, key, clock, EngineSettings::default()));
    let settings = ReconcilerSettings {
        origin: PolicyOrigin::Repository { url, branch: "main".into() },
        poll_interval: std::time::Duration::from_secs(60),
        signatures: None,
        limits: PolicyLimits::default(),
        credentials,
    };
    let reconciler = Reconciler::new(engine.clone(), settings, data).unwrap();
    (engine, reconciler)
}

fn applied(engine: &Engine) -> Option<String> {
    engine.in_force().and_then(|f| f.commit.as_ref().map(|c| c.commit.clone()))
}

fn user() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_owned()
}

#[test]
fn a_repository_is_followed_over_ssh_with_a_deploy_key_and_known_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let first = example_policy_repository(&work);
    let bare = dir.path().join("policies.git");
    git(dir.path(), &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);

    keygen(&dir.path().join("deploy_key"));
    let authorized = dir.path().join("authorized_keys");
    std::fs::copy(dir.path().join("deploy_key.pub"), &authorized).unwrap();
    let sshd = start_sshd(dir.path(), &authorized);
    let host_key = std::fs::read_to_string(dir.path().join("host_key.pub")).unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {}", sshd.port, host_key)).unwrap();
    let url = format!("ssh://{}@127.0.0.1:{}{}", user(), sshd.port, bare.display());
    let credentials = FetchCredentials {
        ssh_private_key: Some(dir.path().join("deploy_key")),
        ssh_known_hosts: Some(known_hosts.clone()),
        http_credentials: None,
    };

    let (engine, mut reconciler) = follow(&dir.path().join("data"), url.clone(), credentials.clone());
    reconciler.reconcile(true);
    let reachable = engine.status.condition(ConditionType::SourceReachable).unwrap();
    assert_eq!(applied(&engine).as_deref(), Some(first.as_str()), "{reachable:?}");

    std::fs::remove_file(work.join("approvals/kb5032190-urgent.yaml")).unwrap();
    git(&work, &["commit", "-qam", "over ssh"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    reconciler.reconcile(true);
    assert_eq!(applied(&engine).as_deref(), Some(second.as_str()));
    drop(reconciler);
    drop(engine);

    // A server whose host key is not the known one is not trusted.
    keygen(&dir.path().join("other_host_key"));
    let other = std::fs::read_to_string(dir.path().join("other_host_key.pub")).unwrap();
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {}", sshd.port, other)).unwrap();
    git(&work, &["commit", "-q", "--allow-empty", "-m", "from an impostor's point of view"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let (engine, mut reconciler) = follow(&dir.path().join("data"), url.clone(), credentials.clone());
    reconciler.reconcile(true);
    assert_eq!(applied(&engine).as_deref(), Some(second.as_str()), "the last good revision stays");
    let reachable = engine.status.condition(ConditionType::SourceReachable).unwrap();
    assert!(!reachable.status);
    // libgit2 words it its own way.
    assert!(reachable.message.contains("hostkey"), "{reachable:?}");
    drop(reconciler);
    drop(engine);

    // A key the server does not accept: refused, and nothing moves.
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {}", sshd.port, host_key)).unwrap();
    keygen(&dir.path().join("stranger_key"));
    let stranger = FetchCredentials { ssh_private_key: Some(dir.path().join("stranger_key")), ..credentials };
    let (engine, mut reconciler) = follow(&dir.path().join("data"), url, stranger);
    reconciler.reconcile(true);
    assert_eq!(applied(&engine).as_deref(), Some(second.as_str()));
    let reachable = engine.status.condition(ConditionType::SourceReachable).unwrap();
    assert!(!reachable.status, "{reachable:?}");
    let private = std::fs::read_to_string(dir.path().join("stranger_key")).unwrap();
    let secret_line = private.lines().nth(1).unwrap();
    assert!(!reachable.message.contains(secret_line), "no key material in the status");
}
