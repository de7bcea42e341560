//! The Internet checksum (RFC 1071): the 16-bit ones'-complement of the ones'-complement
//! sum of 16-bit big-endian words, and the IPv4 (RFC 793 §3.1, RFC 768) and IPv6
//! (RFC 8200 §8.1) pseudo-header sums that TCP and UDP checksums start from.
//!
//! A checksum is built in two steps: partial sums ([`sum`], [`pseudo_header_v4`],
//! [`pseudo_header_v6`]) are added with [`combine`], then [`finish`] folds and inverts
//! the total into the value stored in the header. A partial sum is a `u32` no greater
//! than `0xFFFF`, so adding two of them never overflows.
//!
//! Invariants:
//! - Every function is total: no input panics or overflows.
//! - [`sum`] treats its slice as starting on an even byte of the checksummed data: a
//!   trailing odd byte is padded with a zero byte on the right (RFC 1071 §4.1). To sum
//!   data in pieces, cut it at even offsets.
#![forbid(unsafe_code)]

use core::net::{Ipv4Addr, Ipv6Addr};

/// Folds carries above bit 15 back into the low 16 bits (RFC 1071 §2 (B) "end around
/// carry"), returning a value in `0..=0xFFFF`.
pub fn fold(mut sum: u64) -> u32 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    // After the loop `sum <= 0xFFFF`, so this conversion cannot fail.
    u32::try_from(sum).unwrap_or(0xFFFF)
}

/// The ones'-complement sum of `data` read as big-endian 16-bit words, folded to
/// `0..=0xFFFF`. An odd trailing byte counts as the high byte of a last word.
pub fn sum(data: &[u8]) -> u32 {
    // The ones'-complement sum does not depend on byte order (RFC 1071 §2 (B)): summing
    // the 16-bit words as the CPU loads them and reading the folded result's bytes as
    // big-endian gives the big-endian sum. Sixteen 32-bit lanes take one word each per
    // 32-byte block; with no carry chain between them the compiler turns the loop into
    // vector adds (this runs over every byte that crosses the overlay, twice). A lane
    // takes at most 2,048 words of at most 0xFFFF before it is emptied into `acc`, so
    // it cannot overflow.
    const BLOCK: usize = 32;
    const BLOCKS_PER_ROUND: usize = 2048;
    let mut acc: u64 = 0;
    let mut rounds = data.chunks(BLOCK * BLOCKS_PER_ROUND);
    let mut tail: &[u8] = &[];
    for round in &mut rounds {
        let mut lanes = [0u32; BLOCK / 2];
        let mut blocks = round.chunks_exact(BLOCK);
        for block in &mut blocks {
            for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(2)) {
                if let [first, second] = *word {
                    *lane += u32::from(u16::from_ne_bytes([first, second]));
                }
            }
        }
        acc += lanes.iter().map(|&lane| u64::from(lane)).sum::<u64>();
        tail = blocks.remainder();
    }
    let mut words = tail.chunks_exact(2);
    for word in &mut words {
        if let [first, second] = *word {
            acc += u64::from(u16::from_ne_bytes([first, second]));
        }
    }
    if let [last] = *words.remainder() {
        // The pad byte goes after the last one, in memory order as on the wire.
        acc += u64::from(u16::from_ne_bytes([last, 0]));
    }
    // The folded native sum, as bytes, is the big-endian sum's bytes.
    let folded = u16::try_from(fold(acc)).unwrap_or(0xFFFF);
    u32::from(u16::from_be_bytes(folded.to_ne_bytes()))
}

/// Adds two partial sums in ones'-complement arithmetic.
pub fn combine(a: u32, b: u32) -> u32 {
    fold(u64::from(a) + u64::from(b))
}

/// Turns a partial sum into the checksum field value: the ones'-complement of the folded
/// sum.
///
/// The result may be `0x0000`. UDP reserves that value for "no checksum" and transmits
/// a computed zero as `0xFFFF` (RFC 768); [`finish_udp`] does that.
pub fn finish(sum: u32) -> u16 {
    let folded = u16::try_from(fold(u64::from(sum))).unwrap_or(0xFFFF);
    !folded
}

/// [`finish`] for a UDP checksum: a computed `0x0000` is sent as `0xFFFF`, its
/// ones'-complement equal, because zero means "no checksum" (RFC 768).
pub fn finish_udp(sum: u32) -> u16 {
    match finish(sum) {
        0 => 0xFFFF,
        value => value,
    }
}

