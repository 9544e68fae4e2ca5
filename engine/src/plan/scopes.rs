//! Which devices each scope holds, and which Location each device is in.
//!
//! A selector is evaluated once per distinct combination of the device facts
//! it reads, and a device's CEL value is built only when its combination is
//! new.

use patchward_api::Device;
use rayon::prelude::*;

use super::compile::CompiledScope;
use super::fields::{self, FieldKeys};
use super::{CompiledPolicy, EXAMPLES};
use crate::diagnostics::Diagnostic;
use crate::expr::eval::{CelValue, EvalError, Evaluator, FieldValue, Record};

/// A scope's members, and the devices its selector failed on (with why).
type ScopeMembers = (Vec<bool>, Vec<(usize, String)>);

/// `membership[scope][device]`. `all` (scope 0) holds every device.
/// Selector failures are reported into `diagnostics`.
pub fn scope_membership(
    policy: &CompiledPolicy,
    devices: &[&Device],
    evaluator: &Evaluator,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Vec<bool>> {
    let records: Vec<DeviceRecord> = devices.iter().map(|d| DeviceRecord(d)).collect();
    let no_fields = crate::expr::eval::FieldUse::Unused;
    let keys = FieldKeys::new(
        policy.scopes.iter().map(|s| s.selector.as_ref().map_or(&no_fields, |m| &m.fields)),
        records.iter(),
    );
    // A few devices (one, re-planned at its inventory) stay on this thread.
    let per_thread = if devices.len() < super::PARALLEL_FROM { usize::MAX } else { 1 };
    let results: Vec<ScopeMembers> = policy
        .scopes
        .par_iter()
        .with_min_len(per_thread)
        .map(|scope| members(scope, devices, &keys, evaluator))
        .collect();
    let mut membership = Vec::with_capacity(results.len());
    for (scope, (mut members, failures)) in policy.scopes.iter().zip(results) {
        if scope.name == crate::policy::SCOPE_ALL {
            members = vec![true; devices.len()];
        }
        if let (Some(selector), false) = (&scope.selector, failures.is_empty()) {
            let examples: Vec<String> =
                failures.iter().take(EXAMPLES).map(|(d, e)| format!("{}: {e}", devices[*d].id)).collect();
            diagnostics.push(selector.origin.warning(format!(
                "the selector of scope `{}` failed to evaluate for {} device(s), left out of the scope: {}",
                scope.name,
                failures.len(),
                examples.join("; ")
            )));
        }
        membership.push(members);
    }
    membership
}

/// One scope's members: the devices it lists, and those its selector holds
/// for. The selector is evaluated once per key, over the JSON of the first
/// device with that key.
fn members(scope: &CompiledScope, devices: &[&Device], keys: &FieldKeys, evaluator: &Evaluator) -> ScopeMembers {
    let mut members: Vec<bool> = match scope.devices.is_empty() {
        true => vec![false; devices.len()],
        false => devices.iter().map(|d| scope.devices.contains(&d.id)).collect(),
    };
    let mut failures = Vec::new();
    let Some(selector) = &scope.selector else { return (members, failures) };
    let mut cache: foldhash::HashMap<fields::Key, Result<bool, EvalError>> = Default::default();
    for (index, member) in members.iter_mut().enumerate() {
        let key = keys.key(&selector.fields, index);
        let answer = cache.entry(key).or_insert_with(|| {
            let value = CelValue::from_json(&device_json(devices[index]), &[]);
            evaluator.evaluate(&selector.expr, "device", &value)
        });
        match answer {
            Ok(true) => *member = true,
            Ok(false) => {}
            Err(e) => failures.push((index, e.to_string())),
        }
    }
    (members, failures)
}

/// A device's facts as CEL's `device` holds them, read field by field for
/// the selectors' keys without building its JSON: the same fields, present
/// when [`device_json`] has them.
struct DeviceRecord<'a>(&'a Device);

impl Record for DeviceRecord<'_> {
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        let facts = &self.0.facts;
        fn text(value: &Option<String>) -> Option<FieldValue<'_>> {
            value.as_deref().map(FieldValue::Str)
        }
        match name {
            "id" => Some(FieldValue::Str(&self.0.id)),
            "os" => text(&facts.os),
            "platform" => text(&facts.platform),
            "arch" => text(&facts.arch),
            "language" => text(&facts.language),
            "hostname" => text(&facts.hostname),
            "timezone" => text(&facts.timezone),
            "ip" => text(&facts.ip),
            "labels" => Some(FieldValue::StrMap(&facts.labels)),
            "groups" => Some(FieldValue::StrList(&facts.groups)),
            _ => None,
        }
    }
}

/// What CEL sees as `device`: its id and every fact it has.
pub fn device_json(device: &Device) -> serde_json::Value {
    let mut value = serde_json::to_value(&device.facts).unwrap_or_else(|_| serde_json::json!({}));
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("id".into(), serde_json::Value::String(device.id.clone()));
    }
    value
}

/// A network of a Location.
pub(super) struct LocationNet {
    pub net: ipnet::IpNet,
    pub location: u32,
}

/// Every Location's networks, the most specific first.
pub(super) fn locations(policy: &CompiledPolicy) -> Vec<LocationNet> {
    let mut nets = Vec::new();
    for (index, location) in policy.policy.locations.values().enumerate() {
        for network in &location.spec.networks {
            if let Ok(net) = network.value.parse::<ipnet::IpNet>() {
                nets.push(LocationNet { net, location: index as u32 });
            }
        }
    }
    // The most specific network wins; then the Location that sorts first.
    nets.sort_by(|a, b| b.net.prefix_len().cmp(&a.net.prefix_len()).then(a.location.cmp(&b.location)));
    nets
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchward_api::Facts;

    /// The typed record reads what `device_json` holds, field for field, so
    /// two devices share a selector's key only when their JSON agrees there.
    #[test]
    fn the_device_record_agrees_with_the_device_json() {
        let full = Device {
            id: "dev-1".into(),
            facts: Facts {
                os: Some("linux".into()),
                platform: Some("debian-12".into()),
                arch: Some("x86_64".into()),
                language: Some("en-US".into()),
                hostname: Some("host".into()),
                labels: [("ring".to_owned(), "pilot".to_owned())].into(),
                groups: vec!["finance".into()],
                timezone: Some("Europe/Helsinki".into()),
                ip: Some("10.0.0.1".into()),
            },
            ..Device::default()
        };
        let bare = Device { id: "dev-2".into(), ..Device::default() };
        let names = ["id", "os", "platform", "arch", "language", "hostname", "labels", "groups", "timezone", "ip", "x"];
        for device in [&full, &bare] {
            let json = device_json(device);
            let object = json.as_object().expect("an object");
            assert!(object.keys().all(|k| names.contains(&k.as_str())), "every field is known: {object:?}");
            for name in names {
                let record = DeviceRecord(device);
                let typed = record.field(name);
                let same = match (typed, object.get(name)) {
                    (None, None) => true,
                    (Some(FieldValue::Str(a)), Some(serde_json::Value::String(b))) => a == b,
                    (Some(FieldValue::StrList(a)), Some(b)) => serde_json::json!(a) == *b,
                    (Some(FieldValue::StrMap(a)), Some(b)) => serde_json::json!(a) == *b,
                    _ => false,
                };
                assert!(same, "{} {name}", device.id);
            }
        }
    }
}
