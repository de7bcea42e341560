//! Per-frame cost of the switch core: `decide` for a known unicast destination (one frame,
//! and a batch of 32 frames from 32 pods), `decide` answering an ARP request, and
//! `classify` alone. Frames are 64 bytes. Time is a fixed `Instant`: the core reads no
//! clock, so neither does the bench.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vswitch::switch::{PortConfig, PortKind, Switch, SwitchConfig, Verdict};
use vswitch::wire::classify;
use vswitch_benches::{arp_request_frame, pod_ip, pod_mac, udp_frame};

const FRAME_LEN: usize = 64;
const BATCH: u8 = 32;
/// Pods sit on ports (and addresses) 2..=33; the host port is 0 with address .1.
const FIRST_POD: u8 = 2;
/// Port of the pod the unicast frames go to.
const SINK: u16 = 100;

/// A switch with `BATCH` secured pods, the sink pod on port 100, and a host port; every
/// pod's address is known.
fn switch() -> Switch {
    let mut switch = Switch::new(SwitchConfig::default());
    for n in pods() {
        let config = PortConfig {
            kind: PortKind::Pod,
            mac: pod_mac(n),
            ip: Some(pod_ip(n)),
            security: true,
        };
        switch.add_port(u16::from(n), config, Arc::default());
        switch.set_address(pod_ip(n), pod_mac(n));
    }
    let sink = PortConfig {
        kind: PortKind::Pod,
        mac: pod_mac(200),
        ip: Some(pod_ip(200)),
        security: true,
    };
    switch.add_port(SINK, sink, Arc::default());
    switch.set_address(pod_ip(200), pod_mac(200));
    let host = PortConfig {
        kind: PortKind::Host,
        mac: pod_mac(1),
        ip: Some(pod_ip(1)),
        security: false,
    };
    switch.add_port(0, host, Arc::default());
    switch
}

fn pods() -> impl Iterator<Item = u8> {
    FIRST_POD..FIRST_POD + BATCH
}

fn to_sink(n: u8) -> Vec<u8> {
    udp_frame(pod_mac(200), pod_mac(n), pod_ip(n), pod_ip(200), FRAME_LEN)
}

fn bench_decide(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("decide");

    let mut sw = switch();
    let pod = u16::from(FIRST_POD);
    let frame = to_sink(FIRST_POD);
    let mut reply = [0u8; 64];
    assert!(matches!(
        sw.decide(now, pod, &frame, &mut reply),
        Verdict::Unicast(_)
    ));
    group.throughput(Throughput::Elements(1));
    group.bench_function("unicast_64B", |b| {
        b.iter(|| sw.decide(now, black_box(pod), black_box(&frame), &mut reply))
    });

    let frames: Vec<(u16, Vec<u8>)> = pods().map(|n| (u16::from(n), to_sink(n))).collect();
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.bench_function("unicast_64B_batch32", |b| {
        b.iter(|| {
            for (port, frame) in &frames {
                black_box(sw.decide(now, *port, black_box(frame), &mut reply));
            }
        })
    });

    let request = arp_request_frame(pod_mac(FIRST_POD), pod_ip(FIRST_POD), pod_ip(200));
    assert!(matches!(
        sw.decide(now, pod, &request, &mut reply),
        Verdict::Reply { .. }
    ));
    group.throughput(Throughput::Elements(1));
    group.bench_function("arp_reply", |b| {
        b.iter(|| sw.decide(now, black_box(pod), black_box(&request), &mut reply))
    });
    group.finish();
}

fn bench_classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1));
    let frame = to_sink(FIRST_POD);
    group.bench_function("ipv4_udp_64B", |b| b.iter(|| classify(black_box(&frame))));
    let request = arp_request_frame(pod_mac(FIRST_POD), pod_ip(FIRST_POD), pod_ip(200));
    group.bench_function("arp", |b| b.iter(|| classify(black_box(&request))));
    group.finish();
}

criterion_group!(benches, bench_decide, bench_classify);
criterion_main!(benches);
