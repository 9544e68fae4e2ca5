//! Device classes: what devices share of their plans before their
//! inventories are read.
//!
//! A device's kind (platform, arch, language) decides which patches can
//! apply to it at all; its kind and its scopes decide, for every patch,
//! which grant brings it and which Exclusion declines it. Devices of one
//! kind in the same scopes form a class, and a real fleet has few: its
//! candidates are found once per class, so a device only reads its own
//! inventory against them.

use std::collections::HashMap;
use std::sync::Arc;

use patchward_api::Device;
use rayon::prelude::*;

use super::device::Decided;
use super::{Grant, PlanCatalog, PlanInput, declines, exposed};

/// A device's (platform, arch, language): what applicability lists test.
pub type DeviceKind<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// A device's kind.
pub(super) fn kind_of(device: &Device) -> DeviceKind<'_> {
    let facts = &device.facts;
    (facts.platform.as_deref(), facts.arch.as_deref(), facts.language.as_deref())
}

/// What the devices of one kind share: the patches with a grant that can
/// apply to them, and the fixless patches they are exposed to before their
/// inventory is read.
pub(super) struct KindPatches {
    /// Ascending.
    pub reachable: Vec<u32>,
    pub fixless: Arc<[u32]>,
    /// Per active patch, whether its lists admit the kind.
    pub applies: Arc<[bool]>,
}

/// Devices of one kind in the same scopes.
pub(super) struct Class {
    /// Index into the kinds.
    pub kind: usize,
    /// The scopes, ascending (`all`, 0, always).
    pub scopes: Vec<u32>,
    /// Patches without package fixes that a grant brings to the class (or
    /// an Exclusion declines there), ascending: every device of the class
    /// has each as an item or an exclusion.
    pub fixless: Vec<Candidate>,
    /// Patches with package fixes that a grant brings (or an Exclusion
    /// declines), ascending: a device has those its packages touch.
    pub fixed: Vec<Candidate>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Candidate {
    pub patch: u32,
    pub reach: Reach,
}

/// How a candidate patch reaches the devices of a class.
#[derive(Clone, Copy, Debug)]
pub(super) enum Reach {
    /// Through the grant of this index in `grants[patch]`, the first in
    /// precedence order whose scope holds the class.
    Grant(u32),
    /// Declined by the Exclusion of this index.
    Excluded(u32),
}

impl Class {
    /// Whether the class is in `scope`.
    pub fn in_scope(&self, scope: u32) -> bool {
        self.scopes.binary_search(&scope).is_ok()
    }
}

/// The fleet sorted into classes: each device's class, and the classes.
pub(super) struct Classes {
    pub kinds: Vec<KindPatches>,
    pub classes: Vec<Class>,
    /// Per device (in the planner's order), its class.
    pub class_of: Vec<u32>,
}

impl Classes {
    /// Sorts `devices` into classes by their kind and their scopes
    /// (`membership[scope][device]`), and finds each class's candidates.
    pub fn new(input: &PlanInput, decided: &Decided, devices: &[&Device]) -> Classes {
        let membership = decided.membership;
        let (kind_names, kinds) = kinds(input.catalog, decided.grants, devices);
        let kind_index: HashMap<DeviceKind, usize> = kind_names.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let keys: Vec<(usize, Vec<u32>)> = (0..devices.len())
            .into_par_iter()
            .with_min_len(super::PARALLEL_FROM)
            .map(|device| {
                let scopes = (0..membership.len() as u32).filter(|s| membership[*s as usize][device]).collect();
                (kind_index[&kind_of(devices[device])], scopes)
            })
            .collect();
        let mut ids: foldhash::HashMap<&(usize, Vec<u32>), u32> = Default::default();
        let mut distinct: Vec<&(usize, Vec<u32>)> = Vec::new();
        let class_of = keys
            .iter()
            .map(|key| {
                *ids.entry(key).or_insert_with(|| {
                    distinct.push(key);
                    (distinct.len() - 1) as u32
                })
            })
            .collect();
        let classes = distinct
            .into_par_iter()
            .map(|(kind, scopes)| candidates(input, decided, &kinds[*kind].reachable, *kind, scopes.clone()))
            .collect();
        Classes { kinds, classes, class_of }
    }
}

/// Every kind in the fleet, with its patches: only patches with a grant for
/// items, every fixless one for exposure.
fn kinds<'d>(
    catalog: &PlanCatalog,
    grants: &[Vec<Grant>],
    devices: &[&'d Device],
) -> (Vec<DeviceKind<'d>>, Vec<KindPatches>) {
    let reachable: Vec<u32> = (0..catalog.len() as u32).filter(|p| !grants[*p as usize].is_empty()).collect();
    let mut names: Vec<DeviceKind> = devices.iter().map(|d| kind_of(d)).collect();
    names.sort_unstable();
    names.dedup();
    let kinds = names
        .par_iter()
        .map(|name| {
            let applies = exposed::ExposureIndex::applies(catalog, *name);
            KindPatches {
                reachable: reachable.iter().copied().filter(|p| applies[*p as usize]).collect(),
                fixless: exposed::ExposureIndex::fixless(catalog, &applies),
                applies,
            }
        })
        .collect();
    (names, kinds)
}

/// A class's candidates: each reachable patch that a grant brings to its
/// scopes, with the first such grant, or the Exclusion that declines it.
fn candidates(input: &PlanInput, decided: &Decided, reachable: &[u32], kind: usize, scopes: Vec<u32>) -> Class {
    let Decided { grants, excluded_by, .. } = *decided;
    let (catalog, policy) = (input.catalog, input.policy);
    let mut class = Class { kind, scopes, fixless: Vec::new(), fixed: Vec::new() };
    for &patch in reachable {
        let in_scope = |scope: u32| class.in_scope(scope);
        let Some(grant) = grants[patch as usize].iter().position(|g| in_scope(g.scope)) else { continue };
        let exclusion = excluded_by[patch as usize]
            .iter()
            .find(|&&e| declines(policy.exclusions[e as usize].scopes.iter().map(|s| *s as u32), in_scope));
        let reach = match exclusion {
            Some(&exclusion) => Reach::Excluded(exclusion),
            None => Reach::Grant(grant as u32),
        };
        let candidate = Candidate { patch, reach };
        match catalog.patches[patch as usize].view.record.patch.fixes.is_empty() {
            true => class.fixless.push(candidate),
            false => class.fixed.push(candidate),
        }
    }
    class
}
