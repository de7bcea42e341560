//! The overlay port: the switch port behind which every remote VTEP lives. It turns
//! frames the switch sends "to the overlay" into VXLAN datagrams (RFC 7348) on the
//! underlay socket, and checks datagrams from the underlay before the switch sees them.
//!
//! Sending: a frame with an offload (a TSO/USO super-frame, or a partial checksum) is
//! segmented in user space into MTU-sized frames with complete checksums, each behind its
//! VXLAN header, packed back to back at one stride in one buffer, and the lot goes to the
//! underlay as one batch ([`Underlay::send_segments`]: one UDP GSO `sendmsg` on the UDP
//! underlay). A plain frame gets its VXLAN header written in place, over the virtio-net
//! header it no longer needs. A unicast frame that makes one datagram (a plain frame, or
//! one that only wanted its checksum completed: most of what pods send, since their
//! stacks leave checksums to the "device") queues in a *run*: back to back, all to one
//! VTEP with one outer source port and one length (the packets of one flow, such as a
//! stream of small UDP datagrams), sent as one batch (one UDP GSO `sendmsg`) when a
//! datagram that does not fit the run comes, when the run is full, before any other
//! send (so a flow keeps its order), and at the end of every data-path turn
//! ([`OverlayPort::flush`]). Broadcast, multicast and unknown unicast go to every peer
//! VTEP (head-end replication), segmented once.
//!
//! Receiving: the data path reads blocks of datagrams ([`OverlayPort::recv_blocks`]: one
//! `recvmmsg`, with UDP GRO many datagrams a block) and checks each with
//! [`OverlayPort::inner`]: a datagram from an address that is no cluster node, with
//! another VNI, or without VXLAN's I flag is dropped and counted; so is an inner frame
//! larger than the pod MTU allows. Nothing is ever fragmented.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use overlay::encap::emit_header;
use overlay::{
    decapsulate, segment, segment_len, DecapError, GsoError, GsoKind, Offload, Received,
    UdpUnderlay, Underlay, VXLAN_HEADER_LEN,
};

use crate::switch::{DropReason, PortStats};
use crate::sys::tap::VNET_HDR_LEN;
use crate::wire::virtio_net::{
    VirtioNetHdr, VirtioNetRepr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4,
};

/// The inner Ethernet header. The pod MTU is the underlay MTU less VXLAN's 50 bytes of
/// outer headers, Ethernet included, so an inner frame of MTU + 14 fills the underlay
/// exactly; a VLAN-tagged full-size frame would not fit and is dropped as too big.
const ETHERNET_OVERHEAD: usize = 14;

/// The most segments one super-frame may be cut into (64 KiB at an MSS of 536 is 123).
const MAX_SEGMENTS: usize = 160;

/// Where a frame's VXLAN header goes in a buffer that starts with its virtio-net header:
/// over the header's tail, right before the Ethernet frame, so a frame without offload
/// is encapsulated in place.
pub const ENCAP_OFFSET: usize = VNET_HDR_LEN - VXLAN_HEADER_LEN;

/// Bytes of one receive block: room for a whole UDP GRO block.
pub const RX_SLOT: usize = overlay::underlay::GRO_SLOT;

/// The most blocks one receive fills.
pub const RX_BLOCKS: usize = 16;

/// The virtio-net header of a frame the receive coalescer built
/// ([`overlay::Coalescer`]): a TCPv4 or UDP (USO) super-frame with a partial checksum,
/// or a plain frame.
pub fn coalesced_header(offload: Offload) -> VirtioNetRepr {
    if offload == Offload::NONE {
        return VirtioNetRepr::PLAIN;
    }
    VirtioNetRepr {
        flags: if offload.needs_csum {
            VIRTIO_NET_HDR_F_NEEDS_CSUM
        } else {
            0
        },
        gso_type: match offload.gso {
            GsoKind::TcpV4 => VIRTIO_NET_HDR_GSO_TCPV4,
            GsoKind::TcpV6 => VIRTIO_NET_HDR_GSO_TCPV6,
            GsoKind::UdpL4 => VIRTIO_NET_HDR_GSO_UDP_L4,
            GsoKind::None => VIRTIO_NET_HDR_GSO_NONE,
        },
        hdr_len: offload.hdr_len,
        gso_size: offload.gso_size,
        csum_start: offload.csum_start,
        csum_offset: offload.csum_offset,
    }
}

