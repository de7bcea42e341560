//! The XDP program on the real kernel verifier and interpreter/JIT, with
//! `BPF_PROG_TEST_RUN`: no device or socket is needed, only `CAP_BPF` (root in CI).
//!
//! With no socket in the XSKMAP, `bpf_redirect_map` returns the program's miss verdict;
//! the tests load the program with `XDP_DROP` there, so "dropped" means "took the
//! redirect branch" and `XDP_PASS` means "left to the kernel".

use super::program::{classifier, XDP_DROP, XDP_PASS};
use super::*;

const VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 1);
const PORT: u16 = 4789;
/// The underlay device's MAC.
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

struct Loaded {
    _map: OwnedFd,
    program: OwnedFd,
}

fn load(on_miss: i32) -> Loaded {
    let map = sys::xskmap_create(4).expect("XSKMAP (needs root/CAP_BPF)");
    let program = sys::xdp_prog_load(
        &classifier(MAC, VTEP, PORT, map.as_raw_fd(), on_miss),
        "vswitch_test",
    )
    .expect("the verifier accepts the program");
    Loaded { _map: map, program }
}

fn run(loaded: &Loaded, frame: &[u8]) -> i32 {
    i32::try_from(sys::xdp_test_run(&loaded.program, frame).unwrap()).unwrap()
}

/// A VXLAN frame from PEER to `dst`:`port`.
fn vxlan_frame(dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let headers = OuterHeaders {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: MAC,
        src_ip: PEER,
        dst_ip: dst,
        src_port: 49152,
        dst_port: port,
        ttl: 64,
        vni: 1,
    };
    let mut datagram = vec![0u8; 8 + 60];
    crate::encapsulate(1, &[0xaa; 60], &mut datagram).unwrap();
    let mut out = vec![0u8; 200];
    let len = frame::build(&headers, &datagram, &mut out).unwrap();
    out.truncate(len);
    out
}

/// Rewrites the IPv4 checksum after a test changed the header (the program does not
/// look at it, but the frame should stay otherwise valid).
fn fix_checksum(frame: &mut [u8]) {
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = crate::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn our_vxlan_is_redirected() {
    let loaded = load(XDP_DROP);
    assert_eq!(run(&loaded, &vxlan_frame(VTEP, PORT)), XDP_DROP);
}

#[test]
fn on_a_node_a_queue_without_socket_passes() {
    let loaded = load(XDP_PASS);
    assert_eq!(run(&loaded, &vxlan_frame(VTEP, PORT)), XDP_PASS);
}

#[test]
fn everything_else_passes_to_the_kernel() {
    let loaded = load(XDP_DROP);
    let ours = vxlan_frame(VTEP, PORT);

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("another address", vxlan_frame(PEER, PORT)),
        ("another port", vxlan_frame(VTEP, 8472)),
        ("too short for the headers", ours[..41].to_vec()),
        ("just the Ethernet header", ours[..14].to_vec()),
    ];
    for byte in 0..6 {
        let mut other_host = ours.clone();
        other_host[byte] ^= 0x10;
        cases.push(("addressed to another MAC", other_host));
    }
    let mut broadcast = ours.clone();
    broadcast[..6].copy_from_slice(&[0xff; 6]);
    cases.push(("broadcast", broadcast));
    let mut arp = ours.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    cases.push(("ARP", arp));
    let mut ipv6 = ours.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    cases.push(("IPv6 ethertype", ipv6));
    let mut tcp = ours.clone();
    tcp[23] = 6;
    fix_checksum(&mut tcp);
    cases.push(("TCP to the VXLAN port", tcp));
    let mut first_fragment = ours.clone();
    first_fragment[20] |= 0x20; // MF
    fix_checksum(&mut first_fragment);
    cases.push(("first fragment", first_fragment));
    let mut later_fragment = ours.clone();
    later_fragment[21] = 0x10; // offset 16 * 8
    fix_checksum(&mut later_fragment);
    cases.push(("later fragment", later_fragment));
    let mut options = ours.clone();
    options[14] = 0x46;
    cases.push(("IP options", options));
    let mut vlan = ours[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&ours[12..]);
    cases.push(("VLAN-tagged", vlan));

    for (what, frame) in &cases {
        assert_eq!(run(&loaded, frame), XDP_PASS, "{what}");
    }
    // DF set (what we send) is no fragment.
    assert_eq!(ours[20] & 0x40, 0x40);
    assert_eq!(run(&loaded, &ours), XDP_DROP);
}

#[test]
fn the_vtep_address_is_compared_whole() {
    // Addresses differing in each octet in turn.
    let loaded = load(XDP_DROP);
    for octet in 0..4 {
        let mut octets = VTEP.octets();
        octets[octet] ^= 0x80;
        assert_eq!(
            run(&loaded, &vxlan_frame(Ipv4Addr::from(octets), PORT)),
            XDP_PASS,
            "octet {octet}"
        );
    }
}

#[test]
fn mode_reads_as_show_prints_it() {
    let mode = AfxdpMode {
        native: true,
        zero_copy: false,
        queues: 1,
    };
    assert_eq!(mode.to_string(), "native, copy, 1 queue");
    let mode = AfxdpMode {
        native: false,
        zero_copy: true,
        queues: 4,
    };
    assert_eq!(mode.to_string(), "generic, zero-copy, 4 queues");
}

#[test]
fn a_refused_program_says_why() {
    // r2 = ctx->data; r0 = *(u8 *)r2 without checking data_end; exit.
    let unchecked = [
        sys::BpfInsn {
            code: 0x61,
            regs: 0x12,
            off: 0,
            imm: 0,
        },
        sys::BpfInsn {
            code: 0x71,
            regs: 0x20,
            off: 0,
            imm: 0,
        },
        sys::BpfInsn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let error = sys::xdp_prog_load(&unchecked, "vswitch_bad").unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("verifier:") && message.contains("packet"),
        "{message}"
    );
}
