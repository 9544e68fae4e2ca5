//! What a device is exposed to, as the planner finds it: every active patch
//! that applies to it and is not installed, whatever was decided.
//!
//! A fleet is exposed to far more patches than it is given: every Windows
//! update nobody approved applies to every device of its platform. So a
//! device's exposure is not a list of rows but an [`ExposureSet`] of three
//! parts, and decisions are found when a row is read ([`Plan::exposure_of`]):
//!
//! - `fixless`: the active patches without package fixes whose platform,
//!   arch and language lists admit the device's; one list, shared by every
//!   device of that (platform, arch, language);
//! - `present`: those of them the device has: its inventory lists the
//!   patch, or a patch that supersedes it (transitively);
//! - `needed`: the patches with package fixes the device needs (DESIGN's
//!   rule, `patchward_api::fixes`) and does not have by inventory, found
//!   from the device's packages through an index of the names fixes use,
//!   each name's fixes sorted by fixed version: a package needs exactly the
//!   fixes past its version, found by a binary search, never by scanning
//!   the catalog or comparing every fix.
//!
//! Exposure is `fixless − present`, then `needed`, in patch order.
//!
//! The same lookup of a device's packages ([`PackageHits`]) also gives the
//! planner each patch's fix state for its items: the patches whose fixes
//! name none of the device's packages are not applicable without being
//! looked at, which is most of them.

use std::sync::Arc;

use patchward_api::fixes::{FixKind, FixState};
use patchward_api::{Device, PackageManager, compare_versions};

use super::{DeviceKind, DevicePlan, Exposure, ExposureDecision, Plan, PlanCatalog};
use crate::policy::model::ItemAction;

/// One device's exposure (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExposureSet {
    pub fixless: Arc<[u32]>,
    /// Sorted; a subset of `fixless`.
    pub present: Vec<u32>,
    /// Sorted; patches with package fixes.
    pub needed: Vec<u32>,
}

impl ExposureSet {
    /// The patches, ascending.
    pub fn patches(&self) -> impl Iterator<Item = u32> + '_ {
        let mut present = self.present.iter().peekable();
        let missing = self.fixless.iter().copied().filter(move |p| {
            while present.next_if(|q| **q < *p).is_some() {}
            present.next_if_eq(&p).is_none()
        });
        merge(missing, self.needed.iter().copied())
    }

    pub fn len(&self) -> usize {
        self.fixless.len() - self.present.len() + self.needed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Two ascending, disjoint sequences of patches as one.
pub fn merge(a: impl Iterator<Item = u32>, b: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
    merge_by_key(a, b, |patch| *patch)
}

/// [`merge`] of two lists ascending by `key`.
pub fn merge_by_key<T, K: Ord>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if key(y) < key(x) => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// Which side of [`diff_ascending`] held an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    /// Only in the new list.
    Gained,
    /// Only in the old list.
    Lost,
}

/// Walks two ascending lists side by side, telling each element only
/// `old` holds (lost) and each only `new` holds (gained), in one pass.
pub fn diff_ascending<T: Ord + Copy>(old: &[T], new: &[T], mut on: impl FnMut(T, Moved)) {
    let (mut o, mut n) = (0, 0);
    loop {
        let order = match (old.get(o), new.get(n)) {
            (None, None) => return,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
        };
        match order {
            std::cmp::Ordering::Equal => (o, n) = (o + 1, n + 1),
            std::cmp::Ordering::Less => {
                on(old[o], Moved::Lost);
                o += 1;
            }
            std::cmp::Ordering::Greater => {
                on(new[n], Moved::Gained);
                n += 1;
            }
        }
    }
}

