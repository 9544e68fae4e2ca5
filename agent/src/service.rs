//! The agent as a service: the run loop around [`crate::converge`], the
//! local socket's handler (the user's `status`, `snooze`, `install`,
//! `history`, decided under the admin's limits and reported to the
//! engine), and the same views read from the state directory when no agent
//! runs.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use patchward_api::ReportStatus;
use patchward_api::events::EventKind;

use crate::converge::{Agent, Books};
use crate::decide::{self, Item, LocalItemState, Observations};
use crate::journal::{Journal, Step};
use crate::local::{HistoryEntry, ItemView, LocalHandler, NextStep, Peer, Response, StatusView};
use crate::observe::Clock;
use crate::outbox::NewEvent;

/// A clock read from a file holding an RFC 3339 instant, for tests and
/// demos that move the agent's time by hand (`PATCHWARD_AGENT_CLOCK_FILE`).
/// An unreadable file is the system's time: a clock never stops the agent.
pub struct FileClock(pub std::path::PathBuf);

impl Clock for FileClock {
    fn now(&self) -> Timestamp {
        std::fs::read_to_string(&self.0).ok().and_then(|t| t.trim().parse().ok()).unwrap_or_else(Timestamp::now)
    }
}

fn lock(books: &Mutex<Books>) -> std::sync::MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(|p| p.into_inner())
}

