//! Per-port counters, shared between the data path and the control plane.
//!
//! A [`PortStats`] sits behind an `Arc`: the switch (and the worker that writes frames)
//! add to it, `vswitchctl` reads it, and nobody takes a lock. Every counter is an
//! `AtomicU64` updated with `Relaxed` ordering: each counter is exact on its own, but a
//! [`PortStats::snapshot`] taken while frames flow is not one atomic cut across counters.
//!
//! Who counts what: the switch counts `rx_*`, `arp_replies` and every drop it decides,
//! on the ingress port; the caller counts `tx_*` and the egress drops
//! ([`DropReason::TxQueueFull`], [`DropReason::TxError`]) on the egress port when it
//! writes a frame out, since only it knows how that went.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the switch dropped a frame. Each has a counter in [`PortStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The frame could not be classified (truncated or bogus headers).
    Malformed,
    /// Port security: the source MAC, ARP sender or IPv4 source is not the port's own.
    PortSecurity,
    /// The source MAC is a group address or all zeros.
    InvalidSource,
    /// The source MAC belongs to a port-security port other than the ingress one.
    MacConflict,
    /// The ingress port is not attached to the switch (counted switch-wide, not per port).
    UnknownPort,
    /// The frame had to be flooded but no other port exists.
    NoPeers,
    /// The destination lives behind the ingress port (or, for a frame from the overlay,
    /// behind another VTEP): forwarding would send it back where it came from.
    Hairpin,
    /// The egress queue was full (the write would block). Counted by the caller.
    TxQueueFull,
    /// Writing to the egress port failed. Counted by the caller.
    TxError,
    /// A VXLAN datagram from an address that is no node of the cluster. Counted by the
    /// caller on the overlay port.
    UnknownVtep,
    /// A VXLAN datagram with another VNI. Counted by the caller on the overlay port.
    WrongVni,
    /// A VXLAN datagram without the I flag, or too short to hold a header and a frame.
    /// Counted by the caller on the overlay port.
    BadVxlan,
    /// A frame larger than the pod MTU allows (it would need fragmenting on the
    /// underlay, which vswitch never does silently). Counted by the caller.
    TooBig,
    /// A frame whose virtio-net offload header does not match its contents, so it could
    /// not be segmented for the overlay. Counted by the caller.
    BadOffload,
    /// NetworkPolicy does not allow this new connection (the sender's egress or the
    /// receiver's ingress).
    PolicyDenied,
    /// The frame had to be flooded, but its ingress port (or, from the overlay, its VTEP)
    /// is over its flood rate limit.
    FloodRate,
    /// The AF_XDP underlay does not know the next hop's MAC for the remote VTEP yet; it
    /// has asked the kernel to resolve it. Counted by the caller on the overlay port.
    NoNeighbour,
    /// The kernel side of the AF_XDP underlay dropped received frames: the RX ring was
    /// full or no receive buffer was free (the data path fell behind). Read from the
    /// sockets' `XDP_STATISTICS` once a second.
    UnderlayRxDropped,
}

