//! Every error of a document at once. serde stops at a document's first
//! error, so a window with an unknown time zone, a `25:00` start and a
//! misspelt `blackuots` would show one error, and the admin would find the
//! others one commit at a time. Recovery reads past each error, as a
//! compiler does, so that every error shows with the message and position
//! serde and validation give it:
//!
//! 1. the document's first error is recorded;
//! 2. the text is repaired just enough to read past it ([`Repair`]): an
//!    unknown or duplicate key is blanked out with its value; a scalar that
//!    does not read is replaced by a stand-in that does (the first value an
//!    enum expects, else the first of [`STAND_INS`] that moves the error);
//! 3. the document is read again; its next error goes to step 1, up to
//!    [`MAX_ERRORS`]; an error nothing reads past (a syntax error, a missing
//!    field, a key in a flow mapping) ends it, and so does a document
//!    larger than [`MAX_RECOVERED_BYTES`].
//!
//! Repairs keep every line where it was (blanking writes spaces, a stand-in
//! replaces one scalar), so every position stays the one the admin wrote.
//! When the repaired text reads, its typed document goes through semantic
//! validation too, so the unknown time zone shows beside the two others.
//! Its diagnostics are kept with care: its warnings are dropped (the
//! document is invalid anyway), and so is anything in the block of a
//! stand-in, whose value the admin never wrote (a stand-in `00:00` start
//! next to a `00:00` end would read as an empty interval).
//!
//! The repaired document never reaches a policy: the document stays
//! invalid, and so does the repository.

use std::ops::{Range, RangeInclusive};

use super::model::{ParsedDocument, PolicyDocument};
use super::yaml::{Repair, Spanned, YamlError, YamlLimits, from_str};
use crate::diagnostics::Pos;

/// Errors reported per document at most: past that, the admin has enough
/// to fix first.
pub const MAX_ERRORS: usize = 20;

/// A larger document shows its first error only: each repair reads the
/// document again (up to one read per stand-in), and a hostile repository
/// must stay cheap to refuse (RELIABILITY T5). Policy documents are a few
/// KiB.
pub const MAX_RECOVERED_BYTES: usize = 256 << 10;

/// Values tried in place of a scalar that does not read, in order: a time
/// of day, an instant, a duration, a word, numbers, a boolean, containers.
pub const STAND_INS: [&str; 9] = ["\"00:00\"", "\"2026-01-01T00:00:00Z\"", "\"1h\"", "x", "0", "1", "true", "[]", "{}"];

/// What recovery found in one document.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Every error, in the order met, first included.
    pub problems: Vec<(Pos, String)>,
    /// The repaired document, when the repaired text reads: for semantic
    /// validation only.
    pub document: Option<Spanned<PolicyDocument>>,
    /// Lines (1-based) where a stand-in's block lies: semantic findings
    /// there are artifacts of the stand-in.
    pub stand_in_blocks: Vec<RangeInclusive<u32>>,
}

/// Recovers from `first`, the first error of the document on `lines`
/// (0-based, end exclusive) of `text`.
pub fn recover(text: &str, lines: Range<usize>, first: YamlError, limits: &YamlLimits) -> Recovery {
    let mut recovery = Recovery::default();
    let size: usize = text.split_inclusive('\n').skip(lines.start).take(lines.len()).map(str::len).sum();
    if size > MAX_RECOVERED_BYTES {
        recovery.problems.push((first.pos, first.message));
        return recovery;
    }
    let mut chars = isolate(text, &lines);
    let mut error = first;
    loop {
        recovery.problems.push((error.pos, error.message.clone()));
        if recovery.problems.len() >= MAX_ERRORS {
            return recovery;
        }
        let (repaired, result) = match repair(&chars, &error, limits) {
            Some(found) => found,
            None => return recovery,
        };
        if let Repair::ReplaceScalar { .. } = error.repair {
            recovery.stand_in_blocks.push(block_of(&repaired, error.pos));
        }
        chars = repaired;
        match result {
            Ok(Spanned { value: ParsedDocument::Document(document), pos }) => {
                recovery.document = Some(Spanned::new(*document, pos));
                return recovery;
            }
            Ok(Spanned { value: ParsedDocument::Invalid(problems), pos }) => {
                recovery.problems.extend(problems.into_iter().map(|(at, message)| (at.or(pos), message)));
                return recovery;
            }
            Err(next)
                if recovery.problems.iter().any(|(pos, message)| *pos == next.pos && *message == next.message) =>
            {
                return recovery;
            }
            Err(next) => error = next,
        }
    }
}

type Read = Result<Spanned<ParsedDocument>, YamlError>;

fn read(chars: &[char], limits: &YamlLimits) -> Read {
    from_str::<Spanned<ParsedDocument>>(&chars.iter().collect::<String>(), limits)
}

/// Whether `c` breaks a line, as YAML reads lines (LF, CR LF, or a lone
/// CR): blanking keeps these, so no line moves.
fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r')
}

/// `c`, or a space in its place unless it breaks a line.
fn blanked(c: char) -> char {
    if is_break(c) { c } else { ' ' }
}

