//! The outer UDP source port of a VXLAN packet, chosen from the inner flow.
//!
//! RFC 7348 §5 recommends that the source port be "a hash of fields from the inner
//! packet" in the dynamic range 49152–65535, so that ECMP and RSS in the underlay spread
//! flows over paths and queues while every packet of one flow takes the same one (no
//! reordering). Linux does the same in `udp_flow_src_port()`.
//!
//! The hash covers the inner Ethernet destination and source, every VLAN tag, the
//! EtherType and, for IPv4 and IPv6, the addresses, the transport protocol and, for TCP,
//! UDP, UDP-Lite and SCTP, the two ports. Ports are left out of fragments (all
//! fragments of a datagram then agree, since only the first one carries them). The hash
//! has no secret seed: every node maps a flow to the same port, which keeps captures
//! and tests reproducible; it is for load spreading, not for anything an attacker could
//! exploit.
//!
//! Invariants: [`source_port`] is total (any bytes, any length, no panic, no allocation)
//! and always returns a port in [`EPHEMERAL_PORTS`].
#![forbid(unsafe_code)]

use core::ops::RangeInclusive;

/// The dynamic (ephemeral) port range of RFC 6335 §6, from which VXLAN source ports
/// are drawn.
pub const EPHEMERAL_PORTS: RangeInclusive<u16> = 49152..=65535;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// At most this many VLAN tags are skipped (802.1ad QinQ has two).
const MAX_VLAN_TAGS: usize = 2;
/// At most this many IPv6 extension headers are walked to reach the transport header.
const MAX_IPV6_EXTENSIONS: usize = 8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_UDPLITE: u8 = 136;

/// The outer UDP source port for a VXLAN packet carrying `inner_frame` (an Ethernet
/// frame): a hash of the inner flow mapped into [`EPHEMERAL_PORTS`]. Frames of one flow
/// always get the same port; a frame too short or too strange to parse still gets a
/// port, from whatever bytes it has.
pub fn source_port(inner_frame: &[u8]) -> u16 {
    let mut hasher = FlowHasher::new();
    hash_frame(inner_frame, &mut hasher);
    let hash = hasher.finish();
    // The range holds 2^14 ports, so the hash's top 14 bits pick one exactly.
    let offset = u16::try_from(hash >> 50).unwrap_or(0);
    EPHEMERAL_PORTS.start() | offset
}

fn hash_frame(frame: &[u8], hasher: &mut FlowHasher) {
    let (Some(head), Some(tail)) = (read_u64(frame, 0), read_u32(frame, 8)) else {
        hasher.write(frame);
        return;
    };
    // The two MACs: destination and the first two source bytes, then the last four
    // source bytes with the EtherType (after the tags), so an untagged frame costs two
    // rounds for its Ethernet header.
    hasher.write_u64(head);
    let mut offset = 12;
    let mut ethertype = read_u16(frame, offset);
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != Some(ETHERTYPE_VLAN) && ethertype != Some(ETHERTYPE_QINQ) {
            break;
        }
        // The tag control information (priority and VLAN id).
        hasher.write_u64(u64::from(read_u16(frame, offset + 2).unwrap_or(0)));
        offset += 4;
        ethertype = read_u16(frame, offset);
    }
    // A frame cut inside its type field hashes as "no EtherType" (bit 16 clear).
    let typed = ethertype.map_or(0, |ethertype| (1 << 16) | u64::from(ethertype));
    hasher.write_u64((u64::from(tail) << 32) | typed);
    let Some(ethertype) = ethertype else { return };
    let l3 = frame.get(offset + 2..).unwrap_or(&[]);
    match ethertype {
        ETHERTYPE_IPV4 => hash_ipv4(l3, hasher),
        ETHERTYPE_IPV6 => hash_ipv6(l3, hasher),
        _ => {}
    }
}

fn hash_ipv4(packet: &[u8], hasher: &mut FlowHasher) {
    let Some(&version_ihl) = packet.first() else {
        return;
    };
    if version_ihl >> 4 != 4 {
        return;
    }
    let (Some(&protocol), Some(addresses)) = (packet.get(9), read_u64(packet, 12)) else {
        return;
    };
    hasher.write_u64(addresses);
    let flags_fragment = read_u16(packet, 6).unwrap_or(0);
    // More-fragments bit or a non-zero offset: a fragment, whose ports (if any) only the
    // first piece carries.
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    let ports = if flags_fragment & 0x3fff == 0 && header_len >= 20 {
        ports(packet, header_len, protocol)
    } else {
        0
    };
    hasher.write_u64((u64::from(protocol) << 40) | ports);
}

