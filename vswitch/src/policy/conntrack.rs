//! The connection table: which flows were allowed, so that their later packets and their
//! replies pass with one lookup, without evaluating policy again.
//!
//! A [`Flow`] is the 5-tuple of one packet (ICMP echo uses its identifier as both ports,
//! so a request and its reply are one flow). Both directions of a connection map to one
//! entry: the key is the flow with its two ends in a fixed order, and the entry remembers
//! which end opened it. State is tracked just enough to pick a timeout: TCP waits for the
//! reply to the SYN, then counts as established, and as closing once a FIN or RST passes.
//!
//! Invariants:
//! - The table never holds more than `capacity` entries: inserting into a full table
//!   first removes expired entries and then, if that freed less than a batch (1/64 of the
//!   capacity), the least recently seen ones up to about a batch, and counts them. One
//!   pass over the table thus makes room for many connections, so a pod that keeps the
//!   table full costs, on average, a few hundred entry visits per new connection, not a
//!   scan of the table.
//!   The least recently seen are found by a sample of the entries' ages: the batch is
//!   approximate, but no entry kept is older than an entry evicted.
//! - A lookup never returns an expired entry.
//! - No allocation per packet once the table is warm: a lookup of a known flow only
//!   updates its entry in place.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

/// A full table makes room for `capacity / EVICTION_BATCH` connections at once.
const EVICTION_BATCH: usize = 64;

/// How many entries' ages are sampled to find the age of the batch's youngest.
const AGE_SAMPLE: usize = 1024;

/// IP protocol numbers the table knows about.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// TCP flag bits, as in the TCP header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// One packet's flow: addresses, transport ports (ICMP echo: the identifier for both),
/// protocol, and the TCP flags it carries (0 for other protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol.
    pub protocol: u8,
    /// TCP flags of this packet.
    pub tcp_flags: u8,
}

impl Flow {
    /// The same flow seen from the other end.
    pub fn reversed(self) -> Flow {
        Flow {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..self
        }
    }

    fn key(self) -> (Key, bool) {
        let end = |ip: Ipv4Addr, port: u16| (u64::from(ip.to_bits()) << 16) | u64::from(port);
        let (src, dst) = (end(self.src, self.src_port), end(self.dst, self.dst_port));
        let forward = src <= dst;
        let (low, high) = if forward { (src, dst) } else { (dst, src) };
        let low = low | (u64::from(self.protocol) << 48);
        (Key((u128::from(low) << 64) | u128::from(high)), forward)
    }
}

/// A connection's key, the same both ways: the lower (address, port) end with the
/// protocol, then the higher end, packed into one 128-bit word, so building, hashing
/// (one write) and comparing a key are a few register operations on every packet.
/// Packing is one-to-one: address and port take 48 bits of each half, the protocol 8
/// more of the low half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key(u128);

impl Key {
    fn protocol(self) -> u8 {
        // Bits 48..56 of the low half, which is the word's upper 64 bits.
        u8::try_from((self.0 >> 112) & 0xff).unwrap_or(0)
    }
}

/// Which way a tracked packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// From the end that opened the connection.
    Original,
    /// From the other end: a reply.
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// TCP: SYN seen, no reply yet.
    Opening,
    /// Both directions seen (or a non-TCP flow that was answered).
    Established,
    /// A non-TCP flow with no reply yet.
    Unreplied,
    /// TCP: FIN or RST seen.
    Closing,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// True when the opener is the key's `low` end.
    opened_by_low: bool,
    state: State,
    last_seen: Instant,
}

/// Idle timeouts and the size bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTrackConfig {
    /// Most entries held at once.
    pub capacity: usize,
    /// TCP, from the SYN until the reply to it.
    pub tcp_opening: Duration,
    /// TCP, once established.
    pub tcp_established: Duration,
    /// TCP, after a FIN or RST.
    pub tcp_closing: Duration,
    /// UDP, SCTP and ICMP before a reply.
    pub unreplied: Duration,
    /// UDP, SCTP and ICMP after a reply.
    pub replied: Duration,
}

impl Default for ConnTrackConfig {
    fn default() -> Self {
        ConnTrackConfig {
            capacity: 262_144,
            tcp_opening: Duration::from_secs(30),
            tcp_established: Duration::from_secs(3600),
            tcp_closing: Duration::from_secs(30),
            unreplied: Duration::from_secs(30),
            replied: Duration::from_secs(180),
        }
    }
}

