//! Fuzz target: software GSO, cutting a pod's TSO/USO super-frame before it enters the
//! overlay ([`overlay::segment`]).
//!
//! Input layout (little-endian, like the virtio-net header the fields come from):
//!
//! ```text
//! 0      flags: bit 0 needs_csum, bits 1-2 GSO kind (None, TcpV4, TcpV6, UdpL4)
//! 1..3   csum_start     3..5  csum_offset     5..7  gso_size     7..9  hdr_len
//! 9..11  stride
//! 11..   the Ethernet frame
//! ```
//!
//! `segment` must never panic. When it returns `Ok(n)`: `1 <= n <= lens.len()`; every
//! segment fits `out` at its stride; when `n > 1`, every `lens[i] <= stride` (a lone
//! segment needs no stride: the gso.rs tests pass `GsoKind::None` frames stride 0); a
//! `GsoKind::None` frame is copied unchanged but for its checksum field; segments of a
//! GSO frame carry the same headers plus consecutive `gso_size` slices of the payload,
//! and, wherever etherparse finds their headers, correct IPv4 header checksums,
//! identifications, TCP sequence numbers and flags, UDP lengths and TCP/UDP checksums.
#![no_main]

use std::cell::RefCell;

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use libfuzzer_sys::fuzz_target;
use overlay::{segment, GsoKind, Offload};

/// Room for 64 segments of a 4 KiB stride, or a few at the largest stride.
const OUT_LEN: usize = 256 * 1024;
const MAX_SEGMENTS: usize = 64;
const HEADER_LEN: usize = 11;

thread_local! {
    static OUT: RefCell<Vec<u8>> = RefCell::new(vec![0u8; OUT_LEN]);
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN {
        return;
    }
    let gso = match (data[0] >> 1) & 3 {
        0 => GsoKind::None,
        1 => GsoKind::TcpV4,
        2 => GsoKind::TcpV6,
        _ => GsoKind::UdpL4,
    };
    let offload = Offload {
        needs_csum: data[0] & 1 == 1,
        csum_start: u16_at(data, 1),
        csum_offset: u16_at(data, 3),
        gso,
        gso_size: u16_at(data, 5),
        hdr_len: u16_at(data, 7),
    };
    let stride = usize::from(u16_at(data, 9));
    let frame = &data[HEADER_LEN..];

    OUT.with(|out| {
        let out = &mut out.borrow_mut()[..];
        let mut lens = [usize::MAX; MAX_SEGMENTS];
        let Ok(count) = segment(frame, offload, out, stride, &mut lens) else {
            return;
        };
        check(frame, offload, out, stride, &lens, count);
    });
});

fn check(frame: &[u8], offload: Offload, out: &[u8], stride: usize, lens: &[usize], count: usize) {
    assert!(count >= 1 && count <= lens.len(), "{count} segments");
    let lens = &lens[..count];
    for (i, &len) in lens.iter().enumerate() {
        let end = i * stride + len;
        assert!(end <= out.len(), "segment {i} ends at {end}, past out");
        // With several segments every one fits the stride (the stride must hold a full
        // one, and the last is no longer); a lone segment needs no stride at all.
        if count > 1 {
            assert!(
                len <= stride,
                "segment {i} of {len} bytes overruns stride {stride}"
            );
        }
    }

    if offload.gso == GsoKind::None {
        assert_eq!(count, 1);
        assert_eq!(lens[0], frame.len());
        let copy = &out[..frame.len()];
        let field = usize::from(offload.csum_start) + usize::from(offload.csum_offset);
        for (at, (&got, &was)) in copy.iter().zip(frame).enumerate() {
            let in_field = offload.needs_csum && (field..field + 2).contains(&at);
            assert!(
                in_field || got == was,
                "byte {at} changed from {was} to {got}"
            );
        }
        return;
    }

    // Header length H from the lengths alone: every segment is H + payload, all
    // payloads but the last are gso_size long, and together they are the frame's.
    let mss = usize::from(offload.gso_size);
    assert!(mss > 0);
    let headers_len = if count == 1 {
        assert_eq!(lens[0], frame.len(), "a single segment is the whole frame");
        None
    } else {
        let total: usize = lens.iter().sum();
        let extra = total - frame.len(); // (count - 1) copies of the headers
        assert_eq!(
            extra % (count - 1),
            0,
            "segments carry headers of different lengths"
        );
        let h = extra / (count - 1);
        for (i, &len) in lens.iter().enumerate() {
            let payload = len
                .checked_sub(h)
                .expect("segment shorter than its headers");
            if i + 1 < count {
                assert_eq!(payload, mss, "segment {i} is not a full gso_size");
            } else {
                assert!(
                    payload >= 1 && payload <= mss,
                    "last payload of {payload} bytes"
                );
            }
            let seg = &out[i * stride..i * stride + len];
            let want = &frame[h + i * mss..h + i * mss + payload];
            assert_eq!(
                &seg[h..],
                want,
                "segment {i} does not carry its payload slice"
            );
        }
        Some(h)
    };

    let mut first_seq = None;
    let mut first_id = None;
    for (i, &len) in lens.iter().enumerate() {
        let seg = &out[i * stride..i * stride + len];
        check_segment(
            frame,
            seg,
            i,
            count,
            mss,
            headers_len,
            &mut first_seq,
            &mut first_id,
        );
    }
}

