//! Package version ordering by each manager's own rules, shared by the
//! engine (applicability, `versionAtLeast`) and the agent (detection), so
//! both always agree on whether a package is at or above a fixed version.

use std::cmp::Ordering;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whose rules compare two versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionScheme {
    /// Debian's `[epoch:]upstream[-revision]`, as `dpkg --compare-versions`.
    Dpkg,
    /// RPM's `[epoch:]version[-release]`, as `rpmvercmp`.
    Rpm,
    /// Dotted numbers (`10.0.22631.4460`), missing parts count as 0.
    Windows,
}

impl VersionScheme {
    pub fn parse(name: &str) -> Option<VersionScheme> {
        match name {
            "dpkg" | "deb" => Some(VersionScheme::Dpkg),
            "rpm" => Some(VersionScheme::Rpm),
            "windows" => Some(VersionScheme::Windows),
            _ => None,
        }
    }
}

/// Compares `a` with `b` under `scheme`.
pub fn compare_versions(a: &str, b: &str, scheme: VersionScheme) -> Ordering {
    match scheme {
        VersionScheme::Dpkg => dpkg_compare(a, b),
        VersionScheme::Rpm => rpm_compare(a, b),
        VersionScheme::Windows => windows_compare(a, b),
    }
}

/// `a` is at least `b`.
pub fn version_at_least(a: &str, b: &str, scheme: VersionScheme) -> bool {
    compare_versions(a, b, scheme) != Ordering::Less
}

/// Splits `[epoch:]rest`; a missing or malformed epoch is 0.
fn split_epoch(version: &str) -> (u64, &str) {
    match version.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    }
}

fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let (epoch_a, rest_a) = split_epoch(a.trim());
    let (epoch_b, rest_b) = split_epoch(b.trim());
    let split = |rest: &str| match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream.to_owned(), revision.to_owned()),
        None => (rest.to_owned(), String::new()),
    };
    let (upstream_a, revision_a) = split(rest_a);
    let (upstream_b, revision_b) = split(rest_b);
    epoch_a
        .cmp(&epoch_b)
        .then_with(|| dpkg_verrevcmp(&upstream_a, &upstream_b))
        .then_with(|| dpkg_verrevcmp(&revision_a, &revision_b))
}

/// dpkg's character order: `~` before everything (even the end), then the
/// end and digits, then letters, then everything else.
fn dpkg_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn dpkg_verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit prefix, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let order_a = dpkg_order(a.get(i).copied());
            let order_b = dpkg_order(b.get(j).copied());
            if order_a != order_b {
                return order_a.cmp(&order_b);
            }
            i += 1;
            j += 1;
        }
        // Then the digit runs, as numbers.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_difference == Ordering::Equal {
                first_difference = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

fn rpm_compare(a: &str, b: &str) -> Ordering {
    let (epoch_a, rest_a) = split_epoch(a.trim());
    let (epoch_b, rest_b) = split_epoch(b.trim());
    let split = |rest: &str| match rest.rsplit_once('-') {
        Some((version, release)) => (version.to_owned(), Some(release.to_owned())),
        None => (rest.to_owned(), None),
    };
    let (version_a, release_a) = split(rest_a);
    let (version_b, release_b) = split(rest_b);
    epoch_a.cmp(&epoch_b).then_with(|| rpmvercmp(&version_a, &version_b)).then_with(|| match (release_a, release_b) {
        // A missing release matches any (rpm's comparison of EVRs).
        (Some(a), Some(b)) => rpmvercmp(&a, &b),
        _ => Ordering::Equal,
    })
}

