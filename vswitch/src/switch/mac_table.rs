//! The MAC table: where each station lives, learned from source addresses.
//!
//! A [`MacTable`] maps a MAC to a [`Location`] (a local port or a remote VTEP) and the
//! last time a frame from it was seen. It is a hash map from MAC to a slot in a slab;
//! the learned slots are threaded on a doubly linked list in the order they were last
//! seen, least recent first. That list makes every per-packet operation O(1): a refresh
//! moves the slot to the tail, a new MAC in a full table evicts the head, and [`age`]
//! pops expired slots off the head until it meets a live one. Each learned slot is also
//! on a second list of the same kind, one per [`Location`], so the least recently seen
//! entry of one location is found in O(1) too.
//!
//! Invariants:
//! - At most `capacity` entries. Learning a new MAC into a full table evicts the least
//!   recently seen learned entry and counts it in [`MacTable::evictions`].
//! - At most `per_location` learned entries at one location (a local port or a remote
//!   VTEP). Learning one more there evicts the least recently seen learned entry *of that
//!   location* and counts it in [`MacTable::location_evictions`]: a station that floods
//!   source MACs churns only its own entries, never those of the other ports.
//! - Pinned entries (a port-security pod's own MAC) never age, never move, and are never
//!   evicted; only [`MacTable::remove_location`] / [`MacTable::remove`] take them out.
//! - A learned entry idle for longer than `aging` is a miss for [`MacTable::lookup`], even
//!   before [`age`] removes it.
//! - Refreshing an existing entry does not allocate. The slab and the map are sized for
//!   `capacity` up front (up to [`PREALLOCATED_ENTRIES`]), so learning new MACs does not
//!   allocate either until the table has been that large, except for the first learned
//!   entry of a location (a port or VTEP), which adds that location's list header; a
//!   location's header goes with its last learned entry, so there are never more than
//!   `capacity` of them.
//! - The list order is the order of `learn` calls. With one caller whose `now` never goes
//!   back (one worker) it is also the order of `last_seen`, which [`age`] relies on to stop
//!   early; out-of-order instants only delay removal (lookups still miss on time).
//!
//! [`age`]: MacTable::age
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use crate::mac::MacAddr;

use super::port::PortId;

/// The most entries whose storage is allocated when the table is made.
pub const PREALLOCATED_ENTRIES: usize = 1 << 16;

/// The end of a list; `slots.get(NIL)` is always `None`.
const NIL: usize = usize::MAX;

/// Where a MAC lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// Behind a local port.
    Port(PortId),
    /// Behind the overlay, at the VTEP with this underlay address.
    Vtep(Ipv4Addr),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Port(id) => write!(f, "port {id}"),
            Location::Vtep(ip) => write!(f, "vtep {ip}"),
        }
    }
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// The entry existed at this location; its time was refreshed.
    Refreshed,
    /// The entry existed elsewhere and now points here (a station move).
    Moved {
        /// Where it was.
        from: Location,
    },
    /// The MAC is pinned to another location; nothing changed.
    Conflict {
        /// Where it is pinned.
        pinned: Location,
    },
    /// The table is full of pinned entries; nothing was learned.
    Full,
}

/// One entry, as [`MacTable::entries`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry {
    /// The station's MAC.
    pub mac: MacAddr,
    /// Where it lives.
    pub location: Location,
    /// When a frame from it was last seen; `None` for a pinned entry not yet heard from.
    pub last_seen: Option<Instant>,
    /// True for a pinned (static) entry.
    pub pinned: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    mac: MacAddr,
    location: Location,
    /// Always `Some` for learned entries.
    last_seen: Option<Instant>,
    pinned: bool,
    /// Previous slot on the LRU list (learned slots only).
    prev: usize,
    /// Next slot on the LRU list, or on the free list for a free slot.
    next: usize,
    /// Previous slot on its location's LRU list (learned slots only).
    loc_prev: usize,
    /// Next slot on its location's LRU list (learned slots only).
    loc_next: usize,
}

/// The learned entries of one location, as an LRU list.
#[derive(Debug, Clone, Copy)]
struct Chain {
    /// Least recently seen.
    head: usize,
    /// Most recently seen.
    tail: usize,
    /// How many.
    len: usize,
}

