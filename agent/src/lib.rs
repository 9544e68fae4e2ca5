//! The patchward endpoint agent as a library, so the binary stays thin and
//! the tests drive the same code the service runs.
//!
//! Architecture invariant: the agent links the wire-types crate
//! (`patchward-api`) and never git2, sled or the CEL interpreter.

pub mod cache;
pub mod client;
pub mod config;
pub mod converge;
pub mod decide;
pub mod detect;
pub mod download;
pub mod facts;
pub mod install;
pub mod inventory;
pub mod journal;
pub mod local;
pub mod notify;
pub mod observe;
pub mod outbox;
pub mod repo;
pub mod service;
pub mod state;
pub mod trust;
pub mod windows;
