//! From files to typed documents: UTF-8 and size checks, then YAML.

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

use serde::Deserialize;

use super::model::{Kind, ParsedDocument, PolicyDocument};
use super::recover::recover;
use super::source::SourceFile;
use super::yaml::{Repair, Spanned, YamlLimits, from_str_documents};
use crate::diagnostics::{Diagnostic, Pos, Severity};

/// A document and the file it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedDocument {
    /// The file's display path.
    pub path: Arc<str>,
    /// Where the document's mapping starts.
    pub pos: Pos,
    pub doc: PolicyDocument,
}

#[derive(Debug, Default)]
pub struct ParsedFiles {
    pub documents: Vec<LoadedDocument>,
    pub diagnostics: Vec<Diagnostic>,
    /// Each file's text by display path, for rendering snippets and for
    /// mapping positions inside scalars.
    pub texts: BTreeMap<String, String>,
    /// Kind and name of documents that failed to parse: they exist, so a
    /// reference to them is not reported as a second, misleading error.
    pub invalid_names: Vec<(Kind, String)>,
    /// Invalid documents whose repaired text reads (`recover`): checked
    /// semantically so that all their errors show, never part of a policy.
    pub recovered: Vec<RecoveredDocument>,
}

/// An invalid document, repaired to find its other errors.
#[derive(Debug)]
pub struct RecoveredDocument {
    pub document: LoadedDocument,
    /// Its lines (1-based).
    pub lines: RangeInclusive<u32>,
    /// Blocks holding a stand-in value (`recover::Recovery`).
    pub stand_in_blocks: Vec<RangeInclusive<u32>>,
}

impl RecoveredDocument {
    /// Whether a semantic finding is an artifact of the repair rather than
    /// something the admin wrote: any warning of the document, and anything
    /// in a stand-in's block.
    pub fn is_artifact(&self, diagnostic: &Diagnostic) -> bool {
        if *diagnostic.path != *self.document.path || !self.lines.contains(&diagnostic.line) {
            return false;
        }
        diagnostic.severity == Severity::Warning || self.stand_in_blocks.iter().any(|b| b.contains(&diagnostic.line))
    }
}

/// Just enough of a document to know what it is called, read leniently.
#[derive(Deserialize)]
struct DocumentHeader {
    kind: Option<String>,
    metadata: Option<HeaderMetadata>,
}

#[derive(Deserialize)]
struct HeaderMetadata {
    name: Option<String>,
}

pub fn parse_files(files: &[SourceFile], limits: &YamlLimits) -> ParsedFiles {
    let mut out = ParsedFiles::default();
    for file in files {
        let path: Arc<str> = Arc::from(file.display_path.as_str());
        let text = match std::str::from_utf8(&file.bytes) {
            Ok(text) => text.strip_prefix('\u{feff}').unwrap_or(text),
            Err(e) => {
                let valid = std::str::from_utf8(&file.bytes[..e.valid_up_to()]).unwrap_or_default();
                out.diagnostics.push(Diagnostic::error(
                    &*path,
                    end_of(valid),
                    format!("the file is not valid UTF-8 (byte {} is not part of a UTF-8 character)", e.valid_up_to()),
                ));
                continue;
            }
        };
        out.texts.insert(file.display_path.clone(), text.to_owned());
        let separators = text.lines().filter(|l| l.starts_with("---")).count();
        if separators >= limits.max_documents {
            out.diagnostics.push(Diagnostic::error(
                &*path,
                Pos::new(1, 1),
                format!(
                    "the file holds at least {separators} documents; the limit is {} per file",
                    limits.max_documents
                ),
            ));
            continue;
        }
        let results = from_str_documents::<Spanned<ParsedDocument>>(text, limits);
        // Both passes yield one item per document (a syntax error ends both
        // at the same place), so they pair up by index.
        let headers = if results.iter().any(|r| !matches!(r, Ok(Spanned { value: ParsedDocument::Document(_), .. }))) {
            from_str_documents::<DocumentHeader>(text, limits)
        } else {
            Vec::new()
        };
        // Recovery isolates a document by its lines; when they cannot be
        // told apart with certainty, each document shows its first error.
        let lines = document_lines(text);
        let lines = if lines.len() == results.len() { lines } else { Vec::new() };
        for (index, result) in results.into_iter().enumerate() {
            if !matches!(result, Ok(Spanned { value: ParsedDocument::Document(_), .. }))
                && let Some(Ok(DocumentHeader {
                    kind: Some(kind),
                    metadata: Some(HeaderMetadata { name: Some(name) }),
                })) = headers.get(index)
                && let Some(kind) = Kind::from_name(kind)
            {
                out.invalid_names.push((kind, name.clone()));
            }
            match result {
                Ok(Spanned { value: ParsedDocument::Document(doc), pos }) => {
                    out.documents.push(LoadedDocument { path: path.clone(), pos, doc: *doc });
                }
                Ok(Spanned { value: ParsedDocument::Invalid(problems), pos }) => {
                    for (at, message) in problems {
                        out.diagnostics.push(Diagnostic::error(&*path, at.or(pos), message));
                    }
                }
                Err(error) => match lines.get(index) {
                    Some(range) if error.repair != Repair::None => {
                        let recovery = recover(text, range.clone(), error, limits);
                        for (at, message) in recovery.problems {
                            out.diagnostics.push(Diagnostic::error(&*path, at, message));
                        }
                        if let Some(Spanned { value: doc, pos }) = recovery.document {
                            out.recovered.push(RecoveredDocument {
                                document: LoadedDocument { path: path.clone(), pos, doc },
                                lines: (range.start as u32 + 1)..=(range.end as u32),
                                stand_in_blocks: recovery.stand_in_blocks,
                            });
                        }
                    }
                    _ => out.diagnostics.push(Diagnostic::error(&*path, error.pos, error.message)),
                },
            }
        }
    }
    out
}

/// The lines (0-based, end exclusive) of each document of `text`: a
/// document starts at a `---` line, or at the top when anything but
/// comments comes before the first one.
fn document_lines(text: &str) -> Vec<Range<usize>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut starts: Vec<usize> =
        lines.iter().enumerate().filter(|(_, line)| line.starts_with("---")).map(|(i, _)| i).collect();
    let first = starts.first().copied().unwrap_or(lines.len());
    let content_before = lines[..first].iter().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if content_before {
        starts.insert(0, 0);
    }
    let ends = starts.iter().skip(1).copied().chain([lines.len()]);
    starts.iter().copied().zip(ends).map(|(start, end)| start..end).collect()
}

/// The position just after `text`.
fn end_of(text: &str) -> Pos {
    let line = text.matches('\n').count() + 1;
    let col = text.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    Pos::new(line as u32, col as u32)
}
