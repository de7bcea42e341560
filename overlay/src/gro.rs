//! Generic receive offload in software: coalescing consecutive in-order TCP segments of
//! one flow, and consecutive UDP datagrams of one flow, as they come out of the overlay,
//! back into one super-frame for a TAP.
//!
//! The mirror of [`crate::gso`]: a pod's 64 KiB super-frame is cut into MTU-sized
//! segments on the sending node; the receiving node hands [`Coalescer::push`] the
//! decapsulated segments of a batch and [`Coalescer::drain`] gives back as few frames
//! as it can, each with the [`Offload`] its virtio-net header must carry. One TAP write
//! then delivers up to 64 KiB, and the pod's kernel takes it as its own GRO would have
//! built it. The TCP rules follow Linux's `tcp_gro_receive` and wireguard-go's `tcpGRO`:
//!
//! - Only TCP (and, with [`Coalescer::push_with_udp`], UDP) over IPv4 without IP
//!   options, not fragmented, in an Ethernet frame without VLAN tag is merged. Anything
//!   else is refused ([`Push::NotTaken`]) and the caller sends it on as it is.
//! - A segment is merged into the flow's open frame when it carries payload, has only
//!   ACK (and PSH) set, continues the sequence space exactly (`seq` = the frame's next
//!   sequence number), has the same Ethernet header, the same IP header but for length,
//!   id and checksum, the same TCP header but for sequence number, checksum and PSH
//!   (so the same ack number, window and options, timestamps included), a payload no
//!   larger than the first segment's, goes to the same destination `tag`, and keeps the
//!   IP packet within 65,535 bytes. A shorter segment, or one with PSH, is merged and
//!   then ends the frame.
//! - A UDP datagram is merged into its flow's open frame when it carries payload, its
//!   UDP length matches its IP length, it has the same Ethernet header, the same IP
//!   header but for length, id and checksum, the same ports, a payload no larger than
//!   the first datagram's, the same `tag`, the frame stays within 65,535 bytes and
//!   [`MAX_UDP_DATAGRAMS`]. A shorter datagram is merged and ends the frame, so that the
//!   pod's kernel, which cuts the frame at the first datagram's size (USO), gives back
//!   exactly the datagrams that were sent, in order. Only a destination that takes UDP
//!   super-frames (a TAP with `TUN_F_USO4`) may be offered them.
//! - The IPv4 header checksum and the TCP or UDP checksum of every segment are verified
//!   before it is merged (a UDP checksum of zero, "none", is taken as it is): a merged
//!   frame leaves with a partial checksum the pod's kernel trusts, so a corrupt segment
//!   must not get in. A segment that fails is refused.
//! - A segment of a flow that has a frame held here but cannot join it (a pure ACK, FIN,
//!   RST, a gap in the sequence, a UDP datagram that does not fit) is held too, behind
//!   it, so the flow's order is kept.
//!
//! A merged frame of more than one segment leaves with
//! [`Offload`]`{ gso: TcpV4 or UdpL4, gso_size: first payload, needs_csum, csum_start,
//! csum_offset = 16 (TCP) or 6 (UDP), hdr_len }`: its IPv4 total length and header
//! checksum are rewritten (and a UDP frame's UDP length), and its transport checksum
//! field holds the pseudo-header sum, as Linux's `CHECKSUM_PARTIAL` expects. A frame of
//! one segment leaves unchanged with [`Offload::NONE`].
//!
//! Frames are held in buffers allocated once by [`Coalescer::new`]; nothing allocates
//! afterwards and no input panics.
#![forbid(unsafe_code)]

use crate::checksum;
use crate::gso::{GsoKind, Offload};

/// The largest frame the coalescer builds: an Ethernet header and a 65,535-byte IPv4
/// packet.
pub const MAX_FRAME: usize = ETHERNET_HEADER_LEN + 65_535;

const ETHERNET_HEADER_LEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IPV4_HEADER_LEN: usize = 20;
const L4: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_ACK: u8 = 0x10;
const TCP_CHECKSUM_OFFSET: u16 = 16;
const UDP_HEADER_LEN: usize = 8;
const UDP_CHECKSUM_OFFSET: u16 = 6;

/// The most UDP datagrams one super-frame carries: Linux refuses a USO frame from a TAP
/// that would cut into more than `UDP_MAX_SEGMENTS` (64 before Linux 6.2, 128 since).
pub const MAX_UDP_DATAGRAMS: u16 = 64;

/// What [`Coalescer::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Appended to a frame held for the same flow.
    Merged,
    /// Copied in and held (the first segment of a new frame, or a segment kept behind
    /// its flow's held frame).
    Held,
    /// Not taken: not mergeable TCP and nothing of its flow is held, so the caller sends
    /// it on itself, unchanged.
    NotTaken,
    /// Not taken: every buffer holds a frame. The caller drains and pushes again.
    Full,
}

