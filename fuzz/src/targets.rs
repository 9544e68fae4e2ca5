//! The fuzz targets' bodies: each takes one input and checks what must
//! hold for it (no panic, and the properties asserted). The AFL binaries in
//! `src/bin` call them; the main workspace's `fuzz_regressions` test
//! includes this file and replays the committed corpora and every crash
//! ever found (`fuzz/regressions/TARGET/`) through them, without AFL.

/// The input as text, or `None` when it is not UTF-8 (every parser under
/// test reads text, and the byte-level checks happen before them).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Two strings from one input, split at the first newline.
pub fn pair(data: &[u8]) -> Option<(&str, &str)> {
    text(data)?.split_once('\n')
}

/// One input in, a panic when something that must hold does not.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and corpus folder.
pub const TARGETS: [(&str, Target); 11] = [
    ("apt_output", apt_output),
    ("cel", cel),
    ("desired_state", desired_state),
    ("dnf_output", dnf_output),
    ("dpkg_status", dpkg_status),
    ("feed_csaf", feed_csaf),
    ("feed_osv", feed_osv),
    ("feed_patchward", feed_patchward),
    ("policy", policy),
    ("rpm_query", rpm_query),
    ("versions", versions),
];

/// The agent's readers of apt's output: `apt-cache show` records and
/// `--print-uris` lines (a fetch always carries a sha256).
pub fn apt_output(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = patchward_agent::repo::apt::parse_records(text);
    if let Ok(fetches) = patchward_agent::repo::apt::parse_uris(text, &[]) {
        assert!(fetches.iter().all(|f| !f.url.is_empty() && !f.file.is_empty()));
    }
}

/// CEL validation: any text, in either scope, is checked without a panic
/// and within the cost limits' time (AFL's timeout catches a hang).
pub fn cel(data: &[u8]) {
    use patchward::expr::{ExprLimits, ExprScope, check_expressions};
    let Some(text) = text(data) else { return };
    let problems = check_expressions(&[(text, ExprScope::Patch), (text, ExprScope::Device)], &ExprLimits::default());
    assert_eq!(problems.len(), 2, "one answer per expression");
}

/// The agent's desired-state decoder and trust: with a first byte of 0 the
/// rest is an envelope as the engine would send it (forged: it must never
/// be accepted); otherwise the rest is a payload the engine's key signs,
/// which the agent accepts only for its own device, unexpired.
pub fn desired_state(data: &[u8]) {
    use patchward_api::dsse::{DESIRED_STATE_TYPE, Envelope, sign};
    let Some((mode, rest)) = data.split_first() else { return };
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let now: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
    let envelope = match mode {
        0 => match serde_json::from_slice::<Envelope>(rest) {
            Ok(envelope) => envelope,
            Err(_) => return,
        },
        _ => sign(DESIRED_STATE_TYPE, rest, &key),
    };
    let accepted = patchward_agent::trust::accept(&envelope, &key.verifying_key(), "ws-01", None, now);
    match (mode, accepted) {
        (0, Ok(_)) => panic!("a forged envelope was accepted"),
        (_, Ok(state)) => assert!(state.device == "ws-01" && state.expires_at > now),
        (_, Err(_)) => {}
    }
}

/// The agent's readers of dnf's output: index records and the transaction
/// table a simulation prints (whose removals refuse a transaction).
pub fn dnf_output(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = patchward_agent::repo::dnf::parse_records(text);
    if let Ok(Some(transaction)) = patchward_agent::repo::dnf::parse_transaction(text) {
        let _ = transaction.removals();
    }
}

/// The agent's reader of dpkg's status file and its `Source:` field.
pub fn dpkg_status(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for record in patchward_agent::inventory::parse_dpkg_status(text) {
        assert!(!record.name.is_empty(), "{record:?}");
    }
    let _ = patchward_agent::inventory::parse_dpkg_source(text);
}

/// The csaf feed importer: any bytes are a feed or a refusal, never a panic;
/// an accepted feed holds unique, non-empty patch ids within the limit.
pub fn feed_csaf(data: &[u8]) {
    feed(patchward::policy::model::FeedFormat::Csaf, data);
}

/// The osv feed importer: any bytes are a feed or a refusal, never a panic;
/// an accepted feed holds unique, non-empty patch ids within the limit.
pub fn feed_osv(data: &[u8]) {
    feed(patchward::policy::model::FeedFormat::Osv, data);
}

/// The patchward feed importer: any bytes are a feed or a refusal, never a panic;
/// an accepted feed holds unique, non-empty patch ids within the limit.
pub fn feed_patchward(data: &[u8]) {
    feed(patchward::policy::model::FeedFormat::Patchward, data);
}

/// The policy loader and validation: one policy file, read, parsed and
/// validated as a repository of one file. Nothing may panic, and a
/// repository with errors never yields a policy.
pub fn policy(data: &[u8]) {
    use patchward::policy::source::{SourceFile, SourceFiles};
    let file = SourceFile {
        display_path: "fuzz/policy.yaml".into(),
        relative_path: "policy.yaml".into(),
        bytes: data.to_vec(),
    };
    let files = SourceFiles { files: vec![file], diagnostics: Vec::new(), commit: None };
    let load = patchward::policy::load_files(files, &patchward::policy::PolicyLimits::default());
    let errors = patchward::diagnostics::has_errors(&load.diagnostics);
    assert_eq!(load.policy.is_some(), !errors, "a policy exists exactly when there is no error");
}

/// The agent's reader of `rpm --query` output and of SOURCERPM names.
pub fn rpm_query(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for record in patchward_agent::inventory::parse_rpm_query(text) {
        assert!(!record.name.is_empty(), "{record:?}");
    }
    let _ = patchward_agent::inventory::parse_source_rpm(text);
}

/// Version comparison (dpkg, rpm, Windows): total, antisymmetric and
/// reflexive on any two strings, so sorting and "meets the fix" never
/// disagree with themselves.
pub fn versions(data: &[u8]) {
    use patchward_api::{VersionScheme, compare_versions};
    let Some((a, b)) = pair(data) else { return };
    for scheme in [VersionScheme::Dpkg, VersionScheme::Rpm, VersionScheme::Windows] {
        let forward = compare_versions(a, b, scheme);
        assert_eq!(forward, compare_versions(b, a, scheme).reverse(), "{scheme:?} {a:?} {b:?}");
        assert_eq!(compare_versions(a, a, scheme), std::cmp::Ordering::Equal, "{scheme:?} {a:?}");
    }
}

/// One importer's body: a feed or a refusal, never a panic; an accepted
/// feed holds unique, non-empty patch ids within the limit.
fn feed(format: patchward::policy::model::FeedFormat, data: &[u8]) {
    let limits = patchward::catalog::FeedLimits::default();
    if let Ok(feed) = patchward::catalog::import::parse(format, data, &limits) {
        assert!(feed.patches.len() <= limits.max_patches);
        let mut ids: Vec<&str> = feed.patches.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        assert!(ids.windows(2).all(|w| w[0] != w[1]) && ids.iter().all(|id| !id.trim().is_empty()));
    }
}
