//! The switch's ports, indexed by id: one slot per id in an array, so finding a frame's
//! ingress port (two or three times per frame) costs an index, not a search. Port ids
//! are small: the daemon hands out the lowest free one, so the array stays as long as
//! the most ports the node ever had at once (a port id near `u16::MAX` would cost a few
//! MiB, never more).
#![forbid(unsafe_code)]

use super::port::PortId;

/// Ports by id, iterated in increasing id order.
#[derive(Debug)]
pub(super) struct PortTable<P> {
    slots: Vec<Option<P>>,
    len: usize,
}

impl<P> PortTable<P> {
    /// No ports.
    pub(super) fn new() -> PortTable<P> {
        PortTable {
            slots: Vec::new(),
            len: 0,
        }
    }

    /// How many ports there are.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Port `id`, if attached.
    pub(super) fn get(&self, id: PortId) -> Option<&P> {
        self.slots.get(usize::from(id))?.as_ref()
    }

    /// Port `id`, if attached, to change.
    pub(super) fn get_mut(&mut self, id: PortId) -> Option<&mut P> {
        self.slots.get_mut(usize::from(id))?.as_mut()
    }

    /// Attaches `port` as `id`; returns the port it replaced.
    pub(super) fn insert(&mut self, id: PortId, port: P) -> Option<P> {
        let index = usize::from(id);
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let old = self.slots.get_mut(index)?.replace(port);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Detaches port `id`; returns it if it was attached.
    pub(super) fn remove(&mut self, id: PortId) -> Option<P> {
        let old = self.slots.get_mut(usize::from(id))?.take();
        if old.is_some() {
            self.len -= 1;
            while self.slots.last().is_some_and(Option::is_none) {
                self.slots.pop();
            }
        }
        old
    }

    /// The attached ids, in increasing order.
    pub(super) fn ids(&self) -> impl Iterator<Item = PortId> + '_ {
        self.slots
            .iter()
            .zip(0..=PortId::MAX)
            .filter_map(|(slot, id)| slot.as_ref().map(|_| id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_in_id_order() {
        let mut t = PortTable::new();
        assert_eq!(t.len(), 0);
        assert_eq!(t.get(0), None);
        assert_eq!(t.insert(5, "five"), None);
        assert_eq!(t.insert(1, "one"), None);
        assert_eq!(t.insert(3, "three"), None);
        assert_eq!(t.insert(3, "THREE"), Some("three"));
        assert_eq!(t.len(), 3);
        assert_eq!(t.ids().collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(t.get(3), Some(&"THREE"));
        assert_eq!(t.get(2), None);
        assert_eq!(t.get(6), None);
        if let Some(p) = t.get_mut(1) {
            *p = "uno";
        }
        assert_eq!(t.get(1), Some(&"uno"));
        assert_eq!(t.remove(5), Some("five"));
        assert_eq!(t.remove(5), None);
        assert_eq!(t.remove(9), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.ids().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(t.slots.len(), 4, "trailing empty slots go");
    }

    #[test]
    fn the_highest_id_works() {
        let mut t = PortTable::new();
        assert_eq!(t.insert(PortId::MAX, 7), None);
        assert_eq!(t.get(PortId::MAX), Some(&7));
        assert_eq!(t.ids().collect::<Vec<_>>(), [PortId::MAX]);
        assert_eq!(t.remove(PortId::MAX), Some(7));
        assert_eq!(t.len(), 0);
        assert!(t.slots.is_empty());
    }
}
