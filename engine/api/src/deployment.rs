//! The typed wire view of the deployment policy and windows the engine
//! inlines in every [`crate::desired::DesiredItem`], and of the user's
//! requests the engine relays back to the agent.
//!
//! The engine fills `policy` by serializing its `DeploymentPolicySpec` and
//! adding a `"name"` key, and each of `windows` the same way from its
//! `MaintenanceWindowSpec` (positions are dropped: a spanned value
//! serializes as the plain value). These types accept exactly that JSON:
//! unknown fields are refused, `name` is accepted, and every default is the
//! engine's, so a policy read here means what the engine validated.
//! Serializing them back gives the same JSON (the tests check it against the
//! example policy repository).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, IntervalRule, LocalTime, Weekday, WindowSchedule};

/// How deep a chain of scheduled-prompt fallbacks may go. The engine refuses
/// cycles; this bounds what a corrupt or hostile state could make the agent
/// walk (G5).
pub const MAX_FALLBACK_DEPTH: usize = 8;

/// A resolved DeploymentPolicy: its spec and its `name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentPolicy {
    pub name: String,
    pub mode: DeploymentMode,
    /// Install only inside these maintenance windows (by name); none means
    /// any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_prompt: Option<ScheduledPromptOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartOptions>,
    /// `immediate` only: install outside the windows' intervals too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_windows: Option<bool>,
    /// `immediate` only, with `ignoreWindows`: install during blackouts too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_blackouts: Option<bool>,
    #[serde(default)]
    pub reboot: RebootBehaviour,
    /// Users can neither defer nor cancel.
    #[serde(default)]
    pub admin_only: bool,
    /// Users may install on demand.
    #[serde(default)]
    pub self_service: bool,
}

impl DeploymentPolicy {
    /// The prompt options in force: the block, or the engine's defaults when
    /// a prompting policy leaves it out.
    pub fn prompt_options(&self) -> PromptOptions {
        self.prompt.clone().unwrap_or_default()
    }

    /// `ignoreWindows: true`, honoured for `immediate` only.
    pub fn ignores_window_intervals(&self) -> bool {
        self.mode == DeploymentMode::Immediate && self.ignore_windows == Some(true)
    }

    /// `ignoreBlackouts: true`, honoured for `immediate` with `ignoreWindows`
    /// only: on its own it does nothing (the engine's documented meaning).
    pub fn ignores_blackouts(&self) -> bool {
        self.ignores_window_intervals() && self.ignore_blackouts == Some(true)
    }
}

/// The five deployment strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentMode {
    Prompt,
    ScheduledPrompt,
    Idle,
    Restart,
    Immediate,
}

impl DeploymentMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeploymentMode::Prompt => "prompt",
            DeploymentMode::ScheduledPrompt => "scheduled-prompt",
            DeploymentMode::Idle => "idle",
            DeploymentMode::Restart => "restart",
            DeploymentMode::Immediate => "immediate",
        }
    }
}

/// What happens when an install needs a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RebootBehaviour {
    Never,
    #[default]
    Prompt,
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptOptions {
    /// How long the prompt waits for an answer before it counts as ignored.
    #[serde(default = "default_prompt_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_max_snoozes")]
    pub max_snoozes: u32,
    #[serde(default = "default_snooze_for")]
    pub snooze_for: Duration,
    /// After this long from the item's not-before, the install is mandatory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Default for PromptOptions {
    fn default() -> Self {
        PromptOptions {
            timeout: default_prompt_timeout(),
            max_snoozes: default_max_snoozes(),
            snooze_for: default_snooze_for(),
            deadline: None,
            message: None,
        }
    }
}

fn default_prompt_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_snoozes() -> u32 {
    3
}

fn default_snooze_for() -> Duration {
    Duration::from_secs(4 * 3600)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledPromptOptions {
    /// The side of the day on which the user is asked.
    pub prompt_when: PromptWhen,
    /// An IANA zone or `device`.
    #[serde(default = "device_zone")]
    pub timezone: String,
    /// The DeploymentPolicy (by name) applied outside the prompting hours,
    /// or when nobody answers within `answerWithin`.
    pub fallback: String,
    #[serde(default = "default_answer_within")]
    pub answer_within: Duration,
}

fn device_zone() -> String {
    DEVICE_ZONE.to_owned()
}

fn default_answer_within() -> Duration {
    Duration::from_secs(600)
}

/// The zone name that stands for the device's own zone.
pub const DEVICE_ZONE: &str = "device";

/// `after: "06:00"` prompts from 06:00 to midnight, `before: "06:00"` from
/// midnight to 06:00; both give the part of the day between them (running
/// over midnight when `after` is the later time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptWhen {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<LocalTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<LocalTime>,
}

