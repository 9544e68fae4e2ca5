//! Crash tests without a helper binary: the test binary runs itself again
//! as the child (`crash_child` with [`ROLE_ENV`] set), which writes in a
//! loop and acknowledges each write on stderr once the call returned; the
//! parent kills it with SIGKILL at a random point and checks what is on
//! disk against what was acknowledged.
//!
//! The random points come from a xorshift generator whose seed is printed
//! (and can be set with `PATCHWARD_CRASH_SEED`) so that a failure replays.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the child: which loop to run.
pub const ROLE_ENV: &str = "PATCHWARD_CRASH_ROLE";
/// Set in the child: the state directory to write in.
pub const DIR_ENV: &str = "PATCHWARD_CRASH_DIR";
const ACK_PREFIX: &str = "ACK ";

/// How long a child may loop before it gives up on its own (a parent that
/// died must not leave it spinning): the parent treats that as a failure.
pub const CHILD_LIFETIME: Duration = Duration::from_secs(30);

/// The role and directory when this process is a crash child.
pub fn child_role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE_ENV).ok()?;
    let dir = std::env::var_os(DIR_ENV)?;
    Some((role, PathBuf::from(dir)))
}

/// In the child: tells the parent that `what` is done. One `write` of a
/// short line to a pipe is atomic, so the parent sees it whole or not at
/// all.
pub fn acknowledge(what: impl std::fmt::Display) {
    let line = format!("{ACK_PREFIX}{what}\n");
    let mut stderr = std::io::stderr().lock();
    // A parent that stopped reading is gone; the child dies with it.
    if stderr.write_all(line.as_bytes()).is_err() {
        std::process::exit(3);
    }
}

/// xorshift64*: small, deterministic, good enough for picking kill points.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(test: &str) -> Rng {
        let seed = std::env::var("PATCHWARD_CRASH_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        });
        eprintln!("{test}: PATCHWARD_CRASH_SEED={seed}");
        // One printed seed replays every generator of the run: each mixes
        // in its own name (FNV-1a).
        let name = test
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        Rng((seed ^ name).max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// A running child and the acknowledgements it has made so far.
pub struct Child {
    process: std::process::Child,
    lines: mpsc::Receiver<Line>,
    acks: Vec<String>,
    other_output: Vec<String>,
}

enum Line {
    Ack(String),
    Other(String),
}

/// Starts this test binary again as a child playing `role` in `dir`.
pub fn spawn(role: &str, dir: &Path) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut process = Command::new(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the crash child");
    let stderr = process.stderr.take().expect("the child's stderr");
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // Only a whole line counts: a child killed mid-write made no
            // acknowledgement.
            if buf.last() != Some(&b'\n') {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
            let line = match text.strip_prefix(ACK_PREFIX) {
                Some(ack) => Line::Ack(ack.to_owned()),
                None => Line::Other(text),
            };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    Child { process, lines, acks: Vec::new(), other_output: Vec::new() }
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    fn take(&mut self, line: Line) {
        match line {
            Line::Ack(ack) => self.acks.push(ack),
            Line::Other(other) => self.other_output.push(other),
        }
    }

    /// Waits until the child has acknowledged `count` writes in all.
    pub fn wait_for_acks(&mut self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acks.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(_) => {
                    let _ = self.process.kill();
                    let status = self.process.wait();
                    panic!(
                        "the child made {} of {count} acknowledgements within {timeout:?} ({status:?}); \
                         its other output:\n{}",
                        self.acks.len(),
                        self.other_output.join("\n")
                    );
                }
            }
        }
    }

    /// SIGKILL, then every acknowledgement the child made before it died.
    /// A child that had already ended on its own failed (it loops until
    /// killed), and so does the test.
    pub fn kill(mut self) -> Vec<String> {
        // SAFETY: kill(2) on the pid of a child we have not yet waited for,
        // so the pid cannot have been reused.
        unsafe { libc::kill(self.process.id() as libc::pid_t, libc::SIGKILL) };
        let status = self.process.wait().expect("wait for the crash child");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.take(line);
        }
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the crash child ended on its own ({status}); its other output:\n{}",
            self.other_output.join("\n")
        );
        std::mem::take(&mut self.acks)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Runs `iterations` crash rounds (or fewer, when `budget` runs out, but
/// at least 3): each starts a child, lets it acknowledge a random number of
/// writes, waits a random few hundred microseconds more, and kills it.
/// `check` sees the directory after each kill with this round's
/// acknowledgements. Returns the rounds run.
pub fn crash_loop(
    test: &str,
    role: &str,
    dir: &Path,
    iterations: usize,
    budget: Duration,
    mut check: impl FnMut(usize, Vec<String>),
) -> usize {
    let mut rng = Rng::seeded(test);
    let started = Instant::now();
    let mut round = 0;
    while round < iterations && (round < 3 || started.elapsed() < budget) {
        let mut child = spawn(role, dir);
        let acks_before_kill = rng.below(40) as usize;
        child.wait_for_acks(acks_before_kill, Duration::from_secs(20));
        std::thread::sleep(Duration::from_micros(rng.below(3_000)));
        let acks = child.kill();
        check(round, acks);
        round += 1;
    }
    round
}