/// The identity of a TCP or UDP flow: addresses, protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    ports: [u8; 4],
}

/// One held frame.
#[derive(Debug)]
struct Held {
    /// `headroom` bytes for the caller's header, then the frame.
    buf: Vec<u8>,
    /// Frame bytes after the headroom.
    len: usize,
    tag: u16,
    key: FlowKey,
    /// Ethernet + IPv4 + TCP or UDP header length.
    headers_len: usize,
    /// Payload bytes of the first segment: every merged segment is at most this long.
    gso_size: usize,
    /// The sequence number the next segment must carry (TCP).
    next_seq: u32,
    segments: u16,
    /// More segments may join.
    open: bool,
}

/// A parsed TCP/IPv4 segment or UDP/IPv4 datagram, as far as coalescing needs it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    key: FlowKey,
    /// Frame length without Ethernet padding.
    len: usize,
    headers_len: usize,
    /// TCP sequence number (0 for UDP).
    seq: u32,
    /// TCP flags (0 for UDP).
    flags: u8,
    mergeable: bool,
}

impl Segment {
    fn is_udp(&self) -> bool {
        self.key.protocol == IPPROTO_UDP
    }
}

/// Coalesces TCP segments and UDP datagrams into super-frames; see the module
/// documentation.
#[derive(Debug)]
pub struct Coalescer {
    headroom: usize,
    held: Vec<Held>,
    used: usize,
}

impl Coalescer {
    /// A coalescer that holds up to `frames` frames at once, each behind `headroom`
    /// bytes the caller may fill (with a virtio-net header) when it drains. Allocates
    /// `frames * (headroom + MAX_FRAME)` bytes, once.
    pub fn new(frames: usize, headroom: usize) -> Coalescer {
        let held = (0..frames)
            .map(|_| Held {
                buf: vec![0; headroom + MAX_FRAME],
                len: 0,
                tag: 0,
                key: FlowKey {
                    src: [0; 4],
                    dst: [0; 4],
                    protocol: 0,
                    ports: [0; 4],
                },
                headers_len: 0,
                gso_size: 0,
                next_seq: 0,
                segments: 0,
                open: false,
            })
            .collect();
        Coalescer {
            headroom,
            held,
            used: 0,
        }
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.used
    }

    /// Offers `frame` (an Ethernet frame) bound for `tag` (the caller's destination, a
    /// port): merged, held, or left to the caller; see [`Push`]. Only TCP is merged.
    pub fn push(&mut self, tag: u16, frame: &[u8]) -> Push {
        self.offer(tag, frame, false)
    }

    /// [`Coalescer::push`] for a destination that also takes UDP super-frames (USO):
    /// UDP datagrams are merged too.
    pub fn push_with_udp(&mut self, tag: u16, frame: &[u8]) -> Push {
        self.offer(tag, frame, true)
    }

    fn offer(&mut self, tag: u16, frame: &[u8], udp: bool) -> Push {
        let Some(segment) = parse(frame, udp) else {
            return Push::NotTaken;
        };
        let latest = self
            .held
            .iter_mut()
            .take(self.used)
            .rev()
            .find(|held| held.key == segment.key);
        let has_held = latest.is_some();
        if let Some(held) = latest {
            if held.open {
                if segment.mergeable
                    && held.tag == tag
                    && merge(held, self.headroom, frame, &segment)
                {
                    return Push::Merged;
                }
                held.open = false;
            }
        }
        if !segment.mergeable && !has_held {
            return Push::NotTaken;
        }
        let headroom = self.headroom;
        let Some(slot) = self.held.get_mut(self.used) else {
            return Push::Full;
        };
        let Some(bytes) = frame.get(..segment.len) else {
            return Push::NotTaken;
        };
        let Some(room) = slot.buf.get_mut(headroom..headroom + segment.len) else {
            return Push::NotTaken;
        };
        room.copy_from_slice(bytes);
        let payload = segment.len - segment.headers_len;
        slot.len = segment.len;
        slot.tag = tag;
        slot.key = segment.key;
        slot.headers_len = segment.headers_len;
        slot.gso_size = payload;
        slot.next_seq = segment
            .seq
            .wrapping_add(u32::try_from(payload).unwrap_or(0));
        slot.segments = 1;
        slot.open = segment.mergeable && segment.flags & TCP_FLAG_PSH == 0;
        self.used += 1;
        Push::Held
    }

