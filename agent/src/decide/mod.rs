//! What the agent does next with one desired item: the pure decision.
//!
//! [`decide`] is a function of (the desired item, the agent's local record
//! of it, what the device observes, now) and nothing else: no IO, no clock
//! read. `now` is an argument, so the tests drive it with a fake clock and a
//! clock jump is just another `now` (T38). [`decide_snooze`] and
//! [`decide_self_service_install`] answer the user's requests (`snooze ITEM`,
//! `install ITEM`) under the administrator's limits, just as purely.
//!
//! # The decision
//!
//! A [`Decision`] is one of: nothing to do (and why), install or uninstall
//! now, wait (until an instant, or until an observation changes), show a
//! prompt, count an unanswered prompt as a snooze, or give up (with a reason
//! to report). [`Decision::WaitUntil`]'s `at` is the instant at which the
//! decision can change by itself; `None` means time alone changes nothing.
//! A change of observations or local state can always change it sooner, so
//! the agent decides again whenever either changes, and at `at`.
//!
//! # Semantics, in the order they are checked
//!
//! 1. **Settled items.** An install whose status is `installed` (the engine
//!    also counts a superseding patch), or that detection finds present, or
//!    whose status is `removed`, needs nothing. An uninstall needs nothing
//!    once detection finds the package absent; while detection finds it
//!    present it is removed whatever the status says (detection is fresher
//!    than the engine's view of the last inventory).
//! 2. **The engine's timing.** `blocked` waits for the engine (a rollout
//!    gate: time alone changes nothing). Before `notBefore` the item waits
//!    for it, whatever the status. A `scheduled` item whose `notBefore` has
//!    passed on the device's clock proceeds as `due`: a desired state kept
//!    while the engine is unreachable keeps running (T25).
//! 3. **Failures.** After [`MAX_FAILURES`] failed installs, or
//!    [`MAX_INSTALL_ATTEMPTS`] attempts of any outcome ("retry later"
//!    included), the agent gives up and reports it; the counts are the
//!    agent's record of this item and are never reset by a new desired
//!    state of the same item. A "retry later" outcome (a held dpkg lock,
//!    msi 1618) waits until the retry time the agent recorded.
//! 4. **Uninstall** respects the windows and blackouts of the item's policy
//!    (removing software is a change like any other, and the admin who
//!    reverted an approval chose those windows), but not its mode: nobody is
//!    prompted and no idle or restart condition is awaited.
//! 5. **Self-service.** When the policy has `selfService` and the user asked
//!    (locally, or relayed by the engine), the install runs at once, even
//!    outside the windows' intervals (a user who asks is at the machine and
//!    accepts the disruption, as in Configuration Manager's Software
//!    Center), but never during a blackout: a freeze is a freeze.
//! 6. **Windows.** Every mode installs only inside its windows: open when
//!    any of the policy's windows is open (each evaluated with
//!    [`patchward_api::WindowSchedule::is_open`] in its zone, `device`
//!    meaning the device's own); no windows means any time. Every blackout
//!    of any of the policy's windows closes all of them. Closed, the item
//!    waits until the next opening. `immediate` with `ignoreWindows` skips
//!    the intervals only; with `ignoreBlackouts` as well it skips the
//!    blackouts too (`ignoreBlackouts` alone does nothing, as the engine
//!    documents). A window whose zone cannot be resolved (no device zone, an
//!    unknown name) gives up: installing without knowing would risk an
//!    install outside the window.
//! 7. **Deadline.** After the item's `deadline` every mode installs
//!    (`mandatory: true`), still only inside the windows: no more waiting
//!    for idleness, a restart, the prompting hours or the user. Prompting
//!    modes also have `prompt.deadline`, counted from `notBefore`; the
//!    earlier of the two applies.
//! 8. **The mode.**
//!    - `immediate`: install as soon as the windows allow.
//!    - `prompt`: ask the user, inside the windows only (a prompt is an
//!      offer to install now). The prompt waits `timeout` for an answer. An
//!      accepted prompt installs. A snooze lasts `snoozeFor`, never past the
//!      deadline, at most `maxSnoozes` times. **An unanswered prompt counts
//!      as a snooze** ([`Decision::CountIgnoredPromptAsSnooze`]: nobody is
//!      there, ask again later, as the example policy's comment says);
//!      with no snooze left it installs. Local and relayed snoozes combine:
//!      the larger count and the later end win. A snooze that ends after a
//!      prompt was shown answers that prompt.
//!    - `adminOnly` (any prompting mode): the user can neither snooze nor
//!      cancel; snoozes on record are ignored. The prompt becomes a notice
//!      (`canSnooze: false`) shown for `timeout`, which the user may accept
//!      to start at once; when it lapses the install runs (`prompt`) or the
//!      fallback decides (`scheduled-prompt`).
//!    - `scheduled-prompt`: prompts only on the configured side of the time
//!      of day (`promptWhen` in `timezone`; `after` alone means from then to
//!      midnight, `before` alone from midnight, both the part of the day
//!      between them, over midnight when `after` is the later). The prompt
//!      waits `answerWithin` for an answer (its pop-up shows for `timeout`).
//!      Outside the prompting hours the `fallback` deployment decides, with
//!      its own windows, and the blackouts of this policy's windows still
//!      hold; when the hours begin, the item is decided again. Nobody
//!      answering within `answerWithin` hands the item to the fallback for
//!      good. A snooze defers the item on both sides of the day. Inside the
//!      hours with the windows closed, it waits for the earlier of the next
//!      opening and the end of the hours.
//!    - `idle`: installs when every configured condition has held for its
//!      time, measured up to `now`: CPU below `cpuBelowPercent` for `cpuFor`
//!      (or [`DEFAULT_ACTIVITY_HOLD`] when `cpuFor` is left out), the network
//!      below `networkBelowKbps` for the same time as the CPU (both measure
//!      activity), no input for `noInputFor` (from logind's IdleSinceHint),
//!      and no foreground application at the latest look (starting an app is
//!      input, so `noInputFor` covers how long). A series holds since the
//!      first sample of its latest unbroken run below the threshold; a run is
//!      broken by a sample at or above it or by a gap longer than
//!      [`SAMPLE_FRESHNESS`], and the latest sample must be that fresh.
//!      Missing samples, samples after `now` (a clock that went back) and an
//!      idle-since after `now` hold nothing.
//!    - `restart`: installs at a trigger since the item arrived: `reboot`
//!      (the boot id differs from the one recorded when the item arrived),
//!      `cold-boot` (it differs and this boot was cold), `service-restart`
//!      (a listed unit's invocation id differs from the recorded one; a unit
//!      that has started since, having had none, counts; one stopped now
//!      does not), `scheduled-restart` (a `schedule` time, in the device's
//!      zone, after the item was first seen and not after now). A trigger
//!      that happens while the windows are closed stays pending and the
//!      install runs at the next opening.
//!
//! Every install carries the policy's `reboot` (never, prompt, auto) and the
//! name of the policy that decided it (a fallback's, when it decided).
//!
//! # Clock jumps and DST (T38)
//!
//! Nothing installs unless the windows are open at `now`, whatever the
//! local record says, so a clock that jumps back cannot make an install
//! happen outside a window. Records stamped after `now` are not trusted to
//! have happened: samples are ignored, a prompt shown "in the future" is
//! taken as shown now, a snooze never lasts longer than `snoozeFor` from
//! now, a scheduled restart must fall after the item was first seen. DST
//! follows from the window semantics (a start in the spring gap opens at
//! the first instant after it, one that occurs twice at the first); a
//! scheduled restart time resolves the same way.

