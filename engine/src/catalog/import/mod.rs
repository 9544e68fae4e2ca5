//! Importers: each turns one public format into an [`ImportedFeed`].

mod csaf;
mod osv;
mod patchward;

use std::collections::BTreeSet;

use super::feed::{ImportedFeed, Severity};
use super::{FeedLimits, Refusal};
use crate::policy::model::FeedFormat;

pub use csaf::parse_csaf;
pub use osv::parse_osv;
pub use patchward::parse_patchward;

/// Parses a feed of `format`, refusing what is malformed or too large.
pub fn parse(format: FeedFormat, bytes: &[u8], limits: &FeedLimits) -> Result<ImportedFeed, Refusal> {
    let feed = match format {
        FeedFormat::Patchward => parse_patchward(bytes)?,
        FeedFormat::Csaf => parse_csaf(bytes)?,
        FeedFormat::Osv => parse_osv(bytes, limits)?,
    };
    check_patches(format, &feed, limits)?;
    Ok(feed)
}

/// What every feed must satisfy, however it was read: within the patch
/// limit, and every id non-empty and unique.
pub fn check_patches(format: FeedFormat, feed: &ImportedFeed, limits: &FeedLimits) -> Result<(), Refusal> {
    if feed.patches.len() > limits.max_patches {
        return Err(invalid(format, format!("{} patches; the limit is {}", feed.patches.len(), limits.max_patches)));
    }
    let mut ids = BTreeSet::new();
    for patch in &feed.patches {
        if patch.id.trim().is_empty() {
            return Err(invalid(format, "a patch has an empty id".into()));
        }
        if !ids.insert(patch.id.as_str()) {
            return Err(invalid(format, format!("patch id {} appears twice", patch.id)));
        }
    }
    Ok(())
}

pub(crate) fn format_name(format: FeedFormat) -> &'static str {
    match format {
        FeedFormat::Patchward => "patchward feed JSON",
        FeedFormat::Csaf => "CSAF 2.0 JSON",
        FeedFormat::Osv => "OSV JSON",
    }
}

pub(crate) fn invalid(format: FeedFormat, reason: String) -> Refusal {
    Refusal::Invalid { format: format_name(format), reason }
}

/// Parses JSON with a nesting bound, so a hostile document cannot exhaust
/// the stack (serde_json's default recursion limit is 128).
pub(super) fn json<T: serde::de::DeserializeOwned>(format: FeedFormat, bytes: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format, e.to_string()))
}

/// The severity words vendors use (Red Hat's Critical/Important/Moderate/
/// Low, Ubuntu's priorities, CVSS qualitative ratings).
pub(super) fn severity_word(word: &str) -> Option<Severity> {
    match word.trim().to_ascii_lowercase().as_str() {
        "critical" => Some(Severity::Critical),
        "important" | "high" => Some(Severity::High),
        "moderate" | "medium" => Some(Severity::Medium),
        "low" => Some(Severity::Low),
        "negligible" | "none" | "informational" | "info" => Some(Severity::Informational),
        _ => None,
    }
}

/// `CVE-2024-1234` ids found in any of `texts` (OSV's `UBUNTU-CVE-…`
/// upstream ids included), deduplicated, in first-seen order.
pub(super) fn cve_ids<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for text in texts {
        let mut rest = text;
        while let Some(at) = rest.find("CVE-") {
            let candidate = &rest[at..];
            let length = 4 + candidate[4..].bytes().take_while(|b| b.is_ascii_digit() || *b == b'-').count();
            let id = candidate[..length].trim_end_matches('-');
            let parts: Vec<&str> = id.split('-').collect();
            if parts.len() == 3 && parts[1].len() == 4 && parts[2].len() >= 4 && !out.iter().any(|c| c == id) {
                out.push(id.to_owned());
            }
            rest = &candidate[4..];
        }
    }
    out
}

/// A record of a many-record text that does not parse: its name (its id, or
/// its place when it has none) and why.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RecordError {
    pub name: String,
    pub reason: String,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {} does not parse and is skipped: {}", self.name, self.reason)
    }
}