impl PromptWhen {
    /// The prompting hours as a daily interval: `[after, before)`, with
    /// midnight standing in for the side left out.
    pub fn daily_interval(&self) -> IntervalRule {
        IntervalRule {
            days: Weekday::ALL.to_vec(),
            start: self.after.unwrap_or(LocalTime::MIDNIGHT),
            end: self.before.unwrap_or(LocalTime::END_OF_DAY),
        }
    }
}

/// Every condition given must hold, each for its time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdleOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_below_percent: Option<f64>,
    /// How long the CPU must stay below `cpuBelowPercent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_for: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_input_for: Option<Duration>,
    #[serde(default)]
    pub no_foreground_apps: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_below_kbps: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartOptions {
    pub triggers: Vec<RestartTrigger>,
    /// systemd units (or Windows services) whose restart is a trigger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// When `scheduled-restart` fires, in the device's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<RestartSchedule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartTrigger {
    Reboot,
    ColdBoot,
    ServiceRestart,
    ScheduledRestart,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartSchedule {
    #[serde(default = "all_days")]
    pub days: Vec<Weekday>,
    pub at: LocalTime,
}

fn all_days() -> Vec<Weekday> {
    Weekday::ALL.to_vec()
}

/// A resolved MaintenanceWindow: its spec and its `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    pub name: String,
    /// An IANA time zone name, or `device` for the device's own zone.
    pub timezone: String,
    #[serde(default)]
    pub intervals: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
}

/// Start inclusive, end exclusive; an interval whose end is not after its
/// start runs into the next day, and `days` name the day it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    /// Every day when left out.
    #[serde(default = "all_days")]
    pub days: Vec<Weekday>,
    pub start: LocalTime,
    pub end: LocalTime,
}

/// Everything is closed from `from` (inclusive) until `until` (exclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Blackout {
    #[schemars(with = "String")]
    pub from: jiff::Timestamp,
    #[schemars(with = "String")]
    pub until: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Blackout {
    pub fn covers(&self, t: jiff::Timestamp) -> bool {
        self.from <= t && t < self.until
    }
}

/// A zone that cannot be resolved to evaluate a window or a time of day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("{field} is `device`, and the device reports no time zone")]
    NeedsDeviceZone { field: String },
    #[error("{field} names an unknown time zone, `{zone}`")]
    UnknownZone { field: String, zone: String },
}

/// Resolves a zone name as policies write it (`device` = the device's own
/// zone); `field` says where it was written, in words ("the timezone of
/// window `w`"), for the error.
pub fn resolve_zone(name: &str, device_zone: Option<&str>, field: &str) -> Result<jiff::tz::TimeZone, ZoneError> {
    let name = if name == DEVICE_ZONE {
        device_zone.ok_or_else(|| ZoneError::NeedsDeviceZone { field: field.to_owned() })?
    } else {
        name
    };
    jiff::tz::TimeZone::get(name).map_err(|_| ZoneError::UnknownZone { field: field.to_owned(), zone: name.to_owned() })
}

impl MaintenanceWindow {
    /// The window as a schedule to evaluate (the engine's window semantics);
    /// `device_zone` resolves the zone `device`.
    pub fn schedule(&self, device_zone: Option<&str>) -> Result<WindowSchedule, ZoneError> {
        let zone = resolve_zone(&self.timezone, device_zone, &format!("the timezone of window `{}`", self.name))?;
        let intervals =
            self.intervals.iter().map(|i| IntervalRule { days: i.days.clone(), start: i.start, end: i.end }).collect();
        let blackouts = self.blackouts.iter().map(|b| (b.from, b.until)).collect();
        Ok(WindowSchedule::new(zone, intervals, blackouts))
    }
}