mod idle;
mod prompt;
mod requests;
mod restart;
mod windows;

use std::collections::BTreeMap;

use jiff::Timestamp;
use patchward_api::deployment::{
    DeploymentError, DeploymentMode, RebootBehaviour, ResolvedDeployment, RestartTrigger, UserRequest,
};
use patchward_api::desired::{Action, DesiredItem, Status};
use serde::{Deserialize, Serialize};

pub use idle::IdleCondition;
pub use requests::{BlackoutHold, Refusal, SelfServiceAccepted, decide_self_service_install, decide_snooze};

use windows::{NamedBlackout, WindowGate};

/// Failed installs (not "retry later") after which the agent gives up.
pub const MAX_FAILURES: u32 = 3;
/// Install attempts of any outcome after which the agent gives up; the
/// agent's retry backoff decides how long that spans.
pub const MAX_INSTALL_ATTEMPTS: u32 = 20;
/// How long the CPU and network must stay quiet when `cpuFor` is not given.
pub const DEFAULT_ACTIVITY_HOLD: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);
/// The latest sample must be at most this old, and a gap between samples
/// longer than this breaks a run: the collector was not looking.
pub const SAMPLE_FRESHNESS: jiff::SignedDuration = jiff::SignedDuration::from_mins(2);

/// A desired item as the decision sees it: what the engine asks for, with
/// its deployment typed, the device's zone and what the user asked through
/// the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub patch: String,
    pub action: Action,
    pub status: Status,
    pub not_before: Timestamp,
    pub deadline: Option<Timestamp>,
    pub deployment: ResolvedDeployment,
    /// The device's IANA zone (its `timezone` fact), which resolves `device`.
    pub device_zone: Option<String>,
    pub user_request: UserRequest,
}