/// A bounded MAC-learning table with least-recently-seen eviction. See the module docs.
#[derive(Debug, Clone)]
pub struct MacTable {
    capacity: usize,
    per_location: usize,
    aging: Duration,
    index: HashMap<MacAddr, usize, RandomState>,
    slots: Vec<Slot>,
    /// Least recently seen learned slot.
    head: usize,
    /// Most recently seen learned slot.
    tail: usize,
    /// First free slot, chained through `next`.
    free: usize,
    evictions: u64,
    /// The per-location LRU lists; a location without learned entries has none.
    chains: HashMap<Location, Chain>,
    location_evictions: u64,
}

impl MacTable {
    /// An empty table holding at most `capacity` entries whose learned entries expire
    /// after `aging` without traffic, with no bound per location.
    pub fn new(capacity: usize, aging: Duration) -> MacTable {
        MacTable::with_location_bound(capacity, usize::MAX, aging)
    }

    /// An empty table holding at most `capacity` entries, and at most `per_location`
    /// learned ones at any one location, whose learned entries expire after `aging`
    /// without traffic.
    pub fn with_location_bound(capacity: usize, per_location: usize, aging: Duration) -> MacTable {
        let prealloc = capacity.min(PREALLOCATED_ENTRIES);
        MacTable {
            capacity,
            per_location,
            aging,
            index: HashMap::with_capacity_and_hasher(prealloc, RandomState::default()),
            slots: Vec::with_capacity(prealloc),
            head: NIL,
            tail: NIL,
            free: NIL,
            evictions: 0,
            chains: HashMap::new(),
            location_evictions: 0,
        }
    }

    /// The most learned entries at one location.
    pub fn per_location_capacity(&self) -> usize {
        self.per_location
    }

    /// How many entries were evicted because their location had reached its bound.
    pub fn location_evictions(&self) -> u64 {
        self.location_evictions
    }

    /// The number of learned (not pinned) entries at `location`.
    pub fn learned_at(&self, location: Location) -> usize {
        self.chains.get(&location).map_or(0, |chain| chain.len)
    }

    /// The most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long a learned entry lives without traffic.
    pub fn aging(&self) -> Duration {
        self.aging
    }

    /// The number of entries, expired ones not yet aged out included.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many entries were evicted to make room for new ones since the table was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Records that `mac` was seen at `location` at `now`: refreshes, moves or adds its
    /// entry. A new entry at a location that holds `per_location` learned entries already
    /// evicts that location's least recently seen one; otherwise, in a full table, the
    /// least recently seen entry of all goes.
    pub fn learn(&mut self, mac: MacAddr, location: Location, now: Instant) -> Learned {
        self.learn_slot(mac, location, now).0
    }

    /// [`MacTable::learn`], and the slot that holds `mac`'s entry after it (`NIL` when
    /// it has none).
    fn learn_slot(&mut self, mac: MacAddr, location: Location, now: Instant) -> (Learned, usize) {
        if let Some(&i) = self.index.get(&mac) {
            let Some(slot) = self.slots.get_mut(i) else {
                // Unreachable while the invariants hold; heal by forgetting the entry.
                self.index.remove(&mac);
                return self.learn_slot(mac, location, now);
            };
            if slot.pinned {
                if slot.location != location {
                    let pinned = slot.location;
                    return (Learned::Conflict { pinned }, i);
                }
                slot.last_seen = Some(now);
                return (Learned::Refreshed, i);
            }
            slot.last_seen = Some(now);
            let previous = slot.location;
            if previous == location {
                self.touch(i);
                return (Learned::Refreshed, i);
            }
            if self.learned_at(location) >= self.per_location && !self.evict_at(location) {
                // A bound of zero: the station cannot live here; forget where it was.
                self.remove_slot(i, mac);
                return (Learned::Full, NIL);
            }
            self.unlink(i);
            if let Some(slot) = self.slots.get_mut(i) {
                slot.location = location;
            }
            self.link(i);
            return (Learned::Moved { from: previous }, i);
        }
        if self.learned_at(location) >= self.per_location {
            if !self.evict_at(location) {
                return (Learned::Full, NIL);
            }
        } else if self.index.len() >= self.capacity && !self.evict_lru() {
            return (Learned::Full, NIL);
        }
        let i = self.alloc(mac, location, Some(now), false);
        self.index.insert(mac, i);
        self.link(i);
        (Learned::New, i)
    }