    /// Hands every held frame to `emit` in the order they were started, then forgets
    /// them: `emit(tag, offload, buf)`, where `buf` is the headroom followed by the
    /// frame, and `offload` what its virtio-net header must say.
    pub fn drain(&mut self, mut emit: impl FnMut(u16, Offload, &mut [u8])) {
        let headroom = self.headroom;
        for held in self.held.iter_mut().take(self.used) {
            let offload = finish(held, headroom);
            if let Some(buf) = held.buf.get_mut(..headroom + held.len) {
                emit(held.tag, offload, buf);
            }
        }
        self.used = 0;
    }
}

/// Appends `frame`'s payload to `held` if it may join; true if it did.
fn merge(held: &mut Held, headroom: usize, frame: &[u8], segment: &Segment) -> bool {
    let payload_len = segment.len - segment.headers_len;
    let udp = segment.is_udp();
    if (!udp && segment.seq != held.next_seq)
        || (udp && held.segments >= MAX_UDP_DATAGRAMS)
        || segment.headers_len != held.headers_len
        || payload_len > held.gso_size
        || held.len + payload_len > MAX_FRAME
    {
        return false;
    }
    let Some(first) = held.buf.get(headroom..headroom + held.headers_len) else {
        return false;
    };
    let Some(headers) = frame.get(..segment.headers_len) else {
        return false;
    };
    let same = if udp {
        same_udp_headers(first, headers)
    } else {
        same_headers(first, headers)
    };
    if !same {
        return false;
    }
    let (Some(payload), Some(room)) = (
        frame.get(segment.headers_len..segment.len),
        held.buf
            .get_mut(headroom + held.len..headroom + held.len + payload_len),
    ) else {
        return false;
    };
    room.copy_from_slice(payload);
    held.len += payload_len;
    held.segments = held.segments.saturating_add(1);
    held.next_seq = held
        .next_seq
        .wrapping_add(u32::try_from(payload_len).unwrap_or(0));
    if segment.flags & TCP_FLAG_PSH != 0 {
        set_byte(
            &mut held.buf,
            headroom + L4 + 13,
            TCP_FLAG_ACK | TCP_FLAG_PSH,
        );
        held.open = false;
    }
    if payload_len < held.gso_size {
        held.open = false;
    }
    true
}

/// Whether two segments' headers agree in everything but IP length, id and checksum and
/// TCP sequence number, checksum and PSH.
fn same_headers(a: &[u8], b: &[u8]) -> bool {
    let same = |range: core::ops::Range<usize>| a.get(range.clone()) == b.get(range);
    same_udp_headers(a, b)
        && same(L4 + 8..L4 + 13) // ack, data offset
        && a.get(L4 + 13).map(|f| f & !TCP_FLAG_PSH) == b.get(L4 + 13).map(|f| f & !TCP_FLAG_PSH)
        && same(L4 + 14..L4 + 16) // window
        && same(L4 + 18..a.len().max(b.len())) // urgent pointer, options
}

/// Whether two datagrams' headers agree in everything but IP length, id and checksum
/// and UDP length and checksum: Ethernet, IP and ports, which TCP segments must share
/// too.
fn same_udp_headers(a: &[u8], b: &[u8]) -> bool {
    let same = |range: core::ops::Range<usize>| a.get(range.clone()) == b.get(range);
    same(0..ETHERNET_HEADER_LEN + 2) // Ethernet; version, IHL, TOS
        && same(ETHERNET_HEADER_LEN + 6..ETHERNET_HEADER_LEN + 10) // flags, TTL, protocol
        && same(ETHERNET_HEADER_LEN + 12..L4 + 4) // addresses, ports
}

/// Rewrites a held frame's headers for its merged length; its offload.
fn finish(held: &mut Held, headroom: usize) -> Offload {
    if held.segments < 2 {
        return Offload::NONE;
    }
    let Some(frame) = held.buf.get_mut(headroom..headroom + held.len) else {
        return Offload::NONE;
    };
    let ip_len = u16::try_from(held.len - ETHERNET_HEADER_LEN).unwrap_or(u16::MAX);
    put_u16(frame, ETHERNET_HEADER_LEN + 2, ip_len);
    put_u16(frame, ETHERNET_HEADER_LEN + 10, 0);
    let header_checksum =
        checksum::checksum(frame.get(ETHERNET_HEADER_LEN..L4).unwrap_or_default());
    put_u16(frame, ETHERNET_HEADER_LEN + 10, header_checksum);
    let src = ipv4(frame, ETHERNET_HEADER_LEN + 12);
    let dst = ipv4(frame, ETHERNET_HEADER_LEN + 16);
    let transport_len = ip_len.saturating_sub(20);
    let udp = held.key.protocol == IPPROTO_UDP;
    let (protocol, csum_offset, gso) = if udp {
        // The UDP length covers the whole frame; the kernel sets each datagram's when it
        // cuts the frame, and adjusts the partial checksum by the difference.
        put_u16(frame, L4 + 4, transport_len);
        (IPPROTO_UDP, UDP_CHECKSUM_OFFSET, GsoKind::UdpL4)
    } else {
        (IPPROTO_TCP, TCP_CHECKSUM_OFFSET, GsoKind::TcpV4)
    };
    let pseudo = checksum::pseudo_header_v4(src, dst, protocol, transport_len);
    let partial = u16::try_from(checksum::fold(u64::from(pseudo))).unwrap_or(0xFFFF);
    put_u16(frame, L4 + usize::from(csum_offset), partial);
    Offload {
        needs_csum: true,
        csum_start: u16::try_from(L4).unwrap_or(0),
        csum_offset,
        gso,
        gso_size: u16::try_from(held.gso_size).unwrap_or(u16::MAX),
        hdr_len: u16::try_from(held.headers_len).unwrap_or(0),
    }
}

