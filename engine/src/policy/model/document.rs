use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::*;
use crate::diagnostics::{Pos, suggestion};
use crate::policy::yaml::Spanned;

/// Something done once per kind with its spec type (schema generation).
pub trait KindVisitor {
    fn visit<S: schemars::JsonSchema>(&mut self, kind: Kind);
}

/// The only apiVersion this engine reads.
pub const API_VERSION: &str = "patchward.dev/v1";

macro_rules! kinds {
    ($($kind:ident => $spec:ident, $file:literal;)*) => {
        /// The kinds of policy document.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $($kind,)*
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$kind,)*];

            /// The name written in `kind:`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => stringify!($kind),)*
                }
            }

            /// The stem of the kind's schema file in `schemas/`.
            pub const fn file_stem(self) -> &'static str {
                match self {
                    $(Kind::$kind => $file,)*
                }
            }

            pub fn from_name(name: &str) -> Option<Kind> {
                Kind::ALL.iter().copied().find(|k| k.name() == name)
            }
        }

        /// The typed `spec` of a document, one variant per kind.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        // A repository holds hundreds of documents, not millions: boxing
        // the large variants would buy nothing but noise.
        #[allow(clippy::large_enum_variant)]
        pub enum Spec {
            $($kind($spec),)*
        }

        impl Spec {
            pub const fn kind(&self) -> Kind {
                match self {
                    $(Spec::$kind(_) => Kind::$kind,)*
                }
            }
        }

        /// Deserializes a `spec` as the type its document's `kind` names.
        struct SpecSeed(Kind);

        impl<'de> DeserializeSeed<'de> for SpecSeed {
            type Value = Spec;

            fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Spec, D::Error> {
                Ok(match self.0 {
                    $(Kind::$kind => Spec::$kind($spec::deserialize(deserializer)?),)*
                })
            }
        }

        /// Calls the visitor once per kind with the kind's spec type.
        pub fn visit_kinds<V: KindVisitor>(visitor: &mut V) {
            $(visitor.visit::<$spec>(Kind::$kind);)*
        }
    };
}

kinds! {
    Scope => ScopeSpec, "scope";
    MaintenanceWindow => MaintenanceWindowSpec, "maintenance-window";
    DeploymentPolicy => DeploymentPolicySpec, "deployment-policy";
    ApprovalRule => ApprovalRuleSpec, "approval-rule";
    Approval => ApprovalSpec, "approval";
    Exclusion => ExclusionSpec, "exclusion";
    CatalogSource => CatalogSourceSpec, "catalog-source";
    Location => LocationSpec, "location";
    Settings => SettingsSpec, "settings";
    SoftwarePackage => SoftwarePackageSpec, "software-package";
    SoftwareAssignment => SoftwareAssignmentSpec, "software-assignment";
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One policy document: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDocument {
    pub api_version: Spanned<String>,
    #[serde(serialize_with = "serialize_kind")]
    pub kind: Spanned<Kind>,
    pub metadata: Metadata,
    pub spec: Spec,
}

fn serialize_kind<S: serde::Serializer>(kind: &Spanned<Kind>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

impl PolicyDocument {
    pub fn name(&self) -> &str {
        &self.metadata.name.value
    }
}

/// What one YAML document became: a typed document, or the problems that
/// kept it from being one (each at a position, unknown = the document's).
#[derive(Clone, Debug, PartialEq)]
pub enum ParsedDocument {
    Document(Box<PolicyDocument>),
    Invalid(Vec<(Pos, String)>),
}

const DOCUMENT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

impl<'de> Deserialize<'de> for ParsedDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = ParsedDocument;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a policy document: a mapping with apiVersion, kind, metadata and spec")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParsedDocument, A::Error> {
        let mut problems = Vec::new();
        let mut api_version: Option<Spanned<String>> = None;
        let mut kind_text: Option<Spanned<String>> = None;
        let mut kind: Option<Kind> = None;
        let mut metadata: Option<Metadata> = None;
        let mut spec: Option<Spec> = None;
        // A `spec` written before `kind` is kept untyped until `kind` is known;
        // positions inside it are then lost and fall back to the key's.
        let mut early_spec: Option<(Pos, serde_json::Value)> = None;

        while let Some(key) = map.next_key::<Spanned<String>>()? {
            match key.as_str() {
                "apiVersion" => api_version = Some(map.next_value()?),
                "kind" => {
                    let text: Spanned<String> = map.next_value()?;
                    kind = Kind::from_name(&text);
                    if kind.is_none() {
                        let names = Kind::ALL.iter().map(|k| k.name());
                        let hint = suggestion(&text, names.clone());
                        let expected = if hint.is_empty() {
                            format!("; expected one of {}", names.collect::<Vec<_>>().join(", "))
                        } else {
                            String::new()
                        };
                        problems.push((text.pos, format!("unknown kind `{}`{hint}{expected}", text.value)));
                    }
                    kind_text = Some(text);
                }
                "metadata" => metadata = Some(map.next_value()?),
                "spec" => match kind {
                    Some(kind) => spec = Some(map.next_value_seed(SpecSeed(kind))?),
                    None if kind_text.is_some() => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    None => early_spec = Some((key.pos, map.next_value()?)),
                },
                other => {
                    let hint = suggestion(other, DOCUMENT_FIELDS.iter().copied());
                    problems.push((
                        key.pos,
                        if hint.is_empty() {
                            format!("unknown field `{other}`; a document has only apiVersion, kind, metadata and spec")
                        } else {
                            format!("unknown field `{other}`{hint}")
                        },
                    ));
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }

        if let (Some(kind), Some((pos, value))) = (kind, early_spec) {
            match SpecSeed(kind).deserialize(value) {
                Ok(typed) => spec = Some(typed),
                Err(e) => problems.push((pos, format!("in spec: {e}"))),
            }
        }
        for (field, missing) in [
            ("apiVersion", api_version.is_none()),
            ("kind", kind_text.is_none()),
            ("metadata", metadata.is_none()),
            ("spec", spec.is_none() && kind.is_some() && problems.is_empty()),
        ] {
            if missing {
                problems.push((Pos::UNKNOWN, format!("missing field `{field}`")));
            }
        }
        match (api_version, kind_text, kind, metadata, spec) {
            (Some(api_version), Some(kind_text), Some(kind), Some(metadata), Some(spec)) if problems.is_empty() => {
                Ok(ParsedDocument::Document(Box::new(PolicyDocument {
                    api_version,
                    kind: Spanned::new(kind, kind_text.pos),
                    metadata,
                    spec,
                })))
            }
            _ => Ok(ParsedDocument::Invalid(problems)),
        }
    }
}