/// RPM's `rpmvercmp`: alternating digit and letter segments, separators
/// ignored, `~` sorting before anything and `^` after the end.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && separator(a[i]) {
            i += 1;
        }
        while j < b.len() && separator(b[j]) {
            j += 1;
        }
        // Tilde: older than anything, even the end.
        match (a.get(i) == Some(&b'~'), b.get(j) == Some(&b'~')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // Caret: newer than the end, older than anything else.
        match (a.get(i) == Some(&b'^'), b.get(j) == Some(&b'^')) {
            (true, true) => {
                i += 1;
                j += 1;
                continue;
            }
            (true, false) => return if j >= b.len() { Ordering::Greater } else { Ordering::Less },
            (false, true) => return if i >= a.len() { Ordering::Less } else { Ordering::Greater },
            _ => {}
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let take = |s: &[u8], mut k: usize| {
            let start = k;
            while k < s.len() && if numeric { s[k].is_ascii_digit() } else { s[k].is_ascii_alphabetic() } {
                k += 1;
            }
            (start, k)
        };
        let (start_a, end_a) = take(a, i);
        let (start_b, end_b) = take(b, j);
        if start_b == end_b {
            // Segments of different kinds: a number is newer than letters.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (mut seg_a, mut seg_b) = (&a[start_a..end_a], &b[start_b..end_b]);
        let ordering = if numeric {
            while seg_a.first() == Some(&b'0') {
                seg_a = &seg_a[1..];
            }
            while seg_b.first() == Some(&b'0') {
                seg_b = &seg_b[1..];
            }
            seg_a.len().cmp(&seg_b.len()).then_with(|| seg_a.cmp(seg_b))
        } else {
            seg_a.cmp(seg_b)
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
        i = end_a;
        j = end_b;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

fn windows_compare(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u64> { v.trim().split('.').map(|p| p.trim().parse().unwrap_or(0)).collect() };
    let (pa, pb) = (parts(a), parts(b));
    (0..pa.len().max(pb.len()))
        .map(|k| pa.get(k).copied().unwrap_or(0).cmp(&pb.get(k).copied().unwrap_or(0)))
        .find(|o| *o != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rpm_matches_rpmvercmp_cases() {
        // From rpm's own test suite (rpmvercmp.at).
        for (a, b, expected) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0", "1.0", Greater),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("8", "xyz.4", Greater),
            ("5.6p1", "6.5p1", Less),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("1.0aa", "1.0a", Greater),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "a", Equal),
            ("a+", "a_", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^git1", "1.0^git2", Less),
        ] {
            assert_eq!(rpmvercmp(a, b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn rpm_compares_epoch_version_release() {
        assert_eq!(compare_versions("1:3.2.2-6.el9_5.1", "3.2.2-6.el9_5.1", VersionScheme::Rpm), Greater);
        assert_eq!(compare_versions("1:3.2.2-6.el9_5.1", "1:3.2.2-6.el9_5", VersionScheme::Rpm), Greater);
        assert_eq!(compare_versions("1:0.17-65.el7_6", "1:0.17-64.el7", VersionScheme::Rpm), Greater);
        assert!(version_at_least("1:1.9.5p2-10.el9_6.1", "1:1.9.5p2-10.el9_6.1", VersionScheme::Rpm));
    }

    #[test]
    fn windows_versions_compare_numerically() {
        assert_eq!(compare_versions("10.0.22631.4460", "10.0.22631.4459", VersionScheme::Windows), Greater);
        assert_eq!(compare_versions("10.0", "10.0.0.0", VersionScheme::Windows), Equal);
        assert_eq!(compare_versions("9.10", "9.9", VersionScheme::Windows), Greater);
    }

    /// dpkg itself is the oracle: every pair is compared by
    /// `dpkg --compare-versions` too (RELIABILITY: real parts).
    #[test]
    fn dpkg_matches_dpkg_compare_versions() {
        let versions = [
            "1.0",
            "1.0-1",
            "1.0-0",
            "1.0.0",
            "1:1.0",
            "0:1.0",
            "1.0~rc1",
            "1.0~~",
            "1.0~",
            "1.0+b1",
            "1.0a",
            "1.0.a",
            "1.00",
            "1.01",
            "1.1",
            "2",
            "10",
            "1.0-1ubuntu1",
            "1.0-1ubuntu1.1",
            "3.0.15-1~deb12u1",
            "3.0.15-1",
            "3.0.11-1~deb12u2",
            "2:8.2.3995-1ubuntu2.19",
            "2:9.1.0016-1ubuntu7.3",
            "7.88.1-10+deb12u9",
            "7.88.1-10+deb12u10",
            "1.2.3-4+b",
            "1.2.3-4.1",
            "1.2.3-4",
            "0.0",
            "0",
            "a",
            "a1",
            "1a",
            "1.0-1~bpo1",
            "1.0-1+deb1",
        ];
        let mut pairs = Vec::new();
        for a in versions {
            for b in versions {
                pairs.push((a, b));
            }
        }
        let mut failures = Vec::new();
        for (a, b) in pairs {
            let ours = dpkg_compare(a, b);
            let relation = match ours {
                Less => "lt",
                Equal => "eq",
                Greater => "gt",
            };
            let status = std::process::Command::new("dpkg")
                .args(["--compare-versions", a, relation, b])
                .status()
                .expect("dpkg is the oracle for these tests; install it");
            if !status.success() {
                failures.push(format!("{a} {relation} {b}"));
            }
        }
        assert!(failures.is_empty(), "dpkg disagrees: {failures:?}");
    }
}
