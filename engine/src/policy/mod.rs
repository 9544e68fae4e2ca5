//! The policy repository: its typed model, how it is read (folder or git
//! commit), parsed (YAML) and validated into a [`Policy`].
//!
//! Architecture invariant: a [`Policy`] exists only for a repository with no
//! errors, so nothing downstream (planner, reconciler, agents) ever sees
//! invalid policy.

pub mod load;
pub mod model;
pub mod recover;
pub mod source;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diagnostics::{Diagnostic, Pos};
use model::*;
pub use source::{PolicySource, SourceError, SourceLimits};

/// A document of one kind, by name, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Named<T> {
    pub name: String,
    pub path: Arc<str>,
    pub pos: Pos,
    pub metadata: Metadata,
    pub spec: T,
}

/// A valid policy revision: every document, indexed by kind and name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    pub scopes: BTreeMap<String, Named<ScopeSpec>>,
    pub windows: BTreeMap<String, Named<MaintenanceWindowSpec>>,
    pub deployment_policies: BTreeMap<String, Named<DeploymentPolicySpec>>,
    pub rules: BTreeMap<String, Named<ApprovalRuleSpec>>,
    pub approvals: BTreeMap<String, Named<ApprovalSpec>>,
    pub exclusions: BTreeMap<String, Named<ExclusionSpec>>,
    pub catalog_sources: BTreeMap<String, Named<CatalogSourceSpec>>,
    pub locations: BTreeMap<String, Named<LocationSpec>>,
    pub settings: Option<Named<SettingsSpec>>,
    pub packages: BTreeMap<String, Named<SoftwarePackageSpec>>,
    pub assignments: BTreeMap<String, Named<SoftwareAssignmentSpec>>,
}

/// The built-in scope every device is in.
pub const SCOPE_ALL: &str = "all";

/// Everything `validate` learns about a source.
#[derive(Debug)]
pub struct PolicyLoad {
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// Present exactly when there is no error.
    pub policy: Option<Policy>,
    /// The commit read, for a git revision.
    pub commit: Option<String>,
    /// How many documents were read.
    pub documents: usize,
    /// File texts by display path, for rendering.
    pub texts: BTreeMap<String, String>,
}

/// Limits on everything read from a policy repository.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyLimits {
    pub source: SourceLimits,
    pub yaml: yaml::YamlLimits,
    pub expr: crate::expr::ExprLimits,
}

/// Reads, parses and validates a policy source. `Err` means it could not be
/// read at all; problems with its content are diagnostics.
pub fn load_policy(source: &PolicySource, limits: &PolicyLimits) -> Result<PolicyLoad, SourceError> {
    Ok(load_files(source::read_source(source, &limits.source)?, limits))
}

/// Parses and validates files already read (`source::read_source`).
pub fn load_files(files: source::SourceFiles, limits: &PolicyLimits) -> PolicyLoad {
    let parsed = load::parse_files(&files.files, &limits.yaml);
    let documents = parsed.documents.len();
    // Recovered documents are invalid: checked with the rest so every error
    // shows, while the errors that made them invalid keep the policy out.
    let mut checked = parsed.documents.clone();
    checked.extend(parsed.recovered.iter().map(|r| r.document.clone()));
    let (mut diagnostics, policy) = validate::validate(&checked, &parsed.invalid_names, &parsed.texts, &limits.expr);
    diagnostics.retain(|d| !parsed.recovered.iter().any(|r| r.is_artifact(d)));
    diagnostics.extend(files.diagnostics);
    diagnostics.extend(parsed.diagnostics);
    diagnostics.sort();
    diagnostics.dedup();
    let policy = if crate::diagnostics::has_errors(&diagnostics) { None } else { policy };
    PolicyLoad { diagnostics, policy, commit: files.commit, documents, texts: parsed.texts }
}