/// What finding a device's exposure reads, built once per plan.
pub(super) struct ExposureIndex<'c> {
    /// Per patch, the active patches it supersedes, transitively.
    supersedes: Vec<Vec<u32>>,
    /// Per manager, fixes by the name that judges an installed package:
    /// binary fixes by binary name (the package's version compared);
    binary: [Names<'c>; 2],
    /// source fixes by source name (its source version compared);
    source: [Names<'c>; 2],
    /// source fixes by the binaries they list, for a package whose
    /// inventory names no source (an older agent: its own version).
    listed: [Names<'c>; 2],
    cuts: Cuts,
    /// How many active patches the catalog holds: the size of a device's
    /// hit sets.
    patches: usize,
}

/// Where a package's version falls in each list of fixes under its name,
/// remembered by (list, version): a fleet holds few distinct versions of a
/// package, and comparing versions is the dearest step of finding a
/// device's hits. Shared by the threads that plan devices.
struct Cuts {
    /// By the list's address, then the version.
    shards: Vec<std::sync::RwLock<VersionCuts>>,
    hasher: foldhash::fast::FixedState,
}

type VersionCuts = foldhash::HashMap<usize, foldhash::HashMap<Box<str>, u32>>;

impl Cuts {
    const SHARDS: usize = 64;

    fn new() -> Cuts {
        let shards = (0..Self::SHARDS).map(|_| Default::default()).collect();
        Cuts { shards, hasher: foldhash::fast::FixedState::default() }
    }

    /// The position of the first fix in `list` past `version`, found once.
    fn first(&self, list: &[Threshold], version: &str, find: impl FnOnce() -> usize) -> usize {
        use std::hash::BuildHasher;
        let address = list.as_ptr() as usize;
        let shard = &self.shards[self.hasher.hash_one((address, version)) as usize % Self::SHARDS];
        let known = shard.read().unwrap_or_else(|e| e.into_inner()).get(&address).and_then(|v| v.get(version).copied());
        if let Some(first) = known {
            return first as usize;
        }
        let first = find();
        let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
        shard.entry(address).or_default().insert(version.into(), first as u32);
        first
    }
}

/// Each name's fixes, ascending by fixed version.
type Names<'c> = foldhash::HashMap<&'c str, Vec<Threshold<'c>>>;

struct Threshold<'c> {
    fixed: &'c str,
    platform: Option<&'c str>,
    patch: u32,
}

const fn slot(manager: PackageManager) -> usize {
    match manager {
        PackageManager::Dpkg => 0,
        PackageManager::Rpm => 1,
    }
}

impl<'c> ExposureIndex<'c> {
    pub(super) fn new(catalog: &'c PlanCatalog) -> Self {
        let mut index = ExposureIndex {
            supersedes: vec![Vec::new(); catalog.len()],
            binary: Default::default(),
            source: Default::default(),
            listed: Default::default(),
            cuts: Cuts::new(),
            patches: catalog.len(),
        };
        for (patch, plan_patch) in catalog.patches.iter().enumerate() {
            for newer in plan_patch.view.superseded_by.iter().filter_map(|id| catalog.get(id)) {
                index.supersedes[newer as usize].push(patch as u32);
            }
            for fix in &plan_patch.view.record.patch.fixes {
                let threshold =
                    || Threshold { fixed: &fix.fixed_version, platform: fix.platform.as_deref(), patch: patch as u32 };
                let slot = slot(fix.manager);
                match fix.kind {
                    FixKind::Binary => index.binary[slot].entry(&fix.package).or_default().push(threshold()),
                    FixKind::Source => {
                        index.source[slot].entry(&fix.package).or_default().push(threshold());
                        for binary in fix.binaries.iter().filter(|b| **b != fix.package) {
                            index.listed[slot].entry(binary).or_default().push(threshold());
                        }
                    }
                }
            }
        }
        for manager in [PackageManager::Dpkg, PackageManager::Rpm] {
            let slot = slot(manager);
            for names in [&mut index.binary[slot], &mut index.source[slot], &mut index.listed[slot]] {
                for list in names.values_mut() {
                    list.sort_by(|a, b| compare_versions(a.fixed, b.fixed, manager.scheme()));
                }
            }
        }
        index
    }

    /// Adds to `hits` what `names` holds under `name` for `platform`: every
    /// patch to `touched`, those whose fixed version is past `version` to
    /// `needed`.
    fn lookup(
        &self,
        names: &Names<'c>,
        manager: PackageManager,
        (name, version): (&str, &str),
        platform: Option<&str>,
        hits: &mut PackageHits,
    ) {
        let Some(list) = names.get(name) else { return };
        let first = self.cuts.first(list, version, || {
            list.partition_point(|t| compare_versions(t.fixed, version, manager.scheme()).is_le())
        });
        for (position, threshold) in list.iter().enumerate() {
            if threshold.platform.is_none() || threshold.platform == platform {
                hits.touched.insert(threshold.patch);
                if position >= first {
                    hits.needed.insert(threshold.patch);
                }
            }
        }
    }

    /// What `device`'s packages say about the patches with package fixes:
    /// the same answer as `patchward_api::fixes::fix_state` for each, found
    /// from the packages instead of from every patch.
    pub(super) fn hits(&self, device: &Device) -> PackageHits {
        let mut hits = PackageHits::new(self.patches, device.inventory.packages.is_empty());
        let platform = device.facts.platform.as_deref();
        for package in &device.inventory.packages {
            let (manager, slot) = (package.manager, slot(package.manager));
            let own = (&*package.name, &*package.version);
            self.lookup(&self.binary[slot], manager, own, platform, &mut hits);
            let source = (package.source_name(), package.source_version());
            self.lookup(&self.source[slot], manager, source, platform, &mut hits);
            if package.source.is_none() {
                self.lookup(&self.listed[slot], manager, own, platform, &mut hits);
            }
        }
        hits
    }

    /// The fixless patches of a device kind: what every device of it is
    /// exposed to before its inventory is read.
    pub(super) fn fixless(catalog: &PlanCatalog, applies: &[bool]) -> Arc<[u32]> {
        (0..catalog.len() as u32)
            .filter(|p| applies[*p as usize] && catalog.patches[*p as usize].view.record.patch.fixes.is_empty())
            .collect()
    }

    /// Per active patch, whether its lists admit a device kind.
    pub(super) fn applies(catalog: &PlanCatalog, kind: DeviceKind) -> Arc<[bool]> {
        catalog.patches.iter().map(|patch| super::applies_by_lists(patch, kind)).collect()
    }

    /// `device`'s exposure, given what its packages hit, its kind's fixless
    /// patches and which patches the kind's lists admit.
    pub(super) fn device(
        &self,
        catalog: &PlanCatalog,
        device: &Device,
        hits: &PackageHits,
        fixless: &Arc<[u32]>,
        applies: &[bool],
    ) -> ExposureSet {
        let mut covered: Vec<u32> = Vec::new();
        for patch in device.inventory.patches.iter().filter_map(|id| catalog.get(id)) {
            covered.push(patch);
            covered.extend_from_slice(&self.supersedes[patch as usize]);
        }
        covered.sort_unstable();
        covered.dedup();
        let present = covered.iter().copied().filter(|p| fixless.binary_search(p).is_ok()).collect();
        let needed = hits.needed.iter().filter(|p| covered.binary_search(p).is_err() && applies[*p as usize]).collect();
        ExposureSet { fixless: Arc::clone(fixless), present, needed }
    }
}

/// The patches with package fixes that name one of a device's packages
/// (`touched`) and those it needs (`needed`), as sets over the catalog: a
/// device's packages hit hundreds of fixes, in no order, often twice.
#[derive(Debug)]
pub(super) struct PackageHits {
    touched: PatchSet,
    needed: PatchSet,
}

impl PackageHits {
    /// Empty sets for a catalog of `patches`; nothing to hold when the
    /// device has no packages.
    fn new(patches: usize, none: bool) -> PackageHits {
        let size = if none { 0 } else { patches };
        PackageHits { touched: PatchSet::new(size), needed: PatchSet::new(size) }
    }

    /// `fix_state` of a patch that has package fixes.
    pub(super) fn state(&self, patch: u32) -> FixState {
        if self.needed.contains(patch) {
            FixState::Needed
        } else if self.touched.contains(patch) {
            FixState::Fixed
        } else {
            FixState::NotApplicable
        }
    }

    /// Whether the device has no packages, so that no fix can name one
    /// (its sets hold nothing, not even room).
    pub(super) fn without_packages(&self) -> bool {
        self.touched.words.is_empty()
    }
}

/// A set of patches, one bit each.
#[derive(Debug)]
struct PatchSet {
    words: Vec<u64>,
}

impl PatchSet {
    fn new(patches: usize) -> PatchSet {
        PatchSet { words: vec![0; patches.div_ceil(64)] }
    }

    fn insert(&mut self, patch: u32) {
        self.words[patch as usize / 64] |= 1 << (patch % 64);
    }

    fn contains(&self, patch: u32) -> bool {
        self.words.get(patch as usize / 64).is_some_and(|word| word & (1 << (patch % 64)) != 0)
    }

    /// The patches, ascending.
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    index as u32 * 64 + bit
                })
            })
        })
    }
}