impl DropReason {
    /// The number of reasons.
    pub const COUNT: usize = 18;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::PortSecurity,
        DropReason::InvalidSource,
        DropReason::MacConflict,
        DropReason::UnknownPort,
        DropReason::NoPeers,
        DropReason::Hairpin,
        DropReason::TxQueueFull,
        DropReason::TxError,
        DropReason::UnknownVtep,
        DropReason::WrongVni,
        DropReason::BadVxlan,
        DropReason::TooBig,
        DropReason::BadOffload,
        DropReason::PolicyDenied,
        DropReason::FloodRate,
        DropReason::NoNeighbour,
        DropReason::UnderlayRxDropped,
    ];

    /// The counter label, e.g. `"port_security"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::PortSecurity => "port_security",
            DropReason::InvalidSource => "invalid_source",
            DropReason::MacConflict => "mac_conflict",
            DropReason::UnknownPort => "unknown_port",
            DropReason::NoPeers => "no_peers",
            DropReason::Hairpin => "hairpin",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::TxError => "tx_error",
            DropReason::UnknownVtep => "unknown_vtep",
            DropReason::WrongVni => "wrong_vni",
            DropReason::BadVxlan => "bad_vxlan",
            DropReason::TooBig => "too_big",
            DropReason::BadOffload => "bad_offload",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::FloodRate => "flood_rate",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::UnderlayRxDropped => "underlay_rx_dropped",
        }
    }

    /// The position of this reason in [`DropReason::ALL`] and in the drop counters.
    pub const fn index(self) -> usize {
        match self {
            DropReason::Malformed => 0,
            DropReason::PortSecurity => 1,
            DropReason::InvalidSource => 2,
            DropReason::MacConflict => 3,
            DropReason::UnknownPort => 4,
            DropReason::NoPeers => 5,
            DropReason::Hairpin => 6,
            DropReason::TxQueueFull => 7,
            DropReason::TxError => 8,
            DropReason::UnknownVtep => 9,
            DropReason::WrongVni => 10,
            DropReason::BadVxlan => 11,
            DropReason::TooBig => 12,
            DropReason::BadOffload => 13,
            DropReason::PolicyDenied => 14,
            DropReason::FloodRate => 15,
            DropReason::NoNeighbour => 16,
            DropReason::UnderlayRxDropped => 17,
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lock-free counters of one port.
#[derive(Debug, Default)]
pub struct PortStats {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    arp_replies: AtomicU64,
    mac_evictions: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

impl PortStats {
    /// All counters at zero.
    pub fn new() -> PortStats {
        PortStats::default()
    }

    /// Counts one frame of `bytes` bytes (Ethernet, no virtio-net header) received on
    /// the port.
    pub fn record_rx(&self, bytes: u64) {
        self.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one frame of `bytes` bytes (Ethernet, no virtio-net header) written out of
    /// the port.
    pub fn record_tx(&self, bytes: u64) {
        self.tx_packets.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `packets` frames of `bytes` bytes in all written out of the port at once
    /// (a batch send).
    pub fn record_tx_batch(&self, packets: u64, bytes: u64) {
        self.tx_packets.fetch_add(packets, Ordering::Relaxed);
        self.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one ARP request received on the port that the switch answered itself.
    pub fn record_arp_reply(&self) {
        self.arp_replies.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one MAC table entry learned on this port (or, on the overlay port, behind
    /// one of its VTEPs) evicted because the port had reached its bound of learned MACs.
    pub fn record_mac_eviction(&self) {
        self.mac_evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one frame dropped for `reason`.
    pub fn record_drop(&self, reason: DropReason) {
        if let Some(counter) = self.drops.get(reason.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts `count` frames dropped for `reason` (drops counted elsewhere, such as the
    /// kernel's AF_XDP statistics).
    pub fn record_drops(&self, reason: DropReason, count: u64) {
        if let Some(counter) = self.drops.get(reason.index()) {
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// The number of frames dropped for `reason` so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// A plain copy of every counter.
    pub fn snapshot(&self) -> PortStatsSnapshot {
        PortStatsSnapshot {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            arp_replies: self.arp_replies.load(Ordering::Relaxed),
            mac_evictions: self.mac_evictions.load(Ordering::Relaxed),
            drops: DropReason::ALL.map(|reason| (reason.as_str(), self.drops(reason))),
        }
    }
}

/// The counters of a port at one moment, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PortStatsSnapshot {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received (Ethernet frames, no virtio-net header).
    pub rx_bytes: u64,
    /// Frames written out.
    pub tx_packets: u64,
    /// Bytes written out.
    pub tx_bytes: u64,
    /// ARP requests the switch answered itself.
    pub arp_replies: u64,
    /// MACs learned on the port evicted because the port reached its bound.
    pub mac_evictions: u64,
    /// Drops as `(label, count)` for every reason, in [`DropReason::ALL`] order (the label
    /// is [`DropReason::as_str`]).
    pub drops: [(&'static str, u64); DropReason::COUNT],
}

impl Default for PortStatsSnapshot {
    fn default() -> Self {
        PortStatsSnapshot {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            arp_replies: 0,
            mac_evictions: 0,
            drops: DropReason::ALL.map(|reason| (reason.as_str(), 0)),
        }
    }
}

impl PortStatsSnapshot {
    /// Frames dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |&(_, count)| count)
    }

    /// Frames dropped for any reason.
    pub fn total_drops(&self) -> u64 {
        self.drops
            .iter()
            .fold(0u64, |sum, &(_, count)| sum.saturating_add(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::COUNT);
    }

    #[test]
    fn counters_add_up() {
        let stats = PortStats::new();
        stats.record_rx(60);
        stats.record_rx(1514);
        stats.record_drop(DropReason::TxQueueFull);
        stats.record_tx(42);
        stats.record_arp_reply();
        stats.record_mac_eviction();
        stats.record_drop(DropReason::PortSecurity);
        stats.record_drop(DropReason::PortSecurity);
        stats.record_drop(DropReason::Malformed);
        let snap = stats.snapshot();
        assert_eq!((snap.rx_packets, snap.rx_bytes), (2, 1574));
        assert_eq!((snap.tx_packets, snap.tx_bytes), (1, 42));
        assert_eq!(snap.arp_replies, 1);
        assert_eq!(snap.mac_evictions, 1);
        assert_eq!(snap.drops(DropReason::PortSecurity), 2);
        assert_eq!(stats.drops(DropReason::Malformed), 1);
        assert_eq!(snap.drops(DropReason::TxQueueFull), 1);
        assert_eq!(snap.total_drops(), 4);
        let labelled: Vec<_> = snap.drops.iter().filter(|&&(_, n)| n > 0).collect();
        assert_eq!(
            labelled,
            [
                &("malformed", 1),
                &("port_security", 2),
                &("tx_queue_full", 1)
            ]
        );
        assert_eq!(PortStatsSnapshot::default().total_drops(), 0);
    }
}
