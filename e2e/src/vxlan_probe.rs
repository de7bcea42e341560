//! Hand-made VXLAN datagrams (RFC 7348), sent from a namespace with a plain UDP socket,
//! and the replies that come back: for checking what the overlay accepts and drops.
//!
//! The builders write exactly the bytes asked for, wrong ones included (another VNI, no
//! I flag, a truncated header), so tests can probe the receive checks.
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::cmd::run_timeout;
use crate::netns::Netns;

/// VXLAN's I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;
/// EtherType IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// `"0a:58:0a:f4:01:02"` → its six bytes.
///
/// # Panics
/// When the text is no MAC.
pub fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("not a MAC: {text:?}")))
        .collect();
    <[u8; 6]>::try_from(bytes).unwrap_or_else(|_| panic!("not a MAC: {text:?}"))
}

/// Six bytes → `"0a:58:..."` (lower case).
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An 8-byte VXLAN header: `flags`, 24 reserved bits, the 24-bit `vni`, 8 reserved bits.
pub fn vxlan_header(flags: u8, vni: u32) -> [u8; 8] {
    let [_, v0, v1, v2] = vni.to_be_bytes();
    [flags, 0, 0, 0, v0, v1, v2, 0]
}

/// A well-formed VXLAN datagram (I flag set) carrying `inner`.
pub fn vxlan_datagram(vni: u32, inner: &[u8]) -> Vec<u8> {
    vxlan_datagram_with_flags(FLAG_I, vni, inner)
}

/// A VXLAN datagram with the given flags byte, carrying `inner`.
pub fn vxlan_datagram_with_flags(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut datagram = vxlan_header(flags, vni).to_vec();
    datagram.extend_from_slice(inner);
    datagram
}

/// An Ethernet header.
fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => u32::from(u16::from_be_bytes([*hi, *lo])),
            [hi] => u32::from(u16::from_be_bytes([*hi, 0])),
            _ => 0,
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// A broadcast ARP request (Ethernet frame) from `sender_mac`/`sender_ip` for `target_ip`.
pub fn arp_request(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet([0xff; 6], sender_mac, ETHERTYPE_ARP);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target_ip.octets());
    frame
}

/// An ICMP echo request (Ethernet frame, IPv4, DF) with identifier `id`, sequence `seq`
/// and `payload`.
pub fn icmp_echo(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let csum = internet_checksum(&icmp).to_be_bytes();
    if let Some(field) = icmp.get_mut(2..4) {
        field.copy_from_slice(&csum);
    }
    let total = u16::try_from(20 + icmp.len()).expect("ICMP payload too large");
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    let csum = internet_checksum(&ip).to_be_bytes();
    if let Some(field) = ip.get_mut(10..12) {
        field.copy_from_slice(&csum);
    }
    let mut frame = ethernet(dst_mac, src_mac, ETHERTYPE_IPV4);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&icmp);
    frame
}

/// An ARP packet read out of an Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arp {
    /// The Ethernet source.
    pub eth_src: String,
    /// The Ethernet destination.
    pub eth_dst: String,
    /// 1 request, 2 reply.
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: String,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: String,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// Reads an Ethernet/IPv4 ARP packet, if `frame` is one.
pub fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype != ETHERTYPE_ARP {
        return None;
    }
    let arp = frame.get(14..42)?;
    if arp.get(..6)? != [0, 1, 0x08, 0, 6, 4] {
        return None;
    }
    let ip = |at: usize| -> Option<Ipv4Addr> {
        let b = arp.get(at..at + 4)?;
        Some(Ipv4Addr::new(
            *b.first()?,
            *b.get(1)?,
            *b.get(2)?,
            *b.get(3)?,
        ))
    };
    Some(Arp {
        eth_dst: format_mac(frame.get(..6)?),
        eth_src: format_mac(frame.get(6..12)?),
        op: u16::from_be_bytes([*arp.get(6)?, *arp.get(7)?]),
        sender_mac: format_mac(arp.get(8..14)?),
        sender_ip: ip(14)?,
        target_mac: format_mac(arp.get(18..24)?),
        target_ip: ip(24)?,
    })
}

