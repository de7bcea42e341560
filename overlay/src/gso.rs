//! Generic segmentation offload in software: cutting a pod's TSO/USO super-frame into
//! frames the underlay can carry, and finishing a partial checksum.
//!
//! A pod's TCP stack writes frames of up to 64 KiB to its TAP together with a
//! virtio-net header (virtio 1.2 §5.1.6.2) that says how to finish them: "the checksum
//! from `csum_start` on is partial" and "cut me into `gso_size`-byte TCP (or UDP)
//! payloads". The switch parses that header into an [`Offload`] and calls [`segment`]
//! before a frame enters the overlay, doing what a NIC (or Linux's `skb_gso_segment`)
//! would:
//!
//! - TCP ([`GsoKind::TcpV4`], [`GsoKind::TcpV6`], RFC 9293): every segment gets a copy
//!   of the Ethernet, IP and TCP headers; the sequence number advances by the payload
//!   before it; FIN and PSH stay only on the last segment and CWR only on the first
//!   (RFC 3168 §6.1.2), as in Linux's `tcp_gso_segment`.
//! - UDP ([`GsoKind::UdpL4`], Linux `UDP_SEGMENT`): every segment is a whole UDP
//!   datagram with its own length.
//! - IPv4 (RFC 791): total length per segment, identification incremented per segment
//!   from the original (as Linux's `inet_gso_segment`), header checksum recomputed;
//!   options are copied to every segment. IPv6 (RFC 8200): payload length per segment;
//!   hop-by-hop and destination options headers are copied.
//! - Every TCP/UDP checksum is computed from scratch over the segment (RFC 1071, with
//!   the pseudo-header of RFC 9293 §3.1 / RFC 768 / RFC 8200 §8.1); the partial
//!   pseudo-header sum Linux leaves in the field is ignored.
//!
//! The header layout is taken from the packet itself; [`Offload`] must agree with it
//! (`csum_start` at the transport header, `csum_offset` at its checksum field) or the
//! frame is refused. `hdr_len` is only a hint: Linux fills it with the length of the
//! sk_buff's linear part (`virtio_net_hdr_from_skb`), which may include payload, so it
//! is only refused when it points past the end of the frame.
//!
//! Invariants: [`segment`] never panics and never allocates; on error the contents of
//! `out` and `lens` are unspecified but nothing outside them is touched.
#![forbid(unsafe_code)]

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;

/// The virtio-net header fields segmentation needs (the switch parses the header; this
/// crate does not depend on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` to the end of the
    /// frame is partial (its field holds the pseudo-header sum) and must be finished.
    pub needs_csum: bool,
    /// Offset from the start of the Ethernet frame where checksumming starts (the
    /// transport header).
    pub csum_start: u16,
    /// Offset from `csum_start` of the checksum field (16 for TCP, 6 for UDP).
    pub csum_offset: u16,
    /// What kind of segmentation the frame asks for.
    pub gso: GsoKind,
    /// Largest transport payload per segment (the MSS for TCP); unused for
    /// [`GsoKind::None`].
    pub gso_size: u16,
    /// Length of the headers, as a hint (see the module documentation).
    pub hdr_len: u16,
}

impl Offload {
    /// A frame that needs nothing: complete checksums, no segmentation.
    pub const NONE: Offload = Offload {
        needs_csum: false,
        csum_start: 0,
        csum_offset: 0,
        gso: GsoKind::None,
        gso_size: 0,
        hdr_len: 0,
    };
}

/// The segmentation a frame asks for (virtio-net `gso_type`, ECN bit aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// No segmentation (`VIRTIO_NET_HDR_GSO_NONE`); at most a checksum to finish.
    None,
    /// TCP over IPv4 (`VIRTIO_NET_HDR_GSO_TCPV4`).
    TcpV4,
    /// TCP over IPv6 (`VIRTIO_NET_HDR_GSO_TCPV6`).
    TcpV6,
    /// UDP over IPv4 or IPv6, one datagram per segment (`VIRTIO_NET_HDR_GSO_UDP_L4`,
    /// USO).
    UdpL4,
}

/// Why a frame could not be segmented or its checksum finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// The frame ends inside its Ethernet, IP or transport header.
    #[error("frame ends inside its headers")]
    Truncated,
    /// The checksum field (`csum_start + csum_offset`, two bytes) lies past the frame.
    #[error("checksum field at {csum_start}+{csum_offset} lies past the end of the frame")]
    ChecksumOutsideFrame {
        /// `csum_start` from the offload header.
        csum_start: u16,
        /// `csum_offset` from the offload header.
        csum_offset: u16,
    },
    /// `csum_start` is not where the packet's transport header starts.
    #[error("csum_start {csum_start} but the transport header starts at {transport_offset}")]
    ChecksumStartMismatch {
        /// `csum_start` from the offload header.
        csum_start: u16,
        /// Where the headers put the transport header.
        transport_offset: usize,
    },
    /// `csum_offset` does not point at the transport checksum field.
    #[error("csum_offset {csum_offset} but the transport checksum is at offset {expected}")]
    ChecksumOffsetMismatch {
        /// `csum_offset` from the offload header.
        csum_offset: u16,
        /// 16 for TCP, 6 for UDP.
        expected: u16,
    },
    /// `hdr_len` is larger than the whole frame.
    #[error("hdr_len {hdr_len} is larger than the {frame_len}-byte frame")]
    HdrLenBeyondFrame {
        /// `hdr_len` from the offload header.
        hdr_len: u16,
        /// Length of the frame.
        frame_len: usize,
    },
    /// The EtherType is not the IP version the GSO kind needs.
    #[error("EtherType {0:#06x} does not match the GSO type")]
    WrongEtherType(u16),
    /// The IP header's version or header length is invalid.
    #[error("invalid IP header")]
    BadIpHeader,
    /// The packet is an IP fragment, which cannot be segmented.
    #[error("IP fragments cannot be segmented")]
    Fragment,
    /// An IPv6 extension header this implementation does not copy into segments.
    #[error("IPv6 extension header {0} is not supported for segmentation")]
    UnsupportedIpv6Extension(u8),
    /// The transport protocol is not the one the GSO kind needs.
    #[error("transport protocol {0} does not match the GSO type")]
    WrongTransport(u8),
    /// The TCP data offset is below 5 words.
    #[error("invalid TCP header length")]
    BadTcpHeader,
    /// A GSO frame with `gso_size` 0.
    #[error("GSO frame with a zero gso_size")]
    ZeroGsoSize,
    /// A segment would not fit the IP or UDP length fields.
    #[error("segments of gso_size {0} overflow the IP or UDP length field")]
    SegmentTooLong(u16),
    /// The IP header's length field disagrees with the frame's length.
    #[error("IP length field says {header} bytes, the frame holds {frame}")]
    LengthMismatch {
        /// Bytes the IPv4 total length or IPv6 payload length claims.
        header: usize,
        /// Bytes the frame holds for it.
        frame: usize,
    },
    /// The frame needs more segments than `lens` has room for.
    #[error("frame needs {needed} segments, room for {capacity}")]
    TooManySegments {
        /// Segments the frame cuts into.
        needed: usize,
        /// Length of the `lens` slice.
        capacity: usize,
    },
    /// `stride` is shorter than a full segment.
    #[error("stride {stride} is shorter than a {needed}-byte segment")]
    StrideTooSmall {
        /// Length of a full segment.
        needed: usize,
        /// The stride given.
        stride: usize,
    },
    /// `out` cannot hold every segment.
    #[error("output buffer of {available} bytes, {needed} needed")]
    OutTooSmall {
        /// Bytes the segments need at the given stride.
        needed: usize,
        /// Length of `out`.
        available: usize,
    },
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXTENSIONS: usize = 8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

