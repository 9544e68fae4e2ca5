//! What every list page shares: its page of rows (`offset`, `limit`), the
//! pager above and below it, and column headers that sort it. The rows
//! themselves are sorted by [`SortOrder`], as the API sorts them.

use maud::{Markup, html};

use super::page::query_string;
use crate::daemon::views::SortOrder;

/// The largest page a view shows; CSV exports are not paged.
pub const MAX_PAGE: usize = 500;
pub const DEFAULT_PAGE: usize = 50;

/// `?offset=N&limit=N`, as a list's query string carries them. (Its
/// fields stay in each query struct: serde cannot read numbers from a
/// query string through `#[serde(flatten)]`.)
#[derive(Clone, Copy, Debug, Default)]
pub struct Paging {
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

impl Paging {
    /// The page of a list of `total` rows: `limit` (default `default`)
    /// within 1..=[`MAX_PAGE`], and an offset past the end brought back to
    /// the last page.
    pub fn page(self, total: usize, default: usize) -> Page {
        let limit = self.limit.unwrap_or(default).clamp(1, MAX_PAGE);
        let offset = self.offset.unwrap_or(0).min(total.saturating_sub(1) / limit * limit);
        Page { offset, limit, total, param: "offset" }
    }
}

/// One page of a list.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
    pub total: usize,
    /// The query parameter its offset travels in (a page with two lists
    /// pages each on its own).
    pub param: &'static str,
}

impl Page {
    /// The same page, its offset in `param`.
    pub fn in_param(self, param: &'static str) -> Page {
        Page { param, ..self }
    }

    /// The rows of this page.
    pub fn rows<'a, T>(&self, rows: &'a [T]) -> impl Iterator<Item = &'a T> + use<'a, T> {
        rows.iter().skip(self.offset).take(self.limit)
    }

    /// This page's offset as a query pair, for links from the other list.
    pub fn pair(&self) -> (&'static str, String) {
        (self.param, self.offset.to_string())
    }

    /// "Showing 51–100 of 812", with links to the previous and next pages
    /// of `base`, keeping `pairs`.
    pub fn pager(&self, base: &str, pairs: &[(&str, String)]) -> Markup {
        let link = |offset: usize| {
            let mut pairs = pairs.to_vec();
            pairs.push((self.param, offset.to_string()));
            format!("{base}{}", query_string(&pairs))
        };
        let (offset, total) = (self.offset, self.total);
        let shown_to = (offset + self.limit).min(total);
        html! {
            p.pager {
                @if total == 0 { "Nothing to show." } @else {
                    "Showing " span.from { (offset + 1) } "–" span.to { (shown_to) } " of " span.total { (total) } ". "
                }
                @if offset > 0 { a rel="prev" href=(link(offset.saturating_sub(self.limit))) { "← previous" } " " }
                @if shown_to < total { a rel="next" href=(link(offset + self.limit)) { "next →" } }
            }
        }
    }
}

/// The column headers of a list at `base`: each sorts by its column,
/// flipping the order when it is the current sort, and keeps `pairs`.
pub struct SortHeaders<'a> {
    pub base: &'a str,
    pub pairs: &'a [(&'a str, String)],
    pub order: &'a SortOrder,
}

impl SortHeaders<'_> {
    pub fn th(&self, label: &str, key: &str) -> Markup {
        let current = self.order.key() == Some(key);
        let descending = self.order.descending();
        let mut pairs: Vec<(&str, String)> =
            self.pairs.iter().filter(|(k, _)| *k != "sort" && *k != "order").cloned().collect();
        pairs.push(("sort", key.to_owned()));
        pairs.push(("order", if current && !descending { "desc".into() } else { "asc".into() }));
        let arrow = match (current, descending) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        };
        html! { th { a href=(format!("{}{}", self.base, query_string(&pairs))) { (label) (arrow) } } }
    }
}

/// A link to `base` as CSV, with the list's filters and order.
pub fn csv_link(base: &str, pairs: &[(&str, String)]) -> String {
    format!("{base}{}", query_string(&[pairs.to_vec(), vec![("format", "csv".into())]].concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_stays_within_the_list() {
        let paging = |offset, limit| Paging { offset: Some(offset), limit: Some(limit) };
        let page = paging(900, 50).page(120, DEFAULT_PAGE);
        assert_eq!((page.offset, page.limit), (100, 50), "past the end: the last page");
        assert_eq!(Paging::default().page(0, DEFAULT_PAGE).offset, 0);
        assert_eq!(paging(0, 100_000).page(10, DEFAULT_PAGE).limit, MAX_PAGE);
        let rows: Vec<usize> = (0..120).collect();
        assert_eq!(page.rows(&rows).copied().collect::<Vec<_>>(), (100..120).collect::<Vec<_>>());
    }

    #[test]
    fn a_sort_header_flips_the_current_order() {
        let order = SortOrder { sort: Some("cvss".into()), order: None };
        let pairs = [("q", "ssl".to_owned()), ("sort", "cvss".to_owned())];
        let headers = SortHeaders { base: "/console/catalog", pairs: &pairs, order: &order };
        let current = headers.th("CVSS", "cvss").into_string();
        assert!(current.contains("q=ssl&amp;sort=cvss&amp;order=desc") && current.contains('▲'), "{current}");
        let other = headers.th("Patch", "id").into_string();
        assert!(other.contains("sort=id&amp;order=asc") && !other.contains('▲'), "{other}");
    }
}
