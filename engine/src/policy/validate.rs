//! Semantic validation: what YAML and serde cannot know. Names, references,
//! CEL, time zones, windows, mode options, URLs and keys. Every problem is
//! collected; nothing stops at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use base64::Engine as _;
use patchward_api::{Duration, LocalTime};

use super::load::LoadedDocument;
use super::model::*;
use super::yaml::{Spanned, position_in_scalar};
use super::{Named, Policy, SCOPE_ALL};
use crate::diagnostics::{Diagnostic, Pos, suggestion};
use crate::expr::{ExprLimits, ExprScope, check_expressions};

/// Validates documents already parsed. Returns the diagnostics and, built
/// from the same documents, the policy (the caller drops it on errors).
///
/// `invalid_names` are documents that exist but failed to parse; references
/// to them are not errors of their own.
pub fn validate(
    documents: &[LoadedDocument],
    invalid_names: &[(Kind, String)],
    texts: &BTreeMap<String, String>,
    expr_limits: &ExprLimits,
) -> (Vec<Diagnostic>, Option<Policy>) {
    let mut v = Validator {
        diagnostics: Vec::new(),
        names: BTreeMap::new(),
        invalid_names: invalid_names.iter().map(|(kind, name)| (*kind, name.as_str())).collect(),
        expressions: Vec::new(),
    };
    v.index(documents);
    for doc in documents {
        v.check_document(doc);
    }
    v.check_fallback_cycles(documents);
    v.check_priorities(documents);
    v.check_expressions(texts, expr_limits);
    let policy = build_policy(documents);
    (v.diagnostics, Some(policy))
}

struct PendingExpr<'a> {
    doc: &'a LoadedDocument,
    expr: &'a CelExpr,
    scope: ExprScope,
}

struct Validator<'a> {
    diagnostics: Vec<Diagnostic>,
    /// The first document of each kind and name.
    names: BTreeMap<Kind, BTreeMap<&'a str, &'a LoadedDocument>>,
    invalid_names: BTreeSet<(Kind, &'a str)>,
    expressions: Vec<PendingExpr<'a>>,
}

fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn location(doc: &LoadedDocument, pos: Pos) -> String {
    format!("{}:{}:{}", doc.path, pos.line, pos.col)
}