/// A deployment as the agent decides with it: the policy, its windows, and
/// for a scheduled-prompt policy the deployment it falls back to.
///
/// On the wire (the `fallback` of a desired item) it is `{policy, windows,
/// fallback}`, the same shapes, recursively. Build it with
/// [`ResolvedDeployment::from_json`] or check a deserialized one with
/// [`ResolvedDeployment::validate`]: both refuse what the agent could not
/// decide safely with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedDeployment {
    pub policy: DeploymentPolicy,
    #[serde(default)]
    pub windows: Vec<MaintenanceWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<ResolvedDeployment>>,
}

/// A deployment the agent cannot decide with; `field` is the path in the
/// desired item (`policy`, `windows[1]`, `fallback.policy`, …).
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("`{field}`: {source}")]
    Malformed { field: String, source: serde_json::Error },
    #[error("`{field}`: policy `{policy}` has mode `{mode}` but no `{block}` block")]
    MissingBlock { field: String, policy: String, mode: &'static str, block: &'static str },
    #[error("`{field}`: policy `{policy}` names window `{window}`, and the item carries no window of that name")]
    MissingWindow { field: String, policy: String, window: String },
    #[error(
        "`{field}`: policy `{policy}` is scheduled-prompt and falls back to `{expected}`, but the item carries no fallback"
    )]
    MissingFallback { field: String, policy: String, expected: String },
    #[error("`{field}`: policy `{policy}` falls back to `{expected}`, but the fallback carried is `{found}`")]
    WrongFallback { field: String, policy: String, expected: String, found: String },
    #[error("`{field}`: policy `{policy}` has mode `{mode}`, which has no fallback, but one is carried")]
    UnexpectedFallback { field: String, policy: String, mode: &'static str },
    #[error("`{field}`: fallbacks nest deeper than {limit}")]
    TooDeep { field: String, limit: usize },
}

fn parse<T: serde::de::DeserializeOwned>(value: &serde_json::Value, field: &str) -> Result<T, DeploymentError> {
    T::deserialize(value).map_err(|source| DeploymentError::Malformed { field: field.to_owned(), source })
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() { field.to_owned() } else { format!("{prefix}.{field}") }
}

impl ResolvedDeployment {
    /// From a desired item's `policy`, `windows` and (optional) `fallback`
    /// JSON, checked with [`ResolvedDeployment::validate`].
    pub fn from_json(
        policy: &serde_json::Value,
        windows: &[serde_json::Value],
        fallback: Option<&serde_json::Value>,
    ) -> Result<Self, DeploymentError> {
        let policy: DeploymentPolicy = parse(policy, "policy")?;
        let windows = windows
            .iter()
            .enumerate()
            .map(|(index, window)| parse(window, &format!("windows[{index}]")))
            .collect::<Result<Vec<MaintenanceWindow>, _>>()?;
        let fallback = fallback
            .filter(|value| !value.is_null())
            .map(|value| parse::<ResolvedDeployment>(value, "fallback").map(Box::new))
            .transpose()?;
        let deployment = ResolvedDeployment { policy, windows, fallback };
        deployment.validate()?;
        Ok(deployment)
    }

    /// Refuses what the engine would not have produced and the agent could
    /// not decide safely with: a mode without its options block, a window
    /// named but not carried (deciding without it would mean "any time"), a
    /// fallback missing, mismatched, unexpected or nested too deep.
    pub fn validate(&self) -> Result<(), DeploymentError> {
        self.validate_at("", 0)
    }

