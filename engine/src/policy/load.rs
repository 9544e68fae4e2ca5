//! From files to typed documents: UTF-8 and size checks, then YAML.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::model::{Kind, ParsedDocument, PolicyDocument};
use super::source::SourceFile;
use super::yaml::{Spanned, YamlLimits, from_str_documents};
use crate::diagnostics::{Diagnostic, Pos};

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
                Err(error) => out.diagnostics.push(Diagnostic::error(&*path, error.pos, error.message)),
            }
        }
    }
    out
}

/// The position just after `text`.
fn end_of(text: &str) -> Pos {
    let line = text.matches('\n').count() + 1;
    let col = text.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    Pos::new(line as u32, col as u32)
}
