//! The overlay port: the switch port behind which every remote VTEP lives. It turns
//! frames the switch sends "to the overlay" into VXLAN datagrams (RFC 7348) on the
//! underlay socket, and checks datagrams from the underlay before the switch sees them.
//!
//! Sending: a frame with an offload (a TSO/USO super-frame, or a partial checksum) is
//! segmented in user space into MTU-sized frames with complete checksums, each behind its
//! VXLAN header at a fixed stride in one buffer; a plain frame gets its VXLAN header
//! written in place, over the virtio-net header it no longer needs, and goes out without
//! a copy. Broadcast, multicast and unknown unicast go to every peer VTEP (head-end
//! replication), segmented once.
//!
//! Receiving: a datagram from an address that is no cluster node, with another VNI, or
//! without VXLAN's I flag is dropped and counted; so is an inner frame larger than the
//! pod MTU allows. Nothing is ever fragmented.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use overlay::encap::emit_header;
use overlay::{
    decapsulate, segment, DecapError, GsoError, GsoKind, Offload, UdpUnderlay, Underlay,
    VXLAN_HEADER_LEN,
};

use crate::switch::{DropReason, PortStats};
use crate::sys::tap::VNET_HDR_LEN;
use crate::wire::virtio_net::{
    VirtioNetHdr, VirtioNetRepr, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4,
};

/// The inner Ethernet header. The pod MTU is the underlay MTU less VXLAN's 50 bytes of
/// outer headers, Ethernet included, so an inner frame of MTU + 14 fills the underlay
/// exactly; a VLAN-tagged full-size frame would not fit and is dropped as too big.
const ETHERNET_OVERHEAD: usize = 14;

/// The most segments one super-frame may be cut into (64 KiB at an MSS of 536 is 123).
const MAX_SEGMENTS: usize = 160;

/// Where the VXLAN header of a received datagram starts in the receive buffer, so that
/// the inner frame starts right after a virtio-net header's worth of room.
pub const RECV_OFFSET: usize = VNET_HDR_LEN - VXLAN_HEADER_LEN;

/// The overlay port of the data path, over any [`Underlay`]: the UDP socket in the
/// daemon, the in-memory mesh in tests.
pub struct OverlayPort<U: Underlay = UdpUnderlay> {
    underlay: U,
    vni: u32,
    /// The largest inner Ethernet frame the underlay carries: pod MTU + Ethernet + a tag.
    max_frame: usize,
    peers: HashSet<Ipv4Addr>,
    stats: Arc<PortStats>,
    /// Segments at `stride`, each behind its VXLAN header.
    segments: Vec<u8>,
    lens: Vec<usize>,
    stride: usize,
}

impl<U: Underlay> OverlayPort<U> {
    /// An overlay port sending and receiving on `underlay` with `vni`, for pods with MTU
    /// `mtu`.
    pub fn new(underlay: U, vni: u32, mtu: u32, stats: Arc<PortStats>) -> OverlayPort<U> {
        let max_frame = usize::try_from(mtu)
            .unwrap_or(usize::MAX)
            .saturating_add(ETHERNET_OVERHEAD);
        let stride = VXLAN_HEADER_LEN + max_frame;
        OverlayPort {
            underlay,
            vni,
            max_frame,
            peers: HashSet::new(),
            stats,
            segments: vec![0; stride * MAX_SEGMENTS],
            lens: vec![0; MAX_SEGMENTS],
            stride,
        }
    }

    /// The underlay it sends and receives on.
    pub fn underlay(&self) -> &U {
        &self.underlay
    }

    /// The port's counters.
    pub fn stats(&self) -> &Arc<PortStats> {
        &self.stats
    }

    /// Replaces the set of peer VTEPs; returns the ones that left.
    pub fn set_peers(&mut self, peers: HashSet<Ipv4Addr>) -> Vec<Ipv4Addr> {
        let gone = self.peers.difference(&peers).copied().collect();
        self.peers = peers;
        gone
    }

    /// Receives one datagram into `buf[RECV_OFFSET..]` without blocking, checks it, and
    /// returns the length of the inner frame (which starts at `buf[VNET_HDR_LEN..]`) and
    /// the sending VTEP. `Ok(None)` when nothing is queued; `Ok(Some(Err(reason)))` for a
    /// datagram dropped (and counted) here.
    ///
    /// # Errors
    /// A socket error other than `WouldBlock`.
    pub fn recv(
        &self,
        buf: &mut [u8],
    ) -> io::Result<Option<Result<(usize, Ipv4Addr), DropReason>>> {
        let Some(room) = buf.get_mut(RECV_OFFSET..) else {
            return Ok(None);
        };
        let Some((len, from)) = self.underlay.recv(room)? else {
            return Ok(None);
        };
        let verdict = self.check(room.get(..len).unwrap_or_default(), from);
        if let Err(reason) = verdict {
            self.stats.record_drop(reason);
        }
        Ok(Some(verdict.map(|inner| (inner, from))))
    }

    fn check(&self, datagram: &[u8], from: Ipv4Addr) -> Result<usize, DropReason> {
        if !self.peers.contains(&from) {
            return Err(DropReason::UnknownVtep);
        }
        let inner = decapsulate(self.vni, datagram).map_err(|e| match e {
            DecapError::WrongVni { .. } => DropReason::WrongVni,
            DecapError::Truncated | DecapError::MissingIFlag | DecapError::InnerTooShort => {
                DropReason::BadVxlan
            }
        })?;
        if inner.len() > self.max_frame {
            return Err(DropReason::TooBig);
        }
        Ok(inner.len())
    }