impl Item {
    /// From a desired item as the engine serves it (with the `fallback`
    /// of a scheduled-prompt policy and the user's relayed request), on a
    /// device in `device_zone`.
    pub fn from_desired(desired: &DesiredItem, device_zone: Option<String>) -> Result<Item, DeploymentError> {
        let user_request = desired.user_request.clone();
        Ok(Item {
            patch: desired.patch.clone(),
            action: desired.action,
            status: desired.status,
            not_before: desired.not_before,
            deadline: desired.deadline,
            deployment: desired.deployment()?,
            device_zone,
            user_request: user_request.unwrap_or_default(),
        })
    }
}

/// What the agent keeps about one item between decisions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalItemState {
    /// Detection's latest verdict: the patch (or package) is on the device.
    #[serde(default)]
    pub detected_present: bool,
    /// When the agent first saw this item in a desired state.
    pub first_seen: Timestamp,
    /// The latest prompt shown, and its answer.
    #[serde(default)]
    pub prompt: Option<PromptRecord>,
    #[serde(default)]
    pub snoozes_used: u32,
    #[serde(default)]
    pub snoozed_until: Option<Timestamp>,
    #[serde(default)]
    pub install_attempts: u32,
    /// Set after a "retry later" outcome (or a failure's backoff).
    #[serde(default)]
    pub retry_not_before: Option<Timestamp>,
    #[serde(default)]
    pub failures: u32,
    /// The restart markers recorded when the item arrived.
    #[serde(default)]
    pub baseline: RestartBaseline,
    /// The user asked to install on demand (`patchward-agent install`).
    #[serde(default)]
    pub self_service_requested_at: Option<Timestamp>,
}

impl LocalItemState {
    /// The record of an item first seen at `first_seen`, with the restart
    /// markers of that moment.
    pub fn new(first_seen: Timestamp, baseline: RestartBaseline) -> Self {
        LocalItemState {
            detected_present: false,
            first_seen,
            prompt: None,
            snoozes_used: 0,
            snoozed_until: None,
            install_attempts: 0,
            retry_not_before: None,
            failures: 0,
            baseline,
            self_service_requested_at: None,
        }
    }

    /// The agent showed the prompt of a [`Decision::Prompt`].
    pub fn record_prompt_shown(&mut self, at: Timestamp) {
        self.prompt = Some(PromptRecord { shown_at: at, answer: PromptAnswer::Unanswered });
    }

    /// The user chose Install on the prompt.
    pub fn record_prompt_accepted(&mut self) {
        if let Some(prompt) = &mut self.prompt {
            prompt.answer = PromptAnswer::Accepted;
        }
    }