fn hash_ipv6(packet: &[u8], hasher: &mut FlowHasher) {
    let Some(&version) = packet.first() else {
        return;
    };
    if version >> 4 != 6 {
        return;
    }
    let (Some(&first_next_header), Some(addresses)) = (packet.get(6), packet.get(8..40)) else {
        return;
    };
    hasher.write(addresses);
    let mut next_header = first_next_header;
    let mut offset = 40;
    let mut fragment = false;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next_header {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let (Some(&next), Some(&len)) = (packet.get(offset), packet.get(offset + 1)) else {
                    return;
                };
                next_header = next;
                offset += (usize::from(len) + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let Some(&next) = packet.get(offset) else {
                    return;
                };
                next_header = next;
                offset += 8;
                fragment = true;
            }
            _ => break,
        }
    }
    let ports = if fragment {
        0
    } else {
        ports(packet, offset, next_header)
    };
    hasher.write_u64((u64::from(next_header) << 40) | ports);
}

/// The transport ports at `offset` in `packet` as one word, bit 32 set when there are
/// any (TCP, UDP, UDP-Lite, SCTP with its four port bytes present), else zero.
fn ports(packet: &[u8], offset: usize, protocol: u8) -> u64 {
    if !matches!(
        protocol,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
    ) {
        return 0;
    }
    read_u32(packet, offset).map_or(0, |ports| (1 << 32) | u64::from(ports))
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let word = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes(word.try_into().ok()?))
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let word = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_be_bytes(word.try_into().ok()?))
}

/// A small non-cryptographic hash: FxHash-style word mixing in two lanes that take
/// words in turn (so two rounds run at once: each round waits only for the one before
/// in its own lane), joined and put through a MurmurHash3 finalizer, so that every
/// input bit reaches the top bits [`source_port`] uses.
struct FlowHasher {
    /// The lane the next word goes to.
    next: u64,
    /// The other lane.
    other: u64,
}

impl FlowHasher {
    const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

    fn new() -> FlowHasher {
        FlowHasher { next: 0, other: 0 }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        let mixed = (self.next.rotate_left(5) ^ word).wrapping_mul(Self::MULTIPLIER);
        self.next = self.other;
        self.other = mixed;
    }