/// The overlay port of the data path, over any [`Underlay`]: the UDP socket in the
/// daemon, the in-memory mesh in tests.
pub struct OverlayPort<U: Underlay = UdpUnderlay> {
    underlay: U,
    vni: u32,
    /// The largest inner Ethernet frame the underlay carries: pod MTU + Ethernet + a tag.
    max_frame: usize,
    peers: HashSet<Ipv4Addr>,
    stats: Arc<PortStats>,
    /// Segments packed back to back, each behind its VXLAN header.
    segments: Vec<u8>,
    lens: Vec<usize>,
    /// Single datagrams waiting to go (see the module docs).
    run: Run,
}

/// The most datagrams a run holds: one UDP GSO send.
const RUN_MAX: usize = overlay::underlay::GSO_MAX_SEGMENTS;

/// Single datagrams queued for one batch send: `count` of `len` bytes back to back, all
/// to one VTEP with one outer source port.
struct Run {
    buf: Vec<u8>,
    /// Where the run goes: the VTEP and the outer source port; `None` when empty.
    to: Option<(Ipv4Addr, u16)>,
    len: usize,
    count: usize,
}

impl Run {
    /// Queues `datagram` for `vtep`: it joins the run when it goes where the run goes and
    /// is as long as its datagrams; else the run is sent and a new one starts.
    fn push<U: Underlay>(
        &mut self,
        datagram: &[u8],
        vtep: Ipv4Addr,
        hint: u16,
        underlay: &U,
        stats: &PortStats,
    ) {
        let len = datagram.len();
        let joins = self.to == Some((vtep, hint)) && self.len == len && self.count < RUN_MAX;
        if !joins {
            self.flush(underlay, stats);
            self.to = Some((vtep, hint));
            self.len = len;
        }
        let start = self.count * len;
        match self.buf.get_mut(start..start + len) {
            Some(slot) => {
                slot.copy_from_slice(datagram);
                self.count += 1;
            }
            // Longer than any datagram the port sends (checked before): send it alone.
            None => transmit(underlay, stats, datagram, vtep, hint),
        }
    }

    /// Sends the run, if any.
    fn flush<U: Underlay>(&mut self, underlay: &U, stats: &PortStats) {
        let Some((vtep, hint)) = self.to.take() else {
            return;
        };
        let count = std::mem::take(&mut self.count);
        let Some(datagrams) = self.buf.get(..count * self.len) else {
            return;
        };
        match count {
            0 => {}
            1 => transmit(underlay, stats, datagrams, vtep, hint),
            _ => transmit_segments(underlay, stats, datagrams, self.len, vtep, hint),
        }
    }
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
            run: Run {
                buf: vec![0; stride * RUN_MAX],
                to: None,
                len: 0,
                count: 0,
            },
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

    /// Receives a batch without blocking: up to `blocks.len()` blocks of datagrams into
    /// `buf`, block `i` at `buf[i * RX_SLOT..]` (see [`Underlay::recv_segments`]); each
    /// datagram then goes through [`OverlayPort::inner`]. Returns the blocks filled, 0
    /// when nothing is queued.
    ///
    /// # Errors
    /// A socket error other than `WouldBlock`.
    pub fn recv_blocks(&self, buf: &mut [u8], blocks: &mut [Received]) -> io::Result<usize> {
        self.underlay.recv_segments(buf, RX_SLOT, blocks)
    }

