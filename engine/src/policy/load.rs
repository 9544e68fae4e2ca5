//! From files to typed documents: UTF-8 and size checks, then YAML.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::{ParsedDocument, PolicyDocument};
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
                    "the file holds {} or more documents; the limit is {} per file",
                    separators, limits.max_documents
                ),
            ));
            continue;
        }
        for result in from_str_documents::<Spanned<ParsedDocument>>(text, limits) {
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
