//! Shared helpers of the benchmarks: frame builders that write real, well-formed
//! Ethernet frames (valid IPv4 header checksums, correct lengths) without any parsing
//! library, so that what a bench measures is the code under test and not its setup.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use vswitch::mac::MacAddr;

/// Length of an Ethernet header without VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// The smallest frame [`udp_frame`] builds: headers and no payload.
pub const MIN_UDP_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;

/// The address of the `n`th pod of node block 10.244.1.0/24 (`n` from 0 to 255).
pub fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, n)
}

/// The MAC vswitch derives for [`pod_ip`]`(n)`.
pub fn pod_mac(n: u8) -> MacAddr {
    MacAddr::from_ipv4(pod_ip(n))
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| match *pair {
            [hi, lo] => u32::from(u16::from_be_bytes([hi, lo])),
            [hi] => u32::from(u16::from_be_bytes([hi, 0])),
            _ => 0,
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// An Ethernet + IPv4 + UDP frame from `src` to `dst`, port 40000 to 8080, exactly
/// `frame_len` bytes long (at least [`MIN_UDP_FRAME_LEN`]; shorter requests give that),
/// with a zero-filled payload, a valid IPv4 header checksum and no UDP checksum.
pub fn udp_frame(
    dst: MacAddr,
    src: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    frame_len: usize,
) -> Vec<u8> {
    let frame_len = frame_len.clamp(MIN_UDP_FRAME_LEN, ETHERNET_HEADER_LEN + 65535);
    let ip_len = u16::try_from(frame_len - ETHERNET_HEADER_LEN).unwrap_or(u16::MAX);
    let udp_len = ip_len.saturating_sub(20); // what follows the 20-byte IPv4 header

    let mut frame = Vec::with_capacity(frame_len);
    push_ethernet_ipv4(&mut frame, [dst, src], [src_ip, dst_ip], ip_len, 17);

    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&8080u16.to_be_bytes());
    frame.extend_from_slice(&udp_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.resize(frame_len, 0);
    frame
}

/// Appends an Ethernet header (`[dst, src]`, IPv4) and a 20-byte IPv4 header
/// (`[src, dst]` addresses, total length `ip_len`, id 1, DF, TTL 64, `protocol`) with a
/// valid header checksum to `frame`.
fn push_ethernet_ipv4(
    frame: &mut Vec<u8>,
    [dst, src]: [MacAddr; 2],
    [src_ip, dst_ip]: [Ipv4Addr; 2],
    ip_len: u16,
    protocol: u8,
) {
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let [l0, l1] = ip_len.to_be_bytes();
    let [s0, s1, s2, s3] = src_ip.octets();
    let [d0, d1, d2, d3] = dst_ip.octets();
    // Version 4, IHL 5; id 1, DF; TTL 64; checksum filled in below.
    let mut ip: [u8; IPV4_HEADER_LEN] = [
        0x45, 0, l0, l1, 0, 1, 0x40, 0, 64, protocol, 0, 0, s0, s1, s2, s3, d0, d1, d2, d3,
    ];
    let [c0, c1] = internet_checksum(&ip).to_be_bytes();
    if let Some(checksum) = ip.get_mut(10..12) {
        checksum.copy_from_slice(&[c0, c1]);
    }
    frame.extend_from_slice(&ip);
}

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;

/// An Ethernet + IPv4 + TCP segment (ACK, no options) of pod `src` to pod `dst`, port
/// 40000 to 5201, sequence number `seq`, with `payload` bytes (byte `i` is
/// `(seq + i) as u8`), a valid IPv4 header checksum and a valid TCP checksum. A payload
/// above one MSS makes it the TSO super-frame a pod's kernel hands its TAP (with the
/// checksum already complete, which segmentation ignores).
pub fn tcp_frame(
    dst: MacAddr,
    src: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    seq: u32,
    payload: usize,
) -> Vec<u8> {
    let ip_len = u16::try_from(IPV4_HEADER_LEN + TCP_HEADER_LEN + payload).unwrap_or(u16::MAX);
    let tcp_len = ip_len.saturating_sub(20);
    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LEN + usize::from(ip_len));
    push_ethernet_ipv4(&mut frame, [dst, src], [src_ip, dst_ip], ip_len, 6);
    let tcp_start = frame.len();
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&5201u16.to_be_bytes());
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.extend_from_slice(&1u32.to_be_bytes()); // ack
    frame.extend_from_slice(&[0x50, 0x10]); // data offset 5, ACK
    frame.extend_from_slice(&512u16.to_be_bytes()); // window
    frame.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    frame.extend((0..payload).map(|i| {
        seq.wrapping_add(u32::try_from(i).unwrap_or(0))
            .to_le_bytes()[0]
    }));
    let mut pseudo = Vec::with_capacity(12 + usize::from(tcp_len));
    pseudo.extend_from_slice(&src_ip.octets());
    pseudo.extend_from_slice(&dst_ip.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
    pseudo.extend_from_slice(frame.get(tcp_start..).unwrap_or_default());
    let [t0, t1] = internet_checksum(&pseudo).to_be_bytes();
    if let Some(checksum) = frame.get_mut(tcp_start + 16..tcp_start + 18) {
        checksum.copy_from_slice(&[t0, t1]);
    }
    frame
}

/// A broadcast ARP request from `src` (holding `sender_ip`) for `target_ip`, padded to the
/// 60-byte Ethernet minimum.
pub fn arp_request_frame(src: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&MacAddr::BROADCAST.octets());
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&0x0806u16.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target_ip.octets());
    frame.resize(60, 0);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_is_well_formed() {
        let frame = udp_frame(pod_mac(2), pod_mac(1), pod_ip(1), pod_ip(2), 64);
        assert_eq!(frame.len(), 64);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 50);
        // A header with its checksum in sums to zero.
        assert_eq!(internet_checksum(&frame[14..34]), 0);
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 30);
    }

    #[test]
    fn tcp_frame_is_well_formed() {
        let frame = tcp_frame(pod_mac(2), pod_mac(1), pod_ip(1), pod_ip(2), 7, 1001);
        assert_eq!(frame.len(), 14 + 20 + 20 + 1001);
        assert_eq!(internet_checksum(&frame[14..34]), 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&frame[26..34]);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&u16::try_from(20 + 1001).unwrap().to_be_bytes());
        pseudo.extend_from_slice(&frame[34..]);
        assert_eq!(internet_checksum(&pseudo), 0, "the TCP checksum verifies");
        assert_eq!(frame[54], 7);
    }

    #[test]
    fn arp_request_is_well_formed() {
        let frame = arp_request_frame(pod_mac(1), pod_ip(1), pod_ip(2));
        assert_eq!(frame.len(), 60);
        assert_eq!(&frame[..6], &[0xff; 6]);
        assert_eq!(&frame[38..42], &[10, 244, 1, 2]);
    }
}
