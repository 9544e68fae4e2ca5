//! The typed policy model: one Rust type per kind of document, as
//! DESIGN.md's "Policy repository" section fixes them.
//!
//! These types are the source of truth for the JSON Schemas in `schemas/`.
//! Field names are camelCase and unknown fields are refused (serde's
//! `deny_unknown_fields`). Values that are references to other documents or
//! CEL expressions carry their position, so that validation can point at them.

mod approval;
mod catalog_source;
mod common;
mod deployment;
mod document;
mod location;
mod scope;
mod settings;
mod software;
mod window;

pub use approval::*;
pub use catalog_source::*;
pub use common::*;
pub use deployment::*;
pub use document::*;
pub use location::*;
pub use scope::*;
pub use settings::*;
pub use software::*;
pub use window::*;
