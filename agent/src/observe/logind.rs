//! User input and foreground sessions, as systemd-logind sees them.
//!
//! What logind can tell, and so what these say:
//! - Input idle: each session's `IdleHint` / `IdleSinceHint`. Desktops
//!   (GNOME, KDE via their idle monitors) set it for graphical sessions;
//!   for text sessions (a VT, ssh) logind derives it from the terminal's
//!   last access, once it is older than its idle threshold (30 min by
//!   default). A graphical session whose desktop never sets the hint stays
//!   "not idle": the idle mode then waits, it never installs on a guess.
//! - Foreground apps: logind sees sessions, not windows. An active,
//!   unlocked graphical session (Type x11, wayland or mir) is the user at
//!   work in front of their applications and counts as one foreground app;
//!   a locked screen, a session switched away from, a text or remote
//!   session does not. Which applications run inside is not visible
//!   without talking to the compositor, which this does not do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{CommandLine, CommandRunner, ObserveError, read_boot_time};

/// Since when no user has given input: `Ok(Some(t))` idle since t,
/// `Ok(None)` somebody is active now, `Err` it cannot be told.
pub trait InputIdle {
    fn idle_since(&self) -> Result<Option<Timestamp>, ObserveError>;
}

/// The applications in the foreground (by whatever name the
/// implementation can see them); empty when there are none.
pub trait ForegroundApps {
    fn foreground_apps(&self) -> Result<Vec<String>, ObserveError>;
}

/// One session's properties, as `loginctl show-session` prints them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogindSession {
    pub id: String,
    pub user: String,
    /// `user`, `greeter`, `lock-screen`, `manager`, `background`, …
    pub class: String,
    /// `x11`, `wayland`, `mir`, `tty`, `unspecified`.
    pub kind: String,
    pub active: bool,
    /// `online`, `active`, `closing`.
    pub state: String,
    pub remote: bool,
    pub idle_hint: bool,
    pub idle_since: Option<Timestamp>,
    pub locked: bool,
}

impl LogindSession {
    /// Sessions where a person can type: not the per-user service manager
    /// or background sessions, nor one being closed.
    fn takes_input(&self) -> bool {
        matches!(self.class.as_str(), "user" | "greeter" | "lock-screen") && self.state != "closing"
    }

    fn is_foreground_graphical(&self) -> bool {
        self.class == "user"
            && matches!(self.kind.as_str(), "x11" | "wayland" | "mir")
            && self.active
            && self.state == "active"
            && !self.locked
    }
}

/// `loginctl list-sessions --no-legend`: the session id is the first
/// column in every systemd's layout (older `SESSION UID USER SEAT TTY`,
/// newer with `LEADER CLASS … IDLE SINCE`). Headers and the `N sessions
/// listed.` footer (or `No sessions.`) are skipped should `--no-legend` be ignored.
pub fn parse_list_sessions(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.trim_end().ends_with("listed.") && !l.trim().is_empty() && l.trim() != "No sessions.")
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| *id != "SESSION" && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_owned)
        .collect()
}

/// logind's µs-since-the-epoch timestamps; 0 is "never".
pub fn idle_since_from_usec(value: &str) -> Option<Timestamp> {
    let usec: i64 = value.trim().parse().ok()?;
    if usec <= 0 {
        return None;
    }
    Timestamp::from_microsecond(usec).ok()
}

/// The properties `show_session_query` asks for.
const SESSION_PROPERTIES: &[&str] =
    &["Id", "Name", "Class", "Type", "Active", "State", "Remote", "IdleHint", "IdleSinceHint", "LockedHint"];

pub fn show_session_query(id: &str) -> CommandLine {
    let mut args = vec!["show-session".to_owned(), id.to_owned()];
    for property in SESSION_PROPERTIES {
        args.push("-p".to_owned());
        args.push((*property).to_owned());
    }
    CommandLine::new("loginctl", args)
}

/// `Key=value` lines of `loginctl show-session`.
pub fn parse_show_session(stdout: &str) -> LogindSession {
    let properties: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let text = |key: &str| properties.get(key).map(|v| v.trim().to_owned()).unwrap_or_default();
    let yes = |key: &str| properties.get(key).is_some_and(|v| v.trim() == "yes");
    LogindSession {
        id: text("Id"),
        user: text("Name"),
        class: text("Class"),
        kind: text("Type"),
        active: yes("Active"),
        state: text("State"),
        remote: yes("Remote"),
        idle_hint: yes("IdleHint"),
        idle_since: properties.get("IdleSinceHint").and_then(|v| idle_since_from_usec(v)),
        locked: yes("LockedHint"),
    }
}

/// The idle-since of the whole machine from its sessions: the moment the
/// last one went idle; `None` if any is not idle; `since_boot` when there
/// are no sessions to give input at all.
pub fn machine_idle_since(
    sessions: &[LogindSession],
    since_boot: Timestamp,
) -> Result<Option<Timestamp>, ObserveError> {
    let mut latest = None;
    for session in sessions.iter().filter(|s| s.takes_input()) {
        if !session.idle_hint {
            return Ok(None);
        }
        let Some(since) = session.idle_since else {
            return Err(ObserveError::parse(
                format!("logind session {}", session.id),
                "IdleHint is set without an IdleSinceHint, so how long it has been idle is unknown",
            ));
        };
        latest = Some(latest.map_or(since, |l: Timestamp| l.max(since)));
    }
    Ok(Some(latest.unwrap_or(since_boot)))
}

/// logind through `loginctl`.
pub struct Logind<R> {
    pub runner: R,
    /// For the boot time (`/proc/stat`'s `btime`), the idle-since of a
    /// machine nobody is logged in to.
    pub proc: PathBuf,
}

impl<R: CommandRunner> Logind<R> {
    pub fn new(runner: R, proc: &Path) -> Logind<R> {
        Logind { runner, proc: proc.to_owned() }
    }

    pub fn sessions(&self) -> Result<Vec<LogindSession>, ObserveError> {
        let list = CommandLine::new("loginctl", ["list-sessions", "--no-legend"]);
        let ids = parse_list_sessions(&self.runner.run_ok(&list)?);
        let mut sessions = Vec::with_capacity(ids.len());
        for id in ids {
            let mut session = parse_show_session(&self.runner.run_ok(&show_session_query(&id))?);
            if session.id.is_empty() {
                session.id = id;
            }
            sessions.push(session);
        }
        Ok(sessions)
    }
}

impl<R: CommandRunner> InputIdle for Logind<R> {
    fn idle_since(&self) -> Result<Option<Timestamp>, ObserveError> {
        let sessions = self.sessions()?;
        machine_idle_since(&sessions, read_boot_time(&self.proc)?)
    }
}

impl<R: CommandRunner> ForegroundApps for Logind<R> {
    fn foreground_apps(&self) -> Result<Vec<String>, ObserveError> {
        Ok(self
            .sessions()?
            .iter()
            .filter(|s| s.is_foreground_graphical())
            .map(|s| format!("graphical session {} ({}, user {})", s.id, s.kind, s.user))
            .collect())
    }
}
