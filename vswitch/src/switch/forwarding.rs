//! The switch: the forwarding decision for one frame, as a state machine without I/O.
//!
//! [`Switch::decide`] takes a frame received on a port, the time, and a buffer for a
//! reply, and says what to do: send to one location, flood, send the reply back, or drop.
//! The caller (the daemon's workers, the tests, the benches) does the sending. Steps, in
//! order; the first that ends the decision wins:
//!
//! 1. Unknown ingress port: drop ([`DropReason::UnknownPort`], counted switch-wide).
//!    Otherwise count the frame in the port's `rx_*`.
//! 2. [`classify`] fails: drop, [`DropReason::Malformed`].
//! 3. Source MAC is a group address or zero: drop, [`DropReason::InvalidSource`].
//! 4. Port security (see [`PortConfig`]): drop, [`DropReason::PortSecurity`].
//! 5. Learn the source MAC at the ingress location. If the MAC is pinned to another port
//!    (a port-security pod's own MAC), drop, [`DropReason::MacConflict`]. A location
//!    holding [`SwitchConfig::mac_per_port`] learned MACs already loses its least
//!    recently seen one, counted in the ingress port's `mac_evictions`.
//! 6. An untagged ARP request for an address set with [`Switch::set_address`] is answered
//!    ([`Verdict::Reply`]), except when the requester asks for itself (gratuitous ARP,
//!    RFC 5227 probe: target IP = sender IP, or the owner MAC is the requester's) or when
//!    the owner lives behind the ingress location itself; those go on to step 7.
//! 7. Group destination, or unicast destination not in the MAC table (or aged): flood
//!    ([`Verdict::Flood`]), or drop ([`DropReason::NoPeers`]) when the switch has no
//!    other port, or ([`DropReason::FloodRate`]) when the ingress location (the port,
//!    or for a frame from the overlay its VTEP) is over [`SwitchConfig::flood_rate`].
//! 8. Destination behind the ingress location (or, for a frame from the overlay, behind
//!    any VTEP: split horizon): drop, [`DropReason::Hairpin`]. Otherwise
//!    [`Verdict::Unicast`].
//!
//! Invariants: `decide` never panics, never allocates once the MAC table has warmed up,
//! and counts every frame it sees as `rx` and every drop it decides, on the ingress port.
//! The `tx_*` counters are the caller's.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mac::MacAddr;
use crate::policy::packet::classified_flow;
use crate::wire::{classify, ArpInfo, FrameInfo, L3Info, ARP_OP_REQUEST};

use super::arp::write_arp_reply;
use super::flood_limit::{FloodBucket, FloodRate};
use super::mac_table::{Learned, Location, MacTable};
use super::policy_gate::{NewFlowPolicy, PolicyGate};
use super::port::{Port, PortConfig, PortId, PortKind};
use super::port_table::PortTable;
use super::stats::{DropReason, PortStats};

/// How the switch is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// The most MAC table entries; beyond, the least recently seen is evicted.
    pub mac_capacity: usize,
    /// The most MACs learned at one location (a local port, or one remote VTEP); beyond,
    /// that location's least recently seen is evicted. Pinned entries do not count.
    pub mac_per_port: usize,
    /// How long a learned MAC lives without traffic.
    pub aging: Duration,
    /// How fast one location may have frames flooded.
    pub flood_rate: FloodRate,
}

impl SwitchConfig {
    /// Default [`SwitchConfig::mac_capacity`].
    pub const DEFAULT_MAC_CAPACITY: usize = 8192;
    /// Default [`SwitchConfig::mac_per_port`]: four times the stations of a /24 node
    /// subnet behind one VTEP, an eighth of the table.
    pub const DEFAULT_MAC_PER_PORT: usize = 1024;
    /// Default [`SwitchConfig::aging`]: 300 s, as IEEE 802.1D recommends.
    pub const DEFAULT_AGING: Duration = Duration::from_secs(300);
    /// Default [`SwitchConfig::flood_rate`]: 1000 frames a second, 200 at once. The switch
    /// answers ARP for every address the cluster knows, so pods flood little: ARP for
    /// strangers, unknown unicast until a stranger is learned, broadcast discovery.
    pub const DEFAULT_FLOOD_RATE: FloodRate = FloodRate {
        per_second: 1000,
        burst: 200,
    };
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            mac_capacity: Self::DEFAULT_MAC_CAPACITY,
            mac_per_port: Self::DEFAULT_MAC_PER_PORT,
            aging: Self::DEFAULT_AGING,
            flood_rate: Self::DEFAULT_FLOOD_RATE,
        }
    }
}

