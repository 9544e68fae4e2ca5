//! Keys for shared evaluations: two items (patches, devices) that agree on
//! every top-level field an expression reads get the same key, so the
//! expression is evaluated once for both.

use std::collections::HashMap;

use crate::expr::eval::{FieldUse, FieldValue, Record};

pub struct FieldKeys {
    /// Field name → its column in `ids`.
    columns: HashMap<String, usize>,
    /// `ids[column][item]`: the interned value of that field of that item.
    ids: Vec<Vec<u32>>,
    /// How many distinct values each column holds.
    distinct: Vec<u64>,
    items: usize,
}

/// A field value as a hash key, compared by value, never serialized. A
/// field is always read the same way (typed or JSON), so the kinds never
/// need to compare across.
#[derive(PartialEq, Eq, Hash)]
enum Part<'a> {
    Str(&'a str),
    StrList(&'a [String]),
    Time(jiff::Timestamp),
    Json(JsonKey<'a>),
    StrMap(&'a patchward_api::Labels),
}

impl<'a> Part<'a> {
    fn of(value: FieldValue<'a>) -> Part<'a> {
        match value {
            FieldValue::Str(s) => Part::Str(s),
            FieldValue::StrList(list) => Part::StrList(list),
            FieldValue::Time(t) => Part::Time(t),
            FieldValue::Json(json) => Part::Json(JsonKey(json)),
            FieldValue::StrMap(map) => Part::StrMap(map),
        }
    }
}

/// A JSON value as a hash key.
#[derive(PartialEq, Eq)]
struct JsonKey<'a>(&'a serde_json::Value);

impl std::hash::Hash for JsonKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_json(self.0, state);
    }
}

fn hash_json<H: std::hash::Hasher>(value: &serde_json::Value, state: &mut H) {
    use std::hash::Hash;
    std::mem::discriminant(value).hash(state);
    match value {
        serde_json::Value::Null => {}
        serde_json::Value::Bool(b) => b.hash(state),
        // Equal numbers have equal text; hashing the text keeps Hash
        // consistent with serde_json's `==` for every number kind.
        serde_json::Value::Number(n) => n.to_string().hash(state),
        serde_json::Value::String(s) => s.hash(state),
        serde_json::Value::Array(items) => {
            items.len().hash(state);
            items.iter().for_each(|item| hash_json(item, state));
        }
        serde_json::Value::Object(map) => {
            map.len().hash(state);
            for (key, item) in map {
                key.hash(state);
                hash_json(item, state);
            }
        }
    }
}

/// The key of an item for one expression. Up to four fields need no
/// allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Small([u32; 4]),
    Large(Vec<u32>),
}

impl FieldKeys {
    /// Interns, for every field any of `uses` reads, the value each item
    /// holds there (an absent field is its own value). Items are read as
    /// [`Record`]s, so a patch's common fields come from its typed record.
    pub fn new<'a, R: Record + 'a>(
        uses: impl Iterator<Item = &'a FieldUse>,
        items: impl Iterator<Item = &'a R> + Clone,
    ) -> FieldKeys {
        let mut columns = HashMap::new();
        for usage in uses {
            if let FieldUse::Fields(fields) = usage {
                for field in fields {
                    let next = columns.len();
                    columns.entry(field.clone()).or_insert(next);
                }
            }
        }
        let mut ids = vec![Vec::new(); columns.len()];
        let mut distinct = vec![0; columns.len()];
        let items_count = items.clone().count();
        for (field, &column) in &columns {
            let mut interned: foldhash::HashMap<Option<Part>, u32> = Default::default();
            ids[column] = items
                .clone()
                .map(|item| {
                    let next = interned.len() as u32;
                    *interned.entry(item.field(field).map(Part::of)).or_insert(next)
                })
                .collect();
            distinct[column] = interned.len() as u64;
        }
        FieldKeys { columns, ids, distinct, items: items_count }
    }

    /// Whether items share keys often enough for a cache to pay: the
    /// combinations of the fields read are fewer than half the items.
    pub fn worth_sharing(&self, usage: &FieldUse) -> bool {
        let combinations = match usage {
            FieldUse::Unused => 1,
            FieldUse::Whole => u64::MAX,
            FieldUse::Fields(fields) => {
                fields.iter().fold(1u64, |product, f| product.saturating_mul(self.distinct[self.columns[f]]))
            }
        };
        combinations.saturating_mul(2) <= self.items as u64
    }

    /// The key of `item` for an expression with these field uses.
    pub fn key(&self, usage: &FieldUse, item: usize) -> Key {
        match usage {
            FieldUse::Unused => Key::Small([0; 4]),
            // Read whole: no two items are known to agree.
            FieldUse::Whole => Key::Small([u32::MAX, item as u32, 0, 0]),
            FieldUse::Fields(fields) if fields.len() <= 4 => {
                let mut key = [0u32; 4];
                for (slot, f) in key.iter_mut().zip(fields) {
                    *slot = self.ids[self.columns[f]][item];
                }
                Key::Small(key)
            }
            FieldUse::Fields(fields) => Key::Large(fields.iter().map(|f| self.ids[self.columns[f]][item]).collect()),
        }
    }
}
