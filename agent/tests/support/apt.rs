//! Signed apt repositories on 127.0.0.1 and sandboxed apt clients, with the
//! real dpkg-deb, apt-ftparchive, gpg and apt-get (Debian 12: apt 2.6,
//! dpkg 1.21).
//!
//! ```text
//! /// One binary package to build (deterministic: the same Deb always
//! /// gives the same bytes, SOURCE_DATE_EPOCH is fixed).
//! pub struct Deb { pub name, pub version, pub arch /* amd64 | all */,
//!                  pub source: Option<String> /* `Source:` verbatim */,
//!                  pub depends: Option<String>,
//!                  pub files: Vec<(String /* absolute path */, Vec<u8>)> }
//! Deb::new(name, version, arch) -> Deb
//! Deb::source(self, s) / depends(self, d) / file(self, path, bytes) -> Deb
//! Deb::file_name(&self) -> String          // NAME_VERSION_ARCH.deb, ':' → "%3a"
//! Deb::build(&self, out_dir) -> PathBuf    // out_dir/file_name()
//!
//! /// A signed repository served over HTTP on 127.0.0.1 until dropped.
//! AptRepo::new(dir, suite, debs) -> AptRepo
//! AptRepo::publish(&mut self, debs)        // replaces the package set, re-signs
//! AptRepo::url(&self) -> String            // http://127.0.0.1:PORT
//! AptRepo::key(&self) -> PathBuf           // binary public key, for signed-by=
//! AptRepo::suite(&self) -> &str
//! AptRepo::pool_path(&self, deb) -> String // "pool/main/…/x.deb", as in Filename:
//! AptRepo::file(&self, relative) -> PathBuf // the served file on disk
//! AptRepo::requests(&self) -> Vec<String>  // decoded paths, "/dists/…", in order
//! AptRepo::clear_requests(&self)
//! AptRepo::tamper(&self, relative)         // flips one byte of a served file
//! other_key(dir) -> PathBuf                // a stranger's fresh public key
//!
//! /// A sandboxed apt client of one repository.
//! pub struct AptSandbox { pub dir /* apt's Dir */, pub root /* dpkg root */,
//!                         pub apt_config /* the APT_CONFIG file */ }
//! AptSandbox::new(dir, repo_url, key, suite) -> AptSandbox
//! AptSandbox::admindir(&self) -> PathBuf         // ROOT/var/lib/dpkg
//! AptSandbox::dpkg_options(&self) -> Vec<String> // "-o", "DPkg::Options::=--root=R", …
//! AptSandbox::command(&self, program) -> Command // APT_CONFIG, LC_ALL=C, no proxy
//! AptSandbox::apt_get(&self, args) -> Output     // command + dpkg_options + args
//! AptSandbox::dpkg_install(&self, debs)          // dpkg -i on the root, panics on failure
//! AptSandbox::installed(&self) -> BTreeMap<String, String> // binary:Package → Version
//! AptSandbox::installed_lines(&self) -> Vec<String> // "P V SRC SRCVER"
//! percent_decode(text) -> String; sha256_hex(bytes) -> String
//! ```
//!
//! The repository: `pool/main/<prefix>/<source>/NAME_VERSION_ARCH.deb`,
//! `dists/SUITE/main/binary-amd64/Packages` (uncompressed only, so apt
//! fetches exactly that file and tampering it is seen), `Release` (Origin
//! and Label `patchward-test`, Suite and Codename SUITE, `Architectures:
//! amd64 all`, `Components: main`), `InRelease` and `Release.gpg`, signed
//! by an ed25519 key made for the repository in its own GNUPGHOME; that
//! home's gpg-agent is stopped on drop. The server is hand-written
//! (std, one thread per connection, HTTP/1.1 keep-alive and pipelining,
//! GET and HEAD, 404 for a missing file, 405 for other methods); it
//! percent-decodes request paths, which matters: apt asks for
//! `libpw1_1%253a1.0-2_amd64.deb` for the file `libpw1_1%3a1.0-2_amd64.deb`
//! (a path with `..` is a 404).
//!
//! The sandbox: the APT_CONFIG file isolates apt from the host (apt reads
//! it first, and it moves `Dir::Etc::Parts` and `Dir::Etc::Main` into the
//! sandbox, so nothing of `/etc/apt` is read). The dpkg options for the
//! root are NOT in it: the agent adds its own `-o DPkg::Options::=--root=…
//! --admindir=…` when run with `--root`, and a test must be able to see that
//! it does. [`AptSandbox::apt_get`] adds them for the test's own calls.
//! Instead, `Dir::Bin::dpkg` is a guard script in the sandbox that runs the
//! real dpkg only for read-only queries (`--print-foreign-architectures`,
//! `--assert-*`…) or when the command acts on the sandbox root (`--root=R`,
//! or `--instdir=R` and `--admindir=R/var/lib/dpkg`, with every such option
//! naming the sandbox), and otherwise exits 2 with "patchward apt fixture:
//! refusing" (on apt's stdout; apt-get then exits 100): an apt call that
//! forgot the options fails loudly instead of installing into the CI host.
//!
//! Measured on apt 2.6: `apt-get update` with the wrong key exits 100 on a
//! fresh sandbox ("is not signed") but 0 once good lists exist (a warning,
//! the old lists stay in use) unless `--error-on=any`; a tampered pool deb or
//! Packages file is "Hash Sum mismatch", exit 100.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Every Deb is built with this timestamp: the same Deb, the same bytes.
const SOURCE_DATE_EPOCH: &str = "1700000000";
const ORIGIN: &str = "patchward-test";

