//! The desktop pop-up, with the system's tools scripted: which sessions get
//! a notification, the exact `runuser … notify-send` command lines, the
//! text that tells the user which command answers, and the log fallback.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use patchward_agent::notify::{
    Delivery, DesktopNotifier, DesktopUser, LogNotifier, Notice, Notifier, NotifyError, PromptNotice, Urgency,
    graphical_session_query, notify_send_command, prompt_body,
};
use patchward_agent::observe::{CommandError, CommandLine, CommandOutput, CommandRunner, ScriptedCommands};
use patchward_api::logging::{Captured, Output};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// Scripted answers, and the list of every command line asked for.
struct Recording {
    scripted: ScriptedCommands,
    ran: Mutex<Vec<CommandLine>>,
}

impl Recording {
    fn new(scripted: ScriptedCommands) -> Recording {
        Recording { scripted, ran: Mutex::new(Vec::new()) }
    }

    fn notify_sends(&self) -> Vec<CommandLine> {
        self.ran.lock().unwrap().iter().filter(|c| c.program == "runuser").cloned().collect()
    }
}

impl CommandRunner for Recording {
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        self.ran.lock().unwrap().push(command.clone());
        self.scripted.run(command)
    }
}

fn list_sessions() -> CommandLine {
    CommandLine::new("loginctl", ["list-sessions", "--no-legend"])
}

fn session(name: &str, uid: u32, kind: &str, class: &str, active: bool) -> String {
    let active = if active { "yes" } else { "no" };
    format!("Name={name}\nUser={uid}\nType={kind}\nClass={class}\nActive={active}\nState=active\nDisplay=\n")
}

/// alice at a Wayland desktop (twice: a second, X11 session), bob on a
/// text console, the login screen, and carol's desktop switched away from.
fn an_office_machine() -> ScriptedCommands {
    ScriptedCommands::new()
        .answer(
            list_sessions(),
            "      2 1000 alice seat0 tty2\n      3 1001 bob   -     pts/0\n     c1  120 gdm   seat0 tty1\n      \
             5 1000 alice -     -\n      7 1002 carol seat0 tty3\n",
        )
        .answer(graphical_session_query("2"), &session("alice", 1000, "wayland", "user", true))
        .answer(graphical_session_query("3"), &session("bob", 1001, "tty", "user", true))
        .answer(graphical_session_query("c1"), &session("gdm", 120, "x11", "greeter", true))
        .answer(graphical_session_query("5"), &session("alice", 1000, "x11", "user", true))
        .answer(graphical_session_query("7"), &session("carol", 1002, "x11", "user", false))
}

fn prompt() -> PromptNotice {
    PromptNotice {
        item: "pw-2025-001".into(),
        title: "Security update for openssl".into(),
        message: "Your administrator asks to install this update now.".into(),
        snoozes_left: 2,
        can_snooze: true,
        deadline: Some(at("2025-03-07T17:00:00Z")),
        answer_by: at("2025-03-04T09:30:00Z"),
        display_for: Duration::from_secs(300),
    }
}

/// Logs into memory on this thread until the guard drops.
fn logger() -> (tracing::dispatcher::DefaultGuard, Captured) {
    let (dispatch, captured) = patchward_api::logging::capture("info", Output::Json);
    (tracing::dispatcher::set_default(&dispatch), captured)
}

fn fallback() -> LogNotifier {
    LogNotifier { zone: TimeZone::UTC }
}

#[test]
fn the_prompt_says_which_commands_answer_it() {
    let body = prompt_body(&prompt(), &TimeZone::UTC);
    assert_eq!(
        body,
        "Your administrator asks to install this update now.\n\n\
         Install now: patchward-agent install pw-2025-001\n\
         Put it off: patchward-agent snooze pw-2025-001 (2 snoozes left)\n\
         Answer by Tue 2025-03-04 09:30 UTC.\n\
         From Fri 2025-03-07 17:00 UTC the install is mandatory."
    );
}

#[test]
fn times_are_written_in_the_devices_zone() {
    let paris = TimeZone::get("Europe/Paris").unwrap();
    let body = prompt_body(&prompt(), &paris);
    assert!(body.contains("Answer by Tue 2025-03-04 10:30 CET."), "{body}");
}

#[test]
fn an_admin_only_prompt_offers_no_snooze() {
    let notice = PromptNotice { can_snooze: false, ..prompt() };
    let body = prompt_body(&notice, &TimeZone::UTC);
    assert!(body.contains("Install now: patchward-agent install pw-2025-001"), "{body}");
    assert!(!body.contains("snooze"), "{body}");
    assert!(body.contains("does not allow putting this off"), "{body}");

    let used_up = prompt_body(&PromptNotice { snoozes_left: 0, ..prompt() }, &TimeZone::UTC);
    assert!(!used_up.contains("patchward-agent snooze") && used_up.contains("No snoozes left."), "{used_up}");
}

#[test]
fn an_item_id_that_needs_quoting_is_quoted_for_the_shell() {
    let body = prompt_body(&PromptNotice { item: "it's odd".into(), ..prompt() }, &TimeZone::UTC);
    assert!(body.contains(r"patchward-agent install 'it'\''s odd'"), "{body}");
}

