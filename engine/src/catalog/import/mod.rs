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
        FeedFormat::Osv => parse_osv(bytes)?,
    };
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
    Ok(feed)
}

pub(super) fn format_name(format: FeedFormat) -> &'static str {
    match format {
        FeedFormat::Patchward => "patchward feed JSON",
        FeedFormat::Csaf => "CSAF 2.0 JSON",
        FeedFormat::Osv => "OSV JSON",
    }
}

pub(super) fn invalid(format: FeedFormat, reason: String) -> Refusal {
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

/// CSAF and OSV files hold one document, or a JSON array of them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(Box<T>),
}

pub(super) fn json_one_or_many<T: serde::de::DeserializeOwned>(
    format: FeedFormat,
    bytes: &[u8],
) -> Result<Vec<T>, Refusal> {
    Ok(match json::<OneOrMany<T>>(format, bytes)? {
        OneOrMany::Many(items) => items,
        OneOrMany::One(item) => vec![*item],
    })
}

pub(super) fn timestamp(format: FeedFormat, field: &str, text: &str) -> Result<jiff::Timestamp, Refusal> {
    text.parse::<jiff::Timestamp>().map_err(|e| invalid(format, format!("`{field}` is not an RFC 3339 instant: {e}")))
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