    /// Checks one received datagram from `from` and returns its inner Ethernet frame,
    /// or `None` when it is dropped (and counted): an unknown VTEP, another VNI, a bad
    /// VXLAN header, an inner frame larger than the pod MTU allows.
    pub fn inner<'a>(&self, datagram: &'a [u8], from: Ipv4Addr) -> Option<&'a [u8]> {
        match self.check(datagram, from) {
            Ok(len) => datagram.get(VXLAN_HEADER_LEN..VXLAN_HEADER_LEN + len),
            Err(reason) => {
                self.stats.record_drop(reason);
                None
            }
        }
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
    /// buffer's header bytes are overwritten. A frame that makes one datagram may wait
    /// in the run until [`OverlayPort::flush`].
    pub fn unicast(&mut self, frame: &mut [u8], vtep: Ipv4Addr) {
        self.send(frame, Some(vtep));
    }

    /// Sends the queued run, if any. The data path calls it at the end of every turn.
    pub fn flush(&mut self) {
        self.run.flush(&self.underlay, &self.stats);
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
            let Some(datagram) = frame.get_mut(ENCAP_OFFSET..) else {
                return;
            };
            if emit_header(self.vni, datagram).is_err() {
                return self.stats.record_drop(DropReason::TxError);
            }
            match to {
                Some(vtep) => self
                    .run
                    .push(datagram, vtep, hint, &self.underlay, &self.stats),
                None => {
                    self.flush();
                    for &vtep in &self.peers {
                        transmit(&self.underlay, &self.stats, datagram, vtep, hint);
                    }
                }
            }
            return;
        }
        // Segments packed back to back behind their VXLAN headers: the layout of one
        // UDP GSO send.
        let full_len = match segment_len(ethernet, offload) {
            Ok(len) => len,
            Err(GsoError::SegmentTooLong(_)) => return self.stats.record_drop(DropReason::TooBig),
            Err(_) => return self.stats.record_drop(DropReason::BadOffload),
        };
        if full_len > self.max_frame {
            // The pod's MSS is larger than the pod MTU allows: never fragment silently.
            return self.stats.record_drop(DropReason::TooBig);
        }
        let stride = VXLAN_HEADER_LEN + full_len;
        let Some(out) = self.segments.get_mut(VXLAN_HEADER_LEN..) else {
            return;
        };
        let count = match segment(ethernet, offload, out, stride, &mut self.lens) {
            Ok(count) => count,
            Err(GsoError::StrideTooSmall { .. } | GsoError::SegmentTooLong(_)) => {
                return self.stats.record_drop(DropReason::TooBig)
            }
            Err(_) => return self.stats.record_drop(DropReason::BadOffload),
        };
        let mut total = 0;
        for (i, &len) in self.lens.iter().take(count).enumerate() {
            let start = i * stride;
            let Some(datagram) = self.segments.get_mut(start..start + VXLAN_HEADER_LEN + len)
            else {
                return;
            };
            if emit_header(self.vni, datagram).is_err() {
                return self.stats.record_drop(DropReason::TxError);
            }
            total = start + VXLAN_HEADER_LEN + len;
        }
        let Some(datagrams) = self.segments.get(..total) else {
            return;
        };
        if let (Some(vtep), 1) = (to, count) {
            // A frame that only wanted its checksum (most of what pods send: their stacks
            // leave it to the "device") is one datagram: it joins the run.
            self.run
                .push(datagrams, vtep, hint, &self.underlay, &self.stats);
            return;
        }
        // Whatever waits goes first: the frames of one flow keep their order.
        self.run.flush(&self.underlay, &self.stats);
        match to {
            Some(vtep) => {
                transmit_segments(&self.underlay, &self.stats, datagrams, stride, vtep, hint);
            }
            None => {
                for &vtep in &self.peers {
                    transmit_segments(&self.underlay, &self.stats, datagrams, stride, vtep, hint);
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

/// Sends datagrams packed at `stride` (the last may be shorter) to `vtep` in one batch,
/// counting each as sent or dropped.
fn transmit_segments<U: Underlay>(
    underlay: &U,
    stats: &PortStats,
    datagrams: &[u8],
    stride: usize,
    vtep: Ipv4Addr,
    hint: u16,
) {
    let count = datagrams.len().div_ceil(stride.max(1));
    let report = underlay.send_segments(datagrams, stride, vtep, hint);
    let sent = report.sent.min(count);
    let bytes = if sent == count {
        datagrams.len()
    } else {
        sent * stride
    };
    stats.record_tx_batch(
        u64::try_from(sent).unwrap_or(u64::MAX),
        u64::try_from(bytes).unwrap_or(u64::MAX),
    );
    if let Some(error) = report.error {
        let reason = match error.kind() {
            io::ErrorKind::WouldBlock => DropReason::TxQueueFull,
            _ if error.raw_os_error() == Some(libc::EMSGSIZE) => DropReason::TooBig,
            io::ErrorKind::HostUnreachable => DropReason::NoNeighbour,
            _ => DropReason::TxError,
        };
        for _ in sent..count {
            stats.record_drop(reason);
        }
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

#[cfg(test)]
mod tests {
    //! The run of plain datagrams, over real UDP sockets on loopback addresses of their
    //! own (all of 127/8 is local on Linux).
    use super::*;
    use std::time::{Duration, Instant};

    const VNI: u32 = 7;

    /// A plain frame (a zero virtio-net header, then Ethernet) of `len` bytes whose last
    /// byte is `mark`; every frame of these tests hashes to one flow (same MACs and
    /// EtherType, no IP).
    fn frame(len: usize, mark: u8) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN + len];
        let eth = &mut f[VNET_HDR_LEN..];
        eth[..6].copy_from_slice(&[0x0a, 0x58, 10, 244, 2, 2]);
        eth[6..12].copy_from_slice(&[0x0a, 0x58, 10, 244, 1, 2]);
        eth[12..14].copy_from_slice(&[0x88, 0xb5]);
        eth[len - 1] = mark;
        f
    }

    fn sender(a: Ipv4Addr, peers: &[Ipv4Addr]) -> OverlayPort {
        let mut port = OverlayPort::new(
            UdpUnderlay::bind(a, 0).unwrap(),
            VNI,
            1450,
            Arc::new(PortStats::new()),
        );
        port.set_peers(peers.iter().copied().collect());
        port
    }

    /// Every inner frame `receiver` gets within `wait`, as (length, mark), and how many
    /// blocks they came in.
    fn received(receiver: &UdpUnderlay, wait: Duration) -> (Vec<(usize, u8)>, usize) {
        let mut buf = vec![0u8; RX_SLOT * RX_BLOCKS];
        let mut blocks = [Received::EMPTY; RX_BLOCKS];
        let (mut frames, mut block_count) = (Vec::new(), 0);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let filled = receiver
                .recv_segments(&mut buf, RX_SLOT, &mut blocks)
                .unwrap();
            for (i, block) in blocks.iter().take(filled).enumerate() {
                block_count += 1;
                let bytes = &buf[i * RX_SLOT..i * RX_SLOT + block.len];
                for datagram in bytes.chunks(block.segment_len) {
                    let inner = decapsulate(VNI, datagram).unwrap();
                    frames.push((inner.len(), inner[inner.len() - 1]));
                }
            }
            if filled == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        (frames, block_count)
    }

    #[test]
    fn plain_unicasts_wait_for_the_flush_and_leave_as_one_batch() {
        let (a, b) = (Ipv4Addr::new(127, 0, 60, 1), Ipv4Addr::new(127, 0, 60, 2));
        let mut port = sender(a, &[b]);
        let receiver = UdpUnderlay::bind(b, port.underlay().peer_port()).unwrap();
        for mark in 0..20 {
            port.unicast(&mut frame(64, mark), b);
        }
        assert_eq!(received(&receiver, Duration::from_millis(50)).0, []);
        assert_eq!(port.stats().snapshot().tx_packets, 0);

        port.flush();
        let (frames, blocks) = received(&receiver, Duration::from_millis(300));
        let expected: Vec<(usize, u8)> = (0..20).map(|mark| (64, mark)).collect();
        assert_eq!(frames, expected, "all of them, in order");
        if port.underlay().offloads().gso && port.underlay().offloads().gro {
            assert_eq!(blocks, 1, "one UDP GSO send arrives as one GRO block");
        }
        let stats = port.stats().snapshot();
        assert_eq!(stats.tx_packets, 20);
        assert_eq!(stats.tx_bytes, 20 * (64 + VXLAN_HEADER_LEN as u64));
        port.flush();
        assert_eq!(
            received(&receiver, Duration::from_millis(50)).0,
            [],
            "sent once"
        );
    }

    /// A UDP datagram with a partial checksum, as a pod's stack hands its TAP, of `len`
    /// bytes of Ethernet, its payload ending in `mark`.
    fn udp_needing_checksum(len: usize, mark: u8) -> Vec<u8> {
        let mut f = frame(len, mark);
        let repr = VirtioNetRepr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_NONE,
            hdr_len: 0,
            gso_size: 0,
            csum_start: 14 + 20,
            csum_offset: 6,
        };
        repr.emit(&mut VirtioNetHdr::new_unchecked(&mut f[..VNET_HDR_LEN]));
        let eth = &mut f[VNET_HDR_LEN..];
        eth[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = u16::try_from(len - 14).unwrap();
        let ip = &mut eth[14..34];
        ip.copy_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 244, 1, 2, 10, 244, 2, 2,
        ]);
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        let udp = &mut eth[34..42];
        udp[..4].copy_from_slice(&[0x9c, 0x40, 0x1f, 0x90]);
        udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
        f
    }

    /// Frames that want only their checksum are single datagrams too: they join the run.
    #[test]
    fn frames_needing_only_a_checksum_join_the_run() {
        let (a, b) = (Ipv4Addr::new(127, 0, 62, 1), Ipv4Addr::new(127, 0, 62, 2));
        let mut port = sender(a, &[b]);
        let receiver = UdpUnderlay::bind(b, port.underlay().peer_port()).unwrap();
        for mark in 0..10 {
            port.unicast(&mut udp_needing_checksum(64, mark), b);
        }
        assert_eq!(received(&receiver, Duration::from_millis(50)).0, []);
        port.flush();
        let (frames, blocks) = received(&receiver, Duration::from_millis(300));
        let expected: Vec<(usize, u8)> = (0..10).map(|mark| (64, mark)).collect();
        assert_eq!(frames, expected);
        if port.underlay().offloads().gso && port.underlay().offloads().gro {
            assert_eq!(blocks, 1, "one UDP GSO send arrives as one GRO block");
        }
    }

    /// Another length, another VTEP or a flood ends the run; every VTEP still gets its
    /// frames in the order they were sent.
    #[test]
    fn a_run_breaks_where_it_must_and_order_holds() {
        let (a, b, c) = (
            Ipv4Addr::new(127, 0, 61, 1),
            Ipv4Addr::new(127, 0, 61, 2),
            Ipv4Addr::new(127, 0, 61, 3),
        );
        let mut port = sender(a, &[b, c]);
        let at_b = UdpUnderlay::bind(b, port.underlay().peer_port()).unwrap();
        let at_c = UdpUnderlay::bind(c, port.underlay().peer_port()).unwrap();
        port.unicast(&mut frame(64, 1), b);
        port.unicast(&mut frame(64, 2), b);
        port.unicast(&mut frame(80, 3), b);
        port.unicast(&mut frame(64, 4), c);
        port.unicast(&mut frame(64, 5), b);
        port.flood(&mut frame(90, 6));
        port.unicast(&mut frame(64, 7), b);
        port.flush();
        assert_eq!(
            received(&at_b, Duration::from_millis(300)).0,
            [(64, 1), (64, 2), (80, 3), (64, 5), (90, 6), (64, 7)]
        );
        assert_eq!(
            received(&at_c, Duration::from_millis(100)).0,
            [(64, 4), (90, 6)]
        );
        assert_eq!(port.stats().snapshot().tx_packets, 8);
    }
}
