//! A row's fields by column name, typed: what a sort compares and what a
//! CSV cell writes. Column names are the camelCase names of the row's JSON
//! fields, which the API's `sort=` and the CSV headers use too.

use std::borrow::Cow;
use std::cmp::Ordering;

use jiff::Timestamp;

use super::items::SOFTWARE_SEVERITY;
use crate::catalog::feed::Severity;

/// One field of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    Text(&'a str),
    /// A severity (or `unrated`): sorts by rank, critical first.
    Severity(&'a str),
    Count(u64),
    Decimal(f64),
    Time(Timestamp),
    Flag(bool),
    /// Several values: written space-separated, sorted by how many.
    List(Vec<&'a str>),
    /// A document kept as JSON (an audit entry's detail): written as its
    /// JSON text.
    Json(&'a serde_json::Value),
    /// No value: written empty, sorted last whichever the order.
    Empty,
}

/// A row whose fields a list sorts by and a CSV writes.
pub trait Columns {
    /// The field in `column`; `None` when the row has no such column.
    fn cell(&self, column: &str) -> Option<Cell<'_>>;
}

impl<T: Columns + ?Sized> Columns for &T {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        (**self).cell(column)
    }
}

impl<'a> Cell<'a> {
    /// `value`, or [`Cell::Empty`].
    pub fn or_empty<T>(value: Option<T>, cell: impl FnOnce(T) -> Cell<'a>) -> Cell<'a> {
        value.map_or(Cell::Empty, cell)
    }

    pub fn count(n: usize) -> Cell<'a> {
        Cell::Count(n as u64)
    }

    pub fn list(values: &'a [String]) -> Cell<'a> {
        Cell::List(values.iter().map(String::as_str).collect())
    }

    /// How two cells of one column compare; cells of different kinds (a
    /// column no row fills the same way) compare by their text. Empty
    /// cells are left to the caller, which puts them last.
    pub fn compare(&self, other: &Cell<'_>) -> Ordering {
        match (self, other) {
            (Cell::Severity(a), Cell::Severity(b)) => severity_rank(a).cmp(&severity_rank(b)),
            (Cell::Count(a), Cell::Count(b)) => a.cmp(b),
            (Cell::Decimal(a), Cell::Decimal(b)) => a.total_cmp(b),
            (Cell::Time(a), Cell::Time(b)) => a.cmp(b),
            (Cell::Flag(a), Cell::Flag(b)) => a.cmp(b),
            (Cell::List(a), Cell::List(b)) => a.len().cmp(&b.len()),
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            (a, b) => a.text().cmp(&b.text()),
        }
    }

    /// The cell as text, before CSV quoting.
    pub fn text(&self) -> Cow<'a, str> {
        match self {
            Cell::Text(text) | Cell::Severity(text) => Cow::Borrowed(text),
            Cell::Count(n) => Cow::Owned(n.to_string()),
            // As JSON writes it: `7.0`, `9.8`.
            Cell::Decimal(x) => Cow::Owned(format!("{x:?}")),
            Cell::Time(at) => Cow::Owned(at.to_string()),
            Cell::Flag(flag) => Cow::Borrowed(if *flag { "true" } else { "false" }),
            Cell::List(values) => Cow::Owned(values.join(" ")),
            Cell::Json(value) => Cow::Owned(value.to_string()),
            Cell::Empty => Cow::Borrowed(""),
        }
    }
}

/// Critical first, then down to none; `unrated` (software) and unknown
/// words after every severity.
fn severity_rank(text: &str) -> usize {
    Severity::ALL.iter().position(|s| s.as_str() == text).unwrap_or(if text == SOFTWARE_SEVERITY {
        Severity::ALL.len()
    } else {
        Severity::ALL.len() + 1
    })
}