/// Parses a TCP/IPv4 segment (or, when `udp`, a UDP/IPv4 datagram); `None` for anything
/// else or anything malformed.
fn parse(frame: &[u8], udp: bool) -> Option<Segment> {
    if frame.get(12..14)? != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(ETHERNET_HEADER_LEN..L4)?;
    let version_ihl = *ip.first()?;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    let len = ETHERNET_HEADER_LEN + total_len;
    let protocol = *ip.get(9)?;
    if !(protocol == IPPROTO_TCP || (udp && protocol == IPPROTO_UDP)) || len > frame.len() {
        return None;
    }
    // Options or fragments: leave it alone (pass on unchanged).
    if version_ihl != 0x45 || fragment & 0x3fff != 0 {
        return None;
    }
    let transport = frame.get(L4..len)?;
    let key = FlowKey {
        src: ip.get(12..16)?.try_into().ok()?,
        dst: ip.get(16..20)?.try_into().ok()?,
        protocol,
        ports: transport.get(..4)?.try_into().ok()?,
    };
    if protocol == IPPROTO_UDP {
        let headers_len = L4 + UDP_HEADER_LEN;
        let udp_len = usize::from(u16::from_be_bytes(transport.get(4..6)?.try_into().ok()?));
        if headers_len > len {
            return None;
        }
        let candidate = len > headers_len && udp_len == transport.len();
        let mergeable = candidate && checksums_valid(ip, transport, IPPROTO_UDP);
        return Some(Segment {
            key,
            len,
            headers_len,
            seq: 0,
            flags: 0,
            mergeable,
        });
    }
    let data_offset = usize::from(frame.get(L4 + 12)? >> 4);
    let headers_len = L4 + data_offset * 4;
    if data_offset < 5 || headers_len > len {
        return None;
    }
    let seq = u32::from_be_bytes(transport.get(4..8)?.try_into().ok()?);
    let flags = *transport.get(13)?;
    let payload = len - headers_len;
    let candidate = payload > 0 && flags & !TCP_FLAG_PSH == TCP_FLAG_ACK;
    let mergeable = candidate && checksums_valid(ip, transport, IPPROTO_TCP);
    Some(Segment {
        key,
        len,
        headers_len,
        seq,
        flags,
        mergeable,
    })
}

/// The IPv4 header checksum and the TCP or UDP checksum both verify (a UDP checksum of
/// zero says the sender computed none: nothing to verify).
fn checksums_valid(ip: &[u8], transport: &[u8], protocol: u8) -> bool {
    if checksum::checksum(ip) != 0 {
        return false;
    }
    if protocol == IPPROTO_UDP && transport.get(6..8) == Some(&[0, 0][..]) {
        return true;
    }
    let Ok(transport_len) = u16::try_from(transport.len()) else {
        return false;
    };
    let pseudo = checksum::pseudo_header_v4(ipv4(ip, 12), ipv4(ip, 16), protocol, transport_len);
    checksum::finish(checksum::combine(pseudo, checksum::sum(transport))) == 0
}

fn ipv4(bytes: &[u8], at: usize) -> core::net::Ipv4Addr {
    let octets: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; 4]);
    core::net::Ipv4Addr::from(octets)
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(field) = bytes.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