// ---------------------------------------------------------------- Deb

/// One binary package to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub name: String,
    pub version: String,
    /// `amd64` or `all`.
    pub arch: String,
    /// The control file's `Source:` value, verbatim: `pwlib`, or
    /// `pwlib (1.0-1)` when the source version differs from the binary's.
    pub source: Option<String>,
    pub depends: Option<String>,
    /// `Conflicts:`: installing it removes what it names.
    pub conflicts: Option<String>,
    /// Maintainer scripts: (`postinst`, body).
    pub scripts: Vec<(String, String)>,
    /// (absolute path such as `/usr/share/pwlib/VERSION`, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

impl Deb {
    pub fn new(name: &str, version: &str, arch: &str) -> Deb {
        Deb {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: arch.to_owned(),
            source: None,
            depends: None,
            conflicts: None,
            scripts: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn source(mut self, source: &str) -> Deb {
        self.source = Some(source.to_owned());
        self
    }

    pub fn depends(mut self, depends: &str) -> Deb {
        self.depends = Some(depends.to_owned());
        self
    }

    /// A maintainer script (`preinst`, `postinst`, `prerm`, `postrm`).
    pub fn script(mut self, name: &str, body: &str) -> Deb {
        self.scripts.push((name.to_owned(), body.to_owned()));
        self
    }

    pub fn conflicts(mut self, conflicts: &str) -> Deb {
        self.conflicts = Some(conflicts.to_owned());
        self
    }

    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Deb {
        self.files.push((path.to_owned(), bytes.into()));
        self
    }

    /// `NAME_VERSION_ARCH.deb`, the epoch's `:` written `%3a` (as Debian's
    /// archive names them).
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }

    /// The source package's name: `Source:` without its version, or the
    /// binary's own name.
    pub fn source_name(&self) -> &str {
        match &self.source {
            Some(source) => source.split_whitespace().next().unwrap_or(&self.name),
            None => &self.name,
        }
    }

    fn control(&self) -> String {
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Patchward Tests <tests@example.invalid>\n",
            self.name, self.version, self.arch
        );
        if let Some(source) = &self.source {
            control.push_str(&format!("Source: {source}\n"));
        }
        if let Some(depends) = &self.depends {
            control.push_str(&format!("Depends: {depends}\n"));
        }
        if let Some(conflicts) = &self.conflicts {
            control.push_str(&format!("Conflicts: {conflicts}\n"));
        }
        control.push_str("Section: misc\nPriority: optional\n");
        control.push_str(&format!("Description: {} for patchward's tests\n", self.name));
        control
    }

