//! Classification of an Ethernet frame: the facts the switch decides on, read in one pass.
//!
//! [`classify`] reads the Ethernet header, at most one 802.1Q tag, and then the ARP
//! packet (Ethernet/IPv4 only), the IPv4 header and the L4 ports of TCP, UDP and SCTP, or
//! the fixed IPv6 header. It borrows the frame, allocates nothing, and copies only the
//! fields it returns. The header parsing itself is etherparse's.
//!
//! Rules (each is a [`FrameError`] when broken):
//! - The frame holds a whole Ethernet header (and whole VLAN tag, if tagged).
//! - ARP: hardware type 1 (Ethernet), protocol type 0x0800, lengths 6 and 4; anything else
//!   is [`FrameError::BadArp`]. The whole 28-byte packet must be present.
//! - IPv4: version 4, IHL >= 5, the header with its options present, and
//!   `IHL * 4 <= total_length <= bytes after the Ethernet header`. Bytes past
//!   `total_length` are Ethernet padding and are ignored; a GSO super-frame is an
//!   ordinary packet here (its `total_length` is its real length, at most 65535).
//! - TCP/UDP/SCTP ports are read only from the first fragment (fragment offset 0); later
//!   fragments have `l4: None`. A first fragment too short to hold the four port bytes is
//!   [`FrameError::Truncated`].
//! - IPv6: version 6, the 40-byte header present, and `40 + payload_length` bytes present
//!   (a payload length of 0, as in jumbograms, passes). Extension headers are not walked.
//! - The type field (after the tag, if any) is an ethertype, at least 0x0600. A smaller
//!   value is an IEEE 802.3 length (LLC/SNAP, STP), not Ethernet II, which is all the
//!   switch carries: [`FrameError::NotEthernetII`].
//! - Any other ethertype is [`L3Info::Other`], not an error.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::err::{ipv4, ipv6};
use etherparse::{
    ArpHardwareId, ArpPacketSlice, EtherType, Ethernet2Slice, IpNumber, Ipv4HeaderSlice,
    Ipv6HeaderSlice, LenSource, SingleVlanSlice,
};

use crate::mac::MacAddr;

/// Length of an Ethernet header without VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of one 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_PACKET_LEN: usize = 28;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Ethertype of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// The smallest ethertype; a type field below it is an IEEE 802.3 length.
pub const MIN_ETHERTYPE: u16 = 0x0600;
/// ARP operation: request.
pub const ARP_OP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const ARP_OP_REPLY: u16 = 2;

/// Why a frame could not be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FrameError {
    /// The frame ends inside a header it announces.
    #[error("frame is truncated inside a header")]
    Truncated,
    /// An ARP packet that is not Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4).
    #[error("ARP packet is not Ethernet/IPv4 ARP")]
    BadArp,
    /// An IPv4 header with a wrong version, an IHL below 5, or a total length below the
    /// header length or above the bytes present.
    #[error("IPv4 header has a bad version, IHL or total length")]
    BadIpv4Header,
    /// An IPv6 header with a wrong version or a payload length above the bytes present.
    #[error("IPv6 header has a bad version or payload length")]
    BadIpv6Header,
    /// The type field is an IEEE 802.3 length (below 0x0600), not an ethertype.
    #[error("not an Ethernet II frame: the type field is an 802.3 length")]
    NotEthernetII,
}

/// Source and destination ports of a TCP, UDP or SCTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L4Ports {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpInfo {
    /// Operation: [`ARP_OP_REQUEST`], [`ARP_OP_REPLY`] or another value.
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address (0.0.0.0 in an RFC 5227 probe).
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (usually zero in a request).
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// What the frame carries above Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3Info {
    /// Ethernet/IPv4 ARP.
    Arp(ArpInfo),
    /// IPv4.
    Ipv4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// IP protocol number.
        protocol: u8,
        /// Ports, for TCP/UDP/SCTP first fragments.
        l4: Option<L4Ports>,
    },
    /// IPv6 (fixed header only).
    Ipv6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
        /// Next header of the fixed header (extension headers are not walked).
        next_header: u8,
    },
    /// Any other ethertype, given here.
    Other(u16),
}

