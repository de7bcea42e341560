//! The XDP program on the real kernel verifier and interpreter/JIT, with
//! `BPF_PROG_TEST_RUN`: no device or socket is needed, only `CAP_BPF` (root in CI).
//!
//! With no socket in the XSKMAP, `bpf_redirect_map` returns the program's miss verdict;
//! the tests load the program with `XDP_DROP` there, so "dropped" means "took the
//! redirect branch" and `XDP_PASS` means "left to the kernel".

use super::program::{classifier, XDP_DROP, XDP_PASS};
use super::*;
use crate::underlay::Received;

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

// --- The batch paths on real sockets: two underlays on the ends of a veth pair in a
// namespace of the test's own thread (gone when the thread ends).

const LEFT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const RIGHT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn ip(args: &str) {
    let status = std::process::Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip runs");
    assert!(status.success(), "ip {args}");
}

/// A network namespace made with `ip netns add`, deleted on drop (also when the test
/// fails).
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        ip(&format!("netns add {name}"));
        let netns = Netns(name);
        netns.ip("link set lo up");
        netns
    }

    fn ip(&self, args: &str) {
        ip(&format!("-n {} {args}", self.0));
    }

    /// Opens an AF_XDP underlay on `dev` from a thread inside the namespace.
    fn afxdp(&self, dev: &'static str, local: Ipv4Addr) -> AfxdpUnderlay {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::spawn(move || {
            sys::enter_netns(&path).expect("entering the namespace");
            AfxdpUnderlay::open(dev, local, PORT).expect("AF_XDP on the veth")
        })
        .join()
        .expect("the opening thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Runs `test` with an AF_XDP underlay on each end of a veth pair: `left` (LEFT) and
/// `right` (RIGHT), each in a namespace of its own.
fn on_a_veth_pair(test: impl FnOnce(&AfxdpUnderlay, &AfxdpUnderlay)) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("vsw-xsk-{}-{n}", std::process::id());
    let left_ns = Netns::new(format!("{name}-l"));
    let right_ns = Netns::new(format!("{name}-r"));
    left_ns.ip(&format!(
        "link add left type veth peer name right netns {}",
        right_ns.0
    ));
    left_ns.ip(&format!("addr add {LEFT}/24 dev left"));
    right_ns.ip(&format!("addr add {RIGHT}/24 dev right"));
    left_ns.ip("link set left up");
    right_ns.ip("link set right up");
    let left = left_ns.afxdp("left", LEFT);
    let right = right_ns.afxdp("right", RIGHT);
    test(&left, &right);
}

/// Sends one datagram until the next hop of `dst` is resolved.
fn resolve(from: &AfxdpUnderlay, dst: Ipv4Addr) {
    from.resolve_ahead([dst]);
    for _ in 0..200 {
        if from.next_hop(dst).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("next hop of {dst} never resolved");
}

/// `count` VXLAN datagrams of `len` bytes, numbered in their last two bytes.
fn datagrams(count: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        let mut datagram = vec![0u8; 8 + len - 8];
        crate::encapsulate(7, &[0x5a; 64][..len - 8], &mut datagram).unwrap();
        datagram[len - 2..].copy_from_slice(&u16::try_from(i).unwrap().to_be_bytes());
        out.extend_from_slice(&datagram);
    }
    out
}