    /// Eight bytes a word, the last one padded with the count of its bytes (used for
    /// frames too short to hold two MACs).
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            if let Ok(word) = <[u8; 8]>::try_from(word) {
                self.write_u64(u64::from_be_bytes(word));
            }
        }
        let remainder = words.remainder();
        if !remainder.is_empty() {
            // The bytes in front, their count in the last byte (always free, as at most
            // seven bytes remain): "ab" and "ab\0" hash apart.
            let mut last = [0u8; 8];
            for (slot, byte) in last.iter_mut().zip(remainder) {
                *slot = *byte;
            }
            last[7] = u8::try_from(remainder.len()).unwrap_or(0);
            self.write_u64(u64::from_be_bytes(last));
        }
    }

    fn finish(&self) -> u64 {
        // One lane is rotated before the join, so the lanes do not commute.
        let mut h = self.next ^ self.other.rotate_left(32);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// An Ethernet + IPv4 + TCP/UDP frame with the given ports and a payload.
    fn ipv4_frame(protocol: u8, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![
            0x0a, 0x58, 10, 244, 1, 2, 0x0a, 0x58, 10, 244, 0, 2, 0x08, 0x00,
        ];
        frame.extend_from_slice(&[
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, protocol, 0, 0, 10, 244, 0, 2, 10, 244, 1, 2,
        ]);
        frame.extend_from_slice(&src_port.to_be_bytes());
        frame.extend_from_slice(&dst_port.to_be_bytes());
        frame.extend_from_slice(&[0u8; 16]);
        frame.extend_from_slice(payload);
        frame
    }

    fn ipv6_frame(src_port: u16, dst_port: u16) -> Vec<u8> {
        let mut frame = vec![
            0x0a, 0x58, 10, 244, 1, 2, 0x0a, 0x58, 10, 244, 0, 2, 0x86, 0xdd,
        ];
        frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, IPPROTO_TCP, 64]);
        frame.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        frame.extend_from_slice(&src_port.to_be_bytes());
        frame.extend_from_slice(&dst_port.to_be_bytes());
        frame.extend_from_slice(&[0u8; 16]);
        frame
    }

    #[test]
    fn same_flow_same_port() {
        // Payload, IP id and TTL differ between packets of a flow; the port does not.
        let a = ipv4_frame(IPPROTO_TCP, 40000, 80, b"GET / HTTP/1.1");
        let mut b = ipv4_frame(IPPROTO_TCP, 40000, 80, b"more data, different length");
        b[18] = 0x99; // IP id
        b[22] = 3; // TTL
        assert_eq!(source_port(&a), source_port(&b));
        assert_eq!(
            source_port(&ipv6_frame(1, 2)),
            source_port(&ipv6_frame(1, 2))
        );
    }

    #[test]
    fn always_in_ephemeral_range() {
        let frames = [
            vec![],
            vec![1, 2, 3],
            vec![0xff; 13],
            vec![0xff; 14],
            ipv4_frame(IPPROTO_UDP, 1, 2, &[]),
            ipv6_frame(3, 4),
            kernel_arp(),
        ];
        for frame in &frames {
            assert!(EPHEMERAL_PORTS.contains(&source_port(frame)));
        }
        // Every truncation of a valid frame is handled.
        let frame = ipv6_frame(5, 6);
        for len in 0..=frame.len() {
            assert!(EPHEMERAL_PORTS.contains(&source_port(&frame[..len])));
        }
    }

    #[test]
    fn different_flows_spread() {
        let mut ports = HashSet::new();
        for client_port in 40000..41000u16 {
            ports.insert(source_port(&ipv4_frame(IPPROTO_TCP, client_port, 443, &[])));
        }
        // 1000 flows into 16384 ports: a uniform hash leaves ~970 distinct values.
        assert!(ports.len() > 900, "only {} distinct ports", ports.len());

        // Both halves of the range are used, evenly enough.
        let high = ports.iter().filter(|&&p| p >= 57344).count();
        assert!(
            (350..650).contains(&high),
            "{high} of {} in the upper half",
            ports.len()
        );
    }

    #[test]
    fn every_field_matters() {
        let base = source_port(&ipv4_frame(IPPROTO_TCP, 1000, 2000, &[]));
        assert_ne!(base, source_port(&ipv4_frame(IPPROTO_UDP, 1000, 2000, &[])));
        assert_ne!(base, source_port(&ipv4_frame(IPPROTO_TCP, 1001, 2000, &[])));
        assert_ne!(base, source_port(&ipv4_frame(IPPROTO_TCP, 1000, 2001, &[])));
        let mut other_ip = ipv4_frame(IPPROTO_TCP, 1000, 2000, &[]);
        other_ip[29] = 3;
        assert_ne!(base, source_port(&other_ip));
        let mut other_mac = ipv4_frame(IPPROTO_TCP, 1000, 2000, &[]);
        other_mac[5] = 9;
        assert_ne!(base, source_port(&other_mac));
        assert_ne!(
            source_port(&ipv6_frame(1, 2)),
            source_port(&ipv6_frame(1, 3))
        );
    }

    #[test]
    fn tags_and_the_type_field_matter() {
        let tagged = |vid: u8| {
            let mut frame = ipv4_frame(IPPROTO_TCP, 1000, 2000, &[]);
            frame.splice(12..12, [0x81, 0x00, 0x00, vid]);
            frame
        };
        let untagged = source_port(&ipv4_frame(IPPROTO_TCP, 1000, 2000, &[]));
        assert_ne!(source_port(&tagged(5)), source_port(&tagged(6)));
        assert_ne!(source_port(&tagged(5)), untagged);
        // The ports still count behind the tag.
        let mut other_port = tagged(5);
        other_port[4 + 14 + 20 + 1] ^= 1;
        assert_ne!(source_port(&other_port), source_port(&tagged(5)));
        // A frame cut inside its type field is not the frame with a zero type.
        let frame = ipv4_frame(IPPROTO_TCP, 1000, 2000, &[]);
        let mut zero_type = frame[..14].to_vec();
        zero_type[12] = 0;
        zero_type[13] = 0;
        assert_ne!(source_port(&frame[..13]), source_port(&zero_type));
    }

    #[test]
    fn fragments_of_one_datagram_agree() {
        // First fragment (MF set, offset 0) and a later one (offset 185): no ports used.
        let mut first = ipv4_frame(IPPROTO_UDP, 5000, 53, &[]);
        first[20] = 0x20;
        let mut later = ipv4_frame(IPPROTO_UDP, 0xdead, 0xbeef, &[]);
        later[20] = 0x00;
        later[21] = 185;
        assert_eq!(source_port(&first), source_port(&later));
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        // Hop-by-hop options (8 bytes) before TCP: the ports still count.
        let with_ext = |src_port: u16| {
            let mut frame = ipv6_frame(src_port, 80);
            frame[14 + 6] = IPPROTO_HOPOPTS;
            let ext = [IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0];
            frame.splice(54..54, ext);
            frame
        };
        assert_ne!(source_port(&with_ext(1)), source_port(&with_ext(2)));
        assert_eq!(source_port(&with_ext(1)), source_port(&with_ext(1)));
    }

    fn kernel_arp() -> Vec<u8> {
        // The inner ARP request from the kernel VXLAN capture (see vxlan.rs).
        vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01,
            0x0a, 0xf4, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0x00, 0x02,
        ]
    }
}
