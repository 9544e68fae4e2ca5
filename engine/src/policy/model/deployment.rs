use patchward_api::{Duration, LocalTime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Ref;
use crate::policy::yaml::Spanned;

/// How and when an approved item is installed on a device.
///
/// `mode` picks one of five strategies; the options block of the same name
/// tunes it (`prompt` also serves `scheduled-prompt`). A block for another
/// mode is an error, so a reviewer never reads options that do nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentPolicySpec {
    pub mode: Spanned<DeploymentMode>,
    /// Install only inside these maintenance windows; none means any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Spanned<PromptOptions>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_prompt: Option<Spanned<ScheduledPromptOptions>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Spanned<IdleOptions>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Spanned<RestartOptions>>,
    /// `immediate` only: install outside the windows too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_windows: Option<Spanned<bool>>,
    /// `immediate` only, with `ignoreWindows`: install during blackouts too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_blackouts: Option<Spanned<bool>>,
    #[serde(default)]
    pub reboot: RebootBehaviour,
    /// Users can neither defer nor cancel.
    #[serde(default)]
    pub admin_only: bool,
    /// Users may install on demand from the portal.
    #[serde(default)]
    pub self_service: bool,
}

/// The five deployment strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentMode {
    /// Ask the user; they may snooze within limits until the deadline.
    Prompt,
    /// Ask only on one side of a time of day; otherwise use the fallback.
    ScheduledPrompt,
    /// Install when the device has been idle long enough.
    Idle,
    /// Install at a reboot, cold boot, service restart or scheduled restart.
    Restart,
    /// Install as soon as a window allows.
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RebootBehaviour {
    Never,
    #[default]
    Prompt,
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromptOptions {
    /// How long the prompt waits for an answer before it counts as ignored.
    #[serde(default = "default_prompt_timeout")]
    pub timeout: Spanned<Duration>,
    #[serde(default = "default_max_snoozes")]
    pub max_snoozes: u32,
    #[serde(default = "default_snooze_for")]
    pub snooze_for: Spanned<Duration>,
    /// After this long from the item's not-before, the install is mandatory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Spanned<Duration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn default_prompt_timeout() -> Spanned<Duration> {
    Spanned::new(Duration::from_secs(60), crate::diagnostics::Pos::UNKNOWN)
}

fn default_max_snoozes() -> u32 {
    3
}

fn default_snooze_for() -> Spanned<Duration> {
    Spanned::new(Duration::from_secs(4 * 3600), crate::diagnostics::Pos::UNKNOWN)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduledPromptOptions {
    /// The side of the day on which the user is asked.
    pub prompt_when: Spanned<PromptWhen>,
    /// An IANA zone or `device`.
    #[serde(default = "device_zone")]
    pub timezone: Spanned<String>,
    /// The DeploymentPolicy applied outside the prompting hours, or when
    /// nobody answers within `answerWithin`.
    pub fallback: Ref,
    #[serde(default = "default_answer_within")]
    pub answer_within: Spanned<Duration>,
}

fn device_zone() -> Spanned<String> {
    Spanned::new("device".to_owned(), crate::diagnostics::Pos::UNKNOWN)
}

fn default_answer_within() -> Spanned<Duration> {
    Spanned::new(Duration::from_secs(600), crate::diagnostics::Pos::UNKNOWN)
}

/// `after: "06:00"` prompts from 06:00 to midnight, `before: "06:00"` from
/// midnight to 06:00; both give the part of the day between them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromptWhen {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<LocalTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<LocalTime>,
}

/// Every condition given must hold, each for its time. At least one is needed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdleOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_below_percent: Option<Spanned<f64>>,
    /// How long the CPU must stay below `cpuBelowPercent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_for: Option<Spanned<Duration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_input_for: Option<Spanned<Duration>>,
    #[serde(default)]
    pub no_foreground_apps: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_below_kbps: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestartOptions {
    pub triggers: Spanned<Vec<RestartTrigger>>,
    /// systemd units (or Windows services) whose restart is a trigger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// When `scheduled-restart` fires.
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
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestartSchedule {
    #[serde(default = "all_days")]
    pub days: Vec<patchward_api::Weekday>,
    pub at: LocalTime,
}

fn all_days() -> Vec<patchward_api::Weekday> {
    patchward_api::Weekday::ALL.to_vec()
}