#[test]
fn each_active_desktop_user_gets_one_notification_on_their_session_bus() {
    let expected = CommandLine::new(
        "runuser",
        [
            "-u",
            "alice",
            "--",
            "env",
            "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus",
            "notify-send",
            "--app-name=patchward",
            "--urgency=normal",
            "--expire-time=300000",
            "--",
            "Security update for openssl",
            &prompt_body(&prompt(), &TimeZone::UTC),
        ],
    );
    let runner = Recording::new(an_office_machine().answer(expected.clone(), ""));
    let _log = logger();
    let notifier = DesktopNotifier::new(&runner, fallback());

    let delivery = notifier.prompt(&prompt()).unwrap();

    assert_eq!(delivery, Delivery::Desktop { users: vec!["alice".into()] });
    // Not bob (a text console), not the login screen, not carol (switched
    // away), and alice once although she has two sessions.
    assert_eq!(runner.notify_sends(), vec![expected]);
}

#[test]
fn a_notice_carries_its_urgency_and_display_time() {
    let alice = DesktopUser { name: "alice".into(), uid: 1000 };
    let command =
        notify_send_command(&alice, Urgency::Critical, Duration::from_secs(30), "Restart needed", "Restart by 18:00.");
    let runner = Recording::new(an_office_machine().answer(command.clone(), ""));
    let _log = logger();
    let notice = Notice {
        item: None,
        title: "Restart needed".into(),
        message: "Restart by 18:00.".into(),
        urgency: Urgency::Critical,
        display_for: Duration::from_secs(30),
    };
    assert_eq!(
        DesktopNotifier::new(&runner, fallback()).inform(&notice).unwrap(),
        Delivery::Desktop { users: vec!["alice".into()] }
    );
    assert_eq!(runner.notify_sends(), vec![command]);
    assert!(runner.notify_sends()[0].args.contains(&"--urgency=critical".to_owned()));
    assert!(runner.notify_sends()[0].args.contains(&"--expire-time=30000".to_owned()));
}

#[test]
fn with_no_graphical_session_the_prompt_goes_to_the_log() {
    let runner = Recording::new(
        ScriptedCommands::new()
            .answer(list_sessions(), "      3 1001 bob - pts/0\n")
            .answer(graphical_session_query("3"), &session("bob", 1001, "tty", "user", true)),
    );
    let (_log, captured) = logger();
    let delivery = DesktopNotifier::new(&runner, fallback()).prompt(&prompt()).unwrap();
    assert_eq!(delivery, Delivery::Logged);
    assert_eq!(runner.notify_sends(), vec![]);
    let line: serde_json::Value = serde_json::from_str(&captured.lines()[0]).unwrap();
    assert_eq!(line["message"], "prompt");
    assert_eq!(line["item"], "pw-2025-001");
    assert!(line["body"].as_str().unwrap().contains("patchward-agent snooze pw-2025-001"), "{line}");
}

#[test]
fn without_logind_the_notice_goes_to_the_log() {
    let runner = Recording::new(ScriptedCommands::new().missing(list_sessions()));
    let (_log, captured) = logger();
    let delivery = DesktopNotifier::new(&runner, fallback()).prompt(&prompt()).unwrap();
    assert_eq!(delivery, Delivery::Logged);
    assert_eq!(captured.lines().len(), 1);
}

#[test]
fn a_failed_notify_send_is_an_error_only_when_nobody_saw_it() {
    let dave = session("dave", 1003, "x11", "user", true);
    let listed = "      2 1000 alice seat0 tty2\n      9 1003 dave seat1 tty4\n";
    let body = prompt_body(&prompt(), &TimeZone::UTC);
    let send = |name: &str, uid| {
        notify_send_command(
            &DesktopUser { name: name.into(), uid },
            Urgency::Normal,
            Duration::from_secs(300),
            "Security update for openssl",
            &body,
        )
    };

    let one_fails = Recording::new(
        ScriptedCommands::new()
            .answer(list_sessions(), listed)
            .answer(graphical_session_query("2"), &session("alice", 1000, "wayland", "user", true))
            .answer(graphical_session_query("9"), &dave)
            .fail(send("alice", 1000), 1, "Cannot autolaunch D-Bus without X11 $DISPLAY")
            .answer(send("dave", 1003), ""),
    );
    let (_log, captured) = logger();
    let delivery = DesktopNotifier::new(&one_fails, fallback()).prompt(&prompt()).unwrap();
    assert_eq!(delivery, Delivery::Desktop { users: vec!["dave".into()] });
    assert!(captured.text().contains("desktop notification failed"), "{}", captured.text());

    let all_fail = Recording::new(
        ScriptedCommands::new()
            .answer(list_sessions(), listed)
            .answer(graphical_session_query("2"), &session("alice", 1000, "wayland", "user", true))
            .answer(graphical_session_query("9"), &dave)
            .fail(send("alice", 1000), 1, "no bus")
            .missing(send("dave", 1003)),
    );
    let _log = logger();
    let error = DesktopNotifier::new(&all_fail, fallback()).prompt(&prompt()).unwrap_err();
    assert!(matches!(&error, NotifyError::NotShown { failures } if failures.len() == 2), "{error:?}");
}