/// A datagram a probe received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Who sent it.
    pub from: SocketAddrV4,
    /// Its UDP payload.
    pub payload: Vec<u8>,
}

impl Received {
    /// The VXLAN flags byte, VNI, and inner frame, if the payload is long enough.
    pub fn vxlan(&self) -> Option<(u8, u32, &[u8])> {
        let header = self.payload.get(..8)?;
        let vni = u32::from_be_bytes([0, *header.get(4)?, *header.get(5)?, *header.get(6)?]);
        Some((*header.first()?, vni, self.payload.get(8..)?))
    }
}

/// Sends the datagrams, then prints what arrives until the listening time is over.
const PROBE: &str = r"
import socket, sys, time
bind_ip, bind_port, dst_ip, dst_port, listen = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((bind_ip, bind_port))
for h in sys.argv[6:]:
    s.sendto(bytes.fromhex(h), (dst_ip, dst_port))
    time.sleep(0.02)
deadline = time.time() + listen
while True:
    left = deadline - time.time()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        d, a = s.recvfrom(65535)
    except socket.timeout:
        break
    print(a[0], a[1], d.hex(), flush=True)
";

/// From inside `ns`, binds a UDP socket to `bind`, sends each of `datagrams` to `to`
/// (20 ms apart), then listens for `listen` and returns every datagram that arrived.
///
/// # Panics
/// When the script fails (e.g. the address is not in `ns`) or hangs.
pub fn send_datagrams(
    ns: &Netns,
    bind: SocketAddrV4,
    to: SocketAddrV4,
    datagrams: &[Vec<u8>],
    listen: Duration,
) -> Vec<Received> {
    let mut cmd = ns.command("python3");
    cmd.args([
        "-c",
        PROBE,
        &bind.ip().to_string(),
        &bind.port().to_string(),
        &to.ip().to_string(),
        &to.port().to_string(),
        &listen.as_secs_f64().to_string(),
    ]);
    for datagram in datagrams {
        cmd.arg(hex(datagram));
    }
    let done = run_timeout(&mut cmd, None, listen + Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("VXLAN probe in {}: {e}", ns.name()));
    assert!(
        done.success(),
        "VXLAN probe in {} from {bind} to {to} failed ({}): {}",
        ns.name(),
        done.status,
        done.stderr
    );
    done.stdout
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let ip: Ipv4Addr = parts.next()?.parse().ok()?;
            let port: u16 = parts.next()?.parse().ok()?;
            let payload = unhex(parts.next().unwrap_or_default())?;
            Some(Received {
                from: SocketAddrV4::new(ip, port),
                payload,
            })
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_parsers() {
        assert_eq!(vxlan_header(FLAG_I, 1), [8, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(
            vxlan_header(0, 0x0a_bcde),
            [0, 0, 0, 0, 0x0a, 0xbc, 0xde, 0]
        );
        let mac = parse_mac("0a:58:0a:f4:01:02");
        assert_eq!(format_mac(&mac), "0a:58:0a:f4:01:02");
        let req = arp_request(
            mac,
            Ipv4Addr::new(10, 244, 1, 2),
            Ipv4Addr::new(10, 244, 1, 3),
        );
        assert_eq!(req.len(), 42);
        let arp = parse_arp(&req).unwrap();
        assert_eq!(arp.op, 1);
        assert_eq!(arp.eth_dst, "ff:ff:ff:ff:ff:ff");
        assert_eq!(arp.sender_mac, "0a:58:0a:f4:01:02");
        assert_eq!(arp.target_ip, Ipv4Addr::new(10, 244, 1, 3));
        let echo = icmp_echo(
            mac,
            mac,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            7,
            1,
            b"hi",
        );
        // A correct checksum sums to zero over the whole header.
        assert_eq!(internet_checksum(&echo[14..34]), 0);
        assert_eq!(internet_checksum(&echo[34..]), 0);
        assert_eq!(unhex(&hex(&echo)).unwrap(), echo);
    }
}
