//! How a list is sorted: by one of its rows' [`Columns`], ascending unless
//! `order=desc`. Every list takes it, the API's and the console's alike.

use std::cmp::Ordering;

use serde::Deserialize;

use super::cell::{Cell, Columns};

/// `?sort=COLUMN&order=asc|desc`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SortOrder {
    pub sort: Option<String>,
    pub order: Option<String>,
}

impl SortOrder {
    pub fn key(&self) -> Option<&str> {
        self.sort.as_deref().filter(|s| !s.is_empty())
    }

    pub fn descending(&self) -> bool {
        self.order.as_deref() == Some("desc")
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![("sort", self.sort.clone().unwrap_or_default()), ("order", self.order.clone().unwrap_or_default())]
    }

    /// `rows` sorted by [`SortOrder::key`]: stable (equal rows keep their
    /// order), empty cells last either way. No key, or one the rows lack,
    /// keeps the order.
    pub fn apply<T: Columns>(&self, mut rows: Vec<T>) -> Vec<T> {
        let Some(key) = self.key() else { return rows };
        if rows.first().is_none_or(|row| row.cell(key).is_none()) {
            return rows;
        }
        let descending = self.descending();
        rows.sort_by(|a, b| {
            let (a, b) = (a.cell(key).unwrap_or(Cell::Empty), b.cell(key).unwrap_or(Cell::Empty));
            match (&a, &b) {
                (Cell::Empty, Cell::Empty) => Ordering::Equal,
                (Cell::Empty, _) => Ordering::Greater,
                (_, Cell::Empty) => Ordering::Less,
                _ if descending => a.compare(&b).reverse(),
                _ => a.compare(&b),
            }
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        id: &'static str,
        severity: &'static str,
        cvss: Option<f64>,
    }

    impl Columns for Row {
        fn cell(&self, column: &str) -> Option<Cell<'_>> {
            Some(match column {
                "id" => Cell::Text(self.id),
                "severity" => Cell::Severity(self.severity),
                "cvss" => Cell::or_empty(self.cvss, Cell::Decimal),
                _ => return None,
            })
        }
    }

    #[test]
    fn lists_sort_by_a_column_with_severities_by_rank_and_empty_cells_last() {
        let rows = || {
            vec![
                Row { id: "b", severity: "low", cvss: Some(3.1) },
                Row { id: "a", severity: "critical", cvss: None },
                Row { id: "c", severity: "unrated", cvss: Some(9.8) },
                Row { id: "d", severity: "high", cvss: Some(10.0) },
            ]
        };
        let ids = |sort: &str, order: &str| -> Vec<&str> {
            let by = SortOrder { sort: Some(sort.into()), order: Some(order.into()) };
            by.apply(rows()).iter().map(|r| r.id).collect()
        };
        assert_eq!(ids("severity", ""), ["a", "d", "b", "c"]);
        assert_eq!(ids("severity", "desc"), ["c", "b", "d", "a"]);
        assert_eq!(ids("cvss", ""), ["b", "c", "d", "a"], "numbers by value, none last");
        assert_eq!(ids("cvss", "desc"), ["d", "c", "b", "a"], "none last either way");
        assert_eq!(ids("id", "desc"), ["d", "c", "b", "a"]);
        assert_eq!(ids("nonesuch", ""), ["b", "a", "c", "d"], "an unknown key keeps the order");
        assert_eq!(SortOrder::default().apply(rows()).iter().map(|r| r.id).collect::<Vec<_>>(), ["b", "a", "c", "d"]);
    }
}
