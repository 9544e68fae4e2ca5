//! Wire types shared by the patchward engine and the agent.
//!
//! Architecture invariant: this crate links neither git2, sled nor the CEL
//! interpreter, so the agent can depend on it freely. It holds the value types
//! whose text form is part of the contract (durations, local times, weekdays)
//! and, as later issues add them, the request and response bodies of the API.

pub mod agent_config;
pub mod deployment;
pub mod desired;
pub mod detection;
pub mod device;
pub mod dsse;
mod duration;
pub mod events;
pub mod fixes;
mod fleet;
mod labels;
pub mod logging;
mod time_of_day;
mod version;
mod weekday;
mod window;

pub use duration::{Duration, DurationError};
pub use fleet::{Device, Facts, Fleet, InstalledPackage, Inventory, PackageManager, Report, ReportStatus};
pub use labels::Labels;
pub use time_of_day::{LocalTime, LocalTimeError};
pub use version::{VersionScheme, compare_versions, version_at_least};
pub use weekday::Weekday;
pub use window::{IntervalRule, Transition, WindowSchedule};