    /// A snooze granted by [`decide_snooze`] or counted by
    /// [`Decision::CountIgnoredPromptAsSnooze`].
    pub fn record_snooze(&mut self, snooze: &SnoozeGranted) {
        self.snoozes_used = self.snoozes_used.max(snooze.snoozes_used);
        self.snoozed_until = Some(snooze.until);
        if let Some(prompt) = &mut self.prompt {
            prompt.answer = PromptAnswer::Snoozed;
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromptRecord {
    pub shown_at: Timestamp,
    pub answer: PromptAnswer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptAnswer {
    Unanswered,
    Accepted,
    Snoozed,
}

/// The boot id and the listed units' invocation ids when the item arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestartBaseline {
    #[serde(default)]
    pub boot_id: Option<String>,
    /// systemd unit → its InvocationID; a unit not running has none.
    #[serde(default)]
    pub invocation_ids: BTreeMap<String, String>,
}

/// What the device observes now, from the collectors. Anything the
/// collector could not tell is absent, and an absent observation holds no
/// condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Observations {
    /// (when, CPU busy percent over the interval ending then), from /proc/stat.
    #[serde(default)]
    pub cpu_busy_percent: Vec<(Timestamp, f64)>,
    /// (when, kbit/s over the interval ending then), from /proc/net/dev.
    #[serde(default)]
    pub network_kbps: Vec<(Timestamp, f64)>,
    /// Since when nobody has touched keyboard or mouse (logind's
    /// IdleSinceHint); absent while someone is active or when unknown.
    #[serde(default)]
    pub input_idle_since: Option<Timestamp>,
    /// Whether any application is in the foreground; absent when unknown.
    #[serde(default)]
    pub foreground_apps_present: Option<bool>,
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Whether this boot was a cold boot (power on, not a warm restart).
    #[serde(default)]
    pub cold_boot: Option<bool>,
    /// systemd unit → its current InvocationID; a unit not running has none.
    #[serde(default)]
    pub invocation_ids: BTreeMap<String, String>,
}

/// What to do next with an item.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Decision {
    /// Nothing to do.
    Nothing { reason: NothingReason },
    /// Install now.
    InstallNow {
        reason: InstallReason,
        /// The deadline has passed: the user cannot put it off.
        mandatory: bool,
        reboot: RebootBehaviour,
        /// The policy that decided (a fallback's, when it did).
        decided_by: String,
    },
    /// Remove the package now.
    UninstallNow { reboot: RebootBehaviour, decided_by: String },
    /// Wait: until `at` (when the decision can change by itself), or, with
    /// `at: None`, until an observation or the desired state changes.
    WaitUntil { at: Option<Timestamp>, reason: WaitReason },
    /// Show the user a prompt; record it with
    /// [`LocalItemState::record_prompt_shown`].
    Prompt {
        message: String,
        /// How long the pop-up stays on screen.
        display_for: patchward_api::Duration,
        /// The answer is awaited until then.
        answer_by: Timestamp,
        snoozes_left: u32,
        /// Whether the pop-up offers "snooze" (false under `adminOnly`).
        can_snooze: bool,
        /// When the install becomes mandatory.
        deadline: Option<Timestamp>,
        reboot: RebootBehaviour,
        decided_by: String,
    },
    /// The prompt went unanswered: record this snooze with
    /// [`LocalItemState::record_snooze`] and report it like a user's.
    CountIgnoredPromptAsSnooze { snooze: SnoozeGranted },
    /// Cannot proceed until someone changes something; report the reason.
    /// Decided afresh each time, so it lasts as long as its cause.
    GiveUp { reason: GiveUpReason },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NothingReason {
    /// The engine counts the item installed (perhaps through a patch that
    /// supersedes it).
    EngineReportsInstalled,
    /// Detection finds the patch or package on the device.
    DetectedPresent,
    /// The engine counts the item removed.
    EngineReportsRemoved,
    /// An uninstall whose package detection no longer finds.
    DetectedAbsent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum InstallReason {
    /// `immediate`: allowed now.
    Immediate,
    /// The user asked to install on demand.
    SelfService,
    /// The user accepted the prompt.
    PromptAccepted,
    /// The prompt went unanswered with no snooze left (or under `adminOnly`).
    PromptUnanswered,
    /// The deadline passed.
    Deadline,
    /// Every idle condition held.
    Idle,
    /// A restart trigger fired.
    Restart { trigger: RestartTrigger },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum WaitReason {
    /// The item's `notBefore` has not come.
    NotBefore,
    /// The engine holds the item behind a rollout gate.
    RolloutGate,
    /// A "retry later" outcome, until its retry time.
    RetryLater,
    /// No window is open; `at` is the next opening (none within a year:
    /// `None`).
    OutsideWindows,
    /// A blackout of one of the policy's windows holds.
    Blackout { window: String, reason: Option<String> },
    /// The user snoozed it.
    Snoozed { until: Timestamp },
    /// A prompt is out, waiting for the user.
    AwaitingAnswer { answer_by: Timestamp },
    /// These idle conditions have not held long enough (or at all).
    NotIdle { unmet: Vec<IdleCondition> },
    /// No restart trigger has fired.
    AwaitingRestart,
    /// Outside the prompting hours the fallback would wait longer than
    /// this: the hours begin, and the user is asked.
    PromptHoursBegin,
    /// Inside the prompting hours with the windows closed until after they
    /// end: then the fallback decides.
    PromptHoursEnd,
    /// Waiting for the mode's condition, which the deadline cuts short.
    DeadlineComes,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum GiveUpReason {
    TooManyFailures {
        failures: u32,
        limit: u32,
    },
    TooManyAttempts {
        attempts: u32,
        limit: u32,
    },
    /// A zone needed to evaluate a window or a time of day is unknown.
    UnresolvableZone {
        message: String,
    },
    /// The policy lacks the options its mode needs (the engine refuses such
    /// a policy; this guards an item built by hand).
    PolicyIncomplete {
        message: String,
    },
}

/// A snooze: until when, and the snooze count after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnoozeGranted {
    pub until: Timestamp,
    /// Snoozes used, this one included.
    pub snoozes_used: u32,
    pub snoozes_left: u32,
}

/// Decides what to do next with `item` (module docs: the semantics).
pub fn decide(item: &Item, local: &LocalItemState, observations: &Observations, now: Timestamp) -> Decision {
    if let Some(reason) = settled(item, local) {
        return Decision::Nothing { reason };
    }
    if let Some(decision) = engine_timing(item, now) {
        return decision;
    }
    if local.failures >= MAX_FAILURES {
        return Decision::GiveUp {
            reason: GiveUpReason::TooManyFailures { failures: local.failures, limit: MAX_FAILURES },
        };
    }
    if local.install_attempts >= MAX_INSTALL_ATTEMPTS {
        return Decision::GiveUp {
            reason: GiveUpReason::TooManyAttempts { attempts: local.install_attempts, limit: MAX_INSTALL_ATTEMPTS },
        };
    }
    if let Some(retry) = local.retry_not_before
        && now < retry
    {
        return wait(Some(retry), WaitReason::RetryLater);
    }
    let context = Context { item, local, observations, now };
    match item.action {
        Action::Uninstall => context.uninstall(),
        Action::Install => context.self_service().unwrap_or_else(|| context.decide_with(&item.deployment, &[])),
    }
}

/// Step 1: an item that needs nothing, and why.
fn settled(item: &Item, local: &LocalItemState) -> Option<NothingReason> {
    match item.action {
        Action::Install if item.status == Status::Installed => Some(NothingReason::EngineReportsInstalled),
        Action::Install if local.detected_present => Some(NothingReason::DetectedPresent),
        Action::Install if item.status == Status::Removed => Some(NothingReason::EngineReportsRemoved),
        Action::Uninstall if !local.detected_present => Some(NothingReason::DetectedAbsent),
        _ => None,
    }
}

/// Step 2: the engine's gate and the item's `notBefore`.
fn engine_timing(item: &Item, now: Timestamp) -> Option<Decision> {
    if item.status == Status::Blocked {
        return Some(wait(None, WaitReason::RolloutGate));
    }
    (now < item.not_before).then(|| wait(Some(item.not_before), WaitReason::NotBefore))
}

fn wait(at: Option<Timestamp>, reason: WaitReason) -> Decision {
    Decision::WaitUntil { at, reason }
}

/// `t + d`, saturating at the end of time (a policy's durations are bounded
/// by validation, a hostile state's are not).
pub(crate) fn later_by(t: Timestamp, d: patchward_api::Duration) -> Timestamp {
    i64::try_from(d.as_secs())
        .ok()
        .and_then(|seconds| t.checked_add(jiff::SignedDuration::from_secs(seconds)).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The earlier of two optional instants, `None` being "never".
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One decision's inputs, shared by the mode functions.
pub(crate) struct Context<'a> {
    pub item: &'a Item,
    pub local: &'a LocalItemState,
    pub observations: &'a Observations,
    pub now: Timestamp,
}

impl Context<'_> {
    fn device_zone(&self) -> Option<&str> {
        self.item.device_zone.as_deref()
    }

    fn item_deadline_passed(&self) -> bool {
        self.item.deadline.is_some_and(|deadline| self.now >= deadline)
    }

    pub(crate) fn install(&self, deployment: &ResolvedDeployment, reason: InstallReason, mandatory: bool) -> Decision {
        Decision::InstallNow {
            reason,
            mandatory,
            reboot: deployment.policy.reboot,
            decided_by: deployment.policy.name.clone(),
        }
    }

    fn gate(&self, deployment: &ResolvedDeployment, inherited: &[NamedBlackout]) -> Result<WindowGate, Decision> {
        WindowGate::new(deployment, inherited, self.device_zone())
            .map_err(|error| Decision::GiveUp { reason: GiveUpReason::UnresolvableZone { message: error.to_string() } })
    }

    /// Step 4.
    fn uninstall(&self) -> Decision {
        let deployment = &self.item.deployment;
        let gate = match self.gate(deployment, &[]) {
            Ok(gate) => gate,
            Err(decision) => return decision,
        };
        gate.wait_if_closed(self.now).unwrap_or_else(|| Decision::UninstallNow {
            reboot: deployment.policy.reboot,
            decided_by: deployment.policy.name.clone(),
        })
    }

    /// Step 5: a user's on-demand install, when the policy allows it.
    fn self_service(&self) -> Option<Decision> {
        let deployment = &self.item.deployment;
        let requested = self.local.self_service_requested_at.or(self.item.user_request.install_requested_at);
        if !deployment.policy.self_service || requested.is_none() {
            return None;
        }
        let gate = WindowGate::blackouts_only(deployment, &[]);
        Some(
            gate.wait_if_closed(self.now)
                .unwrap_or_else(|| self.install(deployment, InstallReason::SelfService, self.item_deadline_passed())),
        )
    }

    /// Steps 6 to 8 for one deployment: the item's, or a fallback's with the
    /// blackouts of the deployments above it.
    pub(crate) fn decide_with(&self, deployment: &ResolvedDeployment, inherited: &[NamedBlackout]) -> Decision {
        let gate = match self.gate(deployment, inherited) {
            Ok(gate) => gate,
            Err(decision) => return decision,
        };
        let mode = deployment.policy.mode;
        if matches!(mode, DeploymentMode::Prompt | DeploymentMode::ScheduledPrompt) {
            return prompt::decide(self, deployment, &gate);
        }
        if let Some(closed) = gate.wait_if_closed(self.now) {
            return closed;
        }
        let deadline_passed = self.item_deadline_passed();
        if mode == DeploymentMode::Immediate {
            return self.install(deployment, InstallReason::Immediate, deadline_passed);
        }
        if deadline_passed {
            return self.install(deployment, InstallReason::Deadline, true);
        }
        let waiting = match mode {
            DeploymentMode::Idle => idle::decide(self, deployment),
            _ => restart::decide(self, deployment),
        };
        cut_short_by(waiting, self.item.deadline, WaitReason::DeadlineComes)
    }
}

/// A wait that ends at `instant` at the latest, because something else
/// (the deadline, the prompting hours) decides then.
pub(crate) fn cut_short_by(decision: Decision, instant: Option<Timestamp>, reason: WaitReason) -> Decision {
    match (decision, instant) {
        (Decision::WaitUntil { at, .. }, Some(instant)) if at.is_none_or(|at| instant < at) => {
            wait(Some(instant), reason)
        }
        (decision, _) => decision,
    }
}
