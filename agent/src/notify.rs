//! The desktop pop-up: how the agent asks (a prompt) and tells (a notice).
//!
//! The user answers through the CLI, `patchward-agent install ITEM` or
//! `patchward-agent snooze ITEM`, over the local socket: a notification
//! cannot carry the answer back to a root daemon portably (action buttons
//! need a D-Bus session of the user's, which the agent does not have), and
//! a command is an answer that works the same on a desktop, over ssh and
//! in a script. So every prompt's text says exactly which command to run.
//!
//! On Linux, [`DesktopNotifier`] sends a freedesktop notification into
//! every active graphical session: it lists logind's sessions, keeps the
//! active graphical ones (x11, wayland, mir) of class `user`, and for each
//! of their users, once, runs `notify-send` as that user on that user's
//! session bus (`/run/user/UID/bus`). With no graphical session (a server,
//! nobody logged in) it writes the notice to the log instead
//! ([`LogNotifier`]), as it does when logind is not there at all.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::observe::{CommandLine, CommandRunner, ObserveError, parse_list_sessions, parse_show_session};

/// A prompt: an install the user may start now or (perhaps) put off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptNotice {
    pub item: String,
    pub title: String,
    /// The policy's message.
    pub message: String,
    pub snoozes_left: u32,
    /// False under `adminOnly`: the prompt is a notice that may be accepted.
    pub can_snooze: bool,
    /// When the install becomes mandatory.
    pub deadline: Option<Timestamp>,
    /// The answer is awaited until then.
    pub answer_by: Timestamp,
    /// How long the pop-up stays on screen.
    pub display_for: Duration,
}

/// Something to tell the user that asks nothing (an install starting, a
/// restart needed, an install that failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub item: Option<String>,
    pub title: String,
    pub message: String,
    pub urgency: Urgency,
    pub display_for: Duration,
}

/// freedesktop's urgency levels; desktops keep a `critical` one on screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    Low,
    Normal,
    Critical,
}

impl Urgency {
    pub const fn as_str(self) -> &'static str {
        match self {
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::Critical => "critical",
        }
    }
}

/// Who saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Shown on the desktops of these users.
    Desktop { users: Vec<String> },
    /// Nobody is at a graphical session: written to the log.
    Logged,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("could not list the graphical sessions: {0}")]
    Sessions(#[from] ObserveError),
    #[error("no desktop notification could be shown: {}", .failures.join("; "))]
    NotShown { failures: Vec<String> },
}

/// Shows prompts and notices to the user.
pub trait Notifier: Send + Sync {
    fn prompt(&self, notice: &PromptNotice) -> Result<Delivery, NotifyError>;
    fn inform(&self, notice: &Notice) -> Result<Delivery, NotifyError>;
}

/// How times are written for the user: the device's zone, to the minute.
fn local_time(at: Timestamp, zone: &TimeZone) -> String {
    at.to_zoned_datetime(zone.clone()).strftime("%a %Y-%m-%d %H:%M %Z").to_string()
}

/// An item id as a shell word: the command must paste as it is.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@+/=,".contains(&b)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The prompt's body: the policy's message, then the commands that answer it.
pub fn prompt_body(notice: &PromptNotice, zone: &TimeZone) -> String {
    let item = shell_word(&notice.item);
    let mut body = notice.message.trim_end().to_owned();
    if !body.is_empty() {
        body.push_str("\n\n");
    }
    let _ = write!(body, "Install now: patchward-agent install {item}");
    if notice.can_snooze && notice.snoozes_left > 0 {
        let snoozes = if notice.snoozes_left == 1 {
            "1 snooze left".to_owned()
        } else {
            format!("{} snoozes left", notice.snoozes_left)
        };
        let _ = write!(body, "\nPut it off: patchward-agent snooze {item} ({snoozes})");
    } else if notice.can_snooze {
        body.push_str("\nNo snoozes left.");
    } else {
        body.push_str("\nYour administrator does not allow putting this off.");
    }
    let _ = write!(body, "\nAnswer by {}.", local_time(notice.answer_by, zone));
    if let Some(deadline) = notice.deadline {
        let _ = write!(body, "\nFrom {} the install is mandatory.", local_time(deadline, zone));
    }
    body
}

/// A graphical session's user, to notify on their session bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesktopUser {
    pub name: String,
    pub uid: u32,
}

/// The properties [`DesktopNotifier`] reads of each session.
pub fn graphical_session_query(id: &str) -> CommandLine {
    let mut args = vec!["show-session".to_owned(), id.to_owned()];
    for property in ["Name", "User", "Type", "Class", "Active", "State", "Display"] {
        args.push("-p".to_owned());
        args.push(property.to_owned());
    }
    CommandLine::new("loginctl", args)
}

/// The user of a session worth notifying, from its `show-session` output:
/// an active graphical session of a person (not a greeter), not closing.
pub fn desktop_user(show_session: &str) -> Option<DesktopUser> {
    let session = parse_show_session(show_session);
    let uid = show_session.lines().find_map(|l| l.strip_prefix("User=")).and_then(|v| v.trim().parse::<u32>().ok())?;
    let graphical = matches!(session.kind.as_str(), "x11" | "wayland" | "mir");
    // An empty Class is an old logind that does not say; take it as a user's.
    let person = matches!(session.class.as_str(), "user" | "");
    let wanted = graphical && person && session.active && session.state != "closing" && !session.user.is_empty();
    wanted.then_some(DesktopUser { name: session.user, uid })
}