/// The RFC 1071 checksum of `data` in one call: `finish(sum(data))`. A header whose
/// checksum field is already filled in verifies when this returns 0.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Partial sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source and
/// destination addresses, zero, protocol, and the transport length (header + payload).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, transport_len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let acc = u64::from(u16::from_be_bytes([s[0], s[1]]))
        + u64::from(u16::from_be_bytes([s[2], s[3]]))
        + u64::from(u16::from_be_bytes([d[0], d[1]]))
        + u64::from(u16::from_be_bytes([d[2], d[3]]))
        + u64::from(protocol)
        + u64::from(transport_len);
    fold(acc)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source and destination
/// addresses, the 32-bit upper-layer packet length and the upper-layer protocol (the
/// final next-header value, not the first extension header's).
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, upper_len: u32) -> u32 {
    let mut acc = u64::from(sum(&src.octets())) + u64::from(sum(&dst.octets()));
    acc += u64::from(upper_len >> 16) + u64::from(upper_len & 0xFFFF);
    acc += u64::from(next_header);
    fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3 worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_on_the_right() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
        assert_eq!(
            sum(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde]),
            fold(0x1234 + 0x5678 + 0x9abc + 0xde00)
        );
    }

    #[test]
    fn word_by_word_equals_wide_sum() {
        let data: Vec<u8> = (0..1001u32)
            .map(|i| u8::try_from((i * 7 + 3) % 251).unwrap_or(0))
            .collect();
        let mut acc = 0u64;
        for pair in data.chunks(2) {
            let hi = pair.first().copied().unwrap_or(0);
            let lo = pair.get(1).copied().unwrap_or(0);
            acc += u64::from(u16::from_be_bytes([hi, lo]));
        }
        assert_eq!(sum(&data), fold(acc));
    }

    /// Every length (so every tail: whole 32-byte blocks, pairs, an odd byte), data of
    /// all ones that fills every lane to its most, and data longer than one round of
    /// the lanes (64 KiB), at every offset within a block.
    #[test]
    fn every_length_and_heavy_carries_equal_the_word_sum() {
        let word_sum = |data: &[u8]| {
            let mut acc = 0u64;
            for pair in data.chunks(2) {
                let hi = pair.first().copied().unwrap_or(0);
                let lo = pair.get(1).copied().unwrap_or(0);
                acc += u64::from(u16::from_be_bytes([hi, lo]));
            }
            fold(acc)
        };
        let mixed: Vec<u8> = (0..200u32)
            .map(|i| u8::try_from((i * 97 + 13) % 256).unwrap_or(0))
            .collect();
        for len in 0..=mixed.len() {
            assert_eq!(sum(&mixed[..len]), word_sum(&mixed[..len]), "length {len}");
        }
        let ones = vec![0xFFu8; 65_537];
        assert_eq!(sum(&ones), word_sum(&ones));
        let high = vec![0xFEu8; 9_001];
        assert_eq!(sum(&high), word_sum(&high));
        let ones = vec![0xFFu8; 3 * 65_536 + 77];
        assert_eq!(sum(&ones), word_sum(&ones));
        let long: Vec<u8> = (0..140_000u32)
            .map(|i| u8::try_from((i * 131 + 7) % 256).unwrap_or(0))
            .collect();
        for start in 0..34 {
            let part = &long[start..long.len() - start];
            assert_eq!(sum(part), word_sum(part), "from {start}");
        }
    }

    #[test]
    fn split_at_even_offset_combines() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let (a, b) = data.split_at(1234);
        assert_eq!(combine(sum(a), sum(b)), sum(&data));
    }

    /// A real IPv4 header (from the kernel VXLAN capture in `vxlan.rs`) verifies.
    #[test]
    fn ipv4_header_verifies() {
        let header = [
            0x45, 0x00, 0x00, 0x54, 0x5d, 0x00, 0x40, 0x00, 0x40, 0x01, 0xc7, 0xbe, 0x0a, 0xf4,
            0x00, 0x01, 0x0a, 0xf4, 0x00, 0x02,
        ];
        assert_eq!(checksum(&header), 0);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xc7be);
    }

    #[test]
    fn pseudo_headers() {
        let v4 = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            40,
        );
        assert_eq!(v4, fold(0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 40));
        let src: Ipv6Addr = "fd00::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let dst: Ipv6Addr = "fd00::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let v6 = pseudo_header_v6(&src, &dst, 17, 0x0001_0004);
        assert_eq!(v6, fold(0xfd00 + 1 + 0xfd00 + 2 + 1 + 4 + 17));
    }

    #[test]
    fn udp_zero_becomes_ffff() {
        assert_eq!(finish(0xFFFF), 0);
        assert_eq!(finish_udp(0xFFFF), 0xFFFF);
        assert_eq!(finish_udp(0x1234), !0x1234);
    }
}