/// The connection table.
#[derive(Debug)]
pub struct ConnTrack {
    config: ConnTrackConfig,
    entries: HashMap<Key, Entry, RandomState>,
    evictions: u64,
    /// Room for the age sample, allocated once.
    ages: Vec<Instant>,
}

impl ConnTrack {
    /// An empty table.
    pub fn new(config: ConnTrackConfig) -> ConnTrack {
        ConnTrack {
            config,
            entries: HashMap::with_capacity_and_hasher(
                config.capacity.min(1 << 16),
                RandomState::default(),
            ),
            evictions: 0,
            ages: Vec::with_capacity(AGE_SAMPLE),
        }
    }

    /// The number of live or not yet removed entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries held at once.
    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    /// Entries removed to make room for new ones.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Looks `flow` up at `now`. A tracked packet refreshes its entry and moves its state
    /// on (a reply establishes; FIN or RST closes); the answer says which way it goes.
    /// `None` for a flow the table does not hold (or holds expired).
    pub fn track(&mut self, now: Instant, flow: Flow) -> Option<Tracked> {
        let (key, forward) = flow.key();
        // One hash lookup on the hit path (this runs for every packet of a tracked flow);
        // the expired case pays a second one to remove.
        let config = self.config;
        let entry = self.entries.get_mut(&key)?;
        if now.saturating_duration_since(entry.last_seen)
            > timeout_for(&config, flow.protocol, entry.state)
        {
            self.entries.remove(&key);
            return None;
        }
        let direction = if forward == entry.opened_by_low {
            Tracked::Original
        } else {
            Tracked::Reply
        };
        entry.last_seen = now;
        entry.state = next_state(entry.state, flow, direction);
        Some(direction)
    }

    /// True when `flow` (either way) belongs to a live connection at `now`. Unlike
    /// [`ConnTrack::track`] it changes nothing: for an ICMP error about a flow.
    pub fn contains(&self, now: Instant, flow: Flow) -> bool {
        let (key, _) = flow.key();
        self.entries.get(&key).is_some_and(|entry| {
            now.saturating_duration_since(entry.last_seen)
                <= self.timeout(flow.protocol, entry.state)
        })
    }

    /// Records that policy allowed `flow` to open a connection at `now`. A full table
    /// first drops expired entries, then its least recently seen ones (see the module
    /// docs).
    pub fn open(&mut self, now: Instant, flow: Flow) {
        let (key, forward) = flow.key();
        if !self.entries.contains_key(&key) && self.entries.len() >= self.config.capacity {
            self.make_room(now);
            if self.entries.len() >= self.config.capacity {
                return;
            }
        }
        let state = match flow.protocol {
            proto::TCP if flow.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 => State::Closing,
            proto::TCP if flow.tcp_flags & tcp_flags::SYN != 0 => State::Opening,
            // A TCP connection picked up mid-stream (after a restart): both sides talk.
            proto::TCP => State::Established,
            _ => State::Unreplied,
        };
        self.entries.insert(
            key,
            Entry {
                opened_by_low: forward,
                state,
                last_seen: now,
            },
        );
    }

    /// Removes every entry idle past its timeout at `now`; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        let config = self.config;
        self.entries.retain(|key, entry| {
            now.saturating_duration_since(entry.last_seen)
                <= timeout_for(&config, key.protocol(), entry.state)
        });
        before - self.entries.len()
    }

    /// Forgets every connection (a policy change that must apply to established flows).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Frees about a batch of places in a full table: the expired entries, then as many
    /// of the least recently seen as the batch still wants.
    fn make_room(&mut self, now: Instant) {
        let batch = (self.config.capacity / EVICTION_BATCH).max(1);
        let expired = self.expire(now);
        if expired >= batch {
            return;
        }
        let len = self.entries.len();
        if len == 0 {
            return;
        }
        let want = batch - expired;
        // Every `stride`-th entry's age: the map's order has nothing to do with age, so
        // this is a fair sample (the whole table when it is small).
        let stride = len.div_ceil(AGE_SAMPLE).max(1);
        self.ages.clear();
        self.ages.extend(
            self.entries
                .values()
                .step_by(stride)
                .take(AGE_SAMPLE)
                .map(|entry| entry.last_seen),
        );
        self.ages.sort_unstable();
        // The sampled age below which about `want` of `len` entries lie.
        let rank = (want.saturating_mul(self.ages.len()).div_ceil(len)).max(1);
        let Some(&threshold) = self.ages.get(rank - 1) else {
            return;
        };
        let before = self.entries.len();
        // Entries as old as the threshold go only up to `want`: a table whose entries
        // all share one age loses a batch, not everything.
        let mut ties = 0;
        self.entries.retain(|_, entry| {
            if entry.last_seen == threshold && ties < want {
                ties += 1;
                return false;
            }
            entry.last_seen >= threshold
        });
        let evicted = before - self.entries.len();
        self.evictions = self
            .evictions
            .saturating_add(u64::try_from(evicted).unwrap_or(u64::MAX));
    }

    fn timeout(&self, protocol: u8, state: State) -> Duration {
        timeout_for(&self.config, protocol, state)
    }
}

