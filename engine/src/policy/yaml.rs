//! The one module that calls the YAML crate.
//!
//! We use `serde-saphyr` (see ARCHITECTURE.md for why): it deserializes
//! straight into our types, rejects duplicate keys, budgets hostile input
//! (alias bombs, nesting, node counts) and locates every error. Nothing else
//! in the workspace names it, so swapping it means changing this file.

use std::io::Cursor;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::diagnostics::{Pos, suggestion};

/// Bounds on what one YAML file may cost to parse (RELIABILITY T5, T6).
#[derive(Clone, Copy, Debug)]
pub struct YamlLimits {
    pub max_depth: usize,
    pub max_documents: usize,
    pub max_nodes: usize,
    pub max_scalar_bytes: usize,
    pub max_aliases: usize,
    pub max_replayed_events: usize,
}

impl Default for YamlLimits {
    fn default() -> Self {
        // Policy documents are shallow and small; these leave room for large
        // fleets of rules while keeping a hostile file cheap to refuse.
        YamlLimits {
            max_depth: 64,
            max_documents: 1_000,
            max_nodes: 250_000,
            max_scalar_bytes: 8 << 20,
            max_aliases: 1_000,
            max_replayed_events: 50_000,
        }
    }
}

/// A YAML problem at a position in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
    /// How error recovery (`policy::recover`) may get past this error to
    /// find the next one.
    pub repair: Repair,
}

/// What would make a text read past an error, so the next error shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Repair {
    /// Drop the key at the error's position with its value: an unknown or
    /// a duplicate key.
    RemoveKey,
    /// Put a value that reads in place of the scalar at `offset` (in
    /// characters), `len` characters long; `expected` are the values the
    /// type names (an enum's variants), best first.
    ReplaceScalar { offset: usize, len: usize, expected: Vec<String> },
    /// Nothing reads past it: a syntax error, a budget, a missing field.
    #[default]
    None,
}

/// A value together with where it was written.
///
/// Equality, ordering and hashing include the position, so two loads of the
/// same text compare equal and different texts do not.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub const fn new(value: T, pos: Pos) -> Self {
        Spanned { value, pos }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // From any other deserializer (serde_json, say) the position is
        // unknown, and callers fall back to the enclosing document's.
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(Spanned { value: spanned.value, pos: location_to_pos(spanned.referenced) })
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

fn location_to_pos(location: serde_saphyr::Location) -> Pos {
    Pos::new(location.line() as u32, location.column() as u32)
}

fn options(limits: &YamlLimits) -> serde_saphyr::Options {
    serde_saphyr::options! {
        // `yes`/`no`/`on`/`off` stay strings: no Norway problem.
        strict_booleans: true,
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        budget: serde_saphyr::budget! {
            max_depth: limits.max_depth,
            max_documents: limits.max_documents,
            max_nodes: limits.max_nodes,
            max_total_scalar_bytes: limits.max_scalar_bytes,
            max_aliases: limits.max_aliases,
            max_anchors: limits.max_aliases,
            flow_nesting_limit: limits.max_depth,
            max_reader_input_bytes: None,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: limits.max_replayed_events,
            max_replay_stack_depth: limits.max_depth,
            max_alias_expansions_per_anchor: limits.max_aliases,
        },
    }
}

/// Deserializes every document of `text` as a `T`, independently: an error in
/// one document does not hide the next. A YAML syntax error or an exceeded
/// budget ends the file, because the parser cannot resynchronise after it.
pub fn from_str_documents<T: DeserializeOwned>(text: &str, limits: &YamlLimits) -> Vec<Result<T, YamlError>> {
    let mut reader = Cursor::new(text.as_bytes());
    serde_saphyr::read_with_options::<_, T>(&mut reader, options(limits))
        .map(|result| result.map_err(|error| convert_error(&error, text, limits)))
        .collect()
}

/// Deserializes a single-document text as a `T` (fleet files, configs).
pub fn from_str<T: DeserializeOwned>(text: &str, limits: &YamlLimits) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options(limits)).map_err(|error| convert_error(&error, text, limits))
}