const IPV6_HEADER_LEN: usize = 40;
const TCP_CHECKSUM_OFFSET: u16 = 16;
const UDP_CHECKSUM_OFFSET: u16 = 6;
const UDP_HEADER_LEN: usize = 8;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Cuts `frame` (an Ethernet frame) into segments of at most `offload.gso_size` payload
/// bytes each and writes each complete Ethernet frame into `out` at offset
/// `i * stride`, its length into `lens[i]`; returns the number of segments.
///
/// Each segment has correct IPv4 total length, identification (original + i) and
/// header checksum or IPv6 payload length; TCP sequence number (original + bytes
/// before it) and flags (FIN and PSH only on the last, CWR only on the first) or UDP
/// length; and a full, correct TCP/UDP checksum.
///
/// With [`GsoKind::None`] the frame is copied to `out[0..]` as one segment; when
/// `needs_csum` is set, its checksum is finished on the way, Linux-style: the one's
/// complement sum from `csum_start` to the end of the frame (whose checksum field holds
/// the pseudo-header sum) is stored at `csum_start + csum_offset`, `0` sent as
/// `0xFFFF`.
///
/// `stride` need only be as long as the longest segment (headers + `gso_size`); the
/// last segment only needs its own length. To make VXLAN datagrams in place, pass
/// `out = &mut buffer[8..]` and write each header with
/// [`crate::encap::emit_header`] at `buffer[i * stride..]`.
///
/// # Errors
/// [`GsoError`]: an Ethernet/IP/transport header that is truncated, invalid, a fragment
/// or not the kind `offload.gso` names; `csum_start`/`csum_offset` not at the transport
/// checksum; `hdr_len` past the frame; a zero `gso_size` or one whose segments overflow
/// a length field; more segments than `lens.len()`; `stride` or `out` too short.
pub fn segment(
    frame: &[u8],
    offload: Offload,
    out: &mut [u8],
    stride: usize,
    lens: &mut [usize],
) -> Result<usize, GsoError> {
    if usize::from(offload.hdr_len) > frame.len() {
        return Err(GsoError::HdrLenBeyondFrame {
            hdr_len: offload.hdr_len,
            frame_len: frame.len(),
        });
    }
    if offload.needs_csum {
        check_checksum_field(frame.len(), offload)?;
    }
    if offload.gso == GsoKind::None {
        return finish_one(frame, offload, out, lens);
    }
    let layout = Layout::parse(frame, offload)?;
    layout.cut(frame, offload.gso_size, out, stride, lens)
}

/// The length of the longest segment [`segment`] cuts `frame` into: headers plus
/// `gso_size` (or the whole payload when it is shorter); the frame's length for
/// [`GsoKind::None`]. Used as `stride`, it packs the segments back to back, every one
/// that long but the last, which is the layout UDP GSO sends.
///
/// # Errors
/// As [`segment`] for the headers; [`GsoError::ZeroGsoSize`].
pub fn segment_len(frame: &[u8], offload: Offload) -> Result<usize, GsoError> {
    if offload.gso == GsoKind::None {
        return Ok(frame.len());
    }
    if offload.gso_size == 0 {
        return Err(GsoError::ZeroGsoSize);
    }
    let layout = Layout::parse(frame, offload)?;
    let payload = frame.len().saturating_sub(layout.headers_len);
    Ok(layout.headers_len + payload.min(usize::from(offload.gso_size)))
}

/// Checks that the two-byte checksum field `offload` points at lies inside the frame.
fn check_checksum_field(frame_len: usize, offload: Offload) -> Result<(), GsoError> {
    let field_end = usize::from(offload.csum_start) + usize::from(offload.csum_offset) + 2;
    if field_end > frame_len {
        return Err(GsoError::ChecksumOutsideFrame {
            csum_start: offload.csum_start,
            csum_offset: offload.csum_offset,
        });
    }
    Ok(())
}

/// [`GsoKind::None`]: copy the frame to `out[0..]` and finish its checksum if asked.
fn finish_one(
    frame: &[u8],
    offload: Offload,
    out: &mut [u8],
    lens: &mut [usize],
) -> Result<usize, GsoError> {
    let capacity = lens.len();
    let len_slot = lens.first_mut().ok_or(GsoError::TooManySegments {
        needed: 1,
        capacity,
    })?;
    let available = out.len();
    let copy = out.get_mut(..frame.len()).ok_or(GsoError::OutTooSmall {
        needed: frame.len(),
        available,
    })?;
    copy.copy_from_slice(frame);
    if offload.needs_csum {
        let start = usize::from(offload.csum_start);
        let field = start + usize::from(offload.csum_offset);
        let sum = checksum::sum(copy.get(start..).unwrap_or(&[]));
        put_u16(copy, field, checksum::finish_udp(sum));
    }
    *len_slot = frame.len();
    Ok(1)
}

/// The IP version of a segmented frame, with the pseudo-header addresses.
#[derive(Clone, Copy, Debug)]
enum Ip {
    V4 {
        header_len: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
}

/// Where the headers of a segmentable frame are, validated against the frame.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Offset of the IP header.
    l3: usize,
    ip: Ip,
    /// Offset of the transport header (`csum_start`).
    l4: usize,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    protocol: u8,
    /// Ethernet + IP + transport header length: where the payload starts.
    headers_len: usize,
}

