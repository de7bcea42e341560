//! Fuzz target: the coalescer of the overlay's receive path ([`overlay::Coalescer`]),
//! which parses every frame decapsulated from the underlay.
//!
//! Input: records of one tag byte (the destination port, 0 to 3), a little-endian
//! two-byte length and that many bytes of Ethernet frame; a tag byte with its top bit
//! set drains first; with bit 6 set the frame is offered with `push_with_udp` (UDP
//! merged too), else with `push`. Frames are pushed in order into a coalescer of four
//! frames.
//!
//! `push`, `push_with_udp` and `drain` must never panic. Every frame drained is at most
//! [`overlay::gro::MAX_FRAME`] bytes; one with the `Offload::NONE` header is a frame that
//! was pushed, unchanged; a merged one (`GsoKind::TcpV4` or `UdpL4`) has an IPv4 total
//! length that matches it, a valid IPv4 header checksum, and, once its partial checksum
//! is finished as the pod's kernel would, a valid TCP or UDP checksum (and a UDP length
//! that matches it); a UDP one holds at most `MAX_UDP_DATAGRAMS` datagrams.
#![no_main]

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use overlay::gro::MAX_FRAME;
use overlay::gro::MAX_UDP_DATAGRAMS;
use overlay::{checksum, Coalescer, GsoKind, Offload, Push};

const HEADROOM: usize = 12;

fn check(pushed: &[Vec<u8>], offload: Offload, buf: &mut [u8]) {
    let frame = &mut buf[HEADROOM..];
    assert!(frame.len() <= MAX_FRAME);
    if offload == Offload::NONE {
        assert!(pushed.iter().any(|p| p.starts_with(frame)), "an unmerged frame is one pushed");
        return;
    }
    assert!(matches!(offload.gso, GsoKind::TcpV4 | GsoKind::UdpL4));
    assert!(offload.needs_csum && offload.gso_size > 0);
    let start = usize::from(offload.csum_start);
    let field = start + usize::from(offload.csum_offset);
    let value = checksum::finish(checksum::sum(&frame[start..]));
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    let packet = SlicedPacket::from_ethernet(frame).expect("a merged frame parses");
    let Some(NetSlice::Ipv4(ip)) = packet.net else {
        panic!("a merged frame is IPv4")
    };
    let header = ip.header().to_header();
    assert_eq!(header.header_checksum, header.calc_header_checksum());
    assert_eq!(usize::from(header.total_len), frame.len() - 14);
    match packet.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            assert_eq!(offload.gso, GsoKind::TcpV4);
            let expected = tcp.to_header().calc_checksum_ipv4(&header, tcp.payload()).unwrap();
            assert_eq!(tcp.checksum(), expected);
        }
        Some(TransportSlice::Udp(udp)) => {
            assert_eq!(offload.gso, GsoKind::UdpL4);
            assert_eq!(usize::from(udp.length()), frame.len() - 34);
            let datagrams = udp.payload().len().div_ceil(usize::from(offload.gso_size));
            assert!(datagrams >= 2 && datagrams <= usize::from(MAX_UDP_DATAGRAMS));
            let expected = udp.to_header().calc_checksum_ipv4(&header, udp.payload()).unwrap();
            // A computed zero is sent as 0xFFFF (RFC 768); the kernel writes it so too.
            assert!(udp.checksum() == expected || (udp.checksum() == 0 && expected == 0xFFFF));
        }
        _ => panic!("a merged frame is TCP or UDP"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut coalescer = Coalescer::new(4, HEADROOM);
    let mut pushed: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let tag = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let frame = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        if tag & 0x80 != 0 {
            coalescer.drain(|_, offload, buf| check(&pushed, offload, buf));
            pushed.clear();
        }
        let udp = tag & 0x40 != 0;
        let tag = u16::from(tag & 3);
        let push = |coalescer: &mut Coalescer| {
            if udp {
                coalescer.push_with_udp(tag, frame)
            } else {
                coalescer.push(tag, frame)
            }
        };
        match push(&mut coalescer) {
            Push::Full => {
                coalescer.drain(|_, offload, buf| check(&pushed, offload, buf));
                pushed.clear();
                assert_ne!(push(&mut coalescer), Push::Full, "room after a drain");
            }
            Push::Merged | Push::Held | Push::NotTaken => {}
        }
        pushed.push(frame.to_vec());
    }
    coalescer.drain(|_, offload, buf| check(&pushed, offload, buf));
});