    /// Builds `out_dir/NAME_VERSION_ARCH.deb` with `dpkg-deb --root-owner-group
    /// --build` (a scratch tree next to it is removed afterwards). Panics on
    /// failure.
    pub fn build(&self, out_dir: &Path) -> PathBuf {
        std::fs::create_dir_all(out_dir).unwrap_or_else(|e| panic!("create {}: {e}", out_dir.display()));
        let deb = out_dir.join(self.file_name());
        let tree = out_dir.join(format!(".{}.tree", self.file_name()));
        if tree.exists() {
            std::fs::remove_dir_all(&tree).unwrap();
        }
        make_dir(&tree.join("DEBIAN"));
        write_file(&tree.join("DEBIAN/control"), self.control().as_bytes(), 0o644);
        for (name, body) in &self.scripts {
            write_file(&tree.join("DEBIAN").join(name), body.as_bytes(), 0o755);
        }
        for (path, bytes) in &self.files {
            let relative = Path::new(path.trim_start_matches('/'));
            assert!(
                relative.components().all(|c| matches!(c, Component::Normal(_))) && relative.parent().is_some(),
                "bad package file path {path:?}"
            );
            make_dir(&tree.join(relative.parent().unwrap()));
            write_file(&tree.join(relative), bytes, 0o644);
        }
        let mut command = Command::new("dpkg-deb");
        command
            .args(["--root-owner-group", "--build"])
            .arg(&tree)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH);
        run(&mut command);
        std::fs::remove_dir_all(&tree).unwrap();
        deb
    }
}