fn timeout_for(config: &ConnTrackConfig, protocol: u8, state: State) -> Duration {
    match (protocol, state) {
        (proto::TCP, State::Opening) => config.tcp_opening,
        (proto::TCP, State::Closing) => config.tcp_closing,
        (proto::TCP, _) => config.tcp_established,
        (_, State::Unreplied | State::Opening) => config.unreplied,
        (_, _) => config.replied,
    }
}

fn next_state(state: State, flow: Flow, direction: Tracked) -> State {
    if flow.protocol == proto::TCP && flow.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
        return State::Closing;
    }
    match (state, direction) {
        (State::Opening | State::Unreplied, Tracked::Reply) => State::Established,
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, protocol: u8, flags: u8) -> Flow {
        Flow {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            src_port: sport,
            dst_port: dport,
            protocol,
            tcp_flags: flags,
        }
    }

    const A: [u8; 4] = [10, 244, 0, 2];
    const B: [u8; 4] = [10, 244, 1, 2];

    #[test]
    fn replies_of_an_opened_flow_pass_and_strangers_do_not() {
        let mut table = ConnTrack::new(ConnTrackConfig::default());
        let now = Instant::now();
        let syn = flow(A, 40000, B, 80, proto::TCP, tcp_flags::SYN);
        assert_eq!(table.track(now, syn), None);
        table.open(now, syn);
        let syn_ack = flow(B, 80, A, 40000, proto::TCP, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(table.track(now, syn_ack), Some(Tracked::Reply));
        assert_eq!(
            table.track(now, flow(A, 40000, B, 80, proto::TCP, tcp_flags::ACK)),
            Some(Tracked::Original)
        );
        // Another port of the same hosts is another flow.
        assert_eq!(
            table.track(now, flow(B, 80, A, 40001, proto::TCP, tcp_flags::ACK)),
            None
        );
        // So is another protocol.
        assert_eq!(table.track(now, flow(B, 80, A, 40000, proto::UDP, 0)), None);
    }

    #[test]
    fn timeouts_follow_the_state() {
        let config = ConnTrackConfig::default();
        let mut table = ConnTrack::new(config);
        let t0 = Instant::now();
        let syn = flow(A, 1, B, 2, proto::TCP, tcp_flags::SYN);
        table.open(t0, syn);
        // Unanswered SYN: gone after the opening timeout.
        assert_eq!(
            table.track(t0 + config.tcp_opening + Duration::from_secs(1), syn),
            None
        );

        table.open(t0, syn);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(table.track(t1, syn.reversed()), Some(Tracked::Reply));
        // Established: long idle is fine.
        let t2 = t1 + config.tcp_opening * 10;
        assert_eq!(table.track(t2, syn), Some(Tracked::Original));
        // A FIN closes: short timeout again.
        let fin = flow(A, 1, B, 2, proto::TCP, tcp_flags::FIN | tcp_flags::ACK);
        assert_eq!(table.track(t2, fin), Some(Tracked::Original));
        assert_eq!(
            table.track(t2 + config.tcp_closing + Duration::from_secs(1), fin),
            None
        );
    }

    #[test]
    fn udp_and_icmp_are_tracked_both_ways() {
        let config = ConnTrackConfig::default();
        let mut table = ConnTrack::new(config);
        let t0 = Instant::now();
        let dns = flow(A, 5353, B, 53, proto::UDP, 0);
        table.open(t0, dns);
        assert_eq!(table.track(t0, dns.reversed()), Some(Tracked::Reply));
        // Replied: the longer timeout applies.
        let later = t0 + config.unreplied + Duration::from_secs(1);
        assert_eq!(table.track(later, dns), Some(Tracked::Original));

        let echo = flow(A, 7, B, 7, proto::ICMP, 0);
        table.open(t0, echo);
        assert_eq!(table.track(t0, echo.reversed()), Some(Tracked::Reply));
        assert_eq!(table.expire(t0 + config.replied * 2), 2);
        assert!(table.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest() {
        let config = ConnTrackConfig {
            capacity: 4,
            ..ConnTrackConfig::default()
        };
        let mut table = ConnTrack::new(config);
        let t0 = Instant::now();
        for port in 0..4u16 {
            table.open(
                t0 + Duration::from_secs(u64::from(port)),
                flow(A, port, B, 80, proto::UDP, 0),
            );
        }
        assert_eq!(table.len(), 4);
        table.open(
            t0 + Duration::from_secs(10),
            flow(A, 100, B, 80, proto::UDP, 0),
        );
        assert_eq!(table.len(), 4);
        assert_eq!(table.evictions(), 1);
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            table.track(now, flow(A, 0, B, 80, proto::UDP, 0)),
            None,
            "the oldest went"
        );
        assert!(table.track(now, flow(A, 1, B, 80, proto::UDP, 0)).is_some());
        assert!(table
            .track(now, flow(A, 100, B, 80, proto::UDP, 0))
            .is_some());
        // Expired entries go before live ones are evicted.
        let much_later = now + config.unreplied * 2;
        table.open(much_later, flow(A, 200, B, 80, proto::UDP, 0));
        assert_eq!(table.evictions(), 1);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_full_table_makes_room_for_a_batch_at_once() {
        let config = ConnTrackConfig {
            capacity: 64 * 200,
            ..ConnTrackConfig::default()
        };
        let mut table = ConnTrack::new(config);
        let t0 = Instant::now();
        let mut opened = Vec::new();
        for n in 0..config.capacity {
            let n = u32::try_from(n).unwrap();
            let [_, _, hi, lo] = n.to_be_bytes();
            let f = flow(A, u16::from_be_bytes([hi, lo]), B, 80, proto::UDP, 0);
            table.open(t0 + Duration::from_millis(u64::from(n)), f);
            opened.push(f);
        }
        assert_eq!(table.len(), config.capacity);
        let now = t0 + Duration::from_secs(20);
        table.open(now, flow(B, 9, A, 9, proto::UDP, 0));
        // About a batch (200) went, in one pass, the oldest first.
        let evicted = usize::try_from(table.evictions()).unwrap();
        assert!((100..=400).contains(&evicted), "{evicted} evicted");
        assert_eq!(table.len(), config.capacity - evicted + 1);
        for (i, f) in opened.iter().enumerate() {
            assert_eq!(table.contains(now, *f), i >= evicted, "flow {i}");
        }
        // The next connections need no eviction until the room is used up.
        for port in 0..u16::try_from(evicted - 1).unwrap() {
            table.open(now, flow(B, 10_000 + port, A, 9, proto::UDP, 0));
        }
        assert_eq!(usize::try_from(table.evictions()).unwrap(), evicted);
        assert_eq!(table.len(), config.capacity);
    }

    #[test]
    fn entries_of_one_age_lose_a_batch_not_everything() {
        let config = ConnTrackConfig {
            capacity: 64 * 50,
            ..ConnTrackConfig::default()
        };
        let mut table = ConnTrack::new(config);
        let t0 = Instant::now();
        for port in 0..u16::try_from(config.capacity).unwrap() {
            table.open(t0, flow(A, port, B, 80, proto::UDP, 0));
        }
        table.open(t0, flow(B, 1, A, 1, proto::UDP, 0));
        assert_eq!(table.evictions(), 50);
        assert_eq!(table.len(), config.capacity - 50 + 1);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut table = ConnTrack::new(ConnTrackConfig::default());
        let now = Instant::now();
        let f = flow(A, 1, B, 2, proto::UDP, 0);
        table.open(now, f);
        table.clear();
        assert_eq!(table.track(now, f.reversed()), None);
    }
}