impl Plan {
    /// Why `device` is exposed to `patch`: an Exclusion for it beats
    /// everything, then a grant that installs it, then what the policy
    /// decided about the patch. A patch a rule approves for scopes the
    /// device is not in is unmatched for that device, by that rule.
    pub fn exposure_of(&self, device: &DevicePlan, patch: u32) -> Exposure {
        let in_scope = |scope: u32| device.scopes.binary_search(&scope).is_ok();
        let exclusion = self.excluded_by[patch as usize]
            .iter()
            .copied()
            .find(|&e| super::declines(self.exclusion_scopes[e as usize].iter().copied(), in_scope));
        let grants = &self.grants[patch as usize];
        let installs = grants.iter().position(|g| in_scope(g.scope) && g.action == ItemAction::Install);
        let (decision, by) = match (exclusion, installs) {
            (Some(exclusion), _) => (ExposureDecision::Excluded, exclusion),
            (None, Some(grant)) => (ExposureDecision::Approved, grant as u32),
            (None, None) => {
                let verdict = self.verdicts[patch as usize];
                match verdict.decision {
                    ExposureDecision::Approved => (ExposureDecision::Unmatched, verdict.rule),
                    decision => (decision, verdict.rule),
                }
            }
        };
        Exposure { patch, decision, by }
    }