impl Layout {
    fn parse(frame: &[u8], offload: Offload) -> Result<Layout, GsoError> {
        let (l3, ethertype) = skip_ethernet(frame)?;
        let (ip, l4, protocol) = match (offload.gso, ethertype) {
            (GsoKind::TcpV4 | GsoKind::UdpL4, ETHERTYPE_IPV4) => parse_ipv4(frame, l3)?,
            (GsoKind::TcpV6 | GsoKind::UdpL4, ETHERTYPE_IPV6) => parse_ipv6(frame, l3)?,
            _ => return Err(GsoError::WrongEtherType(ethertype)),
        };
        let (wanted, csum_offset) = match offload.gso {
            GsoKind::UdpL4 => (IPPROTO_UDP, UDP_CHECKSUM_OFFSET),
            GsoKind::None | GsoKind::TcpV4 | GsoKind::TcpV6 => (IPPROTO_TCP, TCP_CHECKSUM_OFFSET),
        };
        if protocol != wanted {
            return Err(GsoError::WrongTransport(protocol));
        }
        let transport_len = if protocol == IPPROTO_TCP {
            let data_offset = frame.get(l4 + 12).ok_or(GsoError::Truncated)? >> 4;
            if data_offset < 5 {
                return Err(GsoError::BadTcpHeader);
            }
            usize::from(data_offset) * 4
        } else {
            UDP_HEADER_LEN
        };
        let headers_len = l4 + transport_len;
        if headers_len > frame.len() {
            return Err(GsoError::Truncated);
        }
        if offload.needs_csum {
            if usize::from(offload.csum_start) != l4 {
                return Err(GsoError::ChecksumStartMismatch {
                    csum_start: offload.csum_start,
                    transport_offset: l4,
                });
            }
            if offload.csum_offset != csum_offset {
                return Err(GsoError::ChecksumOffsetMismatch {
                    csum_offset: offload.csum_offset,
                    expected: csum_offset,
                });
            }
        }
        Ok(Layout {
            l3,
            ip,
            l4,
            protocol,
            headers_len,
        })
    }

    /// Writes the segments (see [`segment`]).
    fn cut(
        &self,
        frame: &[u8],
        gso_size: u16,
        out: &mut [u8],
        stride: usize,
        lens: &mut [usize],
    ) -> Result<usize, GsoError> {
        if gso_size == 0 {
            return Err(GsoError::ZeroGsoSize);
        }
        let (headers, payload) = frame
            .split_at_checked(self.headers_len)
            .ok_or(GsoError::Truncated)?;
        let mss = usize::from(gso_size);
        let count = payload.len().div_ceil(mss).max(1);
        if count > lens.len() {
            return Err(GsoError::TooManySegments {
                needed: count,
                capacity: lens.len(),
            });
        }
        let full_len = self.headers_len + payload.len().min(mss);
        self.check_length_fields(full_len, gso_size)?;
        if count > 1 && stride < full_len {
            return Err(GsoError::StrideTooSmall {
                needed: full_len,
                stride,
            });
        }
        let last_len = self.headers_len + (payload.len() - (count - 1) * mss);
        let needed = (count - 1)
            .checked_mul(stride)
            .and_then(|front| front.checked_add(last_len))
            .unwrap_or(usize::MAX);
        let available = out.len();
        if needed > available {
            return Err(GsoError::OutTooSmall { needed, available });
        }

        let mut seq = read_u32(headers, self.l4 + 4);
        let mut id = match self.ip {
            Ip::V4 { id, .. } => id,
            Ip::V6 { .. } => 0,
        };
        let mut chunks = payload.chunks(mss);
        for (index, len_slot) in lens.iter_mut().take(count).enumerate() {
            let chunk = chunks.next().unwrap_or(&[]);
            let start = index * stride;
            let segment_len = self.headers_len + chunk.len();
            let segment = out
                .get_mut(start..start + segment_len)
                .ok_or(GsoError::OutTooSmall { needed, available })?;
            let (segment_headers, segment_payload) = segment.split_at_mut(self.headers_len);
            segment_headers.copy_from_slice(headers);
            segment_payload.copy_from_slice(chunk);
            self.fix_ip(segment, id, gso_size)?;
            if self.protocol == IPPROTO_TCP {
                fix_tcp_flags(segment, self.l4, seq, index == 0, index + 1 == count);
            } else {
                let udp_len = u16::try_from(segment_len - self.l4)
                    .map_err(|_| GsoError::SegmentTooLong(gso_size))?;
                put_u16(segment, self.l4 + 4, udp_len);
            }
            self.fix_transport_checksum(segment, gso_size)?;
            *len_slot = segment_len;
            id = id.wrapping_add(1);
            seq = seq.wrapping_add(
                u32::try_from(chunk.len()).map_err(|_| GsoError::SegmentTooLong(gso_size))?,
            );
        }
        Ok(count)
    }

    /// Refuses a `gso_size` whose full segments overflow the IPv4 total length, IPv6
    /// payload length or UDP length.
    fn check_length_fields(&self, full_len: usize, gso_size: u16) -> Result<(), GsoError> {
        let ip_len = match self.ip {
            Ip::V4 { .. } => full_len - self.l3,
            Ip::V6 { .. } => full_len - self.l3 - IPV6_HEADER_LEN,
        };
        if ip_len > usize::from(u16::MAX) {
            return Err(GsoError::SegmentTooLong(gso_size));
        }
        Ok(())
    }

    /// Writes the IP length (and for IPv4 the id and header checksum) of one segment.
    fn fix_ip(&self, segment: &mut [u8], id: u16, gso_size: u16) -> Result<(), GsoError> {
        let too_long = || GsoError::SegmentTooLong(gso_size);
        match self.ip {
            Ip::V4 { header_len, .. } => {
                let total_len = u16::try_from(segment.len() - self.l3).map_err(|_| too_long())?;
                put_u16(segment, self.l3 + 2, total_len);
                put_u16(segment, self.l3 + 4, id);
                put_u16(segment, self.l3 + 10, 0);
                let header = segment.get(self.l3..self.l3 + header_len).unwrap_or(&[]);
                let header_checksum = checksum::checksum(header);
                put_u16(segment, self.l3 + 10, header_checksum);
            }
            Ip::V6 { .. } => {
                let payload_len = u16::try_from(segment.len() - self.l3 - IPV6_HEADER_LEN)
                    .map_err(|_| too_long())?;
                put_u16(segment, self.l3 + 4, payload_len);
            }
        }
        Ok(())
    }