/// The result of [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// VLAN id of the 802.1Q tag, if the frame has one.
    pub vlan: Option<u16>,
    /// Ethertype after the tag, if any.
    pub ethertype: u16,
    /// Offset in the frame of the L3 header (14, or 18 when tagged).
    pub l3_offset: usize,
    /// The L3 (and for IPv4, L4) facts.
    pub l3: L3Info,
}

/// Classifies an Ethernet frame (no virtio-net header, no FCS). See the module docs for
/// the rules.
///
/// # Errors
/// A [`FrameError`] saying which header is truncated or bogus.
#[inline]
pub fn classify(frame: &[u8]) -> Result<FrameInfo, FrameError> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).map_err(|_| FrameError::Truncated)?;
    let dst = MacAddr(eth.destination());
    let src = MacAddr(eth.source());
    let mut ethertype = eth.ether_type();
    let mut payload = eth.payload_slice();
    let mut vlan = None;
    let mut l3_offset = ETHERNET_HEADER_LEN;
    if ethertype == EtherType::VLAN_TAGGED_FRAME {
        let tag = SingleVlanSlice::from_slice(payload).map_err(|_| FrameError::Truncated)?;
        vlan = Some(tag.vlan_identifier().value());
        ethertype = tag.ether_type();
        payload = tag.payload_slice();
        l3_offset += VLAN_TAG_LEN;
    }
    if ethertype.0 < MIN_ETHERTYPE {
        return Err(FrameError::NotEthernetII);
    }
    let l3 = match ethertype {
        EtherType::ARP => L3Info::Arp(classify_arp(payload)?),
        EtherType::IPV4 => classify_ipv4(payload)?,
        EtherType::IPV6 => classify_ipv6(payload)?,
        other => L3Info::Other(other.0),
    };
    Ok(FrameInfo {
        dst,
        src,
        vlan,
        ethertype: ethertype.0,
        l3_offset,
        l3,
    })
}

fn classify_arp(payload: &[u8]) -> Result<ArpInfo, FrameError> {
    let arp = ArpPacketSlice::from_slice(payload).map_err(|err| match err.len_source {
        // The declared address lengths do not fit: bogus lengths rather than a cut frame
        // when they are not Ethernet/IPv4's.
        LenSource::ArpAddrLengths if payload.get(4..6) != Some(&[6, 4][..]) => FrameError::BadArp,
        _ => FrameError::Truncated,
    })?;
    if arp.hw_addr_type() != ArpHardwareId::ETHERNET
        || arp.proto_addr_type() != EtherType::IPV4
        || arp.hw_addr_size() != 6
        || arp.proto_addr_size() != 4
    {
        return Err(FrameError::BadArp);
    }
    let mac = |bytes: &[u8]| {
        <[u8; 6]>::try_from(bytes)
            .map(MacAddr)
            .map_err(|_| FrameError::BadArp)
    };
    let ip = |bytes: &[u8]| {
        <[u8; 4]>::try_from(bytes)
            .map(Ipv4Addr::from)
            .map_err(|_| FrameError::BadArp)
    };
    Ok(ArpInfo {
        op: arp.operation().0,
        sender_mac: mac(arp.sender_hw_addr())?,
        sender_ip: ip(arp.sender_protocol_addr())?,
        target_mac: mac(arp.target_hw_addr())?,
        target_ip: ip(arp.target_protocol_addr())?,
    })
}