/// The user's view of every desired item, from the books.
pub fn status_view(books: &Books, device: Option<&str>, zone: Option<&str>, now: Timestamp) -> StatusView {
    let trusted = books.memory.trusted.as_ref();
    let items = trusted
        .map(|t| {
            t.state
                .items
                .iter()
                .filter_map(|desired| {
                    let item = Item::from_desired(desired, zone.map(str::to_owned)).ok()?;
                    let local = books
                        .memory
                        .items
                        .get(&desired.patch)
                        .cloned()
                        .unwrap_or_else(|| LocalItemState::new(now, Default::default()));
                    let decision = decide::decide(&item, &local, &Observations::default(), now);
                    let policy = &item.deployment.policy;
                    let prompts = matches!(
                        policy.mode,
                        patchward_api::deployment::DeploymentMode::Prompt
                            | patchward_api::deployment::DeploymentMode::ScheduledPrompt
                    );
                    let max = policy.prompt_options().max_snoozes;
                    let used = local.snoozes_used.max(item.user_request.snoozes_used);
                    let snoozes_left = prompts.then(|| if policy.admin_only { 0 } else { max.saturating_sub(used) });
                    let last_outcome =
                        books.journal.history(Some(&desired.patch)).filter(|e| e.step.is_outcome()).last().map(|e| {
                            crate::local::Outcome {
                                at: e.at,
                                status: if matches!(e.step, Step::Failed { .. }) {
                                    ReportStatus::Failed
                                } else {
                                    ReportStatus::Succeeded
                                },
                                message: match &e.step {
                                    Step::Failed { reason, .. } => Some(reason.clone()),
                                    other => Some(other.name().to_owned()),
                                },
                            }
                        });
                    Some(ItemView {
                        patch: desired.patch.clone(),
                        action: desired.action,
                        status: desired.status,
                        policy: policy.name.clone(),
                        mode: policy.mode,
                        next: if books.memory.not_applicable.contains(&desired.patch) {
                            NextStep::not_applicable()
                        } else {
                            NextStep::from_decision(&decision)
                        },
                        deadline: desired.deadline,
                        snoozes_left,
                        can_snooze: decide::decide_snooze(&item, &local, now).is_ok(),
                        self_service: policy.self_service,
                        last_outcome,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    StatusView {
        at: now,
        device: device.map(str::to_owned),
        generation: trusted.map(|t| t.state.generation),
        last_contact: books.memory.latest_time,
        items,
    }
}

/// The journal as the user's history, newest first.
pub fn history_entries(journal: &Journal, item: Option<&str>, limit: usize) -> Vec<HistoryEntry> {
    let mut entries: Vec<HistoryEntry> = journal
        .history(item)
        .map(|e| {
            let (kind, status, message) = match &e.step {
                Step::Installed => (EventKind::Report, Some(ReportStatus::Succeeded), Some("installed".to_owned())),
                Step::Uninstalled => (EventKind::Report, Some(ReportStatus::Succeeded), Some("removed".to_owned())),
                Step::Failed { reason, .. } => (EventKind::Report, Some(ReportStatus::Failed), Some(reason.clone())),
                Step::Snoozed { until } => (EventKind::Snooze, None, Some(format!("snoozed until {until}"))),
                Step::SelfServiceRequested => (EventKind::InstallRequest, None, Some("install requested".to_owned())),
                other => (EventKind::Step, None, Some(other.name().to_owned())),
            };
            HistoryEntry { at: e.at, item: Some(e.item.clone()), kind, status, message }
        })
        .collect();
    entries.reverse();
    entries.truncate(limit);
    entries
}

/// The running agent's answers on the local socket.
pub struct Handler {
    pub books: Arc<Mutex<Books>>,
    pub clock: Arc<dyn Clock>,
    pub device: String,
    pub zone: Option<String>,
    /// Woken when a request calls for a pass now (a self-service install).
    pub wake: Arc<tokio::sync::Notify>,
}

impl Handler {
    fn item(&self, books: &Books, patch: &str) -> Option<(Item, LocalItemState, u64)> {
        let trusted = books.memory.trusted.as_ref()?;
        let desired = trusted.state.items.iter().find(|i| i.patch == patch)?;
        let item = Item::from_desired(desired, self.zone.clone()).ok()?;
        let now = self.clock.now();
        let local =
            books.memory.items.get(patch).cloned().unwrap_or_else(|| LocalItemState::new(now, Default::default()));
        Some((item, local, trusted.state.generation))
    }
}

impl LocalHandler for Handler {
    fn status(&self) -> StatusView {
        let books = lock(&self.books);
        status_view(&books, Some(&self.device), self.zone.as_deref(), self.clock.now())
    }

    fn snooze(&self, patch: &str, _who: Peer) -> Response {
        let now = self.clock.now();
        let mut books = lock(&self.books);
        let Some((item, local, generation)) = self.item(&books, patch) else { return Response::unknown_item(patch) };
        let decided = decide::decide_snooze(&item, &local, now);
        if let Ok(granted) = &decided {
            let mut local = local;
            local.record_snooze(granted);
            books.memory.items.insert(patch.to_owned(), local);
            let event = NewEvent::new(EventKind::Snooze, now)
                .patch(patch)
                .generation(generation)
                .message("the user snoozed it")
                .detail(serde_json::json!({"until": granted.until.to_string(), "snoozesUsed": granted.snoozes_used}));
            let recorded = books
                .journal
                .append(patch, generation, Step::Snoozed { until: granted.until }, now)
                .and_then(|seq| books.outbox.push_for_journal(seq, event))
                .and_then(|_| books.save());
            if let Err(e) = recorded {
                return Response::Error { message: format!("the snooze could not be recorded: {e}") };
            }
        }
        Response::snooze_decided(patch, &decided)
    }

    fn install(&self, patch: &str, _who: Peer) -> Response {
        let now = self.clock.now();
        let mut books = lock(&self.books);
        let Some((item, mut local, generation)) = self.item(&books, patch) else {
            return Response::unknown_item(patch);
        };
        // An open prompt is answered "install": the decision then installs
        // inside the policy's windows, self-service or not.
        let prompted = local.prompt.as_ref().is_some_and(|p| p.answer == decide::PromptAnswer::Unanswered);
        if prompted {
            local.record_prompt_accepted();
            books.memory.items.insert(patch.to_owned(), local);
            let recorded = books.save();
            if let Err(e) = recorded {
                return Response::Error { message: format!("the answer could not be recorded: {e}") };
            }
            self.wake.notify_one();
            return Response::InstallAccepted { item: patch.to_owned(), held_by_blackout: None };
        }
        let decided = decide::decide_self_service_install(&item, &local, now);
        if decided.is_ok() {
            let mut local = local;
            local.self_service_requested_at = Some(now);
            books.memory.items.insert(patch.to_owned(), local);
            let event = NewEvent::new(EventKind::InstallRequest, now).patch(patch).generation(generation);
            let recorded = books
                .journal
                .append(patch, generation, Step::SelfServiceRequested, now)
                .and_then(|seq| books.outbox.push_for_journal(seq, event))
                .and_then(|_| books.save());
            if let Err(e) = recorded {
                return Response::Error { message: format!("the request could not be recorded: {e}") };
            }
            self.wake.notify_one();
        }
        Response::install_decided(patch, &decided)
    }

    fn history(&self, item: Option<&str>, limit: usize) -> Vec<HistoryEntry> {
        history_entries(&lock(&self.books).journal, item, limit)
    }
}

/// Runs passes until stopped: each pass long-polls the engine for at most
/// the poll interval (less when an item's decision changes sooner), and a
/// user's request wakes it early.
pub async fn run_loop(agent: &mut Agent, poll: std::time::Duration, wake: Arc<tokio::sync::Notify>) {
    // The idle mode's CPU and network series need samples between passes.
    let load = agent.load.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            let _ = load.lock().unwrap_or_else(|p| p.into_inner()).tick();
        }
    });
    loop {
        let now = agent.platform.clock.now();
        let report = match agent.pass(Some(poll)).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "pass failed");
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = wake.notified() => {}
                }
                continue;
            }
        };
        log_report(&report);
        let until_wake = report
            .wake_at
            .and_then(|at| std::time::Duration::try_from(at.duration_since(now)).ok())
            .unwrap_or(poll)
            .min(poll);
        if report.engine_unreachable.is_some() || !until_wake.is_zero() {
            // The long poll waited already when the engine answered; an
            // unreachable engine is not asked again at once.
            let pause = if report.engine_unreachable.is_some() { until_wake } else { std::time::Duration::ZERO };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = wake.notified() => {}
            }
        }
    }
}