fn convert_error(error: &serde_saphyr::Error, text: &str, limits: &YamlLimits) -> YamlError {
    use serde_saphyr::Error as E;
    let location = error.location();
    let pos = location.map(location_to_pos).unwrap_or(Pos::UNKNOWN);
    let message = match error {
        // Errors met while replaying an alias carry the real error inside;
        // the position stays the alias's, where the reader looks.
        E::AliasError { error: inner, .. } => convert_error(inner, text, limits).message,
        E::SerdeUnknownField { field, expected, .. } => {
            let hint = suggestion(field, expected.iter().copied());
            if hint.is_empty() {
                format!("unknown field `{field}`; expected one of {}", list(expected))
            } else {
                format!("unknown field `{field}`{hint}")
            }
        }
        E::SerdeUnknownVariant { variant, expected, .. } => {
            let hint = suggestion(variant, expected.iter().copied());
            if hint.is_empty() {
                format!("unknown value `{variant}`; expected one of {}", list(expected))
            } else {
                format!("unknown value `{variant}`{hint} (expected one of {})", list(expected))
            }
        }
        E::InvalidScalar { ty, .. } => {
            let found = location.map(|l| scalar_text(text, l)).unwrap_or_default();
            format!("`{found}` is not {}", describe_scalar_type(ty))
        }
        E::SerdeMissingField { field, .. } => format!("missing field `{field}`"),
        E::DuplicateMappingKey { key, .. } => match key {
            Some(key) => format!("duplicate key `{key}`: a key may appear once in a mapping"),
            None => "duplicate key: a key may appear once in a mapping".to_owned(),
        },
        E::IOError { .. } => "the file is not valid UTF-8".to_owned(),
        E::Budget { breach: serde_saphyr::budget::BudgetBreach::Depth { .. }, .. } => {
            format!("nested deeper than {} levels", limits.max_depth)
        }
        E::Budget { breach, .. } => format!("the file is too large or complex to read: {breach:?}"),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            "aliases expand to too much data (an alias bomb?); write the values out instead".to_owned()
        }
        other => {
            let message = strip_location(&other.to_string());
            if message == "recursion limit exceeded" {
                format!("nested deeper than {} levels", limits.max_depth)
            } else {
                message
            }
        }
    };
    YamlError { pos, message, repair: repair_of(error) }
}

fn repair_of(error: &serde_saphyr::Error) -> Repair {
    use serde_saphyr::Error as E;
    let scalar = |expected: Vec<String>| match error.location() {
        Some(location) if !location.span().is_empty() => Repair::ReplaceScalar {
            offset: location.span().offset() as usize,
            len: location.span().len() as usize,
            expected,
        },
        _ => Repair::None,
    };
    match error {
        E::SerdeUnknownField { .. } | E::DuplicateMappingKey { .. } => Repair::RemoveKey,
        E::SerdeUnknownVariant { expected, .. } => scalar(expected.iter().map(|e| (*e).to_owned()).collect()),
        E::InvalidScalar { .. }
        | E::Message { .. }
        | E::SerdeInvalidType { .. }
        | E::SerdeInvalidValue { .. }
        | E::InvalidBooleanStrict { .. }
        | E::NullIntoString { .. }
        | E::NonFiniteFloat { .. } => scalar(Vec::new()),
        _ => Repair::None,
    }
}

/// The source text an error location spans (one scalar).
fn scalar_text(text: &str, location: serde_saphyr::Location) -> String {
    let span = location.span();
    let found: String = text.chars().skip(span.offset() as usize).take(span.len().min(80) as usize).collect();
    found.trim().to_owned()
}

fn describe_scalar_type(ty: &str) -> &'static str {
    match ty {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "f32" | "f64" => "a number",
        "bool" => "`true` or `false`",
        "char" => "a single character",
        _ => "of the type expected here",
    }
}