    /// Sends `frame` (a virtio-net header, then an Ethernet frame) to every peer VTEP.
    /// The buffer's header bytes are overwritten.
    pub fn flood(&mut self, frame: &mut [u8]) {
        self.send(frame, None);
    }

    /// Sends `frame` (a virtio-net header, then an Ethernet frame) to `vtep`. The
    /// buffer's header bytes are overwritten.
    pub fn unicast(&mut self, frame: &mut [u8], vtep: Ipv4Addr) {
        self.send(frame, Some(vtep));
    }

    fn send(&mut self, frame: &mut [u8], to: Option<Ipv4Addr>) {
        let offload = match offload_of(frame) {
            Ok(offload) => offload,
            Err(reason) => return self.stats.record_drop(reason),
        };
        let Some(ethernet) = frame.get(VNET_HDR_LEN..) else {
            return self.stats.record_drop(DropReason::Malformed);
        };
        let hint = overlay::source_port(ethernet);
        if offload == Offload::NONE {
            if ethernet.len() > self.max_frame {
                return self.stats.record_drop(DropReason::TooBig);
            }
            // The VXLAN header goes where the virtio-net header's tail was: no copy.
            let Some(datagram) = frame.get_mut(RECV_OFFSET..) else {
                return;
            };
            if emit_header(self.vni, datagram).is_err() {
                return self.stats.record_drop(DropReason::TxError);
            }
            self.transmit_one(datagram, to, hint);
            return;
        }
        let Some(out) = self.segments.get_mut(VXLAN_HEADER_LEN..) else {
            return;
        };
        let count = match segment(ethernet, offload, out, self.stride, &mut self.lens) {
            Ok(count) => count,
            // Segments that would not fit the underlay: the pod's MSS is above its MTU.
            Err(GsoError::StrideTooSmall { .. } | GsoError::SegmentTooLong(_)) => {
                return self.stats.record_drop(DropReason::TooBig)
            }
            Err(_) => return self.stats.record_drop(DropReason::BadOffload),
        };
        let lens = self.lens.get(..count).unwrap_or_default();
        if lens.iter().any(|&len| len > self.max_frame) {
            // The pod's MSS is larger than the pod MTU allows: never fragment silently.
            return self.stats.record_drop(DropReason::TooBig);
        }
        for (i, &len) in lens.iter().enumerate() {
            let start = i * self.stride;
            let Some(datagram) = self.segments.get_mut(start..start + VXLAN_HEADER_LEN + len)
            else {
                return;
            };
            if emit_header(self.vni, datagram).is_err() {
                return self.stats.record_drop(DropReason::TxError);
            }
        }
        for i in 0..count {
            let start = i * self.stride;
            let len = self.lens.get(i).copied().unwrap_or_default();
            let Some(datagram) = self.segments.get(start..start + VXLAN_HEADER_LEN + len) else {
                return;
            };
            self.transmit_one(datagram, to, hint);
        }
    }

    /// Sends one datagram to `to`, or to every peer VTEP when `to` is `None`.
    fn transmit_one(&self, datagram: &[u8], to: Option<Ipv4Addr>, hint: u16) {
        match to {
            Some(vtep) => transmit(&self.underlay, &self.stats, datagram, vtep, hint),
            None => {
                for &vtep in &self.peers {
                    transmit(&self.underlay, &self.stats, datagram, vtep, hint);
                }
            }
        }
    }
}

impl<U: Underlay + AsRawFd> AsRawFd for OverlayPort<U> {
    fn as_raw_fd(&self) -> RawFd {
        self.underlay.as_raw_fd()
    }
}

/// Sends one datagram, counting it as sent or dropped.
fn transmit<U: Underlay>(
    underlay: &U,
    stats: &PortStats,
    datagram: &[u8],
    vtep: Ipv4Addr,
    hint: u16,
) {
    match underlay.send(datagram, vtep, hint) {
        Ok(()) => stats.record_tx(u64::try_from(datagram.len()).unwrap_or(u64::MAX)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            stats.record_drop(DropReason::TxQueueFull)
        }
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => stats.record_drop(DropReason::TooBig),
        // The AF_XDP underlay has no next-hop MAC yet and asked the kernel to resolve it.
        Err(e) if e.kind() == io::ErrorKind::HostUnreachable => {
            stats.record_drop(DropReason::NoNeighbour)
        }
        Err(_) => stats.record_drop(DropReason::TxError),
    }
}

/// What a frame's virtio-net header asks of the overlay.
fn offload_of(frame: &[u8]) -> Result<Offload, DropReason> {
    let header = frame.get(..VNET_HDR_LEN).ok_or(DropReason::Malformed)?;
    let repr = VirtioNetHdr::new_checked(header)
        .and_then(|h| VirtioNetRepr::parse(&h))
        .map_err(|_| DropReason::BadOffload)?;
    let gso = match repr.gso_kind() {
        VIRTIO_NET_HDR_GSO_NONE => GsoKind::None,
        VIRTIO_NET_HDR_GSO_TCPV4 => GsoKind::TcpV4,
        VIRTIO_NET_HDR_GSO_TCPV6 => GsoKind::TcpV6,
        VIRTIO_NET_HDR_GSO_UDP_L4 => GsoKind::UdpL4,
        // Legacy UFO: Linux no longer produces it.
        _ => return Err(DropReason::BadOffload),
    };
    if gso == GsoKind::None && !repr.needs_csum() {
        return Ok(Offload::NONE);
    }
    Ok(Offload {
        needs_csum: repr.needs_csum(),
        csum_start: repr.csum_start,
        csum_offset: repr.csum_offset,
        gso,
        gso_size: repr.gso_size,
        hdr_len: repr.hdr_len,
    })
}