/// Creates the directory and its missing parents with mode 0755, whatever
/// the umask (dpkg-deb refuses a DEBIAN directory with odd permissions).
pub(super) fn make_dir(dir: &Path) {
    if dir.is_dir() {
        return;
    }
    if let Some(parent) = dir.parent() {
        make_dir(parent);
    }
    std::fs::create_dir(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub(super) fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes through a temporary file and a rename, so the server never
/// serves half a file.
pub(super) fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("fixture-tmp");
    write_file(&tmp, bytes, 0o644);
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// Runs the command, panicking with its output unless it exits 0.
pub(super) fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `%XX` → the byte (a path from a request line; `+` stays `+`).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

// ---------------------------------------------------------------- gpg

/// A GNUPGHOME holding one fresh ed25519 signing key without passphrase.
pub(super) struct Gpg {
    pub(super) home: PathBuf,
    pub(super) uid: String,
}

impl Gpg {
    pub(super) fn new(home: &Path, uid: &str) -> Gpg {
        std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("create {}: {e}", home.display()));
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let gpg = Gpg { home: home.to_owned(), uid: uid.to_owned() };
        run(gpg.command().args(["--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"]));
        gpg
    }

    pub(super) fn command(&self) -> Command {
        let mut command = Command::new("gpg");
        command.env("GNUPGHOME", &self.home).args(["--batch", "--yes", "--quiet", "--no-tty"]);
        command
    }

    /// The public key: binary for apt's `signed-by=`, armored for dnf's
    /// `gpgkey=file://`.
    pub(super) fn export(&self, to: &Path, armored: bool) {
        let mut command = self.command();
        if armored {
            command.arg("--armor");
        }
        let output = run(command.arg("--export"));
        assert!(!output.stdout.is_empty(), "gpg --export gave nothing");
        write_file(to, &output.stdout, 0o644);
    }

    pub(super) fn stop_agent(&self) {
        let _ = Command::new("gpgconf").arg("--homedir").arg(&self.home).args(["--kill", "all"]).output();
    }
}

static STRANGERS: AtomicUsize = AtomicUsize::new(0);

/// A stranger's fresh public key (armored or binary), for the "wrong key"
/// tests. Its gpg-agent is already stopped.
pub(super) fn stranger_key(dir: &Path, armored: bool) -> PathBuf {
    let n = STRANGERS.fetch_add(1, Ordering::Relaxed);
    let gpg =
        Gpg::new(&dir.join(format!("stranger-{n}.gnupg")), &format!("Stranger {n} <stranger{n}@example.invalid>"));
    let key = dir.join(format!("stranger-{n}.{}", if armored { "asc" } else { "gpg" }));
    gpg.export(&key, armored);
    gpg.stop_agent();
    key
}

/// A stranger's key: a different fresh public key (binary), for the
/// "wrong key" tests.
pub fn other_key(dir: &Path) -> PathBuf {
    stranger_key(dir, false)
}

// ---------------------------------------------------------------- AptRepo

/// A signed apt repository served over HTTP on 127.0.0.1 until dropped.
pub struct AptRepo {
    www: PathBuf,
    suite: String,
    gpg: Gpg,
    key: PathBuf,
    server: Server,
}

impl AptRepo {
    /// Makes the signing key, builds and signs the repository in
    /// `dir/www` and serves it. The public key is `dir/key.gpg`.
    pub fn new(dir: &Path, suite: &str, debs: &[Deb]) -> AptRepo {
        assert!(!suite.is_empty() && !suite.contains(['/', ' ']), "bad suite {suite:?}");
        let www = dir.join("www");
        make_dir(&www);
        let gpg = Gpg::new(&dir.join("gnupg"), "Patchward Test Repository <repo@example.invalid>");
        let key = dir.join("key.gpg");
        gpg.export(&key, false);
        let server = Server::start(&www);
        let mut repo = AptRepo { www, suite: suite.to_owned(), gpg, key, server };
        repo.publish(debs);
        repo
    }

    /// Replaces the package set: rebuilds the pool, the index and the
    /// signed Release files.
    pub fn publish(&mut self, debs: &[Deb]) {
        let pool = self.www.join("pool");
        if pool.exists() {
            std::fs::remove_dir_all(&pool).unwrap();
        }
        make_dir(&pool);
        for deb in debs {
            let path = self.www.join(self.pool_path(deb));
            deb.build(path.parent().unwrap());
        }
        let dist = self.www.join("dists").join(&self.suite);
        let binary = dist.join("main/binary-amd64");
        make_dir(&binary);
        let packages = run(Command::new("apt-ftparchive").current_dir(&self.www).args(["packages", "pool"])).stdout;
        replace_file(&binary.join("Packages"), &packages);
        // The old Release and signatures go first: apt-ftparchive would
        // otherwise list the old Release among the files it hashes.
        for name in ["Release", "InRelease", "Release.gpg"] {
            let _ = std::fs::remove_file(dist.join(name));
        }
        let field = |name: &str, value: &str| format!("APT::FTPArchive::Release::{name}={value}");
        let release = run(Command::new("apt-ftparchive").current_dir(&self.www).args([
            "-o",
            &field("Origin", ORIGIN),
            "-o",
            &field("Label", ORIGIN),
            "-o",
            &field("Suite", &self.suite),
            "-o",
            &field("Codename", &self.suite),
            "-o",
            &field("Architectures", "amd64 all"),
            "-o",
            &field("Components", "main"),
            "-o",
            &field("Description", "patchward test repository"),
            "release",
            &format!("dists/{}", self.suite),
        ]))
        .stdout;
        let scratch = self.www.parent().unwrap().join("signing");
        make_dir(&scratch);
        write_file(&scratch.join("Release"), &release, 0o644);
        run(self
            .gpg
            .command()
            .arg("--clearsign")
            .arg("-o")
            .arg(scratch.join("InRelease"))
            .arg(scratch.join("Release")));
        run(self
            .gpg
            .command()
            .arg("--detach-sign")
            .arg("--armor")
            .arg("-o")
            .arg(scratch.join("Release.gpg"))
            .arg(scratch.join("Release")));
        for name in ["Release", "Release.gpg", "InRelease"] {
            std::fs::rename(scratch.join(name), dist.join(name)).unwrap();
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The binary public key (`gpg --export`), for `signed-by=`.
    pub fn key(&self) -> PathBuf {
        self.key.clone()
    }

    pub fn suite(&self) -> &str {
        &self.suite
    }

    /// Where the deb is in the repository, as its `Filename:` says:
    /// `pool/main/<l or libl>/<source>/NAME_VERSION_ARCH.deb`.
    pub fn pool_path(&self, deb: &Deb) -> String {
        let source = deb.source_name();
        let prefix = if source.starts_with("lib") && source.len() > 3 { &source[..4] } else { &source[..1] };
        format!("pool/main/{prefix}/{source}/{}", deb.file_name())
    }

    /// The served file on disk (`relative` as in a URL path, with or
    /// without its leading `/`, not percent-encoded).
    pub fn file(&self, relative: &str) -> PathBuf {
        let relative = Path::new(relative.trim_start_matches('/'));
        assert!(relative.components().all(|c| matches!(c, Component::Normal(_))), "bad path {relative:?}");
        self.www.join(relative)
    }

    /// The paths requested so far, in order, percent-decoded and without
    /// the query: `/dists/SUITE/InRelease`, `/pool/main/l/libpw/…%3a….deb`.
    pub fn requests(&self) -> Vec<String> {
        self.server.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.server.requests.lock().unwrap().clear();
    }

    /// Flips one byte in the middle of a served file (a pool .deb, the
    /// Packages file, InRelease…): its hash no longer matches the index.
    /// A later `publish` rebuilds it intact.
    pub fn tamper(&self, relative: &str) {
        let path = self.file(relative);
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("tamper {}: {e}", path.display()));
        assert!(!bytes.is_empty(), "cannot tamper an empty {}", path.display());
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        replace_file(&path, &bytes);
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        self.server.stop();
        self.gpg.stop_agent();
    }
}

// ---------------------------------------------------------------- Server

/// A static file server for one directory on 127.0.0.1:0.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (root, recorded, stop) = (root.to_owned(), requests.clone(), stopping.clone());
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (root, recorded, stop) = (root.clone(), recorded.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &recorded, &stop);
                });
            }
        });
        Server { addr, requests, stopping, accept: Some(accept) }
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Serves the requests of one connection, in order (keep-alive and
/// pipelining), until the client closes, asks to close, idles for 30 s or
/// the server stops.
fn serve(stream: TcpStream, root: &Path, recorded: &Mutex<Vec<String>>, stopping: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 || stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let request_line = request_line.trim_end().to_owned();
        if request_line.is_empty() {
            continue;
        }
        let mut close = false;
        let mut body_len = 0u64;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else { continue };
            match name.trim().to_ascii_lowercase().as_str() {
                "connection" => close |= value.trim().eq_ignore_ascii_case("close"),
                "content-length" => body_len = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        // A request body (none expected) is read and ignored.
        std::io::copy(&mut reader.by_ref().take(body_len), &mut std::io::sink())?;
        let mut parts = request_line.split_whitespace();
        let (method, target, version) =
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        close |= version != "HTTP/1.1";
        let path = percent_decode(target.split(['?', '#']).next().unwrap_or(""));
        recorded.lock().unwrap().push(path.clone());
        let file = resolve(root, &path).and_then(|file| std::fs::read(file).ok());
        let (status, body) = match (method, file) {
            ("GET" | "HEAD", Some(bytes)) => ("200 OK", bytes),
            ("GET" | "HEAD", None) => ("404 Not Found", b"not found\n".to_vec()),
            _ => {
                close = true;
                ("405 Method Not Allowed", b"method not allowed\n".to_vec())
            }
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n",
            body.len()
        );
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        if method != "HEAD" {
            writer.write_all(&body)?;
        }
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// The file under `root` that a decoded URL path names; `None` for
/// anything that leaves the root or is not a regular file.
pub(super) fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.strip_prefix('/')?);
    if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

// ---------------------------------------------------------------- AptSandbox

/// A sandboxed apt client of one repository: its own APT_CONFIG, and a
/// dpkg root with an empty database.
pub struct AptSandbox {
    /// apt's `Dir`: etc/apt, var/lib/apt, var/cache/apt, var/log/apt, bin/dpkg.
    pub dir: PathBuf,
    /// The dpkg root (`dir/root`), laid out like the agent's
    /// `DpkgRoot::sandbox`.
    pub root: PathBuf,
    /// The APT_CONFIG file (`dir/apt.conf`).
    pub apt_config: PathBuf,
}

impl AptSandbox {
    /// `deb [signed-by=KEY] URL SUITE main` in an apt isolated from the
    /// host, on an empty dpkg root.
    pub fn new(dir: &Path, repo_url: &str, key: &Path, suite: &str) -> AptSandbox {
        make_dir(dir);
        let dir = std::fs::canonicalize(dir).unwrap();
        let root = dir.join("root");
        let admin = root.join("var/lib/dpkg");
        for sub in ["info", "updates", "triggers"] {
            make_dir(&admin.join(sub));
        }
        make_dir(&root.join("var/log"));
        for file in ["status", "available"] {
            write_file(&admin.join(file), b"", 0o644);
        }
        for sub in [
            "etc/apt/apt.conf.d",
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            // apt-get install exits 100 after a successful dpkg run when
            // this is missing ("Directory '…/var/log/apt/' missing").
            "var/log/apt",
            "bin",
        ] {
            make_dir(&dir.join(sub));
        }
        let key = std::path::absolute(key).unwrap();
        for path in [&dir, &key] {
            let text = path.to_str().expect("a UTF-8 path");
            assert!(!text.contains(['"', '\'', ' ', ']', '\n']), "unquotable path {text:?}");
        }
        write_file(&dir.join("bin/dpkg"), dpkg_guard(&root).as_bytes(), 0o755);
        write_file(
            &dir.join("etc/apt/sources.list"),
            format!("deb [signed-by={}] {repo_url} {suite} main\n", key.display()).as_bytes(),
            0o644,
        );
        let apt_config = dir.join("apt.conf");
        write_file(&apt_config, apt_config_text(&dir, &root).as_bytes(), 0o644);
        AptSandbox { dir, root, apt_config }
    }

    pub fn admindir(&self) -> PathBuf {
        self.root.join("var/lib/dpkg")
    }

    /// The dpkg options of the sandbox root as `-o` arguments (what the
    /// agent adds itself when run with `--root`).
    pub fn dpkg_options(&self) -> Vec<String> {
        let root = self.root.display();
        [
            format!("--root={root}"),
            format!("--admindir={root}/var/lib/dpkg"),
            "--force-script-chrootless".to_owned(),
            "--force-not-root".to_owned(),
            format!("--log={root}/var/log/dpkg.log"),
        ]
        .into_iter()
        .flat_map(|option| ["-o".to_owned(), format!("DPkg::Options::={option}")])
        .collect()
    }

    /// `program` with APT_CONFIG set, C messages, no proxy and no debconf
    /// questions; no arguments yet.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("APT_CONFIG", &self.apt_config).env("LC_ALL", "C").env("DEBIAN_FRONTEND", "noninteractive");
        for proxy in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
            command.env_remove(proxy);
        }
        command
    }

    /// `apt-get` with the APT_CONFIG and the dpkg options of the sandbox,
    /// then `args`. Returns whatever happened; never panics on a failure.
    pub fn apt_get(&self, args: &[&str]) -> Output {
        let mut command = self.command("apt-get");
        command.args(self.dpkg_options()).args(args);
        command.output().expect("run apt-get")
    }

    /// Installs the debs into the root with dpkg itself (the device's
    /// starting state). Panics on failure.
    pub fn dpkg_install(&self, debs: &[PathBuf]) {
        let root = self.root.display();
        let mut command = Command::new("dpkg");
        command
            .env("LC_ALL", "C")
            .arg(format!("--root={root}"))
            .arg(format!("--admindir={root}/var/lib/dpkg"))
            .arg(format!("--log={root}/var/log/dpkg.log"))
            .args(["--force-script-chrootless", "--force-not-root", "--install"])
            .args(debs);
        run(&mut command);
    }

    /// Installed binaries (dpkg state `installed` only, so a half-configured
    /// package is missing): `${binary:Package}` (`name`, or `name:arch` for
    /// Multi-Arch: same) → version.
    pub fn installed(&self) -> BTreeMap<String, String> {
        self.query("${binary:Package}\t${Version}")
            .into_iter()
            .filter_map(|line| line.split_once('\t').map(|(p, v)| (p.to_owned(), v.to_owned())))
            .collect()
    }

    /// `${Package} ${Version} ${source:Package} ${source:Version}` of every
    /// installed binary, e.g. `libpw1 1:1.0-2 pwlib 1.0-2`.
    pub fn installed_lines(&self) -> Vec<String> {
        self.query("${Package} ${Version} ${source:Package} ${source:Version}")
    }

    fn query(&self, format: &str) -> Vec<String> {
        let output = Command::new("dpkg-query")
            .env("LC_ALL", "C")
            .arg(format!("--admindir={}", self.admindir().display()))
            .arg("--show")
            .arg(format!("--showformat=${{db:Status-Status}}\t{format}\n"))
            .output()
            .expect("run dpkg-query");
        // 1 with nothing printed: an empty database.
        assert!(
            output.status.success() || (output.status.code() == Some(1) && output.stdout.is_empty()),
            "dpkg-query failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| line.strip_prefix("installed\t").map(str::to_owned))
            .collect()
    }
}

/// The APT_CONFIG file: everything apt reads or writes inside `dir`.
fn apt_config_text(dir: &Path, root: &Path) -> String {
    let d = dir.display();
    let r = root.display();
    format!(
        r#"// patchward test fixture: apt isolated from the host's /etc/apt.
// The dpkg options for the root are not here: pass them with -o.
Dir "{d}/";
Dir::State "{d}/var/lib/apt/";
Dir::State::Lists "{d}/var/lib/apt/lists/";
Dir::State::status "{r}/var/lib/dpkg/status";
Dir::Cache "{d}/var/cache/apt/";
Dir::Cache::Archives "{d}/var/cache/apt/archives/";
Dir::Etc "{d}/etc/apt/";
Dir::Etc::Main "{d}/etc/apt/apt.conf";
Dir::Etc::Parts "{d}/etc/apt/apt.conf.d/";
Dir::Etc::SourceList "{d}/etc/apt/sources.list";
Dir::Etc::SourceParts "{d}/etc/apt/sources.list.d/";
Dir::Etc::Trusted "{d}/etc/apt/trusted.gpg";
Dir::Etc::TrustedParts "{d}/etc/apt/trusted.gpg.d/";
Dir::Etc::Preferences "{d}/etc/apt/preferences";
Dir::Etc::PreferencesParts "{d}/etc/apt/preferences.d/";
Dir::Log "{d}/var/log/apt/";
Dir::Bin::dpkg "{d}/bin/dpkg";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; }};
Acquire::Languages "none";
Acquire::http::Proxy::127.0.0.1 "DIRECT";
APT::Sandbox::User "root";
"#
    )
}

