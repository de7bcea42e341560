//! The stages of the frame path one by one (classify and the whole `decide` are in the
//! `switch` bench):
//!
//! - `stages/mac_lookup`: a MAC table lookup among 1,024 stations.
//! - `stages/conntrack_hit`: the connection-table lookup of an established UDP flow
//!   among 1,024.
//! - `stages/encap_64B`: the outer source port (flow hash) and the VXLAN header.
//! - `stages/decap_64B`: VXLAN header checks and the inner frame.
//! - `segment/tso_64KiB`: cutting a 64 KiB TCP super-frame into 1,448-byte segments
//!   packed for one UDP GSO send (per segment and per byte).
//! - `coalesce/tcp_64KiB`: merging those 46 segments back into one super-frame,
//!   checksums verified (per segment and per byte).
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay::encap::emit_header;
use overlay::{
    decapsulate, segment, segment_len, source_port, Coalescer, GsoKind, Offload, VXLAN_HEADER_LEN,
};
use vswitch::mac::MacAddr;
use vswitch::policy::{ConnTrack, ConnTrackConfig, Flow};
use vswitch::switch::{Location, MacTable};
use vswitch_benches::{pod_ip, pod_mac, tcp_frame, udp_frame};

const STATIONS: u16 = 1024;
const MSS: u16 = 1448;
/// A 64 KiB TSO super-frame's payload: 45 full segments of 1,448 bytes and a short one.
const SUPER_PAYLOAD: usize = 65_535 - 40;

fn station(i: u16) -> Ipv4Addr {
    let [hi, lo] = i.to_be_bytes();
    Ipv4Addr::new(10, 244, hi, lo)
}

fn bench_lookups(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Elements(1));

    let mut table = MacTable::new(8192, Duration::from_secs(300));
    for i in 0..STATIONS {
        table.learn(MacAddr::from_ipv4(station(i)), Location::Port(i), now);
    }
    let probe = MacAddr::from_ipv4(station(STATIONS / 2));
    assert_eq!(table.lookup(probe, now), Some(Location::Port(STATIONS / 2)));
    group.bench_function("mac_lookup", |b| {
        b.iter(|| table.lookup(black_box(probe), now))
    });

    let mut conntrack = ConnTrack::new(ConnTrackConfig::default());
    let flow = |i: u16| Flow {
        src: station(i),
        dst: station(i + STATIONS),
        src_port: 40000,
        dst_port: 8080,
        protocol: 17,
        tcp_flags: 0,
    };
    for i in 0..STATIONS {
        conntrack.open(now, flow(i));
    }
    let probe = flow(STATIONS / 2);
    assert!(conntrack.track(now, probe).is_some(), "an established flow");
    group.bench_function("conntrack_hit", |b| {
        b.iter(|| conntrack.track(now, black_box(probe)))
    });

    let inner = udp_frame(pod_mac(2), pod_mac(1), pod_ip(1), pod_ip(2), 64);
    let mut datagram = vec![0u8; VXLAN_HEADER_LEN + inner.len()];
    if let Some(body) = datagram.get_mut(VXLAN_HEADER_LEN..) {
        body.copy_from_slice(&inner);
    }
    // The header is written here too, so that decap_64B has a datagram when a filter
    // runs it without encap_64B.
    assert!(emit_header(1, &mut datagram).is_ok());
    group.bench_function("encap_64B", |b| {
        b.iter(|| {
            let hint = source_port(black_box(&inner));
            (hint, emit_header(1, black_box(&mut datagram)))
        })
    });
    assert!(decapsulate(1, &datagram).is_ok());
    group.bench_function("decap_64B", |b| {
        b.iter(|| decapsulate(1, black_box(&datagram)).map(<[u8]>::len))
    });
    group.finish();
}

fn super_frame() -> (Vec<u8>, Offload) {
    let frame = tcp_frame(
        pod_mac(2),
        pod_mac(1),
        pod_ip(1),
        pod_ip(2),
        1,
        SUPER_PAYLOAD,
    );
    let offload = Offload {
        needs_csum: true,
        csum_start: 34,
        csum_offset: 16,
        gso: GsoKind::TcpV4,
        gso_size: MSS,
        hdr_len: 54,
    };
    (frame, offload)
}

fn bench_segment_and_coalesce(c: &mut Criterion) {
    let (frame, offload) = super_frame();
    let full = segment_len(&frame, offload).unwrap_or(0);
    let stride = VXLAN_HEADER_LEN + full;
    let mut out = vec![0u8; stride * 64];
    let mut lens = [0usize; 64];
    let count = segment(
        &frame,
        offload,
        out.get_mut(VXLAN_HEADER_LEN..).unwrap_or_default(),
        stride,
        &mut lens,
    )
    .unwrap_or(0);
    assert_eq!(count, SUPER_PAYLOAD.div_ceil(usize::from(MSS)));
    let segments = u64::try_from(count).unwrap_or(0);

    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(segments));
    group.bench_function("tso_64KiB", |b| {
        b.iter(|| {
            let dst = out.get_mut(VXLAN_HEADER_LEN..).unwrap_or_default();
            segment(black_box(&frame), offload, dst, stride, &mut lens)
        })
    });
    group.finish();

    let pieces: Vec<Vec<u8>> = lens
        .iter()
        .take(count)
        .enumerate()
        .map(|(i, &len)| {
            let start = VXLAN_HEADER_LEN + i * stride;
            out.get(start..start + len).unwrap_or_default().to_vec()
        })
        .collect();
    let mut coalescer = Coalescer::new(4, 12);
    let coalesce = |coalescer: &mut Coalescer| {
        for piece in &pieces {
            black_box(coalescer.push(3, black_box(piece)));
        }
        let mut frames = 0;
        coalescer.drain(|_, _, buf| frames += black_box(buf).len());
        frames
    };
    assert_eq!(
        coalesce(&mut coalescer),
        12 + frame.len(),
        "one frame, all of it"
    );
    let mut group = c.benchmark_group("coalesce");
    group.throughput(Throughput::Elements(segments));
    group.bench_function("tcp_64KiB", |b| b.iter(|| coalesce(&mut coalescer)));
    group.finish();
}

criterion_group!(benches, bench_lookups, bench_segment_and_coalesce);
criterion_main!(benches);
