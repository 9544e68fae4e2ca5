//! Which patches of the catalog are active: those in the coverage of some
//! CatalogSource. Patches out of coverage are stored but inactive, so
//! widening coverage later needs no download.

use serde::{Deserialize, Serialize};

use super::feed::Patch;
use crate::policy::Policy;
use crate::policy::model::{Category, Coverage};

/// The union of the coverage of every CatalogSource of a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageSet {
    /// Empty: the policy has no CatalogSource, which covers the security
    /// category everywhere.
    pub sources: Vec<Coverage>,
}

impl CoverageSet {
    pub fn of_policy(policy: &Policy) -> CoverageSet {
        CoverageSet { sources: policy.catalog_sources.values().map(|s| s.spec.coverage.clone()).collect() }
    }

    pub fn covers(&self, patch: &Patch) -> bool {
        if self.sources.is_empty() {
            return covered_by(&Coverage::default(), patch);
        }
        self.sources.iter().any(|coverage| covered_by(coverage, patch))
    }
}

fn covered_by(coverage: &Coverage, patch: &Patch) -> bool {
    let category_ok = match &coverage.categories {
        Some(categories) => categories.contains(&patch.category),
        None => patch.category == Category::Security,
    };
    category_ok
        && lists_meet(coverage.platforms.as_deref(), patch.applicability.platforms.as_deref())
        && lists_meet(coverage.languages.as_deref(), patch.applicability.languages.as_deref())
}

/// An absent list on either side means any.
fn lists_meet(wanted: Option<&[String]>, offered: Option<&[String]>) -> bool {
    match (wanted, offered) {
        (Some(wanted), Some(offered)) => offered.iter().any(|item| wanted.contains(item)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::feed::Applicability;

    fn patch(category: Category, platforms: Option<&[&str]>, languages: Option<&[&str]>) -> Patch {
        let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| s.to_string()).collect());
        Patch {
            id: "P".into(),
            title: "t".into(),
            description: None,
            vendor: "v".into(),
            product: "p".into(),
            category,
            severity: None,
            cvss: None,
            cves: vec![],
            released: crate::policy::model::Timestamp("2026-01-01T00:00:00Z".parse().unwrap()),
            supersedes: vec![],
            applicability: Applicability { platforms: list(platforms), arch: None, languages: list(languages) },
            fixes: vec![],
            fixed_products: vec![],
            detect: None,
            packages: vec![],
            reboot: None,
            references: vec![],
        }
    }

    #[test]
    fn no_source_covers_security_everywhere() {
        let none = CoverageSet::default();
        assert!(none.covers(&patch(Category::Security, Some(&["debian-12"]), None)));
        assert!(!none.covers(&patch(Category::Driver, None, None)));
    }

    #[test]
    fn lists_must_meet_unless_absent_on_either_side() {
        let set = CoverageSet {
            sources: vec![Coverage {
                platforms: Some(vec!["debian-12".into()]),
                languages: Some(vec!["en-US".into()]),
                categories: Some(vec![Category::Security, Category::ThirdParty]),
            }],
        };
        assert!(set.covers(&patch(Category::Security, Some(&["debian-12", "debian-11"]), Some(&["en-US"]))));
        assert!(set.covers(&patch(Category::ThirdParty, None, None)));
        assert!(!set.covers(&patch(Category::Security, Some(&["windows-11-23h2"]), None)));
        assert!(!set.covers(&patch(Category::Security, None, Some(&["fi-FI"]))));
        assert!(!set.covers(&patch(Category::Bugfix, None, None)));
    }

    #[test]
    fn coverage_is_the_union_of_sources() {
        let set = CoverageSet {
            sources: vec![
                Coverage { platforms: Some(vec!["debian-12".into()]), ..Coverage::default() },
                Coverage { categories: Some(vec![Category::Driver]), ..Coverage::default() },
            ],
        };
        assert!(set.covers(&patch(Category::Security, Some(&["debian-12"]), None)));
        assert!(set.covers(&patch(Category::Driver, Some(&["windows-11-23h2"]), None)));
        assert!(!set.covers(&patch(Category::Security, Some(&["windows-11-23h2"]), None)));
    }
}
