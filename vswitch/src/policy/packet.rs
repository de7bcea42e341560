//! The flow of one IPv4 packet as connection tracking needs it: addresses, protocol,
//! ports (an ICMP echo's identifier stands in for both), TCP flags, and for an ICMP
//! error the flow of the packet it is about (RFC 792: the error carries that packet's
//! IP header and its first 8 bytes, which hold the ports).
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use super::conntrack::{proto, Flow};
use crate::wire::{FrameInfo, L3Info};

/// ICMP types that carry an error about another packet.
const ICMP_ERRORS: [u8; 4] = [3, 4, 11, 12];
/// ICMP echo reply and echo request.
const ICMP_ECHO: [u8; 2] = [0, 8];

/// One IPv4 packet's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFlow {
    /// The packet's own flow.
    pub flow: Flow,
    /// For an ICMP error: the flow of the packet it reports on, as that packet went.
    pub error_about: Option<Flow>,
}

/// The flow of the IPv4 packet starting at `ip` (its header and what follows), or
/// `None` when it is too short to say (a truncated transport header). Later fragments
/// carry no ports: their flow has ports 0.
#[inline]
pub fn packet_flow(ip: &[u8]) -> Option<PacketFlow> {
    let (src, dst, protocol, l4, first_fragment) = ipv4_parts(ip)?;
    let mut flow = Flow {
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        protocol,
        tcp_flags: 0,
    };
    let mut error_about = None;
    if first_fragment {
        match protocol {
            proto::TCP | proto::UDP | proto::SCTP => {
                flow.src_port = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
                flow.dst_port = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
                if protocol == proto::TCP {
                    flow.tcp_flags = *l4.get(13)?;
                }
            }
            proto::ICMP => {
                let kind = *l4.first()?;
                if ICMP_ECHO.contains(&kind) {
                    let id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
                    flow.src_port = id;
                    flow.dst_port = id;
                } else if ICMP_ERRORS.contains(&kind) {
                    error_about = l4.get(8..).and_then(quoted_flow);
                }
            }
            _ => {}
        }
    }
    Some(PacketFlow { flow, error_about })
}

/// [`packet_flow`] of the IPv4 packet in `frame`, which [`classify`] read as `info`:
/// for a TCP, UDP or SCTP first fragment the flow is built from what `classify` read
/// (addresses, protocol, ports), plus a TCP segment's flags read here, so the switch
/// parses each such frame once; anything else (ICMP, whose errors quote another flow;
/// later fragments; other protocols) goes to [`packet_flow`]. The two agree on every
/// frame `classify` accepts (tested below).
///
/// [`classify`]: crate::wire::classify
#[inline]
pub fn classified_flow(info: &FrameInfo, frame: &[u8]) -> Option<PacketFlow> {
    let L3Info::Ipv4 {
        src,
        dst,
        protocol,
        l4: Some(ports),
    } = info.l3
    else {
        return packet_flow(frame.get(info.l3_offset..).unwrap_or_default());
    };
    let tcp_flags = if protocol == proto::TCP {
        // Byte 13 of the TCP header, within the packet's total length (`classify`
        // checked IHL and total length against the frame): a header cut before it is
        // too short to say.
        let ip = frame.get(info.l3_offset..)?;
        let header_len = usize::from(*ip.first()? & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        let at = header_len + 13;
        if at >= total_len {
            return None;
        }
        *ip.get(at)?
    } else {
        0
    };
    let flow = Flow {
        src,
        dst,
        src_port: ports.src,
        dst_port: ports.dst,
        protocol,
        tcp_flags,
    };
    Some(PacketFlow {
        flow,
        error_about: None,
    })
}

/// The flow of the packet an ICMP error quotes (its IP header and 8 more bytes).
fn quoted_flow(quoted: &[u8]) -> Option<Flow> {
    let (src, dst, protocol, l4, _) = ipv4_parts_lenient(quoted)?;
    let mut flow = Flow {
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        protocol,
        tcp_flags: 0,
    };
    match protocol {
        proto::TCP | proto::UDP | proto::SCTP => {
            flow.src_port = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
            flow.dst_port = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
        }
        proto::ICMP => {
            let id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
            flow.src_port = id;
            flow.dst_port = id;
        }
        _ => {}
    }
    Some(flow)
}

/// Source, destination, protocol, the transport bytes (bounded by the total length) and
/// whether this is a first fragment.
fn ipv4_parts(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8], bool)> {
    let header_len = usize::from(*ip.first()? & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if header_len < 20 || total_len < header_len {
        return None;
    }
    let l4 = ip.get(header_len..total_len)?;
    let fragment_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff;
    Some((
        addr(ip, 12)?,
        addr(ip, 16)?,
        *ip.get(9)?,
        l4,
        fragment_offset == 0,
    ))
}

/// As [`ipv4_parts`], but for a quoted header, whose total length describes the
/// original packet, not the few bytes quoted.
fn ipv4_parts_lenient(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8], bool)> {
    let header_len = usize::from(*ip.first()? & 0x0f) * 4;
    if header_len < 20 {
        return None;
    }
    let l4 = ip.get(header_len..)?;
    Some((addr(ip, 12)?, addr(ip, 16)?, *ip.get(9)?, l4, true))
}