    /// Computes the TCP or UDP checksum of one segment from scratch.
    fn fix_transport_checksum(&self, segment: &mut [u8], gso_size: u16) -> Result<(), GsoError> {
        let too_long = || GsoError::SegmentTooLong(gso_size);
        let field = self.l4
            + usize::from(if self.protocol == IPPROTO_TCP {
                TCP_CHECKSUM_OFFSET
            } else {
                UDP_CHECKSUM_OFFSET
            });
        put_u16(segment, field, 0);
        let transport = segment.get(self.l4..).unwrap_or(&[]);
        let pseudo = match self.ip {
            Ip::V4 { src, dst, .. } => {
                let len = u16::try_from(transport.len()).map_err(|_| too_long())?;
                checksum::pseudo_header_v4(src, dst, self.protocol, len)
            }
            Ip::V6 { src, dst } => {
                let len = u32::try_from(transport.len()).map_err(|_| too_long())?;
                checksum::pseudo_header_v6(&src, &dst, self.protocol, len)
            }
        };
        let sum = checksum::combine(pseudo, checksum::sum(transport));
        let value = if self.protocol == IPPROTO_UDP {
            checksum::finish_udp(sum)
        } else {
            checksum::finish(sum)
        };
        put_u16(segment, field, value);
        Ok(())
    }
}

/// Skips the Ethernet header and up to two VLAN tags: (IP header offset, EtherType).
fn skip_ethernet(frame: &[u8]) -> Result<(usize, u16), GsoError> {
    let mut offset = 12;
    let mut ethertype = read_u16_checked(frame, offset)?;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        offset += 4;
        ethertype = read_u16_checked(frame, offset)?;
    }
    Ok((offset + 2, ethertype))
}

/// Validates an IPv4 header at `l3`: (ip, transport offset, protocol).
fn parse_ipv4(frame: &[u8], l3: usize) -> Result<(Ip, usize, u8), GsoError> {
    let header = frame.get(l3..l3 + 20).ok_or(GsoError::Truncated)?;
    let version_ihl = header.first().copied().unwrap_or(0);
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return Err(GsoError::BadIpHeader);
    }
    if l3 + header_len > frame.len() {
        return Err(GsoError::Truncated);
    }
    // More-fragments bit or a fragment offset.
    if read_u16(header, 6) & 0x3fff != 0 {
        return Err(GsoError::Fragment);
    }
    // The total length must cover the frame exactly; 0 is Linux's BIG TCP marker for
    // "longer than 65 535, see the frame length".
    check_ip_length(usize::from(read_u16(header, 2)), frame.len() - l3)?;
    let protocol = header.get(9).copied().unwrap_or(0);
    let src = Ipv4Addr::from(read_u32(header, 12));
    let dst = Ipv4Addr::from(read_u32(header, 16));
    let id = read_u16(header, 4);
    Ok((
        Ip::V4 {
            header_len,
            src,
            dst,
            id,
        },
        l3 + header_len,
        protocol,
    ))
}

/// Validates an IPv6 header at `l3` and the extension headers segmentation can copy
/// (hop-by-hop and destination options): (ip, transport offset, protocol).
fn parse_ipv6(frame: &[u8], l3: usize) -> Result<(Ip, usize, u8), GsoError> {
    let header = frame
        .get(l3..l3 + IPV6_HEADER_LEN)
        .ok_or(GsoError::Truncated)?;
    if header.first().copied().unwrap_or(0) >> 4 != 6 {
        return Err(GsoError::BadIpHeader);
    }
    // 0 is the jumbogram / BIG TCP marker: the length is the frame's.
    check_ip_length(
        usize::from(read_u16(header, 4)),
        frame.len() - l3 - IPV6_HEADER_LEN,
    )?;
    let src = Ipv6Addr::from(read_u128(header, 8));
    let dst = Ipv6Addr::from(read_u128(header, 24));
    let mut next_header = header.get(6).copied().unwrap_or(0);
    let mut offset = l3 + IPV6_HEADER_LEN;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next_header {
            IPPROTO_HOPOPTS | IPPROTO_DSTOPTS => {
                let next = frame.get(offset).copied().ok_or(GsoError::Truncated)?;
                let len = frame.get(offset + 1).copied().ok_or(GsoError::Truncated)?;
                next_header = next;
                offset += (usize::from(len) + 1) * 8;
            }
            IPPROTO_FRAGMENT => return Err(GsoError::Fragment),
            // A routing header changes the pseudo-header's destination; not supported.
            IPPROTO_ROUTING => return Err(GsoError::UnsupportedIpv6Extension(next_header)),
            _ => break,
        }
    }
    if matches!(next_header, IPPROTO_HOPOPTS | IPPROTO_DSTOPTS) {
        return Err(GsoError::UnsupportedIpv6Extension(next_header));
    }
    if offset > frame.len() {
        return Err(GsoError::Truncated);
    }
    Ok((Ip::V6 { src, dst }, offset, next_header))
}

/// Accepts an IP length field equal to what the frame holds, or 0.
fn check_ip_length(header: usize, frame: usize) -> Result<(), GsoError> {
    if header != 0 && header != frame {
        return Err(GsoError::LengthMismatch { header, frame });
    }
    Ok(())
}

/// Writes the sequence number and trims the flags of one TCP segment.
fn fix_tcp_flags(segment: &mut [u8], l4: usize, seq: u32, first: bool, last: bool) {
    if let Some(field) = segment.get_mut(l4 + 4..l4 + 8) {
        field.copy_from_slice(&seq.to_be_bytes());
    }
    if let Some(flags) = segment.get_mut(l4 + 13) {
        if !last {
            *flags &= !(TCP_FIN | TCP_PSH);
        }
        if !first {
            *flags &= !TCP_CWR;
        }
    }
}

fn read_u16_checked(bytes: &[u8], offset: usize) -> Result<u16, GsoError> {
    match bytes.get(offset..offset + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(GsoError::Truncated),
    }
}

/// Reads a big-endian u16 from bytes already checked to hold it (0 otherwise).
fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    read_u16_checked(bytes, offset).unwrap_or(0)
}