impl<'a> Validator<'a> {
    fn error(&mut self, doc: &LoadedDocument, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(&*doc.path, pos.or(doc.pos), message));
    }

    fn warning(&mut self, doc: &LoadedDocument, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(&*doc.path, pos.or(doc.pos), message));
    }

    fn index(&mut self, documents: &'a [LoadedDocument]) {
        for doc in documents {
            let kind = doc.doc.kind.value;
            let name = &doc.doc.metadata.name;
            if doc.doc.api_version.value != API_VERSION {
                let message = format!(
                    "unsupported apiVersion `{}`; this engine reads `{API_VERSION}`",
                    doc.doc.api_version.value
                );
                self.error(doc, doc.doc.api_version.pos, message);
            }
            if !is_valid_name(name) {
                self.error(
                    doc,
                    name.pos,
                    format!(
                        "invalid name `{}`: use lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit",
                        name.value
                    ),
                );
            }
            if kind == Kind::Scope && name.value == SCOPE_ALL {
                self.error(doc, name.pos, "the scope `all` is built in (every device is in it); choose another name");
            }
            let by_name = self.names.entry(kind).or_default();
            if kind == Kind::Settings
                && let Some(first) = by_name.values().next().copied()
            {
                let at = location(first, first.doc.metadata.name.pos);
                self.error(
                    doc,
                    doc.doc.kind.pos,
                    format!("only one Settings document is allowed; the first is at {at}"),
                );
                continue;
            }
            match by_name.get(name.as_str()).copied() {
                Some(first) => {
                    let at = location(first, first.doc.metadata.name.pos);
                    self.error(doc, name.pos, format!("duplicate {kind} `{}`: already defined at {at}", name.value));
                }
                None => {
                    by_name.insert(name.as_str(), doc);
                }
            }
        }
    }

    fn exists(&self, kind: Kind, name: &str) -> bool {
        (kind == Kind::Scope && name == SCOPE_ALL)
            || self.names.get(&kind).is_some_and(|m| m.contains_key(name))
            || self.invalid_names.contains(&(kind, name))
    }

    /// Checks that `reference` names a document of `kind`.
    fn reference(&mut self, doc: &LoadedDocument, reference: &Ref, kind: Kind) {
        if self.exists(kind, reference) {
            return;
        }
        let mut candidates: Vec<&str> = self.names.get(&kind).map(|m| m.keys().copied().collect()).unwrap_or_default();
        candidates.extend(self.invalid_names.iter().filter(|(k, _)| *k == kind).map(|(_, name)| *name));
        if kind == Kind::Scope {
            candidates.push(SCOPE_ALL);
        }
        let hint = suggestion(reference, candidates.iter().copied());
        let elsewhere = Kind::ALL
            .iter()
            .find(|other| **other != kind && self.exists(**other, reference))
            .map(|other| format!(" (`{}` is a {other})", reference.value))
            .unwrap_or_default();
        self.error(doc, reference.pos, format!("unknown {kind} `{}`{hint}{elsewhere}", reference.value));
    }

    fn expression(&mut self, doc: &'a LoadedDocument, expr: &'a CelExpr, scope: ExprScope) {
        self.expressions.push(PendingExpr { doc, expr, scope });
    }

    fn check_document(&mut self, doc: &'a LoadedDocument) {
        match &doc.doc.spec {
            Spec::Scope(spec) => self.check_scope(doc, spec),
            Spec::MaintenanceWindow(spec) => self.check_window(doc, spec),
            Spec::DeploymentPolicy(spec) => self.check_deployment_policy(doc, spec),
            Spec::ApprovalRule(spec) => self.check_rule(doc, spec),
            Spec::Approval(spec) => self.check_approval(doc, spec),
            Spec::Exclusion(spec) => self.check_exclusion(doc, spec),
            Spec::CatalogSource(spec) => self.check_catalog_source(doc, spec),
            Spec::Location(spec) => self.check_location(doc, spec),
            Spec::Settings(_) => {}
            Spec::SoftwarePackage(spec) => self.check_package(doc, spec),
            Spec::SoftwareAssignment(spec) => self.check_assignment(doc, spec),
        }
    }

    fn check_scope(&mut self, doc: &'a LoadedDocument, spec: &'a ScopeSpec) {
        if let Some(selector) = &spec.selector {
            self.expression(doc, selector, ExprScope::Device);
        }
        if spec.selector.is_none() && spec.devices.is_empty() {
            self.warning(
                doc,
                doc.doc.metadata.name.pos,
                "this scope has neither a selector nor devices, so it is empty",
            );
        }
        let mut seen = BTreeSet::new();
        for device in &spec.devices {
            if device.trim().is_empty() {
                self.error(doc, device.pos, "a device id cannot be empty");
            } else if !seen.insert(device.as_str()) {
                self.warning(doc, device.pos, format!("device `{}` is listed twice", device.value));
            }
        }
    }

    fn time_zone(&mut self, doc: &LoadedDocument, zone: &Spanned<String>) {
        if zone.value == "device" || jiff::tz::db().get(&zone.value).is_ok() {
            return;
        }
        let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
        let mut hint = suggestion(&zone.value, names.iter().map(String::as_str));
        if hint.is_empty() {
            hint = "; use an IANA name such as `Europe/Helsinki` or `UTC`, or `device`".into();
        }
        self.error(doc, zone.pos, format!("unknown time zone `{}`{hint}", zone.value));
    }

    fn check_window(&mut self, doc: &LoadedDocument, spec: &MaintenanceWindowSpec) {
        self.time_zone(doc, &spec.timezone);
        if spec.intervals.is_empty() {
            self.warning(doc, doc.doc.metadata.name.pos, "this window has no intervals, so it is never open");
        }
        for interval in &spec.intervals {
            if interval.days.is_empty() {
                self.error(doc, interval.days.pos.or(interval.pos), "an interval needs at least one day");
            }
            let mut days = BTreeSet::new();
            for day in interval.days.iter() {
                if !days.insert(*day) {
                    self.warning(
                        doc,
                        interval.days.pos.or(interval.pos),
                        format!("{day:?} is listed twice").to_lowercase(),
                    );
                }
            }
            if interval.start.value == LocalTime::END_OF_DAY {
                self.error(doc, interval.start.pos, "an interval cannot start at 24:00; start at 00:00 instead");
            } else if interval.start.value == interval.end.value {
                self.error(
                    doc,
                    interval.end.pos,
                    format!(
                        "empty interval: it starts and ends at {}; for a whole day write start: \"00:00\", end: \"24:00\"",
                        interval.start.value
                    ),
                );
            }
        }
        for blackout in &spec.blackouts {
            let (from, until) = (blackout.from.value, blackout.until.value);
            if until == from {
                self.error(doc, blackout.until.pos, format!("empty blackout: it starts and ends at {from}"));
            } else if until < from {
                self.error(doc, blackout.until.pos, format!("blackout ends ({until}) before it starts ({from})"));
            }
        }
    }

    fn positive(&mut self, doc: &LoadedDocument, what: &str, value: &Spanned<Duration>) {
        if value.value == Duration::ZERO {
            self.error(doc, value.pos, format!("`{what}` must be longer than 0s"));
        }
    }

    fn check_deployment_policy(&mut self, doc: &LoadedDocument, spec: &DeploymentPolicySpec) {
        use DeploymentMode as M;
        let mode = spec.mode.value;
        for window in &spec.windows {
            self.reference(doc, window, Kind::MaintenanceWindow);
        }
        let blocks: [(&str, Option<Pos>, &[M]); 4] = [
            ("prompt", spec.prompt.as_ref().map(|b| b.pos), &[M::Prompt, M::ScheduledPrompt]),
            ("scheduledPrompt", spec.scheduled_prompt.as_ref().map(|b| b.pos), &[M::ScheduledPrompt]),
            ("idle", spec.idle.as_ref().map(|b| b.pos), &[M::Idle]),
            ("restart", spec.restart.as_ref().map(|b| b.pos), &[M::Restart]),
        ];
        for (block, pos, modes) in blocks {
            if let Some(pos) = pos
                && !modes.contains(&mode)
            {
                let for_modes: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
                self.error(
                    doc,
                    pos,
                    format!(
                        "`{block}` options apply to mode `{}`, but this policy's mode is `{}`",
                        for_modes.join("` or `"),
                        mode.as_str()
                    ),
                );
            }
        }
        for (field, value) in [("ignoreWindows", &spec.ignore_windows), ("ignoreBlackouts", &spec.ignore_blackouts)] {
            if let Some(value) = value
                && mode != M::Immediate
            {
                self.error(doc, value.pos, format!("`{field}` applies to mode `immediate` only"));
            }
        }
        if let Some(prompt) = &spec.prompt {
            self.positive(doc, "timeout", &prompt.timeout);
            if prompt.max_snoozes > 0 {
                self.positive(doc, "snoozeFor", &prompt.snooze_for);
            }
            if let Some(deadline) = &prompt.deadline {
                self.positive(doc, "deadline", deadline);
            }
        }
        match mode {
            M::ScheduledPrompt => match &spec.scheduled_prompt {
                None => self.error(
                    doc,
                    spec.mode.pos,
                    "mode `scheduled-prompt` needs a `scheduledPrompt` block with `promptWhen` and `fallback`",
                ),
                Some(options) => {
                    let when = &options.prompt_when;
                    match (when.after, when.before) {
                        (None, None) => self.error(doc, when.pos, "`promptWhen` needs `after`, `before` or both"),
                        (Some(after), Some(before)) if after == before => self.error(
                            doc,
                            when.pos,
                            format!("`promptWhen` is empty: after and before are both {after}"),
                        ),
                        _ => {}
                    }
                    self.time_zone(doc, &options.timezone);
                    self.positive(doc, "answerWithin", &options.answer_within);
                    if options.fallback.value == doc.doc.name() {
                        self.error(doc, options.fallback.pos, "a policy cannot be its own fallback");
                    } else {
                        self.reference(doc, &options.fallback, Kind::DeploymentPolicy);
                    }
                }
            },
            M::Idle => match &spec.idle {
                None => self.error(doc, spec.mode.pos, "mode `idle` needs an `idle` block with at least one condition"),
                Some(idle) => self.check_idle(doc, idle),
            },
            M::Restart => match &spec.restart {
                None => self.error(doc, spec.mode.pos, "mode `restart` needs a `restart` block with its `triggers`"),
                Some(restart) => self.check_restart(doc, restart),
            },
            M::Prompt | M::Immediate => {}
        }
    }

    fn check_idle(&mut self, doc: &LoadedDocument, idle: &Spanned<IdleOptions>) {
        let any = idle.cpu_below_percent.is_some()
            || idle.no_input_for.is_some()
            || idle.no_foreground_apps
            || idle.network_below_kbps.is_some();
        if !any {
            self.error(
                doc,
                idle.pos,
                "`idle` needs at least one condition: cpuBelowPercent, noInputFor, noForegroundApps or networkBelowKbps",
            );
        }
        if let Some(cpu) = &idle.cpu_below_percent
            && !(cpu.value > 0.0 && cpu.value <= 100.0)
        {
            self.error(doc, cpu.pos, format!("`cpuBelowPercent` must be above 0 and at most 100, not {}", cpu.value));
        }
        if let Some(cpu_for) = &idle.cpu_for
            && idle.cpu_below_percent.is_none()
        {
            self.error(doc, cpu_for.pos, "`cpuFor` needs `cpuBelowPercent`");
        }
        if let Some(no_input) = &idle.no_input_for {
            self.positive(doc, "noInputFor", no_input);
        }
    }

    fn check_restart(&mut self, doc: &LoadedDocument, restart: &Spanned<RestartOptions>) {
        let triggers = &restart.triggers;
        if triggers.is_empty() {
            self.error(
                doc,
                triggers.pos,
                "`triggers` needs at least one of reboot, cold-boot, service-restart, scheduled-restart",
            );
        }
        if triggers.contains(&RestartTrigger::ServiceRestart) && restart.services.is_empty() {
            self.error(doc, triggers.pos, "trigger `service-restart` needs `services`: the units whose restart counts");
        }
        if triggers.contains(&RestartTrigger::ScheduledRestart) && restart.schedule.is_none() {
            self.error(doc, triggers.pos, "trigger `scheduled-restart` needs a `schedule` (days and at)");
        }
        if !triggers.contains(&RestartTrigger::ScheduledRestart) && restart.schedule.is_some() {
            self.warning(doc, restart.pos, "`schedule` does nothing without the `scheduled-restart` trigger");
        }
        if !triggers.contains(&RestartTrigger::ServiceRestart) && !restart.services.is_empty() {
            self.warning(doc, restart.pos, "`services` does nothing without the `service-restart` trigger");
        }
    }

    fn check_rule(&mut self, doc: &'a LoadedDocument, spec: &'a ApprovalRuleSpec) {
        self.expression(doc, &spec.match_, ExprScope::Patch);
        match spec.action.value {
            RuleAction::Approve if spec.stages.is_empty() => {
                self.error(doc, spec.action.pos, "an approving rule needs at least one stage (a scope and a policy)")
            }
            RuleAction::Review | RuleAction::Hold if !spec.stages.is_empty() => self.warning(
                doc,
                spec.stages[0].pos,
                format!("stages are ignored: a `{:?}` rule approves nothing", spec.action.value).to_lowercase(),
            ),
            _ => {}
        }
        let mut previous_after = Duration::ZERO;
        for (index, stage) in spec.stages.iter().enumerate() {
            self.reference(doc, &stage.scope, Kind::Scope);
            self.reference(doc, &stage.policy, Kind::DeploymentPolicy);
            if stage.after.value < previous_after {
                self.warning(
                    doc,
                    stage.after.pos.or(stage.pos),
                    format!(
                        "stage {} starts after {}, earlier than the stage before it ({previous_after})",
                        index + 1,
                        stage.after.value
                    ),
                );
            }
            previous_after = stage.after.value;
            if let Some(deadline) = &stage.deadline {
                self.positive(doc, "deadline", deadline);
            }
            if let Some(gate) = &stage.gate {
                if index == 0 {
                    self.error(doc, gate.pos, "the first stage has no stage before it to gate on");
                }
                let rate = gate.max_failure_rate.value;
                if !(0.0..=1.0).contains(&rate) {
                    self.error(
                        doc,
                        gate.max_failure_rate.pos.or(gate.pos),
                        format!("`maxFailureRate` is a fraction from 0 to 1, not {rate}"),
                    );
                }
            }
        }
    }

    fn check_approval(&mut self, doc: &LoadedDocument, spec: &ApprovalSpec) {
        if spec.patches.is_empty() {
            self.error(doc, spec.patches.pos, "`patches` needs at least one patch id");
        }
        if spec.scopes.is_empty() {
            self.error(doc, spec.scopes.pos, "`scopes` needs at least one scope (`all` for every device)");
        }
        for scope in spec.scopes.iter() {
            self.reference(doc, scope, Kind::Scope);
        }
        self.reference(doc, &spec.policy, Kind::DeploymentPolicy);
        if let (Some(not_before), Some(deadline)) = (&spec.not_before, &spec.deadline)
            && deadline.value <= not_before.value
        {
            self.error(
                doc,
                deadline.pos,
                format!("deadline {} is not after notBefore {}", deadline.value, not_before.value),
            );
        }
    }

    fn check_exclusion(&mut self, doc: &'a LoadedDocument, spec: &'a ExclusionSpec) {
        match &spec.match_ {
            Some(expr) => self.expression(doc, expr, ExprScope::Patch),
            None if spec.patches.is_empty() => {
                self.error(doc, doc.doc.kind.pos, "an exclusion needs `match`, `patches` or both")
            }
            None => {}
        }
        for scope in &spec.scopes {
            self.reference(doc, scope, Kind::Scope);
        }
    }

    fn url(&mut self, doc: &LoadedDocument, field: &str, value: &Spanned<String>, schemes: &[&str]) {
        match url::Url::parse(value) {
            Ok(url) if schemes.contains(&url.scheme()) => {}
            Ok(url) => self.error(
                doc,
                value.pos,
                format!("`{field}` scheme `{}` is not supported; use {}", url.scheme(), schemes.join(", ")),
            ),
            Err(e) => self.error(doc, value.pos, format!("`{field}` is not a valid URL: {e}")),
        }
    }

    fn sha256(&mut self, doc: &LoadedDocument, value: &Spanned<String>) {
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.error(doc, value.pos, "`sha256` must be 64 hexadecimal digits");
        }
    }

    fn check_catalog_source(&mut self, doc: &LoadedDocument, spec: &CatalogSourceSpec) {
        self.url(doc, "url", &spec.url, &["https", "http", "file"]);
        if spec.interval.value < Duration::from_secs(60) {
            self.error(doc, spec.interval.pos, "`interval` must be at least 1m");
        }
        self.positive(doc, "timeout", &spec.timeout);
        if spec.max_bytes.value == 0 {
            self.error(doc, spec.max_bytes.pos, "`maxBytes` must be above 0");
        }
        if let Some(key) = &spec.public_key {
            let bytes = key.strip_prefix("ed25519:").map(|b64| base64::engine::general_purpose::STANDARD.decode(b64));
            match bytes {
                Some(Ok(bytes)) if bytes.len() == 32 => {}
                Some(Ok(bytes)) => self.error(
                    doc,
                    key.pos,
                    format!("`publicKey` decodes to {} bytes; an ed25519 public key is 32", bytes.len()),
                ),
                Some(Err(e)) => self.error(doc, key.pos, format!("`publicKey` is not valid base64: {e}")),
                None => self.error(doc, key.pos, "`publicKey` must be written `ed25519:BASE64`"),
            }
        }
        if let Some(sha) = &spec.sha256 {
            self.sha256(doc, sha);
        }
        if let Some(key) = &spec.openpgp_key {
            self.openpgp_key(doc, spec, key);
        }
        if spec.format == FeedFormat::Csaf && crate::catalog::provider::is_metadata_url(&spec.url) {
            for (field, set) in [("sha256", spec.sha256.is_some()), ("publicKey", spec.public_key.is_some())] {
                if set {
                    let message = format!(
                        "`{field}` does not apply to a CSAF provider: its documents are checked against their own \
                         .sha256/.sha512 files and `openpgpKey`"
                    );
                    self.error(doc, spec.url.pos, message);
                }
            }
        }
        let coverage = &spec.coverage;
        for (field, empty) in [
            ("platforms", coverage.platforms.as_ref().is_some_and(Vec::is_empty)),
            ("languages", coverage.languages.as_ref().is_some_and(Vec::is_empty)),
            ("categories", coverage.categories.as_ref().is_some_and(Vec::is_empty)),
        ] {
            if empty {
                self.warning(
                    doc,
                    doc.doc.metadata.name.pos,
                    format!(
                        "coverage `{field}` is an empty list, so this source covers nothing; leave it out to mean any"
                    ),
                );
            }
        }
    }

    /// `openpgpKey`: only CSAF documents carry OpenPGP signatures; an inline
    /// key must parse (with valid self-signatures); a key file must be named
    /// by an absolute path (read at sync, on the engine's machine).
    fn openpgp_key(&mut self, doc: &LoadedDocument, spec: &CatalogSourceSpec, key: &Spanned<String>) {
        use crate::catalog::openpgp::{KeyRef, PublicKey};
        if spec.format != FeedFormat::Csaf {
            self.error(doc, key.pos, "`openpgpKey` applies to `format: csaf` only (CSAF documents' `.asc` signatures)");
            return;
        }
        match KeyRef::of(key) {
            Err(e) => self.error(doc, key.pos, format!("`openpgpKey` {e}")),
            Ok(KeyRef::Armored(text)) => {
                if let Err(e) = PublicKey::parse(text.as_bytes()) {
                    self.error(doc, key.pos, format!("`openpgpKey` {e}"));
                }
            }
            Ok(KeyRef::Path(_)) => {}
        }
    }

    fn check_location(&mut self, doc: &LoadedDocument, spec: &LocationSpec) {
        if spec.networks.is_empty() {
            self.error(doc, doc.doc.metadata.name.pos, "`networks` needs at least one CIDR block");
        }
        for network in &spec.networks {
            if let Err(e) = ipnet::IpNet::from_str(network) {
                self.error(doc, network.pos, format!("`{}` is not a CIDR block like 10.20.0.0/16: {e}", network.value));
            }
        }
        for mirror in &spec.mirrors {
            self.url(doc, "mirrors", mirror, &["https", "http"]);
        }
        if let Some(cap) = &spec.max_bandwidth_kbps
            && cap.value == 0
        {
            self.error(doc, cap.pos, "`maxBandwidthKbps` must be above 0 (leave it out for no cap)");
        }
    }

    fn check_package(&mut self, doc: &LoadedDocument, spec: &SoftwarePackageSpec) {
        if spec.versions.is_empty() {
            self.error(doc, doc.doc.metadata.name.pos, "`versions` needs at least one version");
        }
        let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
        for version in &spec.versions {
            if let Some(first) = seen.insert(version.version.as_str(), version.version.pos) {
                self.error(
                    doc,
                    version.version.pos,
                    format!("version `{}` is listed twice (first at line {})", version.version.value, first.line),
                );
            }
            self.url(doc, "url", &version.url, &["https", "http", "file"]);
            self.sha256(doc, &version.sha256);
            for rule in version.detection.iter().flat_map(|d| &d.any_of) {
                if let DetectionRule::File(file) = rule {
                    self.sha256(doc, &file.sha256);
                }
            }
        }
    }

    fn check_assignment(&mut self, doc: &LoadedDocument, spec: &SoftwareAssignmentSpec) {
        self.reference(doc, &spec.package, Kind::SoftwarePackage);
        if spec.scopes.is_empty() {
            self.error(doc, spec.scopes.pos, "`scopes` needs at least one scope (`all` for every device)");
        }
        for scope in spec.scopes.iter() {
            self.reference(doc, scope, Kind::Scope);
        }
        self.reference(doc, &spec.policy, Kind::DeploymentPolicy);
        if let Some(version) = &spec.version
            && let Some(package) = self.names.get(&Kind::SoftwarePackage).and_then(|m| m.get(spec.package.as_str()))
            && let Spec::SoftwarePackage(package_spec) = &package.doc.spec
        {
            let versions: Vec<&str> = package_spec.versions.iter().map(|v| v.version.as_str()).collect();
            if !versions.contains(&version.as_str()) {
                let mut hint = suggestion(version, versions.iter().copied());
                if hint.is_empty() {
                    hint = format!("; it has {}", versions.join(", "));
                }
                self.error(
                    doc,
                    version.pos,
                    format!("package `{}` has no version `{}`{hint}", spec.package.value, version.value),
                );
            }
        }
    }

    /// A scheduled-prompt policy falls back to another policy; following
    /// fallbacks must end, or the agent could never decide.
    fn check_fallback_cycles(&mut self, documents: &'a [LoadedDocument]) {
        let fallbacks: BTreeMap<&str, (&LoadedDocument, &Ref)> = documents
            .iter()
            .filter_map(|doc| match &doc.doc.spec {
                Spec::DeploymentPolicy(spec) => spec
                    .scheduled_prompt
                    .as_ref()
                    .filter(|_| spec.mode.value == DeploymentMode::ScheduledPrompt)
                    .map(|options| (doc.doc.name(), (doc, &options.fallback))),
                _ => None,
            })
            .collect();
        let mut reported = BTreeSet::new();
        for start in fallbacks.keys() {
            let mut path = vec![*start];
            let mut current = *start;
            while let Some((_, next)) = fallbacks.get(current) {
                let next = next.as_str();
                if next == *start {
                    // Report each cycle once, at its alphabetically first member.
                    let mut members = path.clone();
                    members.sort();
                    if members[0] == *start && reported.insert(members.clone()) && path.len() > 1 {
                        let (doc, fallback) = fallbacks[start];
                        let mut cycle = path.clone();
                        cycle.push(start);
                        self.error(doc, fallback.pos, format!("fallback cycle: {}", cycle.join(" → ")));
                    }
                    break;
                }
                if path.contains(&next) {
                    break;
                }
                path.push(next);
                current = next;
            }
        }
    }

    /// DESIGN: on equal priorities the name that sorts first decides, and
    /// validate warns that the two overlap.
    fn check_priorities(&mut self, documents: &[LoadedDocument]) {
        let mut by_priority: BTreeMap<i64, Vec<&LoadedDocument>> = BTreeMap::new();
        for doc in documents {
            if let Spec::ApprovalRule(spec) = &doc.doc.spec {
                by_priority.entry(spec.priority.value).or_default().push(doc);
            }
        }
        for (priority, mut rules) in by_priority {
            rules.sort_by_key(|d| d.doc.name().to_owned());
            rules.dedup_by_key(|d| d.doc.name().to_owned());
            for pair in rules.windows(2) {
                let (first, second) = (pair[0], pair[1]);
                let Spec::ApprovalRule(spec) = &second.doc.spec else { continue };
                self.warning(
                    second,
                    spec.priority.pos.or(second.doc.metadata.name.pos),
                    format!(
                        "rules `{}` and `{}` share priority {priority}: where both match a patch, `{}` decides (its name sorts first)",
                        first.doc.name(),
                        second.doc.name(),
                        first.doc.name()
                    ),
                );
            }
        }
    }

    fn check_expressions(&mut self, texts: &BTreeMap<String, String>, limits: &ExprLimits) {
        let pending = std::mem::take(&mut self.expressions);
        let inputs: Vec<(&str, ExprScope)> = pending.iter().map(|p| (p.expr.as_str(), p.scope)).collect();
        let results = check_expressions(&inputs, limits);
        for (item, problems) in pending.iter().zip(results) {
            let text = texts.get(&*item.doc.path).map(String::as_str).unwrap_or_default();
            for problem in problems {
                let pos = position_in_scalar(text, item.expr.pos.or(item.doc.pos), problem.offset);
                self.error(item.doc, pos, problem.message);
            }
        }
    }
}