    /// As [`MacTable::learn`], but first looks at slot `hint`: when it still holds `mac`
    /// pinned at `location`, the entry is refreshed without hashing the MAC. Otherwise
    /// the frame is learned as [`MacTable::learn`] would, and `hint` becomes the slot of
    /// `mac`'s entry for the next time. A port keeps one hint: a pod with port security
    /// always sends from its own pinned MAC, and the overlay port's frames come in runs
    /// from one remote station (the segments of one UDP GRO block). A stale hint (the
    /// entry was removed, moved or its slot reused) costs only the check.
    #[inline]
    pub fn learn_hinted(
        &mut self,
        hint: &mut usize,
        mac: MacAddr,
        location: Location,
        now: Instant,
    ) -> Learned {
        if let Some(slot) = self.slots.get_mut(*hint) {
            // Only a live pinned entry has `pinned` set: a freed slot is cleared of it.
            if slot.pinned && slot.mac == mac && slot.location == location {
                slot.last_seen = Some(now);
                return Learned::Refreshed;
            }
        }
        let (learned, slot) = self.learn_slot(mac, location, now);
        *hint = slot;
        learned
    }

    /// The slot holding `mac`'s entry; `NIL` (a hint that never matches) when `mac` has
    /// none.
    #[cfg(test)]
    fn slot_of(&self, mac: MacAddr) -> usize {
        self.index.get(&mac).copied().unwrap_or(NIL)
    }

    /// Installs a static entry: `mac` lives at `location` for good (until removed). An
    /// existing entry for `mac` becomes that static entry, keeping its last-seen time.
    /// Returns false when the table is full of pinned entries and `mac` had none.
    pub fn pin(&mut self, mac: MacAddr, location: Location) -> bool {
        if let Some(&i) = self.index.get(&mac) {
            let linked = self.slots.get(i).is_some_and(|slot| !slot.pinned);
            if linked {
                self.unlink(i);
            }
            if let Some(slot) = self.slots.get_mut(i) {
                slot.pinned = true;
                slot.location = location;
                return true;
            }
            self.index.remove(&mac);
        }
        if self.index.len() >= self.capacity && !self.evict_lru() {
            return false;
        }
        let i = self.alloc(mac, location, None, true);
        self.index.insert(mac, i);
        true
    }

    /// Where `mac` lives, unless it is unknown or its learned entry has been idle for
    /// longer than `aging` at `now`.
    pub fn lookup(&self, mac: MacAddr, now: Instant) -> Option<Location> {
        let slot = self.index.get(&mac).and_then(|&i| self.slots.get(i))?;
        if slot.pinned || self.is_live(slot.last_seen, now) {
            Some(slot.location)
        } else {
            None
        }
    }

    /// Removes the learned entries idle for longer than `aging` at `now`; returns how many.
    pub fn age(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(slot) = self.slots.get(self.head) {
            if self.is_live(slot.last_seen, now) {
                break;
            }
            let (mac, head) = (slot.mac, self.head);
            self.remove_slot(head, mac);
            removed += 1;
        }
        removed
    }

    /// Forgets `mac`, pinned or not; returns whether it was there.
    pub fn remove(&mut self, mac: MacAddr) -> bool {
        match self.index.get(&mac) {
            Some(&i) => {
                self.remove_slot(i, mac);
                true
            }
            None => false,
        }
    }

    /// Forgets every entry (pinned ones included) at `location`; returns how many.
    pub fn remove_location(&mut self, location: Location) -> usize {
        let doomed: Vec<(usize, MacAddr)> = self
            .index
            .iter()
            .filter(|&(_, &i)| self.slots.get(i).is_some_and(|s| s.location == location))
            .map(|(&mac, &i)| (i, mac))
            .collect();
        for &(i, mac) in &doomed {
            self.remove_slot(i, mac);
        }
        doomed.len()
    }

    /// Forgets every entry behind local port `port`; returns how many.
    pub fn remove_port(&mut self, port: PortId) -> usize {
        self.remove_location(Location::Port(port))
    }

