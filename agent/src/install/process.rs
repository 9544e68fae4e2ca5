//! Running an installer process: argv (no shell), a timeout that kills the
//! whole process group, and bounded tails of stdout and stderr.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::InstallError;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessExit {
    Code(i32),
    /// Killed by this signal (Unix).
    Signal(i32),
    /// Still running at the timeout; its process group was killed.
    TimedOut(Duration),
}

impl fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessExit::Code(code) => write!(f, "exit code {code}"),
            ProcessExit::Signal(signal) => write!(f, "killed by signal {signal}"),
            ProcessExit::TimedOut(after) => write!(f, "timed out after {after:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutput {
    pub exit: ProcessExit,
    pub stdout_tail: String,
    pub stderr_tail: String,
}

/// How much of each stream is kept: enough for dpkg's last error lines.
pub const TAIL_BYTES: usize = 8 * 1024;

/// After the process exits, how long its output pipes may stay open (a
/// daemon it started may hold them) before the tails are taken as they are.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How often a running process is polled for its exit.
const POLL: Duration = Duration::from_millis(20);

struct Tail {
    bytes: Vec<u8>,
    done: bool,
}

fn read_tail(mut pipe: impl std::io::Read + Send + 'static, keep: usize) -> Arc<Mutex<Tail>> {
    let tail = Arc::new(Mutex::new(Tail { bytes: Vec::new(), done: false }));
    let shared = tail.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut tail = shared.lock().unwrap_or_else(|p| p.into_inner());
                    tail.bytes.extend_from_slice(&buf[..n]);
                    let excess = tail.bytes.len().saturating_sub(keep);
                    tail.bytes.drain(..excess);
                }
            }
        }
        shared.lock().unwrap_or_else(|p| p.into_inner()).done = true;
    });
    tail
}

fn take_tail(tail: &Arc<Mutex<Tail>>) -> String {
    let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&tail.bytes).into_owned()
}

fn tails_done(tails: &[&Arc<Mutex<Tail>>]) -> bool {
    tails.iter().all(|t| t.lock().map(|t| t.done).unwrap_or(true))
}

/// Runs `argv` with extra environment `env`, stdin closed, for at most
/// `timeout`.
pub fn run(
    argv: &[OsString],
    env: &[(&str, &OsStr)],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<ProcessOutput, InstallError> {
    run_keeping(argv, env, cwd, timeout, TAIL_BYTES)
}

/// How much of a query's standard output is read (`apt-cache show` of one
/// package, `--print-uris` of one transaction): all of it, in practice.
pub const QUERY_BYTES: usize = 16 * 1024 * 1024;

/// As [`run`], keeping the last `stdout_keep` bytes of standard output: a
/// query whose whole answer is parsed keeps [`QUERY_BYTES`].
pub fn run_keeping(
    argv: &[OsString],
    env: &[(&str, &OsStr)],
    cwd: Option<&Path>,
    timeout: Duration,
    stdout_keep: usize,
) -> Result<ProcessOutput, InstallError> {
    let (program, args) =
        argv.split_first().ok_or_else(|| InstallError::Unavailable { what: "an empty command".into() })?;
    let program_name = program.to_string_lossy().into_owned();
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // Its own process group, so a timeout kills what it spawned too.
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|source| InstallError::Spawn { program: program_name.clone(), source })?;
    let stdout = child.stdout.take().map(|pipe| read_tail(pipe, stdout_keep));
    let stderr = child.stderr.take().map(|pipe| read_tail(pipe, TAIL_BYTES));
    let started = Instant::now();
    let wait_error = |source| InstallError::Wait { program: program_name.clone(), source };
    let exit = loop {
        if let Some(status) = child.try_wait().map_err(wait_error)? {
            break exit_of(status);
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            kill_group(&mut child);
            let _ = child.wait();
            break ProcessExit::TimedOut(timeout);
        }
        std::thread::sleep(POLL.min(timeout - elapsed));
    };
    let tails: Vec<&Arc<Mutex<Tail>>> = stdout.iter().chain(stderr.iter()).collect();
    let grace = Instant::now() + PIPE_GRACE;
    while !tails_done(&tails) && Instant::now() < grace {
        std::thread::sleep(POLL);
    }
    Ok(ProcessOutput {
        exit,
        stdout_tail: stdout.as_ref().map(take_tail).unwrap_or_default(),
        stderr_tail: stderr.as_ref().map(take_tail).unwrap_or_default(),
    })
}

fn exit_of(status: std::process::ExitStatus) -> ProcessExit {
    if let Some(code) = status.code() {
        return ProcessExit::Code(code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return ProcessExit::Signal(signal);
        }
    }
    ProcessExit::Code(-1)
}

fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group
            // we created for this child; it has not been reaped yet, so the
            // id cannot have been reused.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
}

/// `program arg…` for messages, with lossy conversion.
pub fn render(argv: &[OsString]) -> String {
    argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<OsString> {
        ["sh", "-c", script].iter().map(OsString::from).collect()
    }

    #[test]
    fn exit_codes_and_tails_are_captured() {
        let out = run(&sh("echo out; echo err >&2; exit 7"), &[], None, Duration::from_secs(30)).unwrap();
        assert_eq!(out.exit, ProcessExit::Code(7));
        assert_eq!(out.stdout_tail, "out\n");
        assert_eq!(out.stderr_tail, "err\n");
    }

    #[test]
    fn only_the_tail_of_a_long_output_is_kept() {
        let out = run(&sh("head -c 100000 /dev/zero | tr '\\0' a; echo END >&2"), &[], None, Duration::from_secs(30))
            .unwrap();
        assert_eq!(out.stdout_tail.len(), TAIL_BYTES);
        assert_eq!(out.stderr_tail, "END\n");
    }

    #[test]
    fn a_timeout_kills_the_process_group() {
        // `sleep` in a child of sh: killing only sh would leave it holding
        // the pipe, and the run would wait for the grace period.
        let started = Instant::now();
        let out = run(&sh("sleep 30 & sleep 30; echo never"), &[], None, Duration::from_millis(200)).unwrap();
        assert_eq!(out.exit, ProcessExit::TimedOut(Duration::from_millis(200)));
        assert!(started.elapsed() < PIPE_GRACE, "the group was killed, the pipes closed at once");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error_naming_it() {
        let argv = vec![OsString::from("/nonexistent/installer")];
        let error = run(&argv, &[], None, Duration::from_secs(1)).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/installer"), "{error}");
    }
}