/// `notify-send` as `user`, on their session bus.
pub fn notify_send_command(
    user: &DesktopUser,
    urgency: Urgency,
    display_for: Duration,
    title: &str,
    body: &str,
) -> CommandLine {
    let expire_ms = u64::try_from(display_for.as_millis()).unwrap_or(u64::MAX).min(i32::MAX as u64);
    CommandLine::new(
        "runuser",
        [
            "-u".to_owned(),
            user.name.clone(),
            "--".to_owned(),
            "env".to_owned(),
            format!("DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{}/bus", user.uid),
            "notify-send".to_owned(),
            "--app-name=patchward".to_owned(),
            format!("--urgency={}", urgency.as_str()),
            format!("--expire-time={expire_ms}"),
            // A title starting with `-` must not be read as an option.
            "--".to_owned(),
            title.to_owned(),
            body.to_owned(),
        ],
    )
}

/// Writes prompts and notices to the log: for headless machines, and for
/// when nobody is at a graphical session.
#[derive(Clone, Debug)]
pub struct LogNotifier {
    pub zone: TimeZone,
}

impl Notifier for LogNotifier {
    fn prompt(&self, notice: &PromptNotice) -> Result<Delivery, NotifyError> {
        let body = prompt_body(notice, &self.zone);
        tracing::info!(
            item = notice.item,
            title = notice.title,
            body,
            snoozesLeft = notice.snoozes_left,
            canSnooze = notice.can_snooze,
            answerBy = %notice.answer_by,
            deadline = notice.deadline.map(tracing::field::display),
            "prompt"
        );
        Ok(Delivery::Logged)
    }

    fn inform(&self, notice: &Notice) -> Result<Delivery, NotifyError> {
        tracing::info!(
            item = notice.item,
            title = notice.title,
            body = notice.message,
            urgency = notice.urgency.as_str(),
            "notice"
        );
        Ok(Delivery::Logged)
    }
}

/// freedesktop notifications into every active graphical session (module docs).
pub struct DesktopNotifier<R> {
    pub runner: R,
    /// Where a notice goes when there is no graphical session.
    pub fallback: LogNotifier,
}

impl<R: CommandRunner> DesktopNotifier<R> {
    pub fn new(runner: R, fallback: LogNotifier) -> DesktopNotifier<R> {
        DesktopNotifier { runner, fallback }
    }

    /// The users of the active graphical sessions, each once; empty when
    /// logind is not installed.
    pub fn desktop_users(&self) -> Result<Vec<DesktopUser>, NotifyError> {
        let list = CommandLine::new("loginctl", ["list-sessions", "--no-legend"]);
        let listed = match self.runner.run_ok(&list) {
            Ok(stdout) => stdout,
            Err(crate::observe::CommandError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(NotifyError::Sessions(e.into())),
        };
        let mut users: Vec<DesktopUser> = Vec::new();
        for id in parse_list_sessions(&listed) {
            // A session that ends between the list and the look is no error.
            let Ok(shown) = self.runner.run_ok(&graphical_session_query(&id)) else { continue };
            if let Some(user) = desktop_user(&shown)
                && !users.iter().any(|u| u.uid == user.uid)
            {
                users.push(user);
            }
        }
        Ok(users)
    }

    fn show(
        &self,
        urgency: Urgency,
        display_for: Duration,
        title: &str,
        body: &str,
    ) -> Result<Vec<String>, NotifyError> {
        let users = self.desktop_users()?;
        let mut shown = Vec::new();
        let mut failures = Vec::new();
        for user in &users {
            let command = notify_send_command(user, urgency, display_for, title, body);
            match self.runner.run_ok(&command) {
                Ok(_) => shown.push(user.name.clone()),
                Err(e) => {
                    tracing::warn!(user = user.name, uid = user.uid, error = %e, "desktop notification failed");
                    failures.push(format!("{}: {e}", user.name));
                }
            }
        }
        if shown.is_empty() && !failures.is_empty() {
            return Err(NotifyError::NotShown { failures });
        }
        Ok(shown)
    }
}

impl<R: CommandRunner + Send + Sync> Notifier for DesktopNotifier<R> {
    fn prompt(&self, notice: &PromptNotice) -> Result<Delivery, NotifyError> {
        let body = prompt_body(notice, &self.fallback.zone);
        // A prompt awaits an answer: normal urgency with its own display
        // time, not critical (which some desktops never take down).
        let users = self.show(Urgency::Normal, notice.display_for, &notice.title, &body)?;
        if users.is_empty() { self.fallback.prompt(notice) } else { Ok(Delivery::Desktop { users }) }
    }

    fn inform(&self, notice: &Notice) -> Result<Delivery, NotifyError> {
        let users = self.show(notice.urgency, notice.display_for, &notice.title, &notice.message)?;
        if users.is_empty() { self.fallback.inform(notice) } else { Ok(Delivery::Desktop { users }) }
    }
}