/// The most remote VTEPs with a flood bucket of their own; VTEPs beyond share one. The
/// overlay port admits datagrams only from cluster nodes, so this is never reached in a
/// cluster of a sane size; it bounds the memory whatever the caller does.
const MAX_VTEP_BUCKETS: usize = 4096;

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it to that one port or VTEP.
    Unicast(Location),
    /// Send it out of every port but the ingress one ([`Switch::flood_ports`]); a frame
    /// from the overlay is not flooded back to the overlay, since the overlay port is its
    /// ingress. Flooding to the overlay port means "to every remote VTEP".
    Flood,
    /// The switch wrote a reply of `len` bytes at the front of the `reply` buffer: send it
    /// out of the ingress port (to the ingress VTEP for a frame from the overlay).
    Reply {
        /// Length of the reply frame.
        len: usize,
    },
    /// Drop it. Already counted on the ingress port's stats.
    Drop(DropReason),
}

/// The sans-IO switch: ports, the MAC table and the addresses the cluster knows.
#[derive(Debug)]
pub struct Switch {
    config: SwitchConfig,
    ports: PortTable<Port>,
    macs: MacTable,
    addresses: HashMap<Ipv4Addr, MacAddr>,
    gate: PolicyGate,
    unknown_port_drops: u64,
    /// The flood buckets of remote VTEPs (those of local ports are in [`Port`]).
    vtep_buckets: HashMap<Ipv4Addr, FloodBucket>,
    /// The bucket VTEPs share once [`MAX_VTEP_BUCKETS`] have one.
    shared_vtep_bucket: FloodBucket,
}

impl Switch {
    /// A switch without ports.
    pub fn new(config: SwitchConfig) -> Switch {
        Switch {
            config,
            ports: PortTable::new(),
            macs: MacTable::with_location_bound(
                config.mac_capacity,
                config.mac_per_port,
                config.aging,
            ),
            addresses: HashMap::new(),
            gate: PolicyGate::default(),
            unknown_port_drops: 0,
            vtep_buckets: HashMap::new(),
            shared_vtep_bucket: FloodBucket::new(),
        }
    }

    /// The configuration the switch was made with.
    pub fn config(&self) -> SwitchConfig {
        self.config
    }

    /// Attaches port `id`, counting into `stats`. Replacing an existing port forgets what
    /// was learned on it. A Pod port with port security has its own MAC pinned to it: the
    /// entry never ages, and frames from that MAC on any other port are dropped.
    pub fn add_port(&mut self, id: PortId, config: PortConfig, stats: Arc<PortStats>) {
        let port = Port {
            config,
            stats,
            flood: FloodBucket::new(),
            mac_slot: usize::MAX,
        };
        if self.ports.insert(id, port).is_some() {
            self.macs.remove_port(id);
        }
        if config.enforces_security() && config.mac.is_unicast() {
            // A table full of pinned entries cannot take this one; the port still works,
            // it just is not protected from MAC theft.
            let _pinned = self.macs.pin(config.mac, Location::Port(id));
        }
    }

    /// Detaches port `id` and forgets every MAC learned (or pinned) on it.
    pub fn remove_port(&mut self, id: PortId) {
        if self.ports.remove(id).is_some() {
            self.macs.remove_port(id);
        }
    }

    /// The attached ports, in increasing order.
    pub fn port_ids(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.ids()
    }

    /// The configuration of port `id`.
    pub fn port_config(&self, id: PortId) -> Option<&PortConfig> {
        self.ports.get(id).map(|port| &port.config)
    }

