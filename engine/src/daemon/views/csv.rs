//! Rows as CSV, for spreadsheets: a header of column names, one line per
//! row, every cell defused against formulas (OWASP's CSV injection list).

use super::cell::Columns;

/// The characters a spreadsheet reads as the start of a formula: a cell
/// starting with one is prefixed with `'`, so it shows as the text it is
/// and never runs.
pub const FORMULA_PREFIXES: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV cell: formulas defused, then quoted when it holds a separator,
/// a quote or a line break.
pub fn csv_field(text: &str) -> String {
    let defused = if text.starts_with(FORMULA_PREFIXES) { format!("'{text}") } else { text.to_owned() };
    if defused.contains([',', '"', '\n', '\r']) { format!("\"{}\"", defused.replace('"', "\"\"")) } else { defused }
}

/// `rows` as CSV with `columns` as the header; a column a row lacks is an
/// empty cell.
pub fn to_csv<T: Columns>(columns: &[&str], rows: &[T]) -> String {
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|column| row.cell(column).map_or(String::new(), |cell| csv_field(&cell.text())))
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::views::Cell;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        for formula in ["=cmd()", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            let cell = csv_field(formula);
            let unquoted = cell.trim_matches('"');
            assert!(unquoted.starts_with('\''), "{formula:?} is defused: {cell:?}");
        }
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("\r=cmd()"), "\"'\r=cmd()\"", "defused, then quoted for its line break");
        assert_eq!(csv_field("a=b"), "a=b", "only a leading character starts a formula");
    }

    #[test]
    fn cells_are_written_as_their_json_would_read() {
        struct Row(Vec<String>);
        impl Columns for Row {
            fn cell(&self, column: &str) -> Option<Cell<'_>> {
                Some(match column {
                    "a" => Cell::Text("x"),
                    "b" => Cell::Count(3),
                    "c" => Cell::list(&self.0),
                    "d" => Cell::Decimal(7.0),
                    "e" => Cell::Empty,
                    _ => return None,
                })
            }
        }
        let rows = [Row(vec!["p".into(), "q".into()])];
        assert_eq!(to_csv(&["a", "b", "c", "d", "e", "f"], &rows), "a,b,c,d,e,f\nx,3,p q,7.0,,\n");
    }
}