fn list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// serde-saphyr's Display appends " at line L, column C"; we print the
/// position ourselves, in front.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: Spanned<String>,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn parse(text: &str) -> Vec<Result<Doc, YamlError>> {
        from_str_documents(text, &YamlLimits::default())
    }

    #[test]
    fn keeps_positions() {
        let docs = parse("name: a\n---\ntags: [x]\nname: 'b'\n");
        assert_eq!(docs[0].as_ref().unwrap().name, Spanned::new("a".to_owned(), Pos::new(1, 7)));
        assert_eq!(docs[1].as_ref().unwrap().name.pos, Pos::new(4, 7));
    }

    #[test]
    fn an_error_in_one_document_does_not_hide_the_next() {
        let docs = parse("name: a\nnmae: b\n---\nname: c\nname: d\n---\nname: e\n");
        assert_eq!(docs.len(), 3);
        let first = docs[0].as_ref().unwrap_err();
        assert_eq!(first.pos, Pos::new(2, 1));
        assert_eq!(first.message, "unknown field `nmae`; did you mean `name`?");
        let second = docs[1].as_ref().unwrap_err();
        assert_eq!(second.pos.line, 5);
        assert!(second.message.starts_with("duplicate key `name`"), "{}", second.message);
        assert!(docs[2].is_ok());
    }

    #[test]
    fn refuses_an_alias_bomb_quickly() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut previous = 'a';
        for name in 'b'..='k' {
            let refs = vec![format!("*{previous}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
            previous = name;
        }
        #[derive(Debug, Deserialize)]
        struct Anything {
            #[allow(dead_code)]
            k: Vec<serde_json::Value>,
        }
        let result = from_str::<Anything>(&text, &YamlLimits::default());
        let error = result.unwrap_err();
        assert!(error.message.contains("alias") || error.message.contains("budget"), "{}", error.message);
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing_the_stack() {
        for text in [format!("name: x\ntags: {}{}\n", "[".repeat(10_000), "]".repeat(10_000)), {
            let mut t = String::from("name: x\ntags:\n");
            for depth in 0..10_000 {
                t.push_str(&" ".repeat(depth + 1));
                t.push_str("-\n");
            }
            t
        }] {
            let docs = parse(&text);
            assert!(docs.iter().any(Result::is_err));
        }
    }
}

/// The position in `text` of the character `offset` of the decoded scalar
/// that starts at `start`: how an error inside a CEL expression lands on
/// the right line and column of the YAML file.
///
/// Knows the plain, single-quoted, double-quoted, literal and folded styles.
/// Inside a folded line break the position is approximate (the break and
/// the next character share one); it is always a position within the scalar.
pub fn position_in_scalar(text: &str, start: Pos, offset: usize) -> Pos {
    if !start.is_known() {
        return start;
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(first_line) = lines.get(start.line as usize - 1) else { return start };
    if let Some(header) = block_header_before(&lines, start) {
        return block_position(&lines, header, offset);
    }
    let first = first_line.chars().nth(start.col as usize - 1);
    match first {
        Some('|' | '>') => block_position(&lines, start, offset),
        Some(quote @ ('\'' | '"')) => flow_position(&lines, start, offset, Some(quote)),
        _ => flow_position(&lines, start, offset, None),
    }
}

fn flow_position(lines: &[&str], start: Pos, offset: usize, quote: Option<char>) -> Pos {
    let mut line = start.line as usize - 1;
    let mut chars: Vec<char> = lines[line].chars().collect();
    let mut col = start.col as usize - 1 + usize::from(quote.is_some());
    let mut decoded = 0;
    let mut last = start;
    loop {
        if col >= chars.len() {
            // A line break folds into one decoded character.
            line += 1;
            let Some(next) = lines.get(line) else { return last };
            chars = next.chars().collect();
            col = chars.iter().take_while(|c| **c == ' ' || **c == '\t').count();
            last = Pos::new(line as u32 + 1, col as u32 + 1);
            if decoded == offset {
                return last;
            }
            decoded += 1;
            continue;
        }
        let here = Pos::new(line as u32 + 1, col as u32 + 1);
        let c = chars[col];
        let width = match (quote, c) {
            (Some('\''), '\'') if chars.get(col + 1) == Some(&'\'') => 2,
            (Some(q), c) if c == q => return here,
            (Some('"'), '\\') => match chars.get(col + 1) {
                None => {
                    // An escaped line break: nothing decoded.
                    col = chars.len();
                    continue;
                }
                Some('x') => 4,
                Some('u') => 6,
                Some('U') => 10,
                Some(_) => 2,
            },
            _ => 1,
        };
        if decoded == offset {
            return here;
        }
        decoded += 1;
        last = here;
        col += width;
    }
}

/// A block scalar's position may be given at its first content character;
/// its header (`|`, `>-`, `|2`…) then ends an earlier line.
fn block_header_before(lines: &[&str], start: Pos) -> Option<Pos> {
    let line = lines[start.line as usize - 1];
    if !line.chars().take(start.col as usize - 1).all(char::is_whitespace) {
        return None;
    }
    let header_index = (0..start.line as usize - 1).rev().find(|i| !lines[*i].trim().is_empty())?;
    let header = lines[header_index];
    let code = header.split(" #").next().unwrap_or(header).trim_end();
    let indicator = code.trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
    let at = indicator.len().checked_sub(1)?;
    let before = indicator[..at].chars().last();
    (indicator.ends_with(['|', '>']) && matches!(before, Some(' ' | ':' | '-') | None)).then(|| {
        // Content starts on the line after the header.
        Pos::new(header_index as u32 + 1, indicator[..at].chars().count() as u32 + 1)
    })
}

fn block_position(lines: &[&str], start: Pos, offset: usize) -> Pos {
    let content = &lines[start.line as usize..];
    let indent =
        content.iter().find(|l| !l.trim().is_empty()).map(|l| l.chars().take_while(|c| *c == ' ').count()).unwrap_or(0);
    let mut left = offset;
    for (i, line) in content.iter().enumerate() {
        let length = line.chars().count().saturating_sub(indent);
        if left <= length {
            return Pos::new(start.line + 1 + i as u32, (indent + left) as u32 + 1);
        }
        left -= length + 1;
    }
    start
}

#[cfg(test)]
mod scalar_tests {
    use super::*;

    #[test]
    fn maps_offsets_in_every_scalar_style() {
        let text = "a: patch.x == 1\nb: 'it''s patch.y'\nc: \"\\tpatch.z\"\nd: |\n  line one\n  patch.w\ne: patch.q &&\n  patch.r\n";
        assert_eq!(position_in_scalar(text, Pos::new(1, 4), 6), Pos::new(1, 10));
        // `''` decodes to one character.
        assert_eq!(position_in_scalar(text, Pos::new(2, 4), 5), Pos::new(2, 11));
        // `\t` decodes to one character.
        assert_eq!(position_in_scalar(text, Pos::new(3, 4), 7), Pos::new(3, 13));
        assert_eq!(position_in_scalar(text, Pos::new(4, 4), 9 + 6), Pos::new(6, 9));
        assert_eq!(position_in_scalar(text, Pos::new(7, 4), 15), Pos::new(8, 7));
        // A block scalar located at its first content character.
        assert_eq!(position_in_scalar(text, Pos::new(5, 3), 9 + 6), Pos::new(6, 9));
    }

    #[test]
    fn block_scalars_map_through_the_parser_positions() {
        #[derive(serde::Deserialize)]
        struct Doc {
            expr: Spanned<String>,
        }
        let text = "expr: |-\n  first line\n    second &&\n";
        let doc: Doc = from_str(text, &YamlLimits::default()).unwrap();
        let at = |offset| position_in_scalar(text, doc.expr.pos, offset);
        assert_eq!(at(0), Pos::new(2, 3));
        assert_eq!(at(11), Pos::new(3, 3));
        assert_eq!(at(13), Pos::new(3, 5));
    }
}
