//! The whole in-memory frame path per 64-byte frame, as the data-path thread runs it
//! between its system calls, with NetworkPolicy enforced:
//!
//! - `pipeline/tx_64B`: a pod's frame to a pod on another node: classify, port security,
//!   MAC lookup (a remote station behind a VTEP), the policy verdict from the connection
//!   table (an established flow), the outer source port (flow hash) and the VXLAN header
//!   written in place, as `OverlayPort::unicast` does for a frame without offload.
//! - `pipeline/tx_64B_batch32`: the same for 32 frames of 32 flows from 32 pods.
//! - `pipeline/rx_64B`: a datagram from a peer VTEP to a local pod: VXLAN decapsulation
//!   and checks, classify, learning, MAC lookup, the connection-table verdict.
//!
//! Throughput is in packets. The goal is 20 M packets/s per core (50 ns a frame). Time is
//! a fixed `Instant`: the core reads no clock, so neither does the bench.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay::encap::emit_header;
use overlay::{decapsulate, source_port, VXLAN_HEADER_LEN};
use vswitch::mac::MacAddr;
use vswitch::switch::{
    Location, NewFlowPolicy, PortConfig, PortKind, Switch, SwitchConfig, Verdict,
};
use vswitch_benches::udp_frame;

const FRAME_LEN: usize = 64;
const VNI: u32 = 1;
/// The virtio-net header in front of every frame a TAP reads.
const VNET: usize = vswitch::wire::VIRTIO_NET_HDR_LEN;
const OVERLAY_PORT: u16 = 1;
const FLOWS: u8 = 32;
const FIRST_POD: u8 = 2;
const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

/// Every pod is isolated: new flows need a policy verdict, and only UDP to 8080 (what
/// the frames carry) is allowed. Established flows never ask it.
#[derive(Debug)]
struct UdpTo8080Only;

impl NewFlowPolicy for UdpTo8080Only {
    fn allows_egress(&self, _: Ipv4Addr, _: Ipv4Addr, protocol: u8, port: u16) -> bool {
        protocol == 17 && port == 8080
    }
    fn allows_ingress(&self, _: Ipv4Addr, _: Ipv4Addr, protocol: u8, port: u16) -> bool {
        protocol == 17 && port == 8080
    }
    fn enforces(&self) -> bool {
        true
    }
}

fn local_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, n)
}

fn remote_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 2, n)
}

/// Node 1's switch: pods 10.244.1.2..=33 on ports 2..=33, the overlay port, and the
/// pods of node 2 (10.244.2.x) known behind VTEP 192.168.0.2; policy enforced.
fn switch() -> Switch {
    let mut switch = Switch::new(SwitchConfig::default());
    let overlay = PortConfig {
        kind: PortKind::Overlay,
        mac: MacAddr::ZERO,
        ip: None,
        security: false,
    };
    switch.add_port(OVERLAY_PORT, overlay, Arc::default());
    for n in FIRST_POD..FIRST_POD + FLOWS {
        let config = PortConfig {
            kind: PortKind::Pod,
            mac: MacAddr::from_ipv4(local_ip(n)),
            ip: Some(local_ip(n)),
            security: true,
        };
        switch.add_port(u16::from(n), config, Arc::default());
        switch.set_address(local_ip(n), MacAddr::from_ipv4(local_ip(n)));
        let remote = MacAddr::from_ipv4(remote_ip(n));
        switch.set_address(remote_ip(n), remote);
        switch.set_remote_station(remote, REMOTE_VTEP);
    }
    switch.set_policy(Arc::new(UdpTo8080Only));
    switch
}

/// Pod `n`'s 64-byte frame to pod `n` of node 2, behind a virtio-net header's room.
fn outbound(n: u8) -> Vec<u8> {
    let ethernet = udp_frame(
        MacAddr::from_ipv4(remote_ip(n)),
        MacAddr::from_ipv4(local_ip(n)),
        local_ip(n),
        remote_ip(n),
        FRAME_LEN,
    );
    let mut frame = vec![0; VNET];
    frame.extend_from_slice(&ethernet);
    frame
}

/// What the data path does with one frame from a pod; the datagram's outer source port.
fn transmit(
    switch: &mut Switch,
    now: Instant,
    port: u16,
    frame: &mut [u8],
    reply: &mut [u8],
) -> u16 {
    let Some(ethernet) = frame.get(VNET..) else {
        return 0;
    };
    match switch.decide(now, port, ethernet, reply) {
        Verdict::Unicast(Location::Vtep(_)) => {
            let hint = source_port(ethernet);
            let Some(datagram) = frame.get_mut(VNET - VXLAN_HEADER_LEN..) else {
                return 0;
            };
            if emit_header(VNI, datagram).is_err() {
                return 0;
            }
            hint
        }
        _ => 0,
    }
}

fn bench_tx(c: &mut Criterion) {
    let now = Instant::now();
    let mut sw = switch();
    let mut reply = [0u8; 128];
    let mut frames: Vec<(u16, Vec<u8>)> = (FIRST_POD..FIRST_POD + FLOWS)
        .map(|n| (u16::from(n), outbound(n)))
        .collect();
    // Open every flow (policy verdict on a miss), so the bench measures hits.
    for (port, frame) in &mut frames {
        assert_ne!(
            transmit(&mut sw, now, *port, frame, &mut reply),
            0,
            "to the overlay"
        );
    }
    assert_eq!(sw.policy_gate().conntrack().len(), usize::from(FLOWS));

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    let (port, mut frame) = frames.first().cloned().unwrap_or_default();
    group.bench_function("tx_64B", |b| {
        b.iter(|| {
            transmit(
                &mut sw,
                now,
                black_box(port),
                black_box(&mut frame),
                &mut reply,
            )
        })
    });
    group.throughput(Throughput::Elements(u64::from(FLOWS)));
    group.bench_function("tx_64B_batch32", |b| {
        b.iter(|| {
            for (port, frame) in &mut frames {
                black_box(transmit(&mut sw, now, *port, black_box(frame), &mut reply));
            }
        })
    });
    group.finish();
}

fn bench_rx(c: &mut Criterion) {
    let now = Instant::now();
    let mut sw = switch();
    let mut reply = [0u8; 128];
    let n = FIRST_POD;
    // Open the flow from the local pod first; the reply is what comes back.
    let mut out = outbound(n);
    assert_ne!(
        transmit(&mut sw, now, u16::from(n), &mut out, &mut reply),
        0
    );
    let inner = udp_frame(
        MacAddr::from_ipv4(local_ip(n)),
        MacAddr::from_ipv4(remote_ip(n)),
        remote_ip(n),
        local_ip(n),
        FRAME_LEN,
    );
    let mut datagram = vec![0u8; VXLAN_HEADER_LEN + inner.len()];
    assert!(overlay::encapsulate(VNI, &inner, &mut datagram).is_ok());
    let receive = |sw: &mut Switch, datagram: &[u8], reply: &mut [u8]| -> Verdict {
        match decapsulate(VNI, datagram) {
            Ok(inner) => sw.decide_from_vtep(now, OVERLAY_PORT, REMOTE_VTEP, inner, reply),
            Err(_) => Verdict::Flood,
        }
    };
    assert!(matches!(
        receive(&mut sw, &datagram, &mut reply),
        Verdict::Unicast(Location::Port(_))
    ));
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rx_64B", |b| {
        b.iter(|| receive(&mut sw, black_box(&datagram), &mut reply))
    });
    group.finish();
}

criterion_group!(benches, bench_tx, bench_rx);
criterion_main!(benches);