/// Splits a JSON text holding one record or an array of them into its
/// records, each parsed on its own, so that one malformed record costs only
/// itself. `name_of` finds a record's id in its text for the error. The
/// outer error is a text that is not JSON at all.
pub(super) fn split_records<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    name_of: fn(&str) -> Option<String>,
) -> Result<Vec<Result<T, RecordError>>, serde_json::Error> {
    let parse_one = |text: &str, place: String| {
        serde_json::from_str::<T>(text)
            .map_err(|e| RecordError { name: name_of(text).unwrap_or(place), reason: e.to_string() })
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let raw: Vec<&serde_json::value::RawValue> = serde_json::from_slice(bytes)?;
        return Ok(raw.iter().enumerate().map(|(i, r)| parse_one(r.get(), format!("#{}", i + 1))).collect());
    }
    // A lone record (a zip bundle's entry) is parsed in one pass; only a
    // failure looks again, to tell bad JSON from a bad record and name it.
    match serde_json::from_slice::<T>(bytes) {
        Ok(record) => Ok(vec![Ok(record)]),
        Err(e) if e.is_data() => {
            let name = std::str::from_utf8(bytes).ok().and_then(name_of).unwrap_or_else(|| "#1".into());
            Ok(vec![Err(RecordError { name, reason: e.to_string() })])
        }
        Err(e) => Err(e),
    }
}

/// [`split_records`] for a whole file: a record that does not parse becomes
/// a warning and the rest are kept; a text that is not JSON, or in which no
/// record parses, is refused, since nothing would import.
pub(super) fn parse_records<T: serde::de::DeserializeOwned>(
    format: FeedFormat,
    bytes: &[u8],
    name_of: fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<T>, Refusal> {
    let split = split_records(bytes, name_of).map_err(|e| invalid(format, e.to_string()))?;
    let total = split.len();
    let mut records = Vec::with_capacity(total);
    let mut errors = Vec::new();
    for result in split {
        match result {
            Ok(record) => records.push(record),
            Err(error) => errors.push(error),
        }
    }
    if records.is_empty()
        && let Some(first) = errors.first()
    {
        let reason = format!("none of its {total} records parses; record {}: {}", first.name, first.reason);
        return Err(invalid(format, reason));
    }
    warnings.extend(errors.iter().map(ToString::to_string));
    Ok(records)
}

/// Debug symbols, never an upgrade target: rpm's `-debuginfo`,
/// `-debugsource` and `-debuginfo-common-ARCH` packages, and Ubuntu's
/// `-dbgsym` ones (published apart, in the ddebs archive).
pub(super) fn is_debug_package(name: &str) -> bool {
    name.ends_with("-debuginfo")
        || name.ends_with("-debugsource")
        || name.contains("-debuginfo-common-")
        || name.ends_with("-dbgsym")
}

/// An RFC 3339 instant; the error names the field, for a record's warning.
pub(super) fn instant(field: &str, text: &str) -> Result<jiff::Timestamp, String> {
    text.parse::<jiff::Timestamp>().map_err(|e| format!("`{field}` is not an RFC 3339 instant: {e}"))
}

/// A revision from a modification time: seconds since the epoch.
pub(super) fn revision_of(time: jiff::Timestamp) -> u64 {
    u64::try_from(time.as_second()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cve_ids_wherever_they_are_written() {
        assert_eq!(
            cve_ids(["CVE-2024-9143", "UBUNTU-CVE-2024-9143", "see CVE-2024-12797.", "CVE-20-1", "GHSA-xxxx"]),
            ["CVE-2024-9143", "CVE-2024-12797"]
        );
    }

    #[test]
    fn maps_vendor_severity_words() {
        assert_eq!(severity_word("Important"), Some(Severity::High));
        assert_eq!(severity_word("Moderate"), Some(Severity::Medium));
        assert_eq!(severity_word("negligible"), Some(Severity::Informational));
        assert_eq!(severity_word("whatever"), None);
    }
}