// Inlined into `classify` (and so into the switch): called apart, it returned its result
// through the stack and the caller's first read of it stalled on store forwarding, which
// perf showed as the costliest instruction of a frame's decision (pipeline/tx_64B 67 ->
// 56 ns, rx_64B 62 -> 50 ns).
#[inline(always)]
fn classify_ipv4(payload: &[u8]) -> Result<L3Info, FrameError> {
    let header = Ipv4HeaderSlice::from_slice(payload).map_err(|err| match err {
        ipv4::HeaderSliceError::Len(_) => FrameError::Truncated,
        ipv4::HeaderSliceError::Content(_) => FrameError::BadIpv4Header,
    })?;
    let header_len = header.slice().len();
    let total_len = usize::from(header.total_len());
    if total_len < header_len || total_len > payload.len() {
        return Err(FrameError::BadIpv4Header);
    }
    let protocol = header.protocol();
    let l4 = if header.fragments_offset().value() == 0
        && matches!(protocol, IpNumber::TCP | IpNumber::UDP | IpNumber::SCTP)
    {
        let ports = payload
            .get(header_len..total_len)
            .and_then(|l4| l4.get(..4))
            .ok_or(FrameError::Truncated)?;
        let [s0, s1, d0, d1] = <[u8; 4]>::try_from(ports).map_err(|_| FrameError::Truncated)?;
        Some(L4Ports {
            src: u16::from_be_bytes([s0, s1]),
            dst: u16::from_be_bytes([d0, d1]),
        })
    } else {
        None
    };
    Ok(L3Info::Ipv4 {
        src: header.source_addr(),
        dst: header.destination_addr(),
        protocol: protocol.0,
        l4,
    })
}