fn build_policy(documents: &[LoadedDocument]) -> Policy {
    fn put<T: Clone>(map: &mut BTreeMap<String, Named<T>>, doc: &LoadedDocument, spec: &T) {
        map.entry(doc.doc.name().to_owned()).or_insert_with(|| named(doc, spec));
    }
    fn named<T: Clone>(doc: &LoadedDocument, spec: &T) -> Named<T> {
        Named {
            name: doc.doc.name().to_owned(),
            path: doc.path.clone(),
            pos: doc.pos,
            metadata: doc.doc.metadata.clone(),
            spec: spec.clone(),
        }
    }
    let mut policy = Policy::default();
    for doc in documents {
        match &doc.doc.spec {
            Spec::Scope(s) => put(&mut policy.scopes, doc, s),
            Spec::MaintenanceWindow(s) => put(&mut policy.windows, doc, s),
            Spec::DeploymentPolicy(s) => put(&mut policy.deployment_policies, doc, s),
            Spec::ApprovalRule(s) => put(&mut policy.rules, doc, s),
            Spec::Approval(s) => put(&mut policy.approvals, doc, s),
            Spec::Exclusion(s) => put(&mut policy.exclusions, doc, s),
            Spec::CatalogSource(s) => put(&mut policy.catalog_sources, doc, s),
            Spec::Location(s) => put(&mut policy.locations, doc, s),
            Spec::Settings(s) => {
                if policy.settings.is_none() {
                    policy.settings = Some(named(doc, s));
                }
            }
            Spec::SoftwarePackage(s) => put(&mut policy.packages, doc, s),
            Spec::SoftwareAssignment(s) => put(&mut policy.assignments, doc, s),
        }
    }
    policy
}
