//! A real PostgreSQL for a test: `initdb` into a fresh folder, `pg_ctl
//! start` on 127.0.0.1 at a free port, one database per test, `pg_ctl stop
//! -m immediate` when dropped. As root (CI), both run as the `postgres`
//! user, in a folder that user can reach (not under a 0700 temporary
//! folder of root's). A machine without PostgreSQL fails the test loudly:
//! `scripts/install-test-deps` installs it.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running PostgreSQL server, stopped (immediately) when dropped.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

/// Where Debian puts the server's programs (`initdb`, `pg_ctl`).
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("this test needs PostgreSQL's server (initdb, pg_ctl under /usr/lib/postgresql/*/bin): run scripts/install-test-deps")
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = server_bin();
        let dir = std::env::temp_dir().join(format!("patchward-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let pg = Postgres { dir, bin, port: free_port() };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "patchward", "--auth=trust", "-E", "UTF8", "--no-locale", "-N"]);
        pg.start_server();
        pg
    }

    /// `pg_ctl start` on the port and folder chosen at first.
    fn start_server(&self) {
        let options = format!("-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off", self.port, self.dir.display());
        let log = self.dir.join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-o", &options, "start"]);
    }

    /// Starts the server again after [`Postgres::crash`].
    pub fn restart(&self) {
        self.start_server();
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs a server program, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let output = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&path).args(args).current_dir(&self.dir).output()
        } else {
            Command::new(&path).args(args).current_dir(&self.dir).output()
        }
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
        output
    }

    /// A new empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let created = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "patchward", name])
            .output()
            .unwrap();
        assert!(created.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&created.stderr));
        format!("postgres://patchward@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn crash(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let stop = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let path = self.bin.join("pg_ctl");
        let _ = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&path).args(stop).output()
        } else {
            Command::new(&path).args(stop).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where a store suite's case keeps its store: a folder (sled) or a
/// database of a test PostgreSQL. Each case gets its own.
pub enum Place {
    Folder(tempfile::TempDir),
    Database { url: String, name: String, bin: PathBuf, port: u16 },
}

impl Place {
    pub fn folder() -> Place {
        Place::Folder(tempfile::tempdir().unwrap())
    }

    pub fn database(pg: &Postgres, name: &str) -> Place {
        Place::Database { url: pg.database(name), name: name.to_owned(), bin: pg.bin.clone(), port: pg.port }
    }

    /// Opens the store here (again: a reopen sees what was written).
    pub async fn open(&self) -> patchward::store::Store {
        match self {
            Place::Folder(dir) => patchward::store::Store::open(dir.path()).unwrap(),
            Place::Database { url, .. } => patchward::store::Store::connect(url).await.unwrap(),
        }
    }

    /// Every byte the store keeps at rest: its files, or a dump of its
    /// database.
    pub fn bytes_at_rest(&self) -> Vec<u8> {
        match self {
            Place::Folder(dir) => walk(dir.path()).into_iter().flat_map(|f| std::fs::read(f).unwrap()).collect(),
            Place::Database { name, bin, port, .. } => {
                let dump = Command::new(bin.join("pg_dump"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "patchward", name])
                    .output()
                    .unwrap();
                assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
                dump.stdout
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// The store suite `$case`s, each an `async fn(&Place)`, run once on sled
/// and once on PostgreSQL (one server, a database per case).
#[macro_export]
macro_rules! store_suite {
    ($($case:ident),* $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_sled() {
            $( $case(&support::postgres::Place::folder()).await; )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_postgres() {
            let pg = support::postgres::Postgres::start();
            $( $case(&support::postgres::Place::database(&pg, stringify!($case))).await; )*
        }
    };
}