/// The text with every line outside `lines` blanked (line breaks kept), so
/// the document reads alone at its own positions.
fn isolate(text: &str, lines: &Range<usize>) -> Vec<char> {
    let mut chars = Vec::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if lines.contains(&index) {
            chars.extend(line.chars());
        } else {
            chars.extend(line.chars().map(blanked));
        }
    }
    chars
}

/// The text repaired past `error`, and what it then reads as; `None` when
/// nothing reads past it.
fn repair(chars: &[char], error: &YamlError, limits: &YamlLimits) -> Option<(Vec<char>, Read)> {
    match &error.repair {
        Repair::None => None,
        Repair::RemoveKey => {
            let repaired = remove_key(chars, error.pos)?;
            let result = read(&repaired, limits);
            Some((repaired, result))
        }
        Repair::ReplaceScalar { offset, len, expected } => {
            let candidates = expected.iter().take(1).map(String::as_str).chain(STAND_INS);
            for candidate in candidates {
                let repaired = replace(chars, *offset, *len, candidate)?;
                let result = read(&repaired, limits);
                // The stand-in reads when the error moved on (or is gone).
                if result.as_ref().err().is_none_or(|next| next.pos != error.pos) {
                    return Some((repaired, result));
                }
            }
            None
        }
    }
}

/// Line starts, as character offsets, counting lines as YAML does (and so
/// as its positions do): a line ends at LF, CR LF, or a lone CR.
fn line_starts(chars: &[char]) -> Vec<usize> {
    let ends = |i: usize, c: char| c == '\n' || (c == '\r' && chars.get(i + 1) != Some(&'\n'));
    let after_breaks = chars.iter().enumerate().filter(|(i, c)| ends(*i, **c)).map(|(i, _)| i + 1);
    std::iter::once(0).chain(after_breaks.filter(|start| *start < chars.len())).collect()
}

/// Line `index`'s characters, without its line break.
fn line_of<'a>(chars: &'a [char], starts: &[usize], index: usize) -> &'a [char] {
    let start = starts[index];
    let mut end = starts.get(index + 1).copied().unwrap_or(chars.len());
    while end > start && is_break(chars[end - 1]) {
        end -= 1;
    }
    &chars[start..end]
}

/// Where a line's content starts, past its indentation and any `- `
/// sequence markers; `None` for a blank or comment line.
fn content_column(line: &[char]) -> Option<usize> {
    let mut at = 0;
    while at < line.len() {
        match line[at] {
            ' ' => at += 1,
            '-' if line.get(at + 1).is_none_or(|c| *c == ' ') => at += 1,
            '#' => return None,
            _ => return Some(at),
        }
    }
    None
}

/// Blanks the block-style key at `pos` and its value: the rest of its line
/// and every following line indented deeper than the key. A key in a flow
/// mapping (`{a: 1, b: 2}`) is not repaired.
fn remove_key(chars: &[char], pos: Pos) -> Option<Vec<char>> {
    let starts = line_starts(chars);
    let index = (pos.line as usize).checked_sub(1).filter(|index| *index < starts.len())?;
    let column = (pos.col as usize).checked_sub(1)?;
    let line = line_of(chars, &starts, index);
    let before: String = line.get(..column)?.iter().collect();
    if before.trim_end().ends_with(['{', ',']) {
        return None;
    }
    let mut repaired = chars.to_vec();
    let blank = |repaired: &mut Vec<char>, from: usize, to: usize| {
        repaired[from..to].iter_mut().for_each(|c| *c = blanked(*c));
    };
    blank(&mut repaired, starts[index] + column, starts[index] + line.len());
    let mut next = index + 1;
    while next < starts.len() {
        let following = line_of(chars, &starts, next);
        let indent = following.iter().take_while(|c| **c == ' ').count();
        let is_blank = following.iter().all(|c| *c == ' ') || following.get(indent) == Some(&'#');
        if !is_blank && indent <= column {
            break;
        }
        blank(&mut repaired, starts[next], starts[next] + following.len());
        next += 1;
    }
    // The mapping's only key: it stays a mapping, empty, rather than
    // becoming null (which would be an error of the repair's making).
    if is_first_key(chars, &starts, index, column) && is_last_key(chars, &starts, next, column) {
        repaired[starts[index] + column] = '{';
        repaired[starts[index] + column + 1] = '}';
    }
    Some(repaired)
}

/// Whether the key at `column` of line `index` opens its mapping: nothing
/// before it on its line but a sequence marker, or a parent line above.
fn is_first_key(chars: &[char], starts: &[usize], index: usize, column: usize) -> bool {
    let line = line_of(chars, starts, index);
    if line[..column].contains(&'-') {
        return true;
    }
    let above = (0..index).rev().find_map(|i| content_column(line_of(chars, starts, i)));
    above.is_none_or(|content| content < column)
}