    fn validate_at(&self, prefix: &str, depth: usize) -> Result<(), DeploymentError> {
        let policy = &self.policy;
        let policy_field = join(prefix, "policy");
        if depth > MAX_FALLBACK_DEPTH {
            return Err(DeploymentError::TooDeep { field: policy_field, limit: MAX_FALLBACK_DEPTH });
        }
        let missing = |block: &'static str| DeploymentError::MissingBlock {
            field: policy_field.clone(),
            policy: policy.name.clone(),
            mode: policy.mode.as_str(),
            block,
        };
        match policy.mode {
            DeploymentMode::ScheduledPrompt if policy.scheduled_prompt.is_none() => {
                return Err(missing("scheduledPrompt"));
            }
            DeploymentMode::Idle if policy.idle.is_none() => return Err(missing("idle")),
            DeploymentMode::Restart if policy.restart.is_none() => return Err(missing("restart")),
            _ => {}
        }
        for window in &policy.windows {
            if !self.windows.iter().any(|w| &w.name == window) {
                return Err(DeploymentError::MissingWindow {
                    field: join(prefix, "windows"),
                    policy: policy.name.clone(),
                    window: window.clone(),
                });
            }
        }
        let fallback_field = join(prefix, "fallback");
        match (&policy.scheduled_prompt, policy.mode, &self.fallback) {
            (Some(options), DeploymentMode::ScheduledPrompt, None) => Err(DeploymentError::MissingFallback {
                field: fallback_field,
                policy: policy.name.clone(),
                expected: options.fallback.clone(),
            }),
            (Some(options), DeploymentMode::ScheduledPrompt, Some(fallback)) => {
                if fallback.policy.name != options.fallback {
                    return Err(DeploymentError::WrongFallback {
                        field: join(&fallback_field, "policy"),
                        policy: policy.name.clone(),
                        expected: options.fallback.clone(),
                        found: fallback.policy.name.clone(),
                    });
                }
                fallback.validate_at(&fallback_field, depth + 1)
            }
            (_, mode, Some(_)) => Err(DeploymentError::UnexpectedFallback {
                field: fallback_field,
                policy: policy.name.clone(),
                mode: mode.as_str(),
            }),
            (_, _, None) => Ok(()),
        }
    }
}