fn addr(ip: &[u8], at: usize) -> Option<Ipv4Addr> {
    let bytes: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).unwrap().to_be_bytes();
        let mut packet = vec![
            0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, protocol, 0, 0, 10, 244, 0, 2, 10, 244,
            1, 3,
        ];
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn tcp_ports_and_flags() {
        let mut tcp = vec![0u8; 20];
        tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
        tcp[13] = 0x02;
        let got = packet_flow(&ipv4(proto::TCP, &tcp)).unwrap();
        assert_eq!(
            (got.flow.src_port, got.flow.dst_port, got.flow.tcp_flags),
            (40000, 80, 0x02)
        );
        assert_eq!(got.flow.src, Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(got.error_about, None);
        // Truncated transport header: no flow.
        assert_eq!(packet_flow(&ipv4(proto::TCP, &tcp[..10])), None);
    }

    #[test]
    fn icmp_echo_uses_its_identifier() {
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let got = packet_flow(&ipv4(proto::ICMP, &echo)).unwrap();
        assert_eq!((got.flow.src_port, got.flow.dst_port), (0x1234, 0x1234));
    }

    #[test]
    fn icmp_error_names_the_flow_it_is_about() {
        let mut udp = vec![0u8; 8];
        udp[..4].copy_from_slice(&[0x13, 0x88, 0x00, 0x35]);
        let original = ipv4(proto::UDP, &udp);
        let mut error = vec![3, 3, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&original[..28]);
        let got = packet_flow(&ipv4(proto::ICMP, &error)).unwrap();
        let about = got.error_about.unwrap();
        assert_eq!(
            (about.protocol, about.src_port, about.dst_port),
            (proto::UDP, 5000, 53)
        );
        assert_eq!(about.dst, Ipv4Addr::new(10, 244, 1, 3));
    }

    /// The switch's one-parse path gives the flow the policy's own parser gives, for
    /// every IPv4 frame `classify` accepts: random headers (options, fragments, total
    /// lengths short and long, cut transport headers, tags) over every protocol whose
    /// path differs.
    #[test]
    fn the_classified_flow_is_the_parsed_flow() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let protocols = [proto::TCP, proto::UDP, proto::SCTP, proto::ICMP, 47];
        let mut compared = [0usize; 5];
        for _ in 0..200_000 {
            let r = next();
            let tagged = r & 1 == 1;
            let ihl = 5 + usize::try_from((r >> 1) % 3).unwrap_or(0) * 5; // 5, 10, 15
            let which = usize::try_from((r >> 3) % 5).unwrap_or(0);
            let transport_len = usize::try_from((r >> 6) % 41).unwrap_or(0);
            let mut frame = vec![0x0a, 0x58, 10, 244, 1, 3, 0x0a, 0x58, 10, 244, 0, 2];
            if tagged {
                frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
            }
            frame.extend_from_slice(&[0x08, 0x00]);
            let l3 = frame.len();
            let header_len = ihl * 4;
            let mut body: Vec<u8> = (0..header_len + transport_len)
                .map(|_| next().to_le_bytes()[0])
                .collect();
            body[0] = 0x40 | u8::try_from(ihl).unwrap_or(5);
            // Mostly the true total length, sometimes shorter (padding follows).
            let total = if next() % 4 == 0 {
                header_len + usize::try_from(next() % 41).unwrap_or(0)
            } else {
                header_len + transport_len
            };
            body[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(0).to_be_bytes());
            // Mostly first fragments (flags DF or MF, offset 0), sometimes later ones.
            if next() % 4 != 0 {
                body[6] &= 0x60;
                body[7] = 0;
            }
            body[9] = protocols[which];
            if body[9] == proto::ICMP && next() % 2 == 0 && transport_len > 0 {
                body[header_len] = 8; // an echo request now and then
            }
            frame.extend_from_slice(&body);
            let Ok(info) = crate::wire::classify(&frame) else {
                continue;
            };
            assert!(matches!(info.l3, L3Info::Ipv4 { .. }));
            assert_eq!(
                classified_flow(&info, &frame),
                packet_flow(&frame[l3..]),
                "{frame:02x?}"
            );
            compared[which] += 1;
        }
        // Every protocol was compared many times.
        assert!(compared.iter().all(|&n| n > 1000), "{compared:?}");
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..40 {
            let bytes = vec![0x4f; len];
            let _ = packet_flow(&bytes);
        }
    }
}