fn set_byte(bytes: &mut [u8], at: usize, value: u8) {
    if let Some(byte) = bytes.get_mut(at) {
        *byte = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    const HEADROOM: usize = 12;
    const MSS: usize = 1000;
    const ISN: u32 = 4_000_000_000; // wraps within a few segments

    /// Which variant of a segment to build.
    #[derive(Clone, Copy, Default)]
    struct Opts {
        psh: bool,
        fin: bool,
        window: u16,
        timestamp: u32,
        sport: u16,
    }

    /// A TCP/IPv4 segment of flow 10.0.0.1:sport → 10.0.0.2:80 with `payload` bytes at
    /// `seq`, ack 77, a timestamp option; payload byte `i` is `(seq + i) as u8`.
    fn segment_with(seq: u32, payload: usize, opts: Opts) -> Vec<u8> {
        let data: Vec<u8> = (0..payload)
            .map(|i| seq.wrapping_add(u32::try_from(i).unwrap()).to_le_bytes()[0])
            .collect();
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(
                if opts.sport == 0 { 40000 } else { opts.sport },
                80,
                seq,
                if opts.window == 0 { 500 } else { opts.window },
            )
            .ack(77)
            .options(&[etherparse::TcpOptionElement::Timestamp(opts.timestamp, 9)])
            .unwrap();
        let builder = if opts.psh { builder.psh() } else { builder };
        let builder = if opts.fin { builder.fin() } else { builder };
        let mut frame = Vec::new();
        builder.write(&mut frame, &data).unwrap();
        frame
    }

    fn segment(seq: u32, payload: usize) -> Vec<u8> {
        segment_with(seq, payload, Opts::default())
    }

    fn drained(coalescer: &mut Coalescer) -> Vec<(u16, Offload, Vec<u8>)> {
        let mut out = Vec::new();
        coalescer.drain(|tag, offload, buf| out.push((tag, offload, buf[HEADROOM..].to_vec())));
        out
    }

    /// Finishes a partial checksum as the pod's kernel would (or would not need to), so
    /// the frame can be checked as a whole.
    fn complete(frame: &mut [u8], offload: Offload) {
        if offload.needs_csum {
            let start = usize::from(offload.csum_start);
            let field = start + usize::from(offload.csum_offset);
            let value = checksum::finish(checksum::sum(&frame[start..]));
            frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
        }
    }

    /// Sequence number, payload and flags of a complete frame, after checking that its
    /// IPv4 header checksum, total length and TCP checksum are right.
    fn check(frame: &[u8]) -> (u32, Vec<u8>, bool) {
        let packet = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = packet.net else {
            panic!("not IPv4")
        };
        let header = ip.header().to_header();
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        assert_eq!(usize::from(header.total_len), frame.len() - 14);
        let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
            panic!("not TCP")
        };
        let expected = tcp
            .to_header()
            .calc_checksum_ipv4(&header, tcp.payload())
            .unwrap();
        assert_eq!(tcp.checksum(), expected, "TCP checksum");
        (tcp.sequence_number(), tcp.payload().to_vec(), tcp.psh())
    }

    fn bytes_from(seq: u32, len: usize) -> Vec<u8> {
        segment(seq, len)[66..].to_vec()
    }

    #[test]
    fn in_order_segments_merge_into_one_super_frame() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        let mut seq = ISN;
        for _ in 0..3 {
            assert_eq!(
                coalescer.push(7, &segment(seq, MSS)),
                if seq == ISN { Push::Held } else { Push::Merged }
            );
            seq = seq.wrapping_add(1000);
        }
        let last = segment_with(
            seq,
            300,
            Opts {
                psh: true,
                ..Opts::default()
            },
        );
        assert_eq!(coalescer.push(7, &last), Push::Merged);
        assert_eq!(coalescer.held(), 1);
        let mut out = drained(&mut coalescer);
        assert_eq!(out.len(), 1);
        let (tag, offload, frame) = &mut out[0];
        assert_eq!(*tag, 7);
        assert_eq!(
            *offload,
            Offload {
                needs_csum: true,
                csum_start: 34,
                csum_offset: 16,
                gso: GsoKind::TcpV4,
                gso_size: 1000,
                hdr_len: 66,
            }
        );
        assert_eq!(frame.len(), 66 + 3300);
        complete(frame, *offload);
        let (first_seq, payload, psh) = check(frame);
        assert_eq!(first_seq, ISN);
        assert_eq!(
            payload,
            bytes_from(ISN, 3300),
            "payload in order, across the wrap"
        );
        assert!(psh, "the last segment's PSH carries over");
        assert_eq!(coalescer.held(), 0, "drain forgets");
    }

    /// A UDP/IPv4 datagram 10.0.0.1:5000 → 10.0.0.2:53 with `payload` bytes, each
    /// `(n + i) as u8`, and a correct checksum; `ttl` 64 unless given.
    fn datagram_with(n: u8, payload: usize, ttl: u8) -> Vec<u8> {
        let data: Vec<u8> = (0..payload)
            .map(|i| n.wrapping_add(u8::try_from(i % 256).unwrap()))
            .collect();
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], ttl)
            .udp(5000, 53);
        let mut frame = Vec::new();
        builder.write(&mut frame, &data).unwrap();
        frame
    }

    fn datagram(n: u8, payload: usize) -> Vec<u8> {
        datagram_with(n, payload, 64)
    }

    /// What the pod's kernel does with a UDP super-frame (cut at `gso_size`, each piece
    /// with its own UDP length and checksum), done by this crate's own segmentation.
    fn cut(frame: &[u8], offload: Offload) -> Vec<Vec<u8>> {
        let stride = 42 + usize::from(offload.gso_size);
        let mut out = vec![0u8; 128 * stride];
        let mut lens = [0usize; 128];
        let count = crate::gso::segment(frame, offload, &mut out, stride, &mut lens).unwrap();
        (0..count)
            .map(|i| out[i * stride..i * stride + lens[i]].to_vec())
            .collect()
    }

    /// `original` as segmentation gives it back: IP ids numbered from the first (the
    /// builder left them 0), the header checksum redone.
    fn renumbered(original: &[u8], id: usize) -> Vec<u8> {
        let mut expected = original.to_vec();
        expected[18..20].copy_from_slice(&u16::try_from(id).unwrap().to_be_bytes());
        expected[24..26].fill(0);
        let c = checksum::checksum(&expected[14..34]);
        expected[24..26].copy_from_slice(&c.to_be_bytes());
        expected
    }

    #[test]
    fn udp_datagrams_merge_and_cut_back_into_the_same_datagrams() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        let mut originals: Vec<Vec<u8>> = (0..5).map(|n| datagram(n, 100)).collect();
        originals.push(datagram(9, 37)); // a shorter last one
        for (i, original) in originals.iter().enumerate() {
            let expected = if i == 0 { Push::Held } else { Push::Merged };
            assert_eq!(
                coalescer.push_with_udp(3, original),
                expected,
                "datagram {i}"
            );
        }
        // A shorter datagram ends the frame: the next one starts another.
        assert_eq!(coalescer.push_with_udp(3, &datagram(10, 100)), Push::Held);
        let mut out = drained(&mut coalescer);
        assert_eq!(out.len(), 2);
        let (tag, offload, frame) = out.remove(0);
        assert_eq!(tag, 3);
        assert_eq!(
            offload,
            Offload {
                needs_csum: true,
                csum_start: 34,
                csum_offset: 6,
                gso: GsoKind::UdpL4,
                gso_size: 100,
                hdr_len: 42,
            }
        );
        assert_eq!(frame.len(), 42 + 5 * 100 + 37);
        // IPv4 total length and header checksum, and the UDP length, cover the whole.
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[16], frame[17]])),
            20 + 8 + 537
        );
        assert_eq!(checksum::checksum(&frame[14..34]), 0);
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[38], frame[39]])),
            8 + 537
        );
        let pieces = cut(&frame, offload);
        assert_eq!(pieces.len(), originals.len());
        for (i, (piece, original)) in pieces.iter().zip(&originals).enumerate() {
            assert_eq!(piece, &renumbered(original, i), "datagram {i}");
        }
        // The single datagram that started the second frame leaves as it came.
        let (_, offload, frame) = out.remove(0);
        assert_eq!(offload, Offload::NONE);
        assert_eq!(frame, datagram(10, 100));
    }

    #[test]
    fn udp_is_left_alone_unless_the_destination_takes_it() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        assert_eq!(coalescer.push(3, &datagram(0, 100)), Push::NotTaken);
        assert_eq!(coalescer.push(3, &datagram(1, 100)), Push::NotTaken);
        assert_eq!(coalescer.held(), 0);
    }

    #[test]
    fn udp_datagrams_that_must_not_merge() {
        let mut coalescer = Coalescer::new(8, HEADROOM);
        // A corrupt datagram with nothing of its flow held: left to the caller.
        let mut corrupt = datagram(0, 100);
        corrupt[60] ^= 0xff;
        assert_eq!(coalescer.push_with_udp(3, &corrupt), Push::NotTaken);
        // Behind a held frame of its flow, it is held too (order), and ends that frame.
        assert_eq!(coalescer.push_with_udp(3, &datagram(1, 100)), Push::Held);
        assert_eq!(coalescer.push_with_udp(3, &corrupt), Push::Held);
        assert_eq!(coalescer.push_with_udp(3, &datagram(2, 100)), Push::Held);
        // Another TTL, a larger payload, another destination: a new frame each.
        assert_eq!(
            coalescer.push_with_udp(3, &datagram_with(3, 100, 63)),
            Push::Held
        );
        assert_eq!(coalescer.push_with_udp(3, &datagram(4, 101)), Push::Held);
        assert_eq!(coalescer.push_with_udp(4, &datagram(5, 101)), Push::Held);
        // A UDP length that disagrees with the IP length: not mergeable.
        let mut long = datagram(6, 101);
        long[39] = long[39].wrapping_add(1);
        assert_eq!(coalescer.push_with_udp(4, &long), Push::Held);
        let out = drained(&mut coalescer);
        assert_eq!(out.len(), 7);
        assert!(out.iter().all(|(_, offload, _)| *offload == Offload::NONE));
        assert_eq!(out[1].2, corrupt, "passed on unchanged, in order");
        // A datagram without a checksum (zero, RFC 768) is taken as it is.
        let mut unchecked = [datagram(7, 50), datagram(8, 50)];
        for d in &mut unchecked {
            d[40..42].fill(0);
        }
        assert_eq!(coalescer.push_with_udp(3, &unchecked[0]), Push::Held);
        assert_eq!(coalescer.push_with_udp(3, &unchecked[1]), Push::Merged);
    }

    #[test]
    fn a_udp_frame_holds_at_most_max_udp_datagrams() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        let count = usize::from(MAX_UDP_DATAGRAMS) + 6;
        let originals: Vec<Vec<u8>> = (0..count)
            .map(|n| datagram(u8::try_from(n % 256).unwrap(), 16))
            .collect();
        for original in &originals {
            assert_ne!(coalescer.push_with_udp(1, original), Push::NotTaken);
        }
        let out = drained(&mut coalescer);
        assert_eq!(out.len(), 2);
        let mut pieces = cut(&out[0].2, out[0].1);
        assert_eq!(pieces.len(), usize::from(MAX_UDP_DATAGRAMS));
        pieces.extend(cut(&out[1].2, out[1].1));
        for (i, piece) in pieces.iter().enumerate() {
            let id = i % usize::from(MAX_UDP_DATAGRAMS);
            assert_eq!(piece, &renumbered(&originals[i], id), "datagram {i}");
        }
    }

    #[test]
    fn merged_then_resegmented_gives_the_original_segments() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        let originals: Vec<Vec<u8>> = (0..5).map(|i| segment(ISN + i * 1000, MSS)).collect();
        for original in &originals {
            coalescer.push(1, original);
        }
        let (_, offload, frame) = drained(&mut coalescer).remove(0);
        let mut out = vec![0u8; 8 * 1066];
        let mut lens = [0usize; 8];
        let count = crate::gso::segment(&frame, offload, &mut out, 1066, &mut lens).unwrap();
        assert_eq!(count, 5);
        for (i, original) in originals.iter().enumerate() {
            let mut expected = original.clone();
            // Segmentation numbers IP ids up from the first; the builder left them 0.
            expected[18..20].copy_from_slice(&u16::try_from(i).unwrap().to_be_bytes());
            expected[24..26].fill(0);
            let c = checksum::checksum(&expected[14..34]);
            expected[24..26].copy_from_slice(&c.to_be_bytes());
            assert_eq!(&out[i * 1066..i * 1066 + lens[i]], &expected[..]);
        }
    }

    #[test]
    fn a_single_segment_leaves_unchanged() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        let one = segment(ISN, MSS);
        assert_eq!(coalescer.push(3, &one), Push::Held);
        let out = drained(&mut coalescer);
        assert_eq!(out, vec![(3, Offload::NONE, one)]);
    }

    #[test]
    fn a_gap_in_sequence_starts_a_new_frame_in_order() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        coalescer.push(1, &segment(ISN, MSS));
        coalescer.push(1, &segment(ISN + 2000, MSS)); // one segment lost
        coalescer.push(1, &segment(ISN + 3000, MSS));
        coalescer.push(1, &segment(ISN + 1000, MSS)); // late retransmission
        let out = drained(&mut coalescer);
        let seqs: Vec<(u32, usize)> = out
            .iter()
            .map(|(_, offload, frame)| {
                let mut frame = frame.clone();
                complete(&mut frame, *offload);
                let (seq, payload, _) = check(&frame);
                (seq, payload.len())
            })
            .collect();
        assert_eq!(
            seqs,
            vec![(ISN, 1000), (ISN + 2000, 2000), (ISN + 1000, 1000)]
        );
    }

    #[test]
    fn flags_options_window_and_size_mismatches_end_a_frame() {
        let cases: [(&str, Vec<u8>); 5] = [
            (
                "FIN",
                segment_with(
                    ISN + 1000,
                    MSS,
                    Opts {
                        fin: true,
                        ..Opts::default()
                    },
                ),
            ),
            (
                "timestamp",
                segment_with(
                    ISN + 1000,
                    MSS,
                    Opts {
                        timestamp: 1,
                        ..Opts::default()
                    },
                ),
            ),
            (
                "window",
                segment_with(
                    ISN + 1000,
                    MSS,
                    Opts {
                        window: 501,
                        ..Opts::default()
                    },
                ),
            ),
            ("longer than the first", segment(ISN + 1000, MSS + 1)),
            ("pure ACK", segment(ISN + 1000, 0)),
        ];
        for (what, second) in cases {
            let mut coalescer = Coalescer::new(4, HEADROOM);
            assert_eq!(coalescer.push(1, &segment(ISN, MSS)), Push::Held);
            assert_eq!(
                coalescer.push(1, &second),
                Push::Held,
                "{what}: held behind"
            );
            // The flow's next in-order segment may not join a frame across it.
            assert_eq!(
                coalescer.push(1, &segment(ISN + 1000 + 1000, MSS)),
                Push::Held,
                "{what}"
            );
            let out = drained(&mut coalescer);
            assert_eq!(out.len(), 3, "{what}");
            assert_eq!(out[1].2, second, "{what}: passes unchanged, in order");
        }
    }

    #[test]
    fn a_short_segment_ends_the_frame() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        coalescer.push(1, &segment(ISN, MSS));
        assert_eq!(coalescer.push(1, &segment(ISN + 1000, 10)), Push::Merged);
        assert_eq!(coalescer.push(1, &segment(ISN + 1010, MSS)), Push::Held);
        assert_eq!(drained(&mut coalescer).len(), 2);
    }

    #[test]
    fn what_is_not_mergeable_tcp_is_left_to_the_caller() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        assert_eq!(
            coalescer.push(1, &segment(ISN, 0)),
            Push::NotTaken,
            "pure ACK"
        );
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut udp, &[0; 100])
            .unwrap();
        assert_eq!(coalescer.push(1, &udp), Push::NotTaken);
        assert_eq!(coalescer.push(1, &[0u8; 10]), Push::NotTaken, "garbage");
        let mut truncated = segment(ISN, MSS);
        truncated.truncate(500);
        assert_eq!(coalescer.push(1, &truncated), Push::NotTaken);
        assert_eq!(coalescer.held(), 0);
    }

    #[test]
    fn corrupt_segments_are_never_merged() {
        let mut coalescer = Coalescer::new(4, HEADROOM);
        let mut bad = segment(ISN, MSS);
        bad[500] ^= 0x40; // payload bit flip: TCP checksum fails
        assert_eq!(coalescer.push(1, &bad), Push::NotTaken);
        coalescer.push(1, &segment(ISN, MSS));
        let mut bad = segment(ISN + 1000, MSS);
        bad[22] ^= 1; // TTL bit flip: IP header checksum fails
        assert_eq!(coalescer.push(1, &bad), Push::Held, "held behind, unmerged");
        let out = drained(&mut coalescer);
        assert_eq!(out[1], (1, Offload::NONE, bad), "passed on as it came");
    }

    #[test]
    fn frames_stop_at_64_kib() {
        let mut coalescer = Coalescer::new(8, HEADROOM);
        for i in 0..100u32 {
            assert_ne!(
                coalescer.push(1, &segment(ISN.wrapping_add(i * 1448), 1448)),
                Push::Full
            );
        }
        let out = drained(&mut coalescer);
        assert_eq!(out.len(), 3, "45 + 45 + 10 segments");
        let mut seq = ISN;
        for (_, offload, frame) in out {
            assert!(frame.len() <= MAX_FRAME);
            let mut frame = frame.clone();
            complete(&mut frame, offload);
            let (first, payload, _) = check(&frame);
            assert_eq!(first, seq);
            assert_eq!(payload, bytes_from(seq, payload.len()));
            seq = seq.wrapping_add(u32::try_from(payload.len()).unwrap());
        }
        assert_eq!(seq, ISN.wrapping_add(100 * 1448));
    }

    #[test]
    fn flows_and_destinations_are_kept_apart() {
        let mut coalescer = Coalescer::new(3, HEADROOM);
        let other = Opts {
            sport: 40001,
            ..Opts::default()
        };
        coalescer.push(1, &segment(ISN, MSS));
        coalescer.push(1, &segment_with(ISN, MSS, other));
        assert_eq!(coalescer.push(1, &segment(ISN + 1000, MSS)), Push::Merged);
        assert_eq!(
            coalescer.push(1, &segment_with(ISN + 1000, MSS, other)),
            Push::Merged
        );
        assert_eq!(
            coalescer.push(2, &segment(ISN + 2000, MSS)),
            Push::Held,
            "other port"
        );
        assert_eq!(
            coalescer.push(2, &segment_with(ISN + 2000, MSS, other)),
            Push::Full
        );
        let out = drained(&mut coalescer);
        let tags: Vec<u16> = out.iter().map(|(tag, _, _)| *tag).collect();
        assert_eq!(tags, vec![1, 1, 2]);
        assert_eq!(
            coalescer.push(2, &segment_with(ISN + 2000, MSS, other)),
            Push::Held
        );
    }
}
