//! The outer frames of the AF_XDP underlay: checking a received Ethernet/IPv4/UDP frame
//! and finding the VXLAN datagram in it, and writing a whole frame around a datagram to
//! send (with [`crate::encap::OuterHeaders`]). Sans-IO: byte slices in, ranges out.
//!
//! A received frame must be what the XDP program selected, re-checked here because
//! the user-space side trusts nothing: Ethernet II, IPv4 with a valid header checksum
//! (RFC 791 §3.1) and a total length that fits the frame, not a fragment, UDP to our
//! address and port with a length that fits the IP payload. The UDP checksum is not
//! verified: RFC 7348 §5 lets VXLAN senders use 0, and a Linux sender on a veth leaves
//! a partial checksum (offloaded to a device that never computes it); the inner frame
//! keeps its own checksums, which the receiving pod checks.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::checksum;
use crate::encap::{
    EncapError, OuterHeaders, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, UDP_HEADER_LEN,
};
use crate::VXLAN_HEADER_LEN;

/// Why a received frame was not taken as a VXLAN datagram for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    /// Shorter than its headers say, or not Ethernet/IPv4/UDP.
    #[error("truncated or not Ethernet/IPv4/UDP")]
    Malformed,
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    Checksum,
    /// A fragment, or not addressed to our address and port.
    #[error("not a whole datagram for our VTEP address and VXLAN port")]
    NotOurs,
}

/// Checks a received frame and returns where its UDP payload (the VXLAN datagram) is
/// and the sender's address.
///
/// # Errors
/// A [`BadFrame`] reason.
pub fn parse(
    frame: &[u8],
    local: Ipv4Addr,
    port: u16,
) -> Result<(Range<usize>, Ipv4Addr), BadFrame> {
    let ethertype = frame.get(12..14).ok_or(BadFrame::Malformed)?;
    if ethertype != [0x08, 0x00] {
        return Err(BadFrame::Malformed);
    }
    let ip = frame
        .get(ETHERNET_HEADER_LEN..)
        .ok_or(BadFrame::Malformed)?;
    let version_ihl = *ip.first().ok_or(BadFrame::Malformed)?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_HEADER_LEN {
        return Err(BadFrame::Malformed);
    }
    let header = ip.get(..header_len).ok_or(BadFrame::Malformed)?;
    let total_len = usize::from(be16(header, 2));
    if total_len < header_len + UDP_HEADER_LEN || total_len > ip.len() {
        return Err(BadFrame::Malformed);
    }
    if checksum::checksum(header) != 0 {
        return Err(BadFrame::Checksum);
    }
    if header.get(9) != Some(&17) {
        return Err(BadFrame::Malformed);
    }
    if be16(header, 6) & 0x3fff != 0 {
        return Err(BadFrame::NotOurs);
    }
    let src = ipv4(header, 12);
    if ipv4(header, 16) != local {
        return Err(BadFrame::NotOurs);
    }
    let udp = ip.get(header_len..total_len).ok_or(BadFrame::Malformed)?;
    if be16(udp, 2) != port {
        return Err(BadFrame::NotOurs);
    }
    let udp_len = usize::from(be16(udp, 4));
    if udp_len < UDP_HEADER_LEN || udp_len > udp.len() {
        return Err(BadFrame::Malformed);
    }
    let start = ETHERNET_HEADER_LEN + header_len + UDP_HEADER_LEN;
    Ok((start..start + udp_len - UDP_HEADER_LEN, src))
}

/// Writes a whole frame, `headers` then `datagram` (a VXLAN header and the inner frame,
/// copied as given), into `out` and returns its length.
///
/// # Errors
/// [`EncapError::BufferTooSmall`] when `out` cannot hold it; the errors of
/// [`OuterHeaders::emit`]; [`EncapError::BufferTooSmall`] for a datagram shorter than a
/// VXLAN header.
pub fn build(headers: &OuterHeaders, datagram: &[u8], out: &mut [u8]) -> Result<usize, EncapError> {
    let inner_len =
        datagram
            .len()
            .checked_sub(VXLAN_HEADER_LEN)
            .ok_or(EncapError::BufferTooSmall {
                needed: VXLAN_HEADER_LEN,
                available: datagram.len(),
            })?;
    let prefix = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;
    let len = prefix + datagram.len();
    let available = out.len();
    let frame = out.get_mut(..len).ok_or(EncapError::BufferTooSmall {
        needed: len,
        available,
    })?;
    headers.emit(inner_len, frame)?;
    // The caller's VXLAN header replaces the one emit wrote.
    frame
        .get_mut(prefix..)
        .ok_or(EncapError::BufferTooSmall {
            needed: len,
            available,
        })?
        .copy_from_slice(datagram);
    Ok(len)
}

fn be16(buf: &[u8], at: usize) -> u16 {
    buf.get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, u16::from_be_bytes)
}

fn ipv4(buf: &[u8], at: usize) -> Ipv4Addr {
    buf.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encapsulate;

    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);

    fn headers() -> OuterHeaders {
        OuterHeaders {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: A,
            dst_ip: B,
            src_port: 50000,
            dst_port: 4789,
            ttl: 64,
            vni: 0,
        }
    }

    fn datagram() -> Vec<u8> {
        let inner: Vec<u8> = (0..60u8).collect();
        let mut out = vec![0; 68];
        encapsulate(7, &inner, &mut out).unwrap();
        out
    }

    #[test]
    fn build_then_parse() {
        let datagram = datagram();
        let mut frame = [0u8; 256];
        let len = build(&headers(), &datagram, &mut frame).unwrap();
        assert_eq!(len, 42 + 68);
        let (range, src) = parse(&frame[..len], B, 4789).unwrap();
        assert_eq!(src, A);
        assert_eq!(&frame[range], &datagram[..]);
        // The VNI is the datagram's, not the headers'.
        assert_eq!(crate::decapsulate(7, &datagram).unwrap().len(), 60);
        // Valid by etherparse too.
        let parsed = etherparse::PacketHeaders::from_ethernet_slice(&frame[..len]).unwrap();
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = parsed.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let datagram = datagram();
        let mut frame = [0u8; 256];
        let len = build(&headers(), &datagram, &mut frame).unwrap();
        let (range, _) = parse(&frame[..len + 20], B, 4789).unwrap();
        assert_eq!(range.len(), datagram.len());
    }

    #[test]
    fn rejects_what_is_not_ours() {
        let datagram = datagram();
        let mut frame = [0u8; 256];
        let len = build(&headers(), &datagram, &mut frame).unwrap();
        let good = frame[..len].to_vec();
        assert_eq!(parse(&good, A, 4789), Err(BadFrame::NotOurs));
        assert_eq!(parse(&good, B, 4790), Err(BadFrame::NotOurs));
        let mut bad = good.clone();
        bad[14 + 10] ^= 1;
        assert_eq!(parse(&bad, B, 4789), Err(BadFrame::Checksum));
        for cut in 0..len {
            assert!(parse(&good[..cut], B, 4789).is_err(), "cut at {cut}");
        }
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp, B, 4789), Err(BadFrame::Malformed));
    }

    #[test]
    fn build_errors() {
        let mut frame = [0u8; 100];
        assert!(build(&headers(), &[0; 7], &mut frame).is_err());
        assert_eq!(
            build(&headers(), &datagram(), &mut frame),
            Err(EncapError::BufferTooSmall {
                needed: 110,
                available: 100
            })
        );
    }
}