/// What a user asked for an item, relayed by the engine from its audit log
/// (a snooze or an on-demand install made through another of the device's
/// channels, or before the agent's local state was lost). The agent
/// combines it with its own record: the larger snooze count and the later
/// snooze end win.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRequest {
    #[serde(default)]
    pub snoozes_used: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub snoozed_until: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub install_requested_at: Option<jiff::Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// What the engine emits for the DeploymentPolicies of
    /// `policies/deployment-policies.yaml`: each spec as the engine's
    /// serializer writes it (defaults filled in, `Option`s and empty lists
    /// left out where the engine skips them, `f64` as a float) plus `name`.
    fn engine_policies() -> Vec<Value> {
        vec![
            json!({
                "mode": "prompt",
                "windows": ["workstations-day"],
                "prompt": {
                    "timeout": "1m",
                    "maxSnoozes": 3,
                    "snoozeFor": "4h",
                    "deadline": "3d",
                    "message": "Security updates are ready. Save your work and choose Install, or snooze."
                },
                "reboot": "prompt",
                "adminOnly": false,
                "selfService": true,
                "name": "workstation-prompt"
            }),
            json!({
                "mode": "scheduled-prompt",
                "windows": ["workstations-day"],
                "prompt": {"timeout": "1m", "maxSnoozes": 2, "snoozeFor": "2h", "deadline": "2d", "message": "Updates are ready"},
                "scheduledPrompt": {
                    "promptWhen": {"after": "06:00"},
                    "timezone": "device",
                    "fallback": "workstation-idle",
                    "answerWithin": "10m"
                },
                "reboot": "prompt",
                "adminOnly": false,
                "selfService": false,
                "name": "workstation-morning-prompt"
            }),
            json!({
                "mode": "idle",
                "idle": {
                    "cpuBelowPercent": 10.0,
                    "cpuFor": "5m",
                    "noInputFor": "10m",
                    "noForegroundApps": true,
                    "networkBelowKbps": 200
                },
                "reboot": "never",
                "adminOnly": false,
                "selfService": false,
                "name": "workstation-idle"
            }),
            json!({
                "mode": "restart",
                "windows": ["servers-early", "servers-night"],
                "restart": {
                    "triggers": ["reboot", "cold-boot", "service-restart", "scheduled-restart"],
                    "services": ["nginx.service"],
                    "schedule": {"days": ["sun"], "at": "03:00"}
                },
                "reboot": "auto",
                "adminOnly": true,
                "selfService": false,
                "name": "server-restart"
            }),
            json!({
                "mode": "immediate",
                "windows": ["servers-early", "servers-night", "workstations-day"],
                "reboot": "auto",
                "adminOnly": true,
                "selfService": false,
                "name": "emergency"
            }),
            json!({
                "mode": "immediate",
                "windows": ["servers-early", "workstations-day"],
                "ignoreWindows": true,
                "reboot": "auto",
                "adminOnly": true,
                "selfService": false,
                "name": "zero-day"
            }),
        ]
    }

    /// The MaintenanceWindows of `policies/windows.yaml` as the engine emits
    /// them: blackout instants in UTC, omitted `days` filled with every day.
    fn engine_windows() -> Vec<Value> {
        let all_days = json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]);
        vec![
            json!({
                "timezone": "device",
                "intervals": [{"days": all_days, "start": "00:00", "end": "06:00"}],
                "blackouts": [{
                    "from": "2026-12-19T22:00:00Z",
                    "until": "2027-01-01T22:00:00Z",
                    "reason": "year-end freeze: nobody is around to fix a broken server"
                }],
                "name": "servers-early"
            }),
            json!({
                "timezone": "device",
                "intervals": [{"days": all_days, "start": "06:00", "end": "24:00"}],
                "blackouts": [{"from": "2026-12-19T22:00:00Z", "until": "2027-01-01T22:00:00Z", "reason": "year-end freeze"}],
                "name": "workstations-day"
            }),
            json!({
                "timezone": "Europe/Helsinki",
                "intervals": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "04:00"}],
                "blackouts": [{"from": "2026-12-19T22:00:00Z", "until": "2027-01-01T22:00:00Z", "reason": "year-end freeze"}],
                "name": "servers-night"
            }),
            json!({
                "timezone": "device",
                "intervals": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:00"}],
                "name": "business-hours"
            }),
        ]
    }

    #[test]
    fn every_example_policy_round_trips_as_the_engine_emits_it() {
        for value in engine_policies() {
            let policy: DeploymentPolicy = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(serde_json::to_value(&policy).unwrap(), value, "{}", policy.name);
        }
    }

    #[test]
    fn every_example_window_round_trips_as_the_engine_emits_it() {
        for value in engine_windows() {
            let window: MaintenanceWindow = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(serde_json::to_value(&window).unwrap(), value, "{}", window.name);
            window.schedule(Some("Europe/Helsinki")).unwrap();
        }
    }

    #[test]
    fn the_engines_defaults_fill_what_a_policy_leaves_out() {
        let policy: DeploymentPolicy =
            serde_json::from_value(json!({"name": "p", "mode": "prompt", "prompt": {}})).unwrap();
        assert_eq!(policy.reboot, RebootBehaviour::Prompt);
        assert!(!policy.admin_only && !policy.self_service);
        assert_eq!(policy.prompt, Some(PromptOptions::default()));
        assert_eq!(policy.prompt_options().timeout, Duration::from_secs(60));
        assert_eq!(policy.prompt_options().max_snoozes, 3);
        assert_eq!(policy.prompt_options().snooze_for, Duration::from_secs(4 * 3600));
        let scheduled: ScheduledPromptOptions =
            serde_json::from_value(json!({"promptWhen": {"before": "06:00"}, "fallback": "f"})).unwrap();
        assert_eq!(scheduled.timezone, "device");
        assert_eq!(scheduled.answer_within, Duration::from_secs(600));
        let schedule: RestartSchedule = serde_json::from_value(json!({"at": "03:00"})).unwrap();
        assert_eq!(schedule.days, Weekday::ALL.to_vec());
    }

    #[test]
    fn a_field_a_later_engine_adds_is_ignored_and_a_wrong_one_is_refused_and_named() {
        // DESIGN's compatibility rule: a field added within v1 does not make
        // an older agent refuse the whole desired state.
        let later = json!({"name": "p", "mode": "immediate", "quietHours": {"from": "22:00"}});
        let resolved = ResolvedDeployment::from_json(&later, &[], None).unwrap();
        assert_eq!(resolved.policy.mode, DeploymentMode::Immediate);
        let error = ResolvedDeployment::from_json(&json!({"name": "p", "mode": "sometimes"}), &[], None).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("`policy`:") && text.contains("sometimes"), "{text}");
        let error = ResolvedDeployment::from_json(
            &json!({"name": "p", "mode": "immediate"}),
            &[json!({"name": "w", "timezone": "UTC", "intervals": "always"})],
            None,
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("`windows[0]`:"), "{error}");
    }

    #[test]
    fn the_example_deployments_resolve_with_their_windows_and_fallbacks() {
        let policies = engine_policies();
        let windows = engine_windows();
        let windows_of = |policy: &Value| -> Vec<Value> {
            let names: Vec<&str> =
                policy["windows"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            windows.iter().filter(|w| names.contains(&w["name"].as_str().unwrap_or(""))).cloned().collect()
        };
        let idle = &policies[2];
        let fallback = json!({"policy": idle, "windows": windows_of(idle)});
        for policy in &policies {
            let fallback = (policy["mode"] == "scheduled-prompt").then_some(&fallback);
            let resolved = ResolvedDeployment::from_json(policy, &windows_of(policy), fallback).unwrap();
            assert_eq!(resolved.windows.len(), resolved.policy.windows.len());
        }
        let scheduled = &policies[1];
        let error = ResolvedDeployment::from_json(scheduled, &windows_of(scheduled), None).unwrap_err();
        assert!(matches!(error, DeploymentError::MissingFallback { .. }), "{error}");
        let error = ResolvedDeployment::from_json(scheduled, &[], Some(&fallback)).unwrap_err();
        assert!(matches!(error, DeploymentError::MissingWindow { .. }), "{error}");
        let wrong = json!({"policy": policies[4], "windows": windows_of(&policies[4])});
        let error = ResolvedDeployment::from_json(scheduled, &windows_of(scheduled), Some(&wrong)).unwrap_err();
        assert_eq!(error.to_string().split(':').next(), Some("`fallback.policy`"), "{error}");
        let error = ResolvedDeployment::from_json(idle, &[], Some(&fallback)).unwrap_err();
        assert!(matches!(error, DeploymentError::UnexpectedFallback { .. }), "{error}");
    }

    #[test]
    fn a_fallback_chain_is_bounded() {
        let mut chain = json!({"policy": {"name": "last", "mode": "immediate"}, "windows": []});
        for depth in 0..=MAX_FALLBACK_DEPTH {
            let next = if depth == 0 { "last".to_owned() } else { format!("p{}", depth - 1) };
            chain = json!({
                "policy": {"name": format!("p{depth}"), "mode": "scheduled-prompt",
                           "scheduledPrompt": {"promptWhen": {"after": "06:00"}, "fallback": next}},
                "windows": [],
                "fallback": chain
            });
        }
        let top = json!({"name": "top", "mode": "scheduled-prompt",
                         "scheduledPrompt": {"promptWhen": {"after": "06:00"}, "fallback": format!("p{MAX_FALLBACK_DEPTH}")}});
        let error = ResolvedDeployment::from_json(&top, &[], Some(&chain)).unwrap_err();
        assert!(matches!(error, DeploymentError::TooDeep { .. }), "{error}");
    }

    #[test]
    fn a_device_zone_resolves_device_windows() {
        let window: MaintenanceWindow =
            serde_json::from_value(json!({"name": "w", "timezone": "device", "intervals": []})).unwrap();
        assert_eq!(
            window.schedule(None).unwrap_err(),
            ZoneError::NeedsDeviceZone { field: "the timezone of window `w`".to_owned() }
        );
        assert!(matches!(window.schedule(Some("Mars/Olympus")), Err(ZoneError::UnknownZone { .. })));
        assert_eq!(window.schedule(Some("Europe/Helsinki")).unwrap().zone().iana_name(), Some("Europe/Helsinki"));
    }

    #[test]
    fn a_user_request_is_camel_case_with_defaults() {
        let request: UserRequest =
            serde_json::from_value(json!({"snoozesUsed": 2, "snoozedUntil": "2026-11-24T12:00:00Z"})).unwrap();
        assert_eq!(request.snoozes_used, 2);
        assert_eq!(request.install_requested_at, None);
        assert_eq!(serde_json::from_value::<UserRequest>(json!({})).unwrap(), UserRequest::default());
        // A field a later engine adds is ignored (compatibility).
        assert_eq!(serde_json::from_value::<UserRequest>(json!({"snoozes": 1})).unwrap(), UserRequest::default());
    }
}