    /// The decision every device exposed to `patch` gets, when no device's
    /// own grants or exclusions can change it (`exposure_of` without an
    /// exclusion or an install grant to look for); `None` when they can.
    pub fn uniform_decision(&self, patch: u32) -> Option<ExposureDecision> {
        let installs = self.grants[patch as usize].iter().any(|g| g.action == ItemAction::Install);
        if installs || !self.excluded_by[patch as usize].is_empty() {
            return None;
        }
        Some(match self.verdicts[patch as usize].decision {
            ExposureDecision::Approved => ExposureDecision::Unmatched,
            decision => decision,
        })
    }

    /// Whether any device exposed to `patch` can get `wanted` from
    /// `exposure_of`: an exclusion for it gives `excluded`, an install
    /// grant `approved`, anything else the patch's own verdict.
    pub fn may_decide(&self, patch: u32, wanted: ExposureDecision) -> bool {
        let verdict = match self.verdicts[patch as usize].decision {
            ExposureDecision::Approved => ExposureDecision::Unmatched,
            decision => decision,
        };
        let installs = self.grants[patch as usize].iter().any(|g| g.action == ItemAction::Install);
        wanted == verdict
            || (wanted == ExposureDecision::Excluded && !self.excluded_by[patch as usize].is_empty())
            || (wanted == ExposureDecision::Approved && installs)
    }

    /// Every exposure of `device`, with its decision, by patch.
    pub fn exposures<'a>(&'a self, device: &'a DevicePlan) -> impl Iterator<Item = Exposure> + 'a {
        device.exposure.patches().map(move |patch| self.exposure_of(device, patch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ascending_lists_are_walked_into_what_was_lost_and_gained() {
        let mut moved = Vec::new();
        diff_ascending(&[1, 3, 5, 9], &[2, 3, 9, 10, 11], |p, m| moved.push((p, m)));
        let (gained, lost) = (Moved::Gained, Moved::Lost);
        assert_eq!(moved, [(1, lost), (2, gained), (5, lost), (10, gained), (11, gained)]);
        diff_ascending::<u32>(&[], &[], |_, _| panic!("nothing to tell"));
    }

    #[test]
    fn exposure_is_the_missing_fixless_patches_then_the_needed_ones_in_order() {
        let set = ExposureSet { fixless: Arc::from([1, 3, 5, 7, 9]), present: vec![3, 9], needed: vec![0, 4, 10] };
        assert_eq!(set.patches().collect::<Vec<_>>(), [0, 1, 4, 5, 7, 10]);
        assert_eq!(set.len(), 6);
        let none = ExposureSet { fixless: Arc::from([2, 4]), present: vec![2, 4], needed: vec![] };
        assert!(none.is_empty() && none.patches().next().is_none());
    }

    #[test]
    fn a_patch_set_holds_each_patch_once_and_lists_them_ascending() {
        let mut set = PatchSet::new(130);
        for patch in [129, 64, 0, 63, 64, 5] {
            set.insert(patch);
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 5, 63, 64, 129]);
        assert!(set.contains(63) && !set.contains(62) && !set.contains(1000));
        assert!(!PatchSet::new(0).contains(0) && PatchSet::new(0).iter().next().is_none());
    }
}
