//! CVSS base scores, computed from the vector exactly as the FIRST
//! specifications define them (3.0, 3.1 and 4.0), with RustSec's `cvss`
//! crate; checked in the tests against the specifications' own examples.

use std::str::FromStr;

use super::feed::Severity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CVSS vector `{vector}`: {reason}")]
pub struct CvssError {
    pub vector: String,
    pub reason: String,
}

/// The base score of a `CVSS:3.0/…`, `CVSS:3.1/…` or `CVSS:4.0/…` vector.
pub fn base_score(vector: &str) -> Result<f64, CvssError> {
    let error = |reason: String| CvssError { vector: vector.to_owned(), reason };
    if vector.starts_with("CVSS:4.0/") {
        let parsed = cvss::v4::Vector::from_str(vector).map_err(|e| error(e.to_string()))?;
        return Ok(parsed.score().value());
    }
    if vector.starts_with("CVSS:3.0/") || vector.starts_with("CVSS:3.1/") {
        let parsed = cvss::v3::Vector::from_str(vector).map_err(|e| error(e.to_string()))?;
        return Ok(parsed.base_score().value());
    }
    Err(error("only CVSS 3.0, 3.1 and 4.0 vectors are scored".into()))
}

/// The severity DESIGN.md maps a score to.
pub fn severity_of(vector: &str) -> Result<(f64, Severity), CvssError> {
    let score = base_score(vector)?;
    Ok((score, Severity::from_score(score)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of FIRST's "CVSS v3.1 Examples" (the same
    /// vectors appear in the v3.0 examples document) and CVSS v4.0 examples.
    #[test]
    fn matches_the_specifications_examples() {
        let v3 = [
            ("AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1), // CVE-2013-1937 phpMyAdmin reflected XSS
            ("AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4), // CVE-2013-0375 MySQL stored SQL injection
            ("AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1), // CVE-2014-3566 SSLv3 POODLE
            ("AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9), // CVE-2012-1516 VMware guest-to-host escape
            ("AV:L/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:L", 4.2), // CVE-2009-0783 Apache Tomcat XML parser
            ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8), // CVE-2014-6271 GNU Bash "Shellshock"
            ("AV:N/AC:H/PR:N/UI:N/S:C/C:N/I:H/A:N", 6.8), // CVE-2008-1447 DNS (Kaminsky)
            ("AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 6.8), // CVE-2014-2005 Sophos login screen bypass
            ("AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N", 5.8), // CVE-2010-0467 Joomla directory traversal
            ("AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8), // CVE-2016-1645 Chrome PDFium
            ("AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", 7.4), // CVE-2014-0224 OpenSSL CCS injection
            ("AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:N", 6.8), // CVE-2016-0128 "Badlock"
            ("AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0), // no impact at all
        ];
        for (metrics, expected) in v3 {
            for version in ["3.0", "3.1"] {
                let vector = format!("CVSS:{version}/{metrics}");
                assert_eq!(base_score(&vector), Ok(expected), "{vector}");
            }
        }
        for (vector, expected) in [
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3),
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 10.0),
            ("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.5), // CVE-2022-41741 nginx
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N", 0.0),
        ] {
            assert_eq!(base_score(vector), Ok(expected), "{vector}");
        }
    }

    #[test]
    fn maps_scores_to_design_severities() {
        assert_eq!(severity_of("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap().1, Severity::Critical);
        assert_eq!(severity_of("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H").unwrap().1, Severity::High);
        assert_eq!(severity_of("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N").unwrap().1, Severity::Medium);
        assert_eq!(severity_of("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N").unwrap().1, Severity::Low);
        assert_eq!(severity_of("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N").unwrap().1, Severity::Informational);
        for (score, severity) in [
            (10.0, "critical"),
            (9.0, "critical"),
            (8.9, "high"),
            (7.0, "high"),
            (6.9, "medium"),
            (4.0, "medium"),
            (3.9, "low"),
            (0.1, "low"),
            (0.0, "informational"),
        ] {
            assert_eq!(Severity::from_score(score).as_str(), severity, "{score}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_vector() {
        assert!(base_score("CVSS:2.0/AV:N").is_err());
        assert!(base_score("AV:N/AC:L").is_err());
        assert!(base_score("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").is_err());
    }
}