/// Reads a big-endian u32 from bytes already checked to hold it (0 otherwise).
fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    bytes
        .get(offset..offset + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

/// Reads a big-endian u128 from bytes already checked to hold it (0 otherwise).
fn read_u128(bytes: &[u8], offset: usize) -> u128 {
    bytes
        .get(offset..offset + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map_or(0, u128::from_be_bytes)
}

/// Writes a big-endian u16 into bytes already checked to hold it (nothing otherwise).
fn put_u16(bytes: &mut [u8], offset: usize, value: u16) {
    if let Some(field) = bytes.get_mut(offset..offset + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

    const SRC_MAC: [u8; 6] = [0x0a, 0x58, 10, 244, 0, 2];
    const DST_MAC: [u8; 6] = [0x0a, 0x58, 10, 244, 1, 2];
    const SRC_V4: [u8; 4] = [10, 244, 0, 2];
    const DST_V4: [u8; 4] = [10, 244, 1, 2];
    const SRC_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const DST_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
    /// The pod MTU with a 1500-byte underlay (see `encap::UNDERLAY_MTU_OVERHEAD`).
    const POD_MTU: usize = 1450;
    const ISN: u32 = 0xffff_f000; // wraps during the test
    const IP_ID: u16 = 0xfffe; // wraps during the test

    fn payload_bytes(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 31 + i / 251) % 256).unwrap())
            .collect()
    }

    fn ethernet(ethertype: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&DST_MAC);
        frame.extend_from_slice(&SRC_MAC);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }

    /// A TCP header with the timestamp option (data offset 8, 32 bytes), flags
    /// CWR|ACK|PSH|FIN.
    fn tcp_header() -> Vec<u8> {
        let mut tcp = vec![0x9c, 0x40, 0x01, 0xbb]; // ports 40000 -> 443
        tcp.extend_from_slice(&ISN.to_be_bytes());
        tcp.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // ack
        tcp.extend_from_slice(&[0x80, 0x80 | 0x10 | 0x08 | 0x01, 0x01, 0xf5, 0, 0, 0, 0]);
        tcp.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP TS
        tcp
    }

    /// Stores the partial checksum Linux leaves for CHECKSUM_PARTIAL: the folded
    /// pseudo-header sum, not inverted.
    fn seed_partial(frame: &mut [u8], field: usize, pseudo: u32) {
        let value = u16::try_from(pseudo).unwrap();
        frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Ethernet + IPv4 (`options` appended to the header) + `transport` + payload, with
    /// the partial checksum seeded. Returns the frame and its offload header.
    fn ipv4_frame(
        options: &[u8],
        protocol: u8,
        transport: &[u8],
        payload: &[u8],
        gso: GsoKind,
        gso_size: u16,
    ) -> (Vec<u8>, Offload) {
        let mut frame = ethernet(ETHERTYPE_IPV4);
        let ihl = 5 + options.len() / 4;
        let total = ihl * 4 + transport.len() + payload.len();
        let total16 = u16::try_from(total).unwrap();
        frame.push(0x40 | u8::try_from(ihl).unwrap());
        frame.push(0);
        frame.extend_from_slice(&total16.to_be_bytes());
        frame.extend_from_slice(&IP_ID.to_be_bytes());
        frame.extend_from_slice(&[0x40, 0, 64, protocol, 0, 0]);
        frame.extend_from_slice(&SRC_V4);
        frame.extend_from_slice(&DST_V4);
        frame.extend_from_slice(options);
        let ip_checksum = checksum::checksum(&frame[14..]);
        frame[24..26].copy_from_slice(&ip_checksum.to_be_bytes());
        let l4 = frame.len();
        frame.extend_from_slice(transport);
        frame.extend_from_slice(payload);
        let csum_offset = if protocol == IPPROTO_TCP { 16 } else { 6 };
        let l4_len = u16::try_from(frame.len() - l4).unwrap();
        if protocol == IPPROTO_UDP {
            frame[l4 + 4..l4 + 6].copy_from_slice(&l4_len.to_be_bytes());
        }
        let pseudo = checksum::pseudo_header_v4(SRC_V4.into(), DST_V4.into(), protocol, l4_len);
        seed_partial(&mut frame, l4 + csum_offset, pseudo);
        let offload = Offload {
            needs_csum: true,
            csum_start: u16::try_from(l4).unwrap(),
            csum_offset: u16::try_from(csum_offset).unwrap(),
            gso,
            gso_size,
            hdr_len: u16::try_from(l4 + transport.len()).unwrap(),
        };
        (frame, offload)
    }

    /// Ethernet + IPv6 (+ `extensions`, whose first next-header byte is patched) +
    /// `transport` + payload, partial checksum seeded.
    fn ipv6_frame(
        extensions: &[u8],
        protocol: u8,
        transport: &[u8],
        payload: &[u8],
        gso: GsoKind,
        gso_size: u16,
    ) -> (Vec<u8>, Offload) {
        let mut frame = ethernet(ETHERTYPE_IPV6);
        let payload_len =
            u16::try_from(extensions.len() + transport.len() + payload.len()).unwrap();
        let first_next = if extensions.is_empty() {
            protocol
        } else {
            IPPROTO_HOPOPTS
        };
        frame.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
        frame.extend_from_slice(&payload_len.to_be_bytes());
        frame.extend_from_slice(&[first_next, 64]);
        frame.extend_from_slice(&SRC_V6);
        frame.extend_from_slice(&DST_V6);
        frame.extend_from_slice(extensions);
        let l4 = frame.len();
        frame.extend_from_slice(transport);
        frame.extend_from_slice(payload);
        let csum_offset = if protocol == IPPROTO_TCP { 16 } else { 6 };
        let l4_len = u32::try_from(frame.len() - l4).unwrap();
        if protocol == IPPROTO_UDP {
            frame[l4 + 4..l4 + 6].copy_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
        }
        let pseudo = checksum::pseudo_header_v6(&SRC_V6.into(), &DST_V6.into(), protocol, l4_len);
        seed_partial(&mut frame, l4 + csum_offset, pseudo);
        let offload = Offload {
            needs_csum: true,
            csum_start: u16::try_from(l4).unwrap(),
            csum_offset: u16::try_from(csum_offset).unwrap(),
            gso,
            gso_size,
            hdr_len: u16::try_from(l4 + transport.len()).unwrap(),
        };
        (frame, offload)
    }

    /// Segments into a fresh buffer at stride 2048; returns the segments.
    fn cut(frame: &[u8], offload: Offload) -> Result<Vec<Vec<u8>>, GsoError> {
        const STRIDE: usize = 2048;
        let mut out = vec![0u8; 64 * STRIDE];
        let mut lens = [0usize; 64];
        let count = segment(frame, offload, &mut out, STRIDE, &mut lens)?;
        Ok((0..count)
            .map(|i| out[i * STRIDE..i * STRIDE + lens[i]].to_vec())
            .collect())
    }

    /// Checks every segment with etherparse and with our own sums; returns the
    /// concatenated payloads.
    fn verify(segments: &[Vec<u8>], gso_size: usize, tcp: bool) -> Vec<u8> {
        let mut data = Vec::new();
        let mut expected_seq = ISN;
        for (i, seg) in segments.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == segments.len();
            let headers = PacketHeaders::from_ethernet_slice(seg).unwrap();
            let payload = headers.payload.slice();
            assert!(payload.len() <= gso_size);
            if !last {
                assert_eq!(payload.len(), gso_size, "only the last segment is short");
            }
            let ip_len = seg.len() - 14;
            assert!(
                ip_len <= POD_MTU,
                "segment {i}: {ip_len} bytes of IP > MTU {POD_MTU}"
            );
            match (headers.net.unwrap(), headers.transport.unwrap()) {
                (NetHeaders::Ipv4(ip, _), transport) => {
                    assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "segment {i}");
                    assert_eq!(checksum::checksum(&seg[14..14 + ip.header_len()]), 0);
                    assert_eq!(usize::from(ip.total_len), ip_len);
                    assert_eq!(
                        ip.identification,
                        IP_ID.wrapping_add(u16::try_from(i).unwrap())
                    );
                    assert!(ip.dont_fragment);
                    match transport {
                        TransportHeader::Tcp(th) => {
                            assert_eq!(
                                th.checksum,
                                th.calc_checksum_ipv4(&ip, payload).unwrap(),
                                "segment {i}"
                            );
                            check_tcp(&th, i, first, last, &mut expected_seq, payload.len());
                        }
                        TransportHeader::Udp(uh) => {
                            assert_eq!(
                                uh.checksum,
                                uh.calc_checksum_ipv4(&ip, payload).unwrap(),
                                "segment {i}"
                            );
                            assert_eq!(usize::from(uh.length), 8 + payload.len());
                        }
                        other => panic!("unexpected transport {other:?}"),
                    }
                    let l4 = 14 + ip.header_len();
                    let l4_len = u16::try_from(seg.len() - l4).unwrap();
                    let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
                    let pseudo =
                        checksum::pseudo_header_v4(SRC_V4.into(), DST_V4.into(), proto, l4_len);
                    assert_eq!(
                        checksum::finish(checksum::combine(pseudo, checksum::sum(&seg[l4..]))),
                        0
                    );
                }
                (NetHeaders::Ipv6(ip, exts), transport) => {
                    assert_eq!(usize::from(ip.payload_length), ip_len - 40);
                    assert_eq!(ip.flow_label.value(), 0x12345);
                    let exts_len = exts.header_len();
                    match transport {
                        TransportHeader::Tcp(th) => {
                            assert_eq!(
                                th.checksum,
                                th.calc_checksum_ipv6(&ip, payload).unwrap(),
                                "segment {i}"
                            );
                            check_tcp(&th, i, first, last, &mut expected_seq, payload.len());
                        }
                        TransportHeader::Udp(uh) => {
                            assert_eq!(
                                uh.checksum,
                                uh.calc_checksum_ipv6(&ip, payload).unwrap(),
                                "segment {i}"
                            );
                            assert_eq!(usize::from(uh.length), 8 + payload.len());
                        }
                        other => panic!("unexpected transport {other:?}"),
                    }
                    let l4 = 54 + exts_len;
                    let l4_len = u32::try_from(seg.len() - l4).unwrap();
                    let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
                    let pseudo =
                        checksum::pseudo_header_v6(&SRC_V6.into(), &DST_V6.into(), proto, l4_len);
                    assert_eq!(
                        checksum::finish(checksum::combine(pseudo, checksum::sum(&seg[l4..]))),
                        0
                    );
                }
                (net, _) => panic!("unexpected network header {net:?}"),
            }
            data.extend_from_slice(payload);
        }
        data
    }

    fn check_tcp(
        th: &etherparse::TcpHeader,
        i: usize,
        first: bool,
        last: bool,
        expected_seq: &mut u32,
        len: usize,
    ) {
        assert_eq!(th.sequence_number, *expected_seq, "segment {i}");
        *expected_seq = expected_seq.wrapping_add(u32::try_from(len).unwrap());
        assert_eq!(th.acknowledgment_number, 0x1234_5678);
        assert!(th.ack);
        assert_eq!(th.cwr, first, "CWR only on the first segment ({i})");
        assert_eq!(th.fin, last, "FIN only on the last segment ({i})");
        assert_eq!(th.psh, last, "PSH only on the last segment ({i})");
        assert_eq!(th.data_offset(), 8, "options kept");
    }

    #[test]
    fn tcp_v4_super_frame() {
        let payload = payload_bytes(10_000);
        let (frame, offload) = ipv4_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV4,
            1398,
        );
        assert_eq!((offload.csum_start, offload.csum_offset), (34, 16));
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 8); // 7 × 1398 + 214
        assert_eq!(segments[0].len(), 14 + POD_MTU);
        assert_eq!(verify(&segments, 1398, true), payload);
    }

    #[test]
    fn tcp_v4_with_ip_options() {
        let payload = payload_bytes(5000);
        // Four bytes of options: NOP NOP NOP EOL. The MSS shrinks by as much.
        let (frame, offload) = ipv4_frame(
            &[1, 1, 1, 0],
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV4,
            1394,
        );
        assert_eq!(offload.csum_start, 38);
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 4);
        for seg in &segments {
            assert_eq!(
                &seg[34..38],
                &[1, 1, 1, 0],
                "options copied to every segment"
            );
        }
        assert_eq!(verify(&segments, 1394, true), payload);
    }

    #[test]
    fn tcp_v6_super_frame() {
        let payload = payload_bytes(10_000);
        let (frame, offload) = ipv6_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV6,
            1378,
        );
        assert_eq!(offload.csum_start, 54);
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 8);
        assert_eq!(verify(&segments, 1378, true), payload);
    }

    #[test]
    fn tcp_v6_with_hop_by_hop_options() {
        let payload = payload_bytes(4000);
        // Hop-by-hop header: next = TCP, length 0 (8 bytes), PadN.
        let hbh = [IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0];
        let (frame, offload) = ipv6_frame(
            &hbh,
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV6,
            1370,
        );
        assert_eq!(offload.csum_start, 62);
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 3);
        assert_eq!(verify(&segments, 1370, true), payload);
    }

    #[test]
    fn udp_l4_v4_and_v6() {
        let payload = payload_bytes(10_000);
        let udp = [0x13, 0x88, 0x00, 0x35, 0, 0, 0, 0];
        let (frame, offload) = ipv4_frame(&[], IPPROTO_UDP, &udp, &payload, GsoKind::UdpL4, 1422);
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 8);
        assert_eq!(verify(&segments, 1422, false), payload);

        let (frame, offload) = ipv6_frame(&[], IPPROTO_UDP, &udp, &payload, GsoKind::UdpL4, 1402);
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 8);
        assert_eq!(verify(&segments, 1402, false), payload);
    }

    #[test]
    fn exact_multiple_and_single_segment() {
        let payload = payload_bytes(3 * 1398);
        let (frame, offload) = ipv4_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV4,
            1398,
        );
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 3);
        assert_eq!(verify(&segments, 1398, true), payload);

        let payload = payload_bytes(100);
        let (frame, offload) = ipv4_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV4,
            1398,
        );
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(verify(&segments, 1398, true), payload);
    }

    /// Segments packed at the tightest stride, behind VXLAN headers written in place.
    #[test]
    fn tight_stride_into_vxlan_datagrams() {
        let payload = payload_bytes(10_000);
        let (frame, offload) = ipv4_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV4,
            1398,
        );
        let stride = 8 + 14 + POD_MTU;
        let mut buffer = vec![0u8; 7 * stride + 8 + 14 + 20 + 32 + 214];
        let mut lens = [0usize; 8];
        let count = segment(&frame, offload, &mut buffer[8..], stride, &mut lens).unwrap();
        assert_eq!(count, 8);
        let mut segments = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            crate::encap::emit_header(1, &mut buffer[i * stride..]).unwrap();
            let datagram = &buffer[i * stride..i * stride + 8 + len];
            segments.push(crate::encap::decapsulate(1, datagram).unwrap().to_vec());
        }
        assert_eq!(verify(&segments, 1398, true), payload);
    }

    #[test]
    fn vlan_tagged_frame() {
        let payload = payload_bytes(3000);
        let (mut frame, mut offload) = ipv4_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload,
            GsoKind::TcpV4,
            1398,
        );
        frame.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        offload.csum_start += 4;
        let segments = cut(&frame, offload).unwrap();
        assert_eq!(segments.len(), 3);
        let mut total = 0;
        for seg in &segments {
            assert_eq!(&seg[12..16], &[0x81, 0x00, 0x00, 0x64]);
            assert_eq!(checksum::checksum(&seg[18..38]), 0);
            total += seg.len() - 18 - 52;
        }
        assert_eq!(total, payload.len());
    }

    #[test]
    fn no_gso_finishes_partial_checksum() {
        let payload = payload_bytes(333);
        let (frame, mut offload) =
            ipv4_frame(&[], IPPROTO_TCP, &tcp_header(), &payload, GsoKind::None, 0);
        offload.gso = GsoKind::None;
        let mut out = [0u8; 1500];
        let mut lens = [0usize; 1];
        assert_eq!(segment(&frame, offload, &mut out, 0, &mut lens), Ok(1));
        assert_eq!(lens[0], frame.len());
        let seg = out[..lens[0]].to_vec();
        // Only the checksum field changed, and the result verifies.
        assert_eq!(seg[..50], frame[..50]);
        assert_eq!(seg[52..], frame[52..]);
        let headers = PacketHeaders::from_ethernet_slice(&seg).unwrap();
        let (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Tcp(th))) =
            (headers.net, headers.transport)
        else {
            panic!("not TCP/IPv4")
        };
        assert_eq!(
            th.checksum,
            th.calc_checksum_ipv4(&ip, headers.payload.slice()).unwrap()
        );

        // UDP over IPv6 too.
        let udp = [0x13, 0x88, 0x00, 0x35, 0, 0, 0, 0];
        let (frame, mut offload) = ipv6_frame(&[], IPPROTO_UDP, &udp, &payload, GsoKind::None, 0);
        offload.gso = GsoKind::None;
        assert_eq!(segment(&frame, offload, &mut out, 0, &mut lens), Ok(1));
        let headers = PacketHeaders::from_ethernet_slice(&out[..lens[0]]).unwrap();
        let (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Udp(uh))) =
            (headers.net, headers.transport)
        else {
            panic!("not UDP/IPv6")
        };
        assert_eq!(
            uh.checksum,
            uh.calc_checksum_ipv6(&ip, headers.payload.slice()).unwrap()
        );

        // Without needs_csum the frame is copied untouched.
        assert_eq!(
            segment(&frame, Offload::NONE, &mut out, 0, &mut lens),
            Ok(1)
        );
        assert_eq!(&out[..lens[0]], &frame[..]);
    }

    fn tcp_v4() -> (Vec<u8>, Offload) {
        ipv4_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload_bytes(10_000),
            GsoKind::TcpV4,
            1398,
        )
    }

    #[test]
    fn inconsistent_offload_rejected() {
        let (frame, offload) = tcp_v4();
        let err = |offload: Offload| cut(&frame, offload).unwrap_err();
        assert_eq!(
            err(Offload {
                csum_start: 20_000,
                ..offload
            }),
            GsoError::ChecksumOutsideFrame {
                csum_start: 20_000,
                csum_offset: 16
            }
        );
        assert_eq!(
            err(Offload {
                csum_start: 30,
                ..offload
            }),
            GsoError::ChecksumStartMismatch {
                csum_start: 30,
                transport_offset: 34
            }
        );
        assert_eq!(
            err(Offload {
                csum_offset: 6,
                ..offload
            }),
            GsoError::ChecksumOffsetMismatch {
                csum_offset: 6,
                expected: 16
            }
        );
        assert_eq!(
            err(Offload {
                hdr_len: 20_000,
                ..offload
            }),
            GsoError::HdrLenBeyondFrame {
                hdr_len: 20_000,
                frame_len: frame.len()
            }
        );
        assert_eq!(
            err(Offload {
                gso_size: 0,
                ..offload
            }),
            GsoError::ZeroGsoSize
        );
        assert_eq!(
            err(Offload {
                gso: GsoKind::TcpV6,
                ..offload
            }),
            GsoError::WrongEtherType(0x0800)
        );
        assert_eq!(
            err(Offload {
                gso: GsoKind::UdpL4,
                csum_offset: 6,
                ..offload
            }),
            GsoError::WrongTransport(6)
        );
        // hdr_len is a hint: Linux reports the linear length, which may include payload.
        assert!(cut(
            &frame,
            Offload {
                hdr_len: 1000,
                ..offload
            }
        )
        .is_ok());
        assert!(cut(
            &frame,
            Offload {
                hdr_len: 0,
                ..offload
            }
        )
        .is_ok());
    }

    /// A BIG TCP frame (IPv4 total length 0, over 64 KiB) cut with a gso_size whose
    /// segments would overflow the total length field.
    #[test]
    fn oversized_segments_rejected() {
        let (mut frame, offload) = ipv4_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload_bytes(1000),
            GsoKind::TcpV4,
            1398,
        );
        frame.extend_from_slice(&payload_bytes(70_000));
        frame[16..18].copy_from_slice(&[0, 0]);
        assert_eq!(
            cut(
                &frame,
                Offload {
                    gso_size: 65_500,
                    ..offload
                }
            ),
            Err(GsoError::SegmentTooLong(65_500))
        );
        // The same frame with a normal MSS is fine: 51 segments.
        let mut out = vec![0u8; 51 * 1464];
        let mut lens = [0usize; 51];
        assert_eq!(segment(&frame, offload, &mut out, 1464, &mut lens), Ok(51));
    }

    #[test]
    fn wrong_protocols_rejected() {
        let udp = [0x13, 0x88, 0x00, 0x35, 0, 0, 0, 0];
        let (frame, offload) = ipv4_frame(
            &[],
            IPPROTO_UDP,
            &udp,
            &payload_bytes(3000),
            GsoKind::TcpV4,
            1398,
        );
        assert_eq!(
            cut(
                &frame,
                Offload {
                    csum_offset: 16,
                    ..offload
                }
            ),
            Err(GsoError::WrongTransport(17))
        );
        let (frame, offload) = ipv6_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload_bytes(3000),
            GsoKind::TcpV4,
            1398,
        );
        assert_eq!(cut(&frame, offload), Err(GsoError::WrongEtherType(0x86dd)));
        // A routing header would change the pseudo-header; refused.
        let routing = [IPPROTO_TCP, 0, 0, 0, 0, 0, 0, 0];
        let (mut frame, offload) = ipv6_frame(
            &routing,
            IPPROTO_TCP,
            &tcp_header(),
            &payload_bytes(3000),
            GsoKind::TcpV6,
            1398,
        );
        frame[20] = IPPROTO_ROUTING;
        assert_eq!(
            cut(&frame, offload),
            Err(GsoError::UnsupportedIpv6Extension(IPPROTO_ROUTING))
        );
    }

    #[test]
    fn malformed_headers_rejected() {
        let (frame, offload) = tcp_v4();
        let with = |offset: usize, value: u8| {
            let mut bad = frame.clone();
            bad[offset] = value;
            cut(&bad, offload)
        };
        assert_eq!(with(14, 0x65), Err(GsoError::BadIpHeader)); // version 6 in an IPv4 frame
        assert_eq!(with(14, 0x44), Err(GsoError::BadIpHeader)); // IHL 4
        assert_eq!(with(20, 0x20), Err(GsoError::Fragment)); // more fragments
        assert_eq!(with(46, 0x40), Err(GsoError::BadTcpHeader)); // data offset 4
        assert_eq!(
            with(17, 0x00),
            Err(GsoError::LengthMismatch {
                header: usize::from(u16::from_be_bytes([frame[16], 0])),
                frame: frame.len() - 14
            })
        );
    }

    #[test]
    fn output_space_checked() {
        let (frame, offload) = tcp_v4();
        let mut out = vec![0u8; 8 * 1464];
        let mut lens = [0usize; 8];
        assert_eq!(
            segment(&frame, offload, &mut out, 1463, &mut lens),
            Err(GsoError::StrideTooSmall {
                needed: 1464,
                stride: 1463
            })
        );
        assert_eq!(
            segment(&frame, offload, &mut out, 1464, &mut lens[..7]),
            Err(GsoError::TooManySegments {
                needed: 8,
                capacity: 7
            })
        );
        let needed = 7 * 1464 + 66 + 214;
        assert_eq!(
            segment(&frame, offload, &mut out[..needed - 1], 1464, &mut lens),
            Err(GsoError::OutTooSmall {
                needed,
                available: needed - 1
            })
        );
        assert_eq!(
            segment(&frame, offload, &mut out[..needed], 1464, &mut lens),
            Ok(8)
        );
        assert_eq!(
            segment(&frame, offload, &mut out, usize::MAX, &mut lens).unwrap_err(),
            GsoError::OutTooSmall {
                needed: usize::MAX,
                available: out.len()
            }
        );
        let mut none: [usize; 0] = [];
        assert_eq!(
            segment(&frame, Offload::NONE, &mut out, 0, &mut none),
            Err(GsoError::TooManySegments {
                needed: 1,
                capacity: 0
            })
        );
        assert_eq!(
            segment(&frame, Offload::NONE, &mut out[..10], 0, &mut lens),
            Err(GsoError::OutTooSmall {
                needed: frame.len(),
                available: 10
            })
        );
    }

    /// Every truncation of a valid frame is an error, never a panic.
    #[test]
    fn truncated_frames_rejected() {
        let cases = [
            tcp_v4(),
            ipv6_frame(
                &[],
                IPPROTO_TCP,
                &tcp_header(),
                &payload_bytes(3000),
                GsoKind::TcpV6,
                1378,
            ),
            ipv4_frame(
                &[],
                IPPROTO_UDP,
                &[0; 8],
                &payload_bytes(3000),
                GsoKind::UdpL4,
                1422,
            ),
        ];
        for (frame, offload) in cases {
            for len in 0..frame.len() {
                assert!(
                    cut(&frame[..len], offload).is_err(),
                    "prefix of {len} bytes accepted"
                );
                let no_csum = Offload {
                    needs_csum: false,
                    ..offload
                };
                assert!(
                    cut(&frame[..len], no_csum).is_err(),
                    "prefix of {len} bytes accepted"
                );
            }
        }
    }

    /// Random corruption of headers and offload fields never panics (a cheap fuzz run;
    /// `fuzz/` has the real one).
    #[test]
    fn corrupted_input_never_panics() {
        let (frame, offload) = tcp_v4();
        let (frame6, offload6) = ipv6_frame(
            &[],
            IPPROTO_TCP,
            &tcp_header(),
            &payload_bytes(3000),
            GsoKind::TcpV6,
            1378,
        );
        let mut rng: u64 = 0x1234_5678_9abc_def0;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut out = vec![0u8; 16 * 1600];
        let mut lens = [0usize; 16];
        for round in 0..20_000u32 {
            let (base, base_offload) = if round % 2 == 0 {
                (&frame, offload)
            } else {
                (&frame6, offload6)
            };
            let mut bad = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = usize::try_from(next() % 90).unwrap();
                bad[at] = u8::try_from(next() % 256).unwrap();
            }
            let cut_at = usize::try_from(next() % u64::try_from(bad.len() + 1).unwrap()).unwrap();
            let kinds = [
                GsoKind::None,
                GsoKind::TcpV4,
                GsoKind::TcpV6,
                GsoKind::UdpL4,
            ];
            let r = next();
            let fuzzed = Offload {
                needs_csum: r & 1 == 0,
                csum_start: if r & 2 == 0 {
                    base_offload.csum_start
                } else {
                    u16::try_from(next() % 200).unwrap()
                },
                csum_offset: if r & 4 == 0 {
                    base_offload.csum_offset
                } else {
                    u16::try_from(next() % 40).unwrap()
                },
                gso: if r & 8 == 0 {
                    base_offload.gso
                } else {
                    kinds[usize::try_from(next() % 4).unwrap()]
                },
                gso_size: if r & 16 == 0 {
                    base_offload.gso_size
                } else {
                    u16::try_from(next() % 3000).unwrap()
                },
                hdr_len: u16::try_from(next() % 200).unwrap(),
            };
            let _ = segment(&bad[..cut_at], fuzzed, &mut out, 1600, &mut lens);
        }
    }
}