/// Receives until `want` datagrams came or a second passed; also says how many blocks
/// they came in.
fn receive_all(on: &AfxdpUnderlay, want: usize, slot: usize) -> (Vec<(Vec<u8>, Ipv4Addr)>, usize) {
    let mut got = Vec::new();
    let mut block_count = 0;
    let mut buf = vec![0u8; 16 * slot];
    let mut blocks = [Received::EMPTY; 16];
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while got.len() < want && std::time::Instant::now() < deadline {
        let filled = on.recv_segments(&mut buf, slot, &mut blocks).unwrap();
        assert!(filled <= blocks.len());
        for (i, block) in blocks.iter().take(filled).enumerate() {
            assert!(block.len <= slot && block.segment_len > 0);
            block_count += 1;
            for datagram in buf[i * slot..i * slot + block.len].chunks(block.segment_len) {
                got.push((datagram.to_vec(), block.src));
            }
        }
        if filled == 0 {
            on.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    (got, block_count)
}

#[test]
fn a_batch_goes_out_in_order_and_comes_in_by_blocks() {
    on_a_veth_pair(|left, right| {
        resolve(left, RIGHT);
        let len = 60;
        let sent = datagrams(100, len);
        // The last one shorter, as in a GSO layout.
        let sent = &sent[..sent.len() - 10];
        let report = left.send_segments(sent, len, RIGHT, 49152);
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(report.sent, 100);
        let (got, blocks) = receive_all(right, 100, 4096);
        assert_eq!(got.len(), 100);
        // Datagrams of one length from one VTEP share blocks, as with UDP GRO.
        assert!(blocks < 100, "{blocks} blocks for 100 datagrams");
        for ((datagram, src), expected) in got.iter().zip(sent.chunks(len)) {
            assert_eq!(*src, LEFT);
            assert_eq!(datagram, expected);
        }
        assert_eq!(right.counters().rx_bad_frames, 0);
    });
}

#[test]
fn a_datagram_longer_than_the_slot_is_truncated_and_deferred_sends_wait_for_flush() {
    on_a_veth_pair(|left, right| {
        resolve(left, RIGHT);
        left.defer_wakeups();
        let sent = datagrams(3, 60);
        let report = left.send_segments(&sent, 60, RIGHT, 1);
        assert_eq!((report.sent, report.error.is_none()), (3, true));
        left.send(&sent[..60], RIGHT, 2).unwrap();
        // Copy mode sends only on a wake-up: nothing left yet.
        if !left.mode().zero_copy {
            let mut buf = [0u8; 128];
            let mut blocks = [Received::EMPTY; 4];
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(right.recv_segments(&mut buf, 32, &mut blocks).unwrap(), 0);
        }
        left.flush();
        let (got, _) = receive_all(right, 4, 32);
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|(datagram, _)| datagram.len() == 32));
        assert_eq!(got[0].0, sent[..32]);
    });
}

#[test]
fn a_batch_to_an_unresolved_next_hop_is_refused_and_counted_whole() {
    on_a_veth_pair(|left, _right| {
        let sent = datagrams(5, 60);
        let unknown = Ipv4Addr::new(10, 99, 0, 77);
        let report = left.send_segments(&sent, 60, unknown, 1);
        assert_eq!(report.sent, 0);
        assert_eq!(
            report.error.map(|e| e.kind()),
            Some(io::ErrorKind::HostUnreachable)
        );
        assert_eq!(left.counters().tx_no_neighbour, 5);
        let report = left.send_segments(&sent, 0, unknown, 1);
        assert_eq!(
            report.error.map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
    });
}

#[test]
fn a_batch_larger_than_the_send_frames_reports_what_went() {
    on_a_veth_pair(|left, right| {
        resolve(left, RIGHT);
        // More datagrams than a socket has send frames: the batch waits for the kernel
        // to complete some, or stops with WouldBlock; either way `sent` says how many
        // left, and no more than that arrive.
        let count = 3000;
        let sent = datagrams(count, 60);
        let report = left.send_segments(&sent, 60, RIGHT, 1);
        match &report.error {
            None => assert_eq!(report.sent, count),
            Some(e) => {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                assert!(report.sent < count);
            }
        }
        assert!(report.sent >= 1024, "sent only {}", report.sent);
        let (got, _) = receive_all(right, report.sent, 128);
        assert!(got.len() <= report.sent);
        // The receiver keeps up only with part of one burst (veth's ring and the
        // socket's RX ring are smaller): what came is what was sent, in order.
        for (datagram, _) in &got {
            let n = usize::from(u16::from_be_bytes([datagram[58], datagram[59]]));
            assert!(
                n < report.sent,
                "datagram {n} came but was not reported sent"
            );
            assert_eq!(datagram[..], sent[n * 60..(n + 1) * 60]);
        }
    });
}
