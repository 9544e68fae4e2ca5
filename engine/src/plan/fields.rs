//! Keys for shared evaluations: two items (patches, devices) that agree on
//! every top-level field an expression reads get the same key, so the
//! expression is evaluated once for both.

use std::collections::HashMap;

use crate::expr::eval::FieldUse;

pub struct FieldKeys {
    /// Field name → its column in `ids`.
    columns: HashMap<String, usize>,
    /// `ids[column][item]`: the interned value of that field of that item.
    ids: Vec<Vec<u32>>,
}

impl FieldKeys {
    /// Interns, for every field any of `uses` reads, the value each item
    /// holds there (its JSON text; an absent field is its own value).
    pub fn new<'a>(
        uses: impl Iterator<Item = &'a FieldUse>,
        items: impl Iterator<Item = &'a serde_json::Value> + Clone,
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
        for (field, &column) in &columns {
            let mut interned: HashMap<String, u32> = HashMap::new();
            ids[column] = items
                .clone()
                .map(|item| {
                    let text = match item.get(field) {
                        Some(value) => value.to_string(),
                        None => "\u{0}absent".to_owned(),
                    };
                    let next = interned.len() as u32;
                    *interned.entry(text).or_insert(next)
                })
                .collect();
        }
        FieldKeys { columns, ids }
    }

    /// The key of `item` for an expression with these field uses.
    pub fn key(&self, usage: &FieldUse, item: usize) -> Vec<u32> {
        match usage {
            FieldUse::Unused => Vec::new(),
            // Read whole: no two items are known to agree.
            FieldUse::Whole => vec![u32::MAX, item as u32],
            FieldUse::Fields(fields) => fields.iter().map(|f| self.ids[self.columns[f]][item]).collect(),
        }
    }
}