pub fn log_report(report: &crate::converge::PassReport) {
    let installed = report.installed.join(",");
    let failed = report.failed.join(",");
    let removed = report.uninstalled.join(",");
    tracing::info!(installed, removed, failed, eventsSent = report.events_sent, "pass");
    if let Some(error) = &report.engine_unreachable {
        tracing::warn!(error, "the engine could not be reached; the last good state stays in force");
    }
    if let Some(refused) = &report.refused {
        tracing::warn!(reason = refused, "a desired state was refused");
    }
}

/// dnf on `rpm`'s root, with the agent's `dnf.config` and
/// `dnf.releasever`; none when dnf is not installed.
fn dnf_client(
    settings: &crate::config::Settings,
    rpm: &crate::install::rpm::RpmRoot,
) -> Result<Option<crate::repo::dnf::Dnf>, String> {
    let has_dnf = std::process::Command::new("dnf").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_dnf {
        return Ok(None);
    }
    let dnf = crate::repo::dnf::Dnf::new(rpm.clone(), settings.dnf_config.clone(), settings.install_timeout);
    match &settings.dnf_releasever {
        Some(releasever) => dnf.with_releasever(releasever).map(Some).map_err(|e| e.to_string()),
        None => Ok(Some(dnf)),
    }
}

/// The machine's edges, as `run` uses them: dpkg and rpm on `root` (a
/// sandbox root when it is not `/`), `sh` for scripts, the Windows
/// installers (unavailable off Windows), logind for the desktop.
pub fn system_platform(
    settings: &crate::config::Settings,
    clock: Arc<dyn Clock>,
) -> Result<crate::converge::Platform, String> {
    use crate::install::{Installer, PackageType};
    let root = settings.root.clone();
    let system = root == std::path::Path::new("/");
    let mut installers: std::collections::BTreeMap<PackageType, Box<dyn Installer + Send + Sync>> = Default::default();
    let dpkg = if system {
        crate::install::deb::DpkgRoot::system()
    } else {
        crate::install::deb::DpkgRoot::sandbox(&root).map_err(|e| e.to_string())?
    };
    let has_apt = std::process::Command::new("apt-get").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut repositories = Vec::new();
    if has_apt {
        repositories
            .push(crate::repo::Repositories::Apt(crate::repo::apt::Apt::new(dpkg.clone(), settings.install_timeout)));
    }
    installers.insert(
        PackageType::Deb,
        Box::new(crate::install::deb::DebInstaller::new(dpkg.clone()).with_timeout(settings.install_timeout)),
    );
    let has_rpm = std::process::Command::new("rpm").arg("--version").output().is_ok_and(|o| o.status.success());
    if has_rpm {
        let rpm = if system {
            crate::install::rpm::RpmRoot::system()
        } else {
            crate::install::rpm::RpmRoot::sandbox(&root).map_err(|e| e.to_string())?
        };
        if let Some(dnf) = dnf_client(settings, &rpm)? {
            repositories.push(crate::repo::Repositories::Dnf(dnf));
        }
        installers.insert(
            PackageType::Rpm,
            Box::new(crate::install::rpm::RpmInstaller::new(rpm).with_timeout(settings.install_timeout)),
        );
    }
    installers.insert(
        PackageType::Script,
        Box::new(crate::install::script::ScriptInstaller::new(&root).with_timeout(settings.install_timeout)),
    );
    let windows_runner: Arc<dyn crate::install::windows::CommandRunner> =
        Arc::new(crate::install::windows::WindowsRunner);
    for kind in [PackageType::Msi, PackageType::Msu, PackageType::Exe] {
        if let Ok(installer) = crate::install::windows::WindowsInstaller::new(kind, windows_runner.clone()) {
            installers.insert(kind, Box::new(installer.with_timeout(settings.install_timeout)));
        }
    }
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    let fallback = crate::notify::LogNotifier { zone };
    let notifier: Box<dyn crate::notify::Notifier> =
        Box::new(crate::notify::DesktopNotifier::new(crate::observe::SystemCommands, fallback));
    Ok(crate::converge::Platform {
        root,
        proc: std::path::PathBuf::from("/proc"),
        clock,
        commands: Arc::new(crate::observe::SystemCommands),
        windows: Box::new(crate::windows::NoWindows),
        installers,
        notifier,
        rebooter: if system {
            Box::new(crate::converge::SystemReboot(Arc::new(crate::observe::SystemCommands)))
        } else {
            Box::new(crate::converge::NoReboot)
        },
        labels: settings.labels.clone(),
        groups: settings.groups.clone(),
        repositories,
        dpkg: Some(dpkg),
        // A sandbox root has its own rpm database (`RpmRoot::sandbox`).
        rpm: has_rpm,
    })
}
