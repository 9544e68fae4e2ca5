//! A device's items, stored so that a million devices fit.
//!
//! Most of a Windows device's items come from patches without package
//! fixes: every device of its class (kind and scopes) gets each of them
//! through the same grant, and only whether the patch is already on the
//! device differs (it decides `installed`, or for an uninstall whether it
//! is still to be removed). Those items are kept once per class
//! ([`ClassItems`]); a device keeps the positions of the ones present on it,
//! and its own items: patches its packages bring, and removals of
//! withdrawn approvals. The two never name the same patch.
//!
//! Whatever the storage, a device's items read as one list ascending by
//! patch, and two lists are equal when they read the same.

use std::sync::Arc;

use super::{DeviceItem, ItemStatus};

/// The items every device of a class gets from its fixless candidates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClassItems {
    /// Ascending by patch, with the status on a device that lacks the patch.
    absent: Vec<DeviceItem>,
    /// Per item, its status on a device that has the patch.
    present: Vec<ItemStatus>,
}

impl ClassItems {
    /// From (item as where the patch is absent, status where present),
    /// ascending by patch.
    pub fn new(items: impl IntoIterator<Item = (DeviceItem, ItemStatus)>) -> ClassItems {
        let (absent, present) = items.into_iter().unzip();
        ClassItems { absent, present }
    }

    pub fn len(&self) -> usize {
        self.absent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.absent.is_empty()
    }

    /// The items' patches, in position order (ascending).
    pub fn patches(&self) -> impl Iterator<Item = u32> + '_ {
        self.absent.iter().map(|item| item.patch)
    }
}

/// One device's items (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct DeviceItems {
    class: Arc<ClassItems>,
    /// Positions in `class` of the patches present on the device, ascending.
    present: Vec<u32>,
    /// Ascending by patch; no patch of `class`.
    own: Vec<DeviceItem>,
}

impl DeviceItems {
    /// `present` ascending, `own` ascending by patch and disjoint from
    /// `class`'s patches.
    pub fn new(class: Arc<ClassItems>, present: Vec<u32>, own: Vec<DeviceItem>) -> DeviceItems {
        debug_assert!(present.is_sorted() && own.is_sorted_by_key(|i| i.patch));
        DeviceItems { class, present, own }
    }

    /// Items of the device's own only: a plan built item by item.
    pub fn from_own(mut own: Vec<DeviceItem>) -> DeviceItems {
        own.sort_by_key(|item| item.patch);
        DeviceItems { class: Arc::default(), present: Vec::new(), own }
    }

    /// Adds items of the device's own (none of the class's patches).
    pub fn add_own(&mut self, more: Vec<DeviceItem>) {
        if !more.is_empty() {
            self.own.extend(more);
            self.own.sort_by_key(|item| item.patch);
        }
    }

    pub fn len(&self) -> usize {
        self.class.len() + self.own.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every item, ascending by patch.
    pub fn iter(&self) -> impl Iterator<Item = DeviceItem> + '_ {
        let mut present = self.present.iter().copied().peekable();
        let shared = self.class.absent.iter().enumerate().map(move |(position, item)| {
            match present.next_if_eq(&(position as u32)) {
                Some(_) => DeviceItem { status: self.class.present[position], ..*item },
                None => *item,
            }
        });
        super::exposed::merge_by_key(shared, self.own.iter().copied(), |item| item.patch)
    }

    /// The item of `patch`, if the device has one.
    pub fn find(&self, patch: u32) -> Option<DeviceItem> {
        if let Ok(index) = self.own.binary_search_by_key(&patch, |item| item.patch) {
            return Some(self.own[index]);
        }
        let position = self.class.absent.binary_search_by_key(&patch, |item| item.patch).ok()?;
        let item = self.class.absent[position];
        Some(match self.present.binary_search(&(position as u32)) {
            Ok(_) => DeviceItem { status: self.class.present[position], ..item },
            Err(_) => item,
        })
    }
}

impl PartialEq for DeviceItems {
    fn eq(&self, other: &DeviceItems) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for DeviceItems {}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(patch: u32, status: ItemStatus) -> DeviceItem {
        DeviceItem { patch, grant: 0, status, retracted: false }
    }

    #[test]
    fn shared_and_own_items_read_as_one_list() {
        let class = Arc::new(ClassItems::new([
            (item(1, ItemStatus::Due), ItemStatus::Installed),
            (item(4, ItemStatus::Removed), ItemStatus::Blocked),
            (item(9, ItemStatus::Scheduled), ItemStatus::Installed),
        ]));
        let own = vec![item(0, ItemStatus::Due), item(5, ItemStatus::Installed), item(12, ItemStatus::Due)];
        let items = DeviceItems::new(class, vec![1, 2], own);
        let read: Vec<(u32, ItemStatus)> = items.iter().map(|i| (i.patch, i.status)).collect();
        assert_eq!(
            read,
            [
                (0, ItemStatus::Due),
                (1, ItemStatus::Due),
                (4, ItemStatus::Blocked),
                (5, ItemStatus::Installed),
                (9, ItemStatus::Installed),
                (12, ItemStatus::Due)
            ]
        );
        assert_eq!(items.len(), 6);
        assert_eq!(items.find(4).map(|i| i.status), Some(ItemStatus::Blocked));
        assert_eq!(items.find(1).map(|i| i.status), Some(ItemStatus::Due));
        assert_eq!(items.find(12).map(|i| i.status), Some(ItemStatus::Due));
        assert_eq!(items.find(3), None);
        let mut reversed: Vec<DeviceItem> = items.iter().collect();
        reversed.reverse();
        assert_eq!(items, DeviceItems::from_own(reversed));
        assert_ne!(items, DeviceItems::from_own(items.iter().skip(1).collect()));
    }
}