    /// The ports a frame from `ingress` floods to: all but `ingress`, in increasing order.
    pub fn flood_ports(&self, ingress: PortId) -> impl Iterator<Item = PortId> + '_ {
        self.ports.ids().filter(move |&id| id != ingress)
    }

    /// The counters of port `id`.
    pub fn stats(&self, id: PortId) -> Option<&Arc<PortStats>> {
        self.ports.get(id).map(|port| &port.stats)
    }

    /// Records that `mac` holds `ip` (a pod or a gateway anywhere in the cluster): ARP
    /// requests for `ip` are answered by the switch, never flooded.
    pub fn set_address(&mut self, ip: Ipv4Addr, mac: MacAddr) {
        self.addresses.insert(ip, mac);
    }

    /// Forgets the owner of `ip`.
    pub fn remove_address(&mut self, ip: Ipv4Addr) {
        self.addresses.remove(&ip);
    }

    /// The MAC recorded for `ip` by [`Switch::set_address`].
    pub fn address(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.addresses.get(&ip).copied()
    }

    /// Decides one frame (Ethernet bytes, no virtio-net header) received on local port
    /// `ingress` at `now`; see the module docs for the steps. `reply` receives an ARP
    /// reply when the verdict is [`Verdict::Reply`]; size it at least 64 bytes (a shorter
    /// one makes the switch flood requests it would have answered).
    pub fn decide(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        reply: &mut [u8],
    ) -> Verdict {
        self.decide_at(now, ingress, Location::Port(ingress), frame, reply)
    }

    /// Decides one frame arriving from the overlay port `overlay`, sent by the remote
    /// VTEP `vtep`. The source MAC is learned as [`Location::Vtep`]; a destination behind
    /// any VTEP is dropped as [`DropReason::Hairpin`] (VTEPs form a full mesh, so the
    /// sender reaches it directly), and a flood goes to local ports only.
    pub fn decide_from_vtep(
        &mut self,
        now: Instant,
        overlay: PortId,
        vtep: Ipv4Addr,
        frame: &[u8],
        reply: &mut [u8],
    ) -> Verdict {
        self.decide_at(now, overlay, Location::Vtep(vtep), frame, reply)
    }

    /// Places `mac` behind remote VTEP `vtep` for good, as the cluster store says (a pod
    /// of another node, or that node's `vsw0`): unicast to it never floods, and no other
    /// port or VTEP can claim its MAC. Returns false when the table is full of pinned
    /// entries.
    pub fn set_remote_station(&mut self, mac: MacAddr, vtep: Ipv4Addr) -> bool {
        self.macs.pin(mac, Location::Vtep(vtep))
    }

    /// Forgets a station placed with [`Switch::set_remote_station`], if it is still
    /// behind `vtep` (a local port that holds the MAC now keeps it).
    pub fn remove_remote_station(&mut self, mac: MacAddr, vtep: Ipv4Addr) -> bool {
        let behind_vtep = self
            .macs
            .entry(mac)
            .is_some_and(|e| e.location == Location::Vtep(vtep));
        behind_vtep && self.macs.remove(mac)
    }

    /// Puts a NetworkPolicy in force for new connections (established ones keep going).
    pub fn set_policy(&mut self, policy: Arc<dyn NewFlowPolicy>) {
        self.gate.set_policy(policy);
    }

    /// The policy gate: its connection table.
    pub fn policy_gate(&self) -> &PolicyGate {
        &self.gate
    }

    /// Forgets every MAC learned behind remote VTEP `vtep` (a node left); returns how many.
    pub fn forget_vtep(&mut self, vtep: Ipv4Addr) -> usize {
        self.vtep_buckets.remove(&vtep);
        self.macs.remove_location(Location::Vtep(vtep))
    }

    /// Removes MAC entries idle for longer than `aging`, and expired connections;
    /// returns how many MAC entries went.
    pub fn age(&mut self, now: Instant) -> usize {
        self.gate.expire(now);
        self.macs.age(now)
    }

    /// The live MAC table for `vswitchctl fdb`, sorted by MAC: (mac, location, idle time).
    /// Aged entries not yet removed are left out; a pinned entry whose port has not sent
    /// anything yet shows an idle time of zero.
    pub fn fdb(&self, now: Instant) -> Vec<(MacAddr, Location, Duration)> {
        let mut rows: Vec<_> = self
            .macs
            .entries()
            .filter(|entry| entry.pinned || self.macs.lookup(entry.mac, now).is_some())
            .map(|entry| {
                let idle = entry
                    .last_seen
                    .map_or(Duration::ZERO, |seen| now.saturating_duration_since(seen));
                (entry.mac, entry.location, idle)
            })
            .collect();
        rows.sort_unstable_by_key(|&(mac, _, _)| mac);
        rows
    }

    /// The MAC table, for its size and eviction counter.
    pub fn mac_table(&self) -> &MacTable {
        &self.macs
    }

    /// Frames dropped because their ingress port was not attached.
    pub fn unknown_port_drops(&self) -> u64 {
        self.unknown_port_drops
    }

    fn decide_at(
        &mut self,
        now: Instant,
        ingress: PortId,
        from: Location,
        frame: &[u8],
        reply: &mut [u8],
    ) -> Verdict {
        let Some(port) = self.ports.get(ingress) else {
            self.unknown_port_drops = self.unknown_port_drops.saturating_add(1);
            return Verdict::Drop(DropReason::UnknownPort);
        };
        port.stats
            .record_rx(u64::try_from(frame.len()).unwrap_or(u64::MAX));
        let at = Ingress {
            port: ingress,
            from,
            config: port.config,
            mac_slot: port.mac_slot,
        };
        let verdict = self.forward(now, &at, frame, reply);
        if let Some(port) = self.ports.get(ingress) {
            match verdict {
                Verdict::Drop(reason) => port.stats.record_drop(reason),
                Verdict::Reply { .. } => port.stats.record_arp_reply(),
                Verdict::Unicast(_) | Verdict::Flood => {}
            }
        }
        verdict
    }

    fn forward(&mut self, now: Instant, at: &Ingress, frame: &[u8], reply: &mut [u8]) -> Verdict {
        let Ingress {
            port: ingress,
            from,
            ref config,
            mac_slot,
        } = *at;
        let Ok(info) = classify(frame) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if !info.src.is_unicast() {
            return Verdict::Drop(DropReason::InvalidSource);
        }
        if !config.admits(&info) {
            return Verdict::Drop(DropReason::PortSecurity);
        }
        let evictions = self.macs.location_evictions();
        let mut hint = mac_slot;
        let learned = self.macs.learn_hinted(&mut hint, info.src, from, now);
        if hint != mac_slot {
            if let Some(port) = self.ports.get_mut(ingress) {
                port.mac_slot = hint;
            }
        }
        if self.macs.location_evictions() != evictions {
            if let Some(port) = self.ports.get(ingress) {
                port.stats.record_mac_eviction();
            }
        }
        if let Learned::Conflict { .. } = learned {
            return Verdict::Drop(DropReason::MacConflict);
        }
        if let L3Info::Arp(arp) = info.l3 {
            if let Some(len) = self.answer_arp(now, ingress, from, &info, &arp, reply) {
                return Verdict::Reply { len };
            }
        }
        if info.dst.is_multicast() {
            // IPv4 unicast in a group frame is judged by its IP destination: otherwise a
            // pod could reach an isolated pod by pointing its neighbour entry at a group
            // MAC. True IP broadcast and multicast are not subject to policy.
            if let L3Info::Ipv4 { dst, .. } = info.l3 {
                if !(dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified()) {
                    let to = self
                        .addresses
                        .get(&dst)
                        .and_then(|&mac| self.macs.lookup(mac, now));
                    if !self.admits(now, config.kind, to, &info, frame) {
                        return Verdict::Drop(DropReason::PolicyDenied);
                    }
                }
            }
            return self.flood(now, ingress, from);
        }
        let to = self.macs.lookup(info.dst, now);
        if to.is_some_and(|to| is_hairpin(to, ingress, from)) {
            return Verdict::Drop(DropReason::Hairpin);
        }
        if let L3Info::Ipv4 { .. } = info.l3 {
            if !self.admits(now, config.kind, to, &info, frame) {
                return Verdict::Drop(DropReason::PolicyDenied);
            }
        }
        match to {
            Some(to) => Verdict::Unicast(to),
            None => self.flood(now, ingress, from),
        }
    }

    /// The policy gate for an IPv4 frame from a port of kind `from` to `to`: egress is
    /// judged when it comes from a pod, ingress when it goes to a pod of this node.
    fn admits(
        &mut self,
        now: Instant,
        from: PortKind,
        to: Option<Location>,
        info: &FrameInfo,
        frame: &[u8],
    ) -> bool {
        let to_pod = match to {
            Some(Location::Port(port)) => self
                .ports
                .get(port)
                .is_some_and(|p| p.config.kind == PortKind::Pod),
            _ => false,
        };
        let packet = || classified_flow(info, frame);
        self.gate
            .admits_flow(now, packet, from == PortKind::Pod, to_pod)
    }

    /// Floods a frame from `from` (on port `ingress`), if there is anywhere to flood it
    /// and the ingress location is within its flood rate.
    fn flood(&mut self, now: Instant, ingress: PortId, from: Location) -> Verdict {
        if self.ports.len() <= 1 {
            return Verdict::Drop(DropReason::NoPeers);
        }
        let rate = self.config.flood_rate;
        let admitted = match from {
            Location::Port(_) => self
                .ports
                .get_mut(ingress)
                .is_none_or(|port| port.flood.admit(rate, now)),
            Location::Vtep(vtep) => {
                let room = self.vtep_buckets.len() < MAX_VTEP_BUCKETS;
                match self.vtep_buckets.get_mut(&vtep) {
                    Some(bucket) => bucket.admit(rate, now),
                    None if room => self.vtep_buckets.entry(vtep).or_default().admit(rate, now),
                    None => self.shared_vtep_bucket.admit(rate, now),
                }
            }
        };
        if admitted {
            Verdict::Flood
        } else {
            Verdict::Drop(DropReason::FloodRate)
        }
    }

    /// Writes the answer to an ARP request when the switch should give it (step 6 of the
    /// module docs); returns its length.
    fn answer_arp(
        &self,
        now: Instant,
        ingress: PortId,
        from: Location,
        info: &FrameInfo,
        arp: &ArpInfo,
        reply: &mut [u8],
    ) -> Option<usize> {
        if arp.op != ARP_OP_REQUEST || info.vlan.is_some() || arp.target_ip == arp.sender_ip {
            return None;
        }
        let owner = *self.addresses.get(&arp.target_ip)?;
        if owner == arp.sender_mac || owner == info.src {
            return None;
        }
        let owner_at = self.macs.lookup(owner, now);
        if owner_at.is_some_and(|at| at == from || at == Location::Port(ingress)) {
            return None;
        }
        // A request from the overlay is answered only for an owner on a local port: the
        // asker's own switch answers for pods it knows, and for one behind a third VTEP
        // our answer would teach the asker that the MAC lives here, and its unicast
        // would die as a hairpin. The owner's node answers instead.
        if matches!(from, Location::Vtep(_)) && !matches!(owner_at, Some(Location::Port(_))) {
            return None;
        }
        write_arp_reply(arp, owner, reply).ok()
    }
}

/// Where a frame came in, as [`Switch::forward`] needs it.
#[derive(Debug, Clone, Copy)]
struct Ingress {
    /// The local port it was read from (the overlay port for a frame from a VTEP).
    port: PortId,
    /// Where its source MAC lives: that port, or the sending VTEP.
    from: Location,
    /// The port's configuration.
    config: PortConfig,
    /// The port's hint for the MAC table slot of its frames' source ([`Port`]'s
    /// `mac_slot`).
    mac_slot: usize,
}

/// True when sending to `to` would return a frame to where it came from.
fn is_hairpin(to: Location, ingress: PortId, from: Location) -> bool {
    to == from
        || to == Location::Port(ingress)
        || matches!((from, to), (Location::Vtep(_), Location::Vtep(_)))
}