/// apt's dpkg (`Dir::Bin::dpkg`): the real dpkg for read-only queries and
/// for commands on this root (`--root`, or `--instdir` and `--admindir`,
/// and every such option naming it); a refusal (exit 2) for anything else.
fn dpkg_guard(root: &Path) -> String {
    let r = root.display();
    format!(
        r#"#!/bin/sh
# patchward test fixture: apt's dpkg for the sandbox root {r}.
# Runs the real dpkg only for read-only queries or on that root, so an apt
# call without the DPkg::Options never touches the host's own database.
root='{r}'
refuse() {{
  echo "patchward apt fixture: refusing 'dpkg $all': not on the sandbox root $root (DPkg::Options::=--root=... missing?)" >&2
  exit 2
}}
all="$*"
for arg in "$@"; do
  case "$arg" in
    --print-architecture|--print-foreign-architectures|--assert-*|--compare-versions|--validate-*|--version)
      exec /usr/bin/dpkg "$@" ;;
  esac
done
inst=no
admin=no
previous=
for arg in "$@"; do
  case "$previous" in
    --root|--instdir|--admindir) arg="$previous=$arg" ;;
  esac
  previous="$arg"
  case "$arg" in
    --root=*) [ "$(realpath -m -- "${{arg#*=}}")" = "$root" ] || refuse; inst=yes; admin=yes ;;
    --instdir=*) [ "$(realpath -m -- "${{arg#*=}}")" = "$root" ] || refuse; inst=yes ;;
    --admindir=*) [ "$(realpath -m -- "${{arg#*=}}")" = "$root/var/lib/dpkg" ] || refuse; admin=yes ;;
  esac
done
[ "$inst" = yes ] && [ "$admin" = yes ] || refuse
exec /usr/bin/dpkg "$@"
"#
    )
}
