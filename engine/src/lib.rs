//! patchward's engine library: the policy model and its validation, the
//! patch catalog and its store, the planner, and the daemon (`serve`): the
//! reconciler, the served desired states and the HTTP API; and `demo`, the
//! parts of `patchward demo`'s office on loopback.
//!
//! See ARCHITECTURE.md at the repository root for the code map and the
//! invariants each module keeps.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod demo;
pub mod diagnostics;
pub mod expr;
pub mod follow;
pub mod keys;
pub mod plan;
pub mod policy;
pub mod schema;
pub mod store;