/// RFC 1071 ones'-complement sum of `bytes` as big-endian words, folded to 16 bits:
/// written here rather than taken from `overlay::checksum`, so the oracle is independent.
fn ones_sum(bytes: &[u8], mut acc: u64) -> u16 {
    for pair in bytes.chunks(2) {
        let hi = u64::from(pair[0]);
        let lo = u64::from(pair.get(1).copied().unwrap_or(0));
        acc += (hi << 8) | lo;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap_or(0)
}

/// Checks one segment: etherparse, an independent reader, finds the headers, and the
/// checksums are verified over the segment's raw bytes (etherparse's own checksum
/// helpers re-serialize the headers and drop reserved bits, so they are not used).
/// Segments that etherparse refuses (it is stricter about IPv6 extension header order,
/// for one) are left alone.
#[allow(clippy::too_many_arguments)]
fn check_segment(
    frame: &[u8],
    seg: &[u8],
    i: usize,
    count: usize,
    mss: usize,
    headers_len: Option<usize>,
    first_seq: &mut Option<u32>,
    first_id: &mut Option<u16>,
) {
    let Ok(headers) = PacketHeaders::from_ethernet_slice(seg) else {
        return;
    };
    let payload_len = headers.payload.slice().len();
    let (protocol, transport_len) = match &headers.transport {
        Some(TransportHeader::Tcp(tcp)) => (6u8, tcp.header_len()),
        Some(TransportHeader::Udp(_)) => (17u8, 8),
        _ => return,
    };
    let Some(l4) = seg.len().checked_sub(payload_len + transport_len) else {
        return;
    };
    if headers_len.is_some_and(|h| h != l4 + transport_len) {
        // etherparse stopped somewhere else than segment() did.
        return;
    }
    let transport = &seg[l4..];
    let last = i + 1 == count;
    let step = u32::try_from(i * mss).unwrap_or(0);
    match &headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            let Some(l3) = l4.checked_sub(ip.header_len()) else {
                return;
            };
            assert_eq!(
                ones_sum(&seg[l3..l4], 0),
                0xffff,
                "segment {i}: IPv4 header checksum"
            );
            let id0 = *first_id.get_or_insert(ip.identification);
            assert_eq!(
                ip.identification,
                id0.wrapping_add(u16::try_from(i).unwrap_or(0))
            );
            let len = u64::try_from(transport.len()).unwrap_or(0);
            let pseudo = u64::from(ones_sum(&ip.source, 0))
                + u64::from(ones_sum(&ip.destination, 0))
                + u64::from(protocol)
                + len;
            assert_eq!(
                ones_sum(transport, pseudo),
                0xffff,
                "segment {i}: L4/IPv4 checksum"
            );
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            let len = u64::try_from(transport.len()).unwrap_or(0);
            let pseudo = u64::from(ones_sum(&ip.source, 0))
                + u64::from(ones_sum(&ip.destination, 0))
                + (len >> 16)
                + (len & 0xffff)
                + u64::from(protocol);
            assert_eq!(
                ones_sum(transport, pseudo),
                0xffff,
                "segment {i}: L4/IPv6 checksum"
            );
        }
        _ => return,
    }
    match &headers.transport {
        Some(TransportHeader::Tcp(tcp)) => {
            if i == 0 {
                // The first segment keeps the super-frame's sequence number.
                assert_eq!(Some(tcp.sequence_number), be_u32(frame, l4 + 4));
            }
            let seq0 = *first_seq.get_or_insert(tcp.sequence_number);
            assert_eq!(
                tcp.sequence_number,
                seq0.wrapping_add(step),
                "segment {i}: sequence number"
            );
            if !last {
                assert!(
                    !tcp.fin && !tcp.psh,
                    "segment {i}: FIN/PSH before the last segment"
                );
            }
            if i > 0 {
                assert!(!tcp.cwr, "segment {i}: CWR after the first segment");
            }
        }
        Some(TransportHeader::Udp(udp)) => {
            assert_eq!(
                usize::from(udp.length),
                transport.len(),
                "segment {i}: UDP length"
            );
            assert_ne!(udp.checksum, 0, "segment {i}: UDP checksum 0 means none");
        }
        _ => {}
    }
}