fn classify_ipv6(payload: &[u8]) -> Result<L3Info, FrameError> {
    let header = Ipv6HeaderSlice::from_slice(payload).map_err(|err| match err {
        ipv6::HeaderSliceError::Len(_) => FrameError::Truncated,
        ipv6::HeaderSliceError::Content(_) => FrameError::BadIpv6Header,
    })?;
    let needed = header.slice().len() + usize::from(header.payload_length());
    if needed > payload.len() {
        return Err(FrameError::BadIpv6Header);
    }
    Ok(L3Info::Ipv6 {
        src: header.source_addr(),
        dst: header.destination_addr(),
        next_header: header.next_header().0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_A: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05]);
    const POD_B: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x06]);

    /// ARP who-has 10.244.1.6 tell 10.244.1.5, broadcast, padded to 60 bytes.
    static ARP_REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen op=request
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, 10, 244, 1, 5, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 244, 1, 6, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    /// IPv4/UDP 10.244.1.5:5353 -> 10.244.1.6:53, 4 payload bytes, then 14 bytes of padding.
    static IPV4_UDP: [u8; 60] = [
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x06, // dst
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, // src
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x20, // v4 ihl5, tos, total length 32
        0x12, 0x34, 0x40, 0x00, // id, DF
        0x40, 0x11, 0x00, 0x00, // ttl 64, UDP, checksum (not checked)
        10, 244, 1, 5, 10, 244, 1, 6, // addresses
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, // udp 5353 -> 53, len 12
        0xde, 0xad, 0xbe, 0xef, // payload
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    /// A VLAN 100 tagged IPv6 frame with an 8-byte ICMPv6 payload.
    static VLAN_IPV6: [u8; 66] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // dst (all-nodes multicast)
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, // src
        0x81, 0x00, 0x00, 0x64, 0x86, 0xdd, // 802.1Q vid 100, IPv6
        0x60, 0x00, 0x00, 0x00, 0x00, 0x08, 0x3a, 0xff, // v6, payload 8, ICMPv6, hop 255
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // src fe80::1
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // dst ff02::1
        0x80, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, // echo request
    ];

    #[test]
    fn test_arp_request() {
        let info = classify(&ARP_REQUEST).unwrap();
        assert_eq!(info.dst, MacAddr::BROADCAST);
        assert_eq!(info.src, POD_A);
        assert_eq!(info.vlan, None);
        assert_eq!(info.ethertype, ETHERTYPE_ARP);
        assert_eq!(info.l3_offset, 14);
        assert_eq!(
            info.l3,
            L3Info::Arp(ArpInfo {
                op: ARP_OP_REQUEST,
                sender_mac: POD_A,
                sender_ip: Ipv4Addr::new(10, 244, 1, 5),
                target_mac: MacAddr::ZERO,
                target_ip: Ipv4Addr::new(10, 244, 1, 6),
            })
        );
    }

    #[test]
    fn test_ipv4_udp_with_padding() {
        let info = classify(&IPV4_UDP).unwrap();
        assert_eq!((info.dst, info.src), (POD_B, POD_A));
        assert_eq!(info.ethertype, ETHERTYPE_IPV4);
        assert_eq!(
            info.l3,
            L3Info::Ipv4 {
                src: Ipv4Addr::new(10, 244, 1, 5),
                dst: Ipv4Addr::new(10, 244, 1, 6),
                protocol: 17,
                l4: Some(L4Ports { src: 5353, dst: 53 }),
            }
        );
        // Exactly the IP packet, no padding, is fine too.
        assert!(classify(&IPV4_UDP[..46]).is_ok());
    }

    #[test]
    fn test_vlan_ipv6() {
        let info = classify(&VLAN_IPV6).unwrap();
        assert_eq!(info.vlan, Some(100));
        assert_eq!(info.ethertype, ETHERTYPE_IPV6);
        assert_eq!(info.l3_offset, 18);
        assert_eq!(
            info.l3,
            L3Info::Ipv6 {
                src: "fe80::1".parse().unwrap(),
                dst: "ff02::1".parse().unwrap(),
                next_header: 58,
            }
        );
        assert_eq!(classify(&VLAN_IPV6[..65]), Err(FrameError::BadIpv6Header));
        assert_eq!(classify(&VLAN_IPV6[..57]), Err(FrameError::Truncated));
        let mut bad_version = VLAN_IPV6;
        bad_version[18] = 0x40;
        assert_eq!(classify(&bad_version), Err(FrameError::BadIpv6Header));
    }

    #[test]
    fn test_gso_super_frame() {
        // A 64 KB TCP super-frame: total length 65535, the whole packet present.
        let mut frame = vec![0u8; 14 + 65535];
        frame[..14].copy_from_slice(&IPV4_UDP[..14]);
        frame[14..34].copy_from_slice(&[
            0x45, 0x00, 0xff, 0xff, 0, 0, 0x40, 0x00, 0x40, 0x06, 0, 0, 10, 244, 1, 5, 10, 244, 1,
            6,
        ]);
        frame[34..38].copy_from_slice(&[0x9c, 0x40, 0x1f, 0x90]); // 40000 -> 8080
        let info = classify(&frame).unwrap();
        assert!(matches!(
            info.l3,
            L3Info::Ipv4 {
                protocol: 6,
                l4: Some(L4Ports {
                    src: 40000,
                    dst: 8080
                }),
                ..
            }
        ));
        // One byte short of the announced total length is rejected.
        assert_eq!(
            classify(&frame[..frame.len() - 1]),
            Err(FrameError::BadIpv4Header)
        );
    }

    #[test]
    fn test_other_ethertype() {
        let mut frame = IPV4_UDP;
        frame[12] = 0x88;
        frame[13] = 0xcc; // LLDP
        assert_eq!(classify(&frame).unwrap().l3, L3Info::Other(0x88cc));
        assert_eq!(classify(&frame[..14]).unwrap().l3, L3Info::Other(0x88cc));
    }

    #[test]
    fn test_802_3_length_is_not_an_ethertype() {
        let mut frame = IPV4_UDP;
        for type_field in [0x0000, 0x002e, 0x05dc, 0x05ff] {
            frame[12..14].copy_from_slice(&u16::to_be_bytes(type_field));
            assert_eq!(classify(&frame), Err(FrameError::NotEthernetII));
        }
        frame[12..14].copy_from_slice(&MIN_ETHERTYPE.to_be_bytes());
        assert_eq!(classify(&frame).unwrap().l3, L3Info::Other(MIN_ETHERTYPE));
        // Behind a VLAN tag, too.
        let mut tagged = frame[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x00, 0x40]);
        tagged.extend_from_slice(&[0; 46]);
        assert_eq!(classify(&tagged), Err(FrameError::NotEthernetII));
    }

    #[test]
    fn test_later_fragment_has_no_ports() {
        let mut frame = IPV4_UDP;
        frame[20] = 0x00;
        frame[21] = 0x10; // fragment offset 16 * 8 bytes
        assert!(matches!(
            classify(&frame).unwrap().l3,
            L3Info::Ipv4 {
                protocol: 17,
                l4: None,
                ..
            }
        ));
        frame[23] = 0x01; // ICMP, offset 0 again
        frame[21] = 0;
        assert!(matches!(
            classify(&frame).unwrap().l3,
            L3Info::Ipv4 { l4: None, .. }
        ));
    }

    #[test]
    fn test_truncated_frames() {
        for len in [0, 1, 13] {
            assert_eq!(
                classify(&IPV4_UDP[..len]),
                Err(FrameError::Truncated),
                "{len}"
            );
        }
        // Cut inside the IPv4 header.
        assert_eq!(classify(&IPV4_UDP[..33]), Err(FrameError::Truncated));
        // Cut inside the IPv4 payload: the total length no longer fits.
        assert_eq!(classify(&IPV4_UDP[..45]), Err(FrameError::BadIpv4Header));
        // Cut inside the ARP packet.
        assert_eq!(classify(&ARP_REQUEST[..41]), Err(FrameError::Truncated));
        assert_eq!(classify(&ARP_REQUEST[..20]), Err(FrameError::Truncated));
        // Cut inside the VLAN tag.
        assert_eq!(classify(&VLAN_IPV6[..16]), Err(FrameError::Truncated));
        // A UDP packet too short to hold its ports.
        let mut tiny = IPV4_UDP;
        tiny[17] = 22; // total length 22: 2 bytes of L4
        assert_eq!(classify(&tiny), Err(FrameError::Truncated));
    }

    #[test]
    fn test_bogus_ipv4() {
        let mut bad_ihl = IPV4_UDP;
        bad_ihl[14] = 0x44;
        assert_eq!(classify(&bad_ihl), Err(FrameError::BadIpv4Header));
        let mut bad_version = IPV4_UDP;
        bad_version[14] = 0x65;
        assert_eq!(classify(&bad_version), Err(FrameError::BadIpv4Header));
        let mut short_total = IPV4_UDP;
        short_total[17] = 19; // below the 20-byte header
        assert_eq!(classify(&short_total), Err(FrameError::BadIpv4Header));
        let mut zero_total = IPV4_UDP;
        zero_total[16] = 0;
        zero_total[17] = 0;
        assert_eq!(classify(&zero_total), Err(FrameError::BadIpv4Header));
        // IHL 15 announces 60 header bytes; the frame has 46 after Ethernet.
        let mut long_ihl = IPV4_UDP;
        long_ihl[14] = 0x4f;
        assert_eq!(classify(&long_ihl), Err(FrameError::Truncated));
    }

    #[test]
    fn test_bogus_arp() {
        let mut ipv6_arp = ARP_REQUEST;
        ipv6_arp[16] = 0x86;
        ipv6_arp[17] = 0xdd;
        assert_eq!(classify(&ipv6_arp), Err(FrameError::BadArp));
        let mut htype = ARP_REQUEST;
        htype[15] = 6;
        assert_eq!(classify(&htype), Err(FrameError::BadArp));
        let mut hlen = ARP_REQUEST;
        hlen[18] = 8;
        assert_eq!(classify(&hlen), Err(FrameError::BadArp));
        let mut huge = ARP_REQUEST;
        huge[18] = 0xff;
        huge[19] = 0xff;
        assert_eq!(classify(&huge), Err(FrameError::BadArp));
    }
}