    /// The entry of `mac`, live or not.
    pub fn entry(&self, mac: MacAddr) -> Option<MacEntry> {
        let slot = self.index.get(&mac).and_then(|&i| self.slots.get(i))?;
        Some(MacEntry {
            mac: slot.mac,
            location: slot.location,
            last_seen: slot.last_seen,
            pinned: slot.pinned,
        })
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = MacEntry> + '_ {
        self.index.values().filter_map(|&i| {
            self.slots.get(i).map(|slot| MacEntry {
                mac: slot.mac,
                location: slot.location,
                last_seen: slot.last_seen,
                pinned: slot.pinned,
            })
        })
    }

    /// True when a learned entry last seen at `last_seen` is still valid at `now`.
    fn is_live(&self, last_seen: Option<Instant>, now: Instant) -> bool {
        last_seen.is_some_and(|seen| now.saturating_duration_since(seen) <= self.aging)
    }

    /// Evicts the least recently seen learned entry; false when there is none.
    fn evict_lru(&mut self) -> bool {
        let Some(mac) = self.slots.get(self.head).map(|slot| slot.mac) else {
            return false;
        };
        self.remove_slot(self.head, mac);
        self.evictions = self.evictions.saturating_add(1);
        true
    }

    /// Evicts the least recently seen learned entry at `location`; false when there is
    /// none.
    fn evict_at(&mut self, location: Location) -> bool {
        let Some(head) = self.chains.get(&location).map(|chain| chain.head) else {
            return false;
        };
        let Some(mac) = self.slots.get(head).map(|slot| slot.mac) else {
            return false;
        };
        self.remove_slot(head, mac);
        self.location_evictions = self.location_evictions.saturating_add(1);
        true
    }

    /// Takes a slot off the free list, or grows the slab.
    fn alloc(
        &mut self,
        mac: MacAddr,
        location: Location,
        last_seen: Option<Instant>,
        pinned: bool,
    ) -> usize {
        let fresh = Slot {
            mac,
            location,
            last_seen,
            pinned,
            prev: NIL,
            next: NIL,
            loc_prev: NIL,
            loc_next: NIL,
        };
        let i = self.free;
        if let Some(slot) = self.slots.get_mut(i) {
            self.free = slot.next;
            *slot = fresh;
            i
        } else {
            self.slots.push(fresh);
            self.slots.len() - 1
        }
    }

    /// Removes slot `i`, which holds `mac`, from the map and the LRU lists, and frees it.
    fn remove_slot(&mut self, i: usize, mac: MacAddr) {
        self.index.remove(&mac);
        if self.slots.get(i).is_some_and(|slot| !slot.pinned) {
            self.unlink(i);
        }
        let free = self.free;
        if let Some(slot) = self.slots.get_mut(i) {
            slot.pinned = false;
            slot.prev = NIL;
            slot.next = free;
            self.free = i;
        }
    }

    /// Puts learned slot `i` at the most-recent end of both its lists.
    fn link(&mut self, i: usize) {
        self.push_tail(i);
        self.push_location_tail(i);
    }

    /// Takes learned slot `i` off both its lists.
    fn unlink(&mut self, i: usize) {
        self.unlink_global(i);
        self.unlink_location(i);
    }

    /// Moves learned slot `i` to the most-recent end of both its lists (a refresh).
    fn touch(&mut self, i: usize) {
        if self.tail != i {
            self.unlink_global(i);
            self.push_tail(i);
        }
        let Some(location) = self.slots.get(i).map(|slot| slot.location) else {
            return;
        };
        if self
            .chains
            .get(&location)
            .is_some_and(|chain| chain.tail != i)
        {
            self.unlink_location(i);
            self.push_location_tail(i);
        }
    }

    /// Takes learned slot `i` off the global LRU list.
    fn unlink_global(&mut self, i: usize) {
        let Some(&Slot { prev, next, .. }) = self.slots.get(i) else {
            return;
        };
        match self.slots.get_mut(prev) {
            Some(before) => before.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next) {
            Some(after) => after.prev = prev,
            None => self.tail = prev,
        }
        if let Some(slot) = self.slots.get_mut(i) {
            slot.prev = NIL;
            slot.next = NIL;
        }
    }