/// Whether nothing of the mapping whose keys sit at `column` follows from
/// line `next` on: the next line with content is less indented, or is the
/// next item of a sequence.
fn is_last_key(chars: &[char], starts: &[usize], next: usize, column: usize) -> bool {
    let below = (next..starts.len()).find_map(|i| {
        let line = line_of(chars, starts, i);
        content_column(line).map(|content| (line.iter().take_while(|c| **c == ' ').count(), content))
    });
    below.is_none_or(|(indent, content)| content < column || (content == column && indent < column))
}

/// `candidate` in place of `len` characters at `offset`. A scalar spanning
/// lines keeps its newlines (the rest of it becomes spaces), so no line
/// moves.
fn replace(chars: &[char], offset: usize, len: usize, candidate: &str) -> Option<Vec<char>> {
    let end = offset.checked_add(len).filter(|end| *end <= chars.len())?;
    let mut repaired = chars[..offset].to_vec();
    repaired.extend(candidate.chars());
    let first_break = chars[offset..end].iter().position(|c| is_break(*c)).map_or(end, |at| offset + at);
    repaired.extend(chars[first_break..end].iter().map(|c| blanked(*c)));
    repaired.extend(&chars[end..]);
    Some(repaired)
}

/// The lines (1-based) of the block holding the scalar at `pos`: the
/// mapping its key sits in, from the line that opens it (a sequence item's
/// `- `, or the first key at that column) to its last line.
fn block_of(chars: &[char], pos: Pos) -> RangeInclusive<u32> {
    let starts = line_starts(chars);
    let index = (pos.line as usize).saturating_sub(1).min(starts.len().saturating_sub(1));
    let Some(column) = content_column(line_of(chars, &starts, index)) else { return pos.line..=pos.line };
    let indent_of = |i: usize| {
        let line = line_of(chars, &starts, i);
        content_column(line).map(|content| (line.iter().take_while(|c| **c == ' ').count(), content))
    };
    let mut first = index;
    while first > 0 {
        match indent_of(first) {
            // A sequence item opens the block: `- key:` with its content at the column.
            Some((indent, content)) if content == column && indent < column => break,
            _ => {}
        }
        match indent_of(first - 1) {
            Some((_, content)) if content < column => break,
            _ => first -= 1,
        }
    }
    let mut last = index;
    while last + 1 < starts.len() {
        match indent_of(last + 1) {
            Some((indent, content)) if content < column || (indent < column && content == column) => break,
            _ => last += 1,
        }
    }
    (first as u32 + 1)..=(last as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(text: &str) -> Vec<char> {
        text.chars().collect()
    }

    fn text(chars: &[char]) -> String {
        chars.iter().collect()
    }

    #[test]
    fn a_removed_key_takes_its_value_and_keeps_every_line() {
        let yaml = chars("spec:\n  a: 1\n  extra:\n    - x\n\n    - y\n  b: 2\n");
        let repaired = remove_key(&yaml, Pos::new(3, 3)).unwrap();
        assert_eq!(text(&repaired), "spec:\n  a: 1\n        \n       \n\n       \n  b: 2\n");
        let item = chars("- extra: 1\n  start: x\n");
        assert_eq!(text(&remove_key(&item, Pos::new(1, 3)).unwrap()), "-         \n  start: x\n");
        let only = chars("spec:\n  selctor: x\n    more\nnext: 1\n");
        assert_eq!(text(&remove_key(&only, Pos::new(2, 3)).unwrap()), "spec:\n  {}        \n        \nnext: 1\n");
        let only_item = chars("- extra: 1\n- days: []\n");
        assert_eq!(text(&remove_key(&only_item, Pos::new(1, 3)).unwrap()), "- {}      \n- days: []\n");
        assert!(remove_key(&chars("a: {b: 1, extra: 2}\n"), Pos::new(1, 11)).is_none(), "flow mappings stay");
    }

    #[test]
    fn a_stand_in_replaces_one_scalar_and_keeps_every_line() {
        let yaml = chars("start: \"25:00\"\nend: x\n");
        assert_eq!(text(&replace(&yaml, 7, 7, "\"00:00\"").unwrap()), "start: \"00:00\"\nend: x\n");
        let folded = chars("a: >\n  one\n  two\nb: 1\n");
        assert_eq!(text(&replace(&folded, 3, 14, "x").unwrap()), "a: x\n     \n     \nb: 1\n");
        assert!(replace(&yaml, 20, 7, "x").is_none());
    }

    #[test]
    fn other_documents_are_blanked_in_place() {
        let isolated = isolate("a: 1\n---\nb: 2\n", &(2..3));
        assert_eq!(text(&isolated), "    \n   \nb: 2\n");
    }

    #[test]
    fn a_stand_in_block_is_the_mapping_its_key_is_in() {
        let yaml = chars(
            "spec:\n  timezone: UTC\n  intervals:\n    - days: [mon]\n      start: \"00:00\"\n      end: \"04:00\"\n  blackouts: []\n",
        );
        assert_eq!(block_of(&yaml, Pos::new(5, 14)), 4..=6);
        assert_eq!(block_of(&yaml, Pos::new(2, 13)), 2..=7);
    }
}
