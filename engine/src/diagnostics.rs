//! Diagnostics: what validation says about a policy repository, where.
//!
//! Every check in the engine reports through [`Diagnostic`]; the renderers
//! here turn a list of them into the three formats `validate` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::Serialize;

/// A line and column in a source file, both counted from 1 (columns in
/// characters). `line == 0` means "unknown": the caller falls back to an
/// enclosing position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, col: 0 };

    pub const fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }

    pub const fn is_known(self) -> bool {
        self.line > 0
    }

    /// `self` if known, else `fallback`.
    pub const fn or(self, fallback: Pos) -> Pos {
        if self.is_known() { self } else { fallback }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding, located in a file of the policy repository.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct Diagnostic {
    /// The file, as the user named the repository plus the file's path in it.
    pub path: String,
    pub line: u32,
    pub col: u32,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, path, pos, message)
    }

    pub fn warning(path: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, path, pos, message)
    }

    fn new(severity: Severity, path: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        // A diagnostic always points somewhere an editor can open.
        let pos = pos.or(Pos::new(1, 1));
        Diagnostic { path: path.into(), line: pos.line, col: pos.col.max(1), severity, message: message.into() }
    }

    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.col)
    }
}

/// The JSON document `validate --format json` prints.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiagnosticsReport<'a> {
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: &'a [Diagnostic],
}

pub fn count(diagnostics: &[Diagnostic], severity: Severity) -> usize {
    diagnostics.iter().filter(|d| d.severity == severity).count()
}

pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.severity == Severity::Error)
}

/// `path:line:col: severity: message`, then the source line and a caret,
/// rustc-style. `sources` maps a diagnostic's path to the file's text.
pub fn render_human(diagnostics: &[Diagnostic], sources: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(out, "{}:{}:{}: {}: {}", d.path, d.line, d.col, d.severity.as_str(), d.message);
        if let Some(line) = sources.get(&d.path).and_then(|text| text.lines().nth(d.line as usize - 1)) {
            let number = d.line.to_string();
            let gutter = " ".repeat(number.len());
            // Tabs would shift the caret; show them as one space each.
            let shown: String = line.chars().map(|c| if c == '\t' { ' ' } else { c }).collect();
            let caret_at = (d.col as usize - 1).min(shown.chars().count());
            let _ = writeln!(out, "{gutter} |\n{number} | {shown}\n{gutter} | {}^", " ".repeat(caret_at));
        }
    }
    out
}

/// GitHub Actions workflow commands, one per diagnostic, so that each lands
/// on its line of the pull request.
pub fn render_github(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(
            out,
            "::{} file={},line={},col={},title=patchward validate::{}",
            d.severity.as_str(),
            escape_property(&d.path),
            d.line,
            d.col,
            escape_data(&d.message)
        );
    }
    out
}

// The escaping rules of GitHub's workflow commands (actions/toolkit, command.ts).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The closest of `candidates` to `word`, when one is close enough to be a
/// plausible typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "; did you mean `x`?" or "".
pub fn suggestion<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    did_you_mean(word, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["selector", "devices"];
        assert_eq!(did_you_mean("selctor", names), Some("selector"));
        assert_eq!(did_you_mean("colour", names), None);
    }

    #[test]
    fn github_commands_escape_their_payload() {
        let d = Diagnostic::error("a,b:c.yaml", Pos::new(3, 4), "50% off\nnext");
        assert_eq!(
            render_github(&[d]),
            "::error file=a%2Cb%3Ac.yaml,line=3,col=4,title=patchward validate::50%25 off%0Anext\n"
        );
    }

    #[test]
    fn human_output_points_at_the_column() {
        let d = Diagnostic::error("p.yaml", Pos::new(2, 3), "unknown field `colour`");
        let sources = BTreeMap::from([("p.yaml".to_owned(), "spec:\n  colour: blue\n".to_owned())]);
        assert_eq!(
            render_human(&[d], &sources),
            "p.yaml:2:3: error: unknown field `colour`\n  |\n2 |   colour: blue\n  |   ^\n"
        );
    }
}