    /// Puts slot `i` at the most-recent end of the global LRU list.
    fn push_tail(&mut self, i: usize) {
        let old_tail = self.tail;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.prev = old_tail;
        slot.next = NIL;
        match self.slots.get_mut(old_tail) {
            Some(last) => last.next = i,
            None => self.head = i,
        }
        self.tail = i;
    }

    /// Takes learned slot `i` off its location's list; a list left empty is dropped.
    fn unlink_location(&mut self, i: usize) {
        let Some(&Slot {
            location,
            loc_prev,
            loc_next,
            ..
        }) = self.slots.get(i)
        else {
            return;
        };
        let Some(chain) = self.chains.get_mut(&location) else {
            return;
        };
        match self.slots.get_mut(loc_prev) {
            Some(before) => before.loc_next = loc_next,
            None => chain.head = loc_next,
        }
        match self.slots.get_mut(loc_next) {
            Some(after) => after.loc_prev = loc_prev,
            None => chain.tail = loc_prev,
        }
        chain.len = chain.len.saturating_sub(1);
        if chain.len == 0 {
            self.chains.remove(&location);
        }
        if let Some(slot) = self.slots.get_mut(i) {
            slot.loc_prev = NIL;
            slot.loc_next = NIL;
        }
    }

    /// Puts slot `i` at the most-recent end of its location's list.
    fn push_location_tail(&mut self, i: usize) {
        let Some(location) = self.slots.get(i).map(|slot| slot.location) else {
            return;
        };
        let chain = self.chains.entry(location).or_insert(Chain {
            head: NIL,
            tail: NIL,
            len: 0,
        });
        let old_tail = chain.tail;
        chain.tail = i;
        chain.len = chain.len.saturating_add(1);
        if old_tail == NIL {
            chain.head = i;
        }
        if let Some(last) = self.slots.get_mut(old_tail) {
            last.loc_next = i;
        }
        if let Some(slot) = self.slots.get_mut(i) {
            slot.loc_prev = old_tail;
            slot.loc_next = NIL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGING: Duration = Duration::from_secs(300);

    fn mac(n: u16) -> MacAddr {
        let [hi, lo] = n.to_be_bytes();
        MacAddr([0x0a, 0x58, 0x0a, 0xf4, hi, lo])
    }

    fn secs(base: Instant, s: u64) -> Instant {
        base + Duration::from_secs(s)
    }

    /// Walks the LRU list both ways and checks it against the map.
    fn check_list(table: &MacTable) {
        let mut forward = Vec::new();
        let mut i = table.head;
        let mut prev = NIL;
        while let Some(slot) = table.slots.get(i) {
            assert_eq!(slot.prev, prev);
            assert!(!slot.pinned);
            assert_eq!(table.index.get(&slot.mac), Some(&i));
            forward.push(i);
            prev = i;
            i = slot.next;
        }
        assert_eq!(table.tail, prev);
        let learned = table.entries().filter(|e| !e.pinned).count();
        assert_eq!(forward.len(), learned);
        // Every location's list holds exactly the learned entries there, in the global
        // list's order.
        let mut chained = 0;
        for (&location, chain) in &table.chains {
            let mut walked = Vec::new();
            let mut i = chain.head;
            let mut prev = NIL;
            while let Some(slot) = table.slots.get(i) {
                assert_eq!(slot.loc_prev, prev);
                assert_eq!(slot.location, location);
                assert!(!slot.pinned);
                walked.push(i);
                prev = i;
                i = slot.loc_next;
            }
            assert_eq!(chain.tail, prev);
            assert_eq!(chain.len, walked.len());
            assert!(chain.len > 0, "an empty chain is kept for {location}");
            assert!(chain.len <= table.per_location);
            let in_order: Vec<usize> = forward
                .iter()
                .copied()
                .filter(|&i| table.slots.get(i).is_some_and(|s| s.location == location))
                .collect();
            assert_eq!(walked, in_order, "{location}");
            chained += walked.len();
        }
        assert_eq!(chained, learned);
    }

    #[test]
    fn learns_and_looks_up() {
        let t0 = Instant::now();
        let mut table = MacTable::new(16, AGING);
        assert!(table.is_empty());
        assert_eq!(table.learn(mac(1), Location::Port(1), t0), Learned::New);
        assert_eq!(
            table.learn(mac(1), Location::Port(1), t0),
            Learned::Refreshed
        );
        let vtep = Location::Vtep(Ipv4Addr::new(192, 168, 0, 2));
        assert_eq!(table.learn(mac(2), vtep, t0), Learned::New);
        assert_eq!(table.lookup(mac(1), t0), Some(Location::Port(1)));
        assert_eq!(table.lookup(mac(2), t0), Some(vtep));
        assert_eq!(table.lookup(mac(3), t0), None);
        assert_eq!(table.len(), 2);
        check_list(&table);
    }

    #[test]
    fn station_move_updates_the_entry() {
        let t0 = Instant::now();
        let mut table = MacTable::new(16, AGING);
        table.learn(mac(1), Location::Port(1), t0);
        assert_eq!(
            table.learn(mac(1), Location::Port(2), secs(t0, 1)),
            Learned::Moved {
                from: Location::Port(1)
            }
        );
        assert_eq!(table.lookup(mac(1), secs(t0, 1)), Some(Location::Port(2)));
        assert_eq!(table.len(), 1);
        check_list(&table);
    }

    #[test]
    fn ages_out_idle_entries() {
        let t0 = Instant::now();
        let mut table = MacTable::new(16, AGING);
        table.learn(mac(1), Location::Port(1), t0);
        table.learn(mac(2), Location::Port(2), secs(t0, 100));
        table.learn(mac(3), Location::Port(3), secs(t0, 200));
        // mac(1) is refreshed late, so it outlives mac(2).
        table.learn(mac(1), Location::Port(1), secs(t0, 250));
        check_list(&table);

        // Exactly `aging` idle is still a hit; one second more is a miss.
        assert_eq!(table.lookup(mac(2), secs(t0, 400)), Some(Location::Port(2)));
        assert_eq!(table.lookup(mac(2), secs(t0, 401)), None);
        assert_eq!(table.age(secs(t0, 400)), 0);
        assert_eq!(table.age(secs(t0, 401)), 1);
        assert_eq!(table.len(), 2);
        assert_eq!(table.age(secs(t0, 600)), 2);
        assert!(table.is_empty());
        check_list(&table);
        // Freed slots are reused.
        table.learn(mac(9), Location::Port(1), secs(t0, 600));
        assert_eq!(table.slots.len(), 3);
        check_list(&table);
    }

    #[test]
    fn full_table_evicts_least_recently_seen() {
        let t0 = Instant::now();
        let mut table = MacTable::new(3, AGING);
        for n in 1..=3 {
            table.learn(mac(n), Location::Port(n), secs(t0, u64::from(n)));
        }
        // Touch mac(1): mac(2) becomes the least recently seen.
        table.learn(mac(1), Location::Port(1), secs(t0, 10));
        assert_eq!(
            table.learn(mac(4), Location::Port(4), secs(t0, 11)),
            Learned::New
        );
        assert_eq!(table.len(), 3);
        assert_eq!(table.evictions(), 1);
        assert_eq!(table.lookup(mac(2), secs(t0, 11)), None);
        for n in [1, 3, 4] {
            assert!(table.lookup(mac(n), secs(t0, 11)).is_some(), "{n}");
        }
        for n in 5..=20 {
            table.learn(mac(n), Location::Port(n), secs(t0, 20));
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.evictions(), 17);
        assert_eq!(table.slots.len(), 3);
        check_list(&table);
    }

    #[test]
    fn pinned_entries_stay_put() {
        let t0 = Instant::now();
        let mut table = MacTable::new(2, AGING);
        table.learn(mac(1), Location::Port(9), t0);
        assert!(table.pin(mac(1), Location::Port(1)));
        check_list(&table);
        assert_eq!(
            table.learn(mac(1), Location::Port(2), t0),
            Learned::Conflict {
                pinned: Location::Port(1)
            }
        );
        assert_eq!(
            table.learn(mac(1), Location::Port(1), t0),
            Learned::Refreshed
        );
        // Never ages.
        assert_eq!(table.age(secs(t0, 10_000)), 0);
        assert_eq!(
            table.lookup(mac(1), secs(t0, 10_000)),
            Some(Location::Port(1))
        );
        // Never evicted: learned entries make room instead.
        table.learn(mac(2), Location::Port(2), t0);
        table.learn(mac(3), Location::Port(3), t0);
        assert_eq!(table.lookup(mac(1), t0), Some(Location::Port(1)));
        assert_eq!(table.lookup(mac(3), t0), Some(Location::Port(3)));
        assert!(table.pin(mac(4), Location::Port(4)));
        assert_eq!(table.learn(mac(5), Location::Port(5), t0), Learned::Full);
        assert!(!table.pin(mac(6), Location::Port(6)));
        check_list(&table);
        assert!(table.remove(mac(4)));
        assert_eq!(table.learn(mac(5), Location::Port(5), t0), Learned::New);
        check_list(&table);
    }

    #[test]
    fn a_hinted_learn_is_a_learn() {
        let t0 = Instant::now();
        let mut table = MacTable::new(4, AGING);
        assert!(table.pin(mac(1), Location::Port(1)));
        let pinned_at = table.slot_of(mac(1));
        assert_ne!(pinned_at, NIL);
        assert_eq!(table.slot_of(mac(2)), NIL);
        // The hint's own port: refreshed, and the time is kept (fdb shows it).
        let mut hint = pinned_at;
        assert_eq!(
            table.learn_hinted(&mut hint, mac(1), Location::Port(1), secs(t0, 5)),
            Learned::Refreshed
        );
        assert_eq!(hint, pinned_at);
        assert_eq!(
            table.entry(mac(1)).and_then(|e| e.last_seen),
            Some(secs(t0, 5))
        );
        // Another port claiming the pinned MAC: the conflict a plain learn reports.
        assert_eq!(
            table.learn_hinted(&mut hint, mac(1), Location::Port(2), t0),
            Learned::Conflict {
                pinned: Location::Port(1)
            }
        );
        // The entry gone and its slot reused by another MAC: the stale hint neither
        // refreshes the other entry nor hides that mac(1) is unknown now.
        assert!(table.remove(mac(1)));
        assert_eq!(table.learn(mac(2), Location::Port(1), t0), Learned::New);
        assert_eq!(table.slot_of(mac(2)), pinned_at);
        assert_eq!(
            table.learn_hinted(&mut hint, mac(1), Location::Port(1), t0),
            Learned::New
        );
        assert_eq!(hint, table.slot_of(mac(1)));
        assert_eq!(table.lookup(mac(2), t0), Some(Location::Port(1)));
        check_list(&table);
        // Pinned elsewhere since (the store placed it behind a VTEP): a conflict again.
        let vtep = Location::Vtep(Ipv4Addr::new(192, 168, 0, 2));
        assert!(table.pin(mac(1), vtep));
        assert_eq!(
            table.learn_hinted(&mut hint, mac(1), Location::Port(1), t0),
            Learned::Conflict { pinned: vtep }
        );
        // A remote station's frames from the VTEP: the first one finds the slot, the
        // next ones use it.
        let mut from_vtep = NIL;
        assert_eq!(
            table.learn_hinted(&mut from_vtep, mac(1), vtep, t0),
            Learned::Refreshed
        );
        assert_eq!(from_vtep, table.slot_of(mac(1)));
        assert_eq!(
            table.learn_hinted(&mut from_vtep, mac(1), vtep, secs(t0, 9)),
            Learned::Refreshed
        );
        assert_eq!(
            table.entry(mac(1)).and_then(|e| e.last_seen),
            Some(secs(t0, 9))
        );
        // A learned entry is never taken through the hint (its LRU place must move).
        let mut learned = NIL;
        assert_eq!(
            table.learn_hinted(&mut learned, mac(3), Location::Port(3), t0),
            Learned::New
        );
        assert_eq!(
            table.learn_hinted(&mut learned, mac(3), Location::Port(3), t0),
            Learned::Refreshed
        );
        check_list(&table);
    }

    #[test]
    fn remove_port_flushes_its_entries() {
        let t0 = Instant::now();
        let mut table = MacTable::new(16, AGING);
        for n in 1..=6 {
            table.learn(mac(n), Location::Port(n % 2), t0);
        }
        table.pin(mac(7), Location::Port(1));
        assert_eq!(table.remove_port(1), 4);
        assert_eq!(table.len(), 3);
        assert!(table.entries().all(|e| e.location == Location::Port(0)));
        check_list(&table);
        assert_eq!(table.remove_port(1), 0);
    }

    #[test]
    fn a_location_at_its_bound_evicts_its_own_oldest_entry() {
        let t0 = Instant::now();
        let mut table = MacTable::with_location_bound(64, 4, AGING);
        let victim = Location::Port(1);
        let flooder = Location::Port(2);
        table.learn(mac(1), victim, t0);
        table.learn(mac(2), victim, secs(t0, 1));
        assert!(table.pin(mac(3), flooder));
        for n in 100..110 {
            table.learn(mac(n), flooder, secs(t0, 2 + u64::from(n)));
            check_list(&table);
        }
        // The flooder keeps its 4 most recent learned MACs (and its pinned one); the
        // victim's entries, older than all of them, stay.
        assert_eq!(table.learned_at(flooder), 4);
        assert_eq!(table.location_evictions(), 6);
        assert_eq!(table.evictions(), 0);
        for n in 106..110 {
            assert_eq!(table.lookup(mac(n), secs(t0, 200)), Some(flooder), "{n}");
        }
        assert_eq!(table.lookup(mac(105), secs(t0, 200)), None);
        assert_eq!(table.lookup(mac(3), secs(t0, 200)), Some(flooder));
        assert_eq!(table.lookup(mac(1), secs(t0, 200)), Some(victim));
        assert_eq!(table.lookup(mac(2), secs(t0, 200)), Some(victim));

        // A refresh makes an entry the most recent of its location too.
        table.learn(mac(106), flooder, secs(t0, 300));
        table.learn(mac(200), flooder, secs(t0, 301));
        assert_eq!(table.lookup(mac(106), secs(t0, 301)), Some(flooder));
        assert_eq!(table.lookup(mac(107), secs(t0, 301)), None);
        check_list(&table);

        // A station moving onto a full location evicts that location's oldest, and
        // frees a place where it was.
        table.learn(mac(1), flooder, secs(t0, 302));
        assert_eq!(table.learned_at(victim), 1);
        assert_eq!(table.learned_at(flooder), 4);
        assert_eq!(table.lookup(mac(108), secs(t0, 302)), None);
        check_list(&table);

        // Aging and removal keep the per-location lists right.
        assert_eq!(table.age(secs(t0, 302 + 301)), 5);
        assert_eq!(table.learned_at(flooder), 0);
        assert_eq!(table.learned_at(victim), 0);
        assert!(table.chains.is_empty());
        check_list(&table);
    }

    #[test]
    fn location_bounds_hold_under_random_churn() {
        let t0 = Instant::now();
        let mut table = MacTable::with_location_bound(32, 8, AGING);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..5_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = u16::try_from(seed % 200).unwrap_or(0);
            let location = Location::Port(u16::try_from((seed >> 32) % 6).unwrap_or(0));
            let now = secs(t0, step / 10);
            match (seed >> 40) % 20 {
                0 => {
                    table.remove(mac(n));
                }
                1 => {
                    table.age(now);
                }
                2 => {
                    table.pin(mac(n), location);
                }
                3 => {
                    table.remove_location(location);
                }
                _ => {
                    table.learn(mac(n), location, now);
                }
            }
            assert!(table.len() <= 32);
            for port in 0..6 {
                assert!(table.learned_at(Location::Port(port)) <= 8);
            }
            if step % 50 == 0 {
                check_list(&table);
            }
        }
        check_list(&table);
    }

    #[test]
    fn zero_location_bound_learns_nothing() {
        let t0 = Instant::now();
        let mut table = MacTable::with_location_bound(16, 0, AGING);
        assert_eq!(table.learn(mac(1), Location::Port(1), t0), Learned::Full);
        assert!(table.pin(mac(2), Location::Port(1)));
        assert!(table.lookup(mac(1), t0).is_none());
        check_list(&table);
    }

    #[test]
    fn zero_capacity_learns_nothing() {
        let mut table = MacTable::new(0, AGING);
        assert_eq!(
            table.learn(mac(1), Location::Port(1), Instant::now()),
            Learned::Full
        );
        assert!(table.is_empty());
    }
}
