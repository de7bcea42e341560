//! VXLAN encapsulation and decapsulation (RFC 7348 §5), in two shapes:
//!
//! - For the UDP-socket underlay the kernel adds the outer IPv4 and UDP headers, so a
//!   datagram is just the VXLAN header and the inner Ethernet frame:
//!   [`encapsulate`], [`emit_header`] and [`decapsulate`].
//! - For an underlay that sends raw frames (AF_XDP), [`OuterHeaders::emit`] writes the
//!   whole outer stack: Ethernet, IPv4 (header checksum, DF set, id 0), UDP (checksum 0,
//!   which RFC 7348 §5 allows over IPv4) and VXLAN.
//!
//! Nothing here allocates; every function writes into a caller's buffer and says how many
//! bytes it wrote. No function panics, whatever the buffer sizes.
#![forbid(unsafe_code)]

use core::net::Ipv4Addr;

use crate::checksum;
use crate::vxlan::{VxlanError, VxlanPacket, VxlanRepr, MAX_VNI, VXLAN_HEADER_LEN};

/// Length of an untagged Ethernet header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Bytes [`OuterHeaders::emit`] writes in front of the inner frame:
/// Ethernet + IPv4 + UDP + VXLAN = 50.
pub const OUTER_HEADERS_LEN: usize =
    ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
/// How much smaller than the underlay MTU the pods' MTU must be: outer IPv4 + UDP +
/// VXLAN + inner Ethernet = 50 bytes (a 1500-byte underlay leaves pods 1450).
pub const UNDERLAY_MTU_OVERHEAD: usize =
    IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IPPROTO_UDP: u8 = 17;
/// Version 4, IHL 5 (no options).
const IPV4_VERSION_IHL: u8 = 0x45;
/// Flags and fragment offset: DF set, offset 0.
const IPV4_FLAGS_DF: [u8; 2] = [0x40, 0x00];

/// Why a VXLAN datagram or outer header stack could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The VNI does not fit the 24-bit field.
    #[error("VNI {0} does not fit in 24 bits")]
    VniOutOfRange(u32),
    /// The output buffer cannot hold what would be written.
    #[error("output buffer of {available} bytes, {needed} needed")]
    BufferTooSmall {
        /// Bytes the write needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The inner frame would make the outer IPv4 packet longer than 65 535 bytes.
    #[error("inner frame of {0} bytes does not fit in one IPv4 packet")]
    InnerTooLong(usize),
}

/// Why a received datagram is not an inner frame of our VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecapError {
    /// The datagram is shorter than the 8-byte VXLAN header.
    #[error("datagram shorter than the 8-byte VXLAN header")]
    Truncated,
    /// The VXLAN I flag is clear.
    #[error("VXLAN header without the I flag")]
    MissingIFlag,
    /// The datagram belongs to another VXLAN network.
    #[error("datagram for VNI {got}, not ours")]
    WrongVni {
        /// The VNI the datagram carries.
        got: u32,
    },
    /// The inner frame is shorter than an Ethernet header (14 bytes).
    #[error("inner frame shorter than an Ethernet header")]
    InnerTooShort,
}

/// Writes the 8-byte VXLAN header for `vni` into `out[..8]`, leaving the rest of `out`
/// alone. A caller that has already placed the inner frame at `out[8..]` (for instance
/// segments written by [`crate::gso::segment`] at equal strides) finishes each datagram
/// with this, without copying the frame again.
///
/// # Errors
/// [`EncapError::VniOutOfRange`] for a VNI wider than 24 bits;
/// [`EncapError::BufferTooSmall`] when `out` is shorter than 8 bytes.
pub fn emit_header(vni: u32, out: &mut [u8]) -> Result<(), EncapError> {
    let available = out.len();
    let header = out
        .get_mut(..VXLAN_HEADER_LEN)
        .ok_or(EncapError::BufferTooSmall {
            needed: VXLAN_HEADER_LEN,
            available,
        })?;
    VxlanRepr { vni }
        .emit(&mut VxlanPacket::new_unchecked(header))
        .map_err(|error| match error {
            VxlanError::VniOutOfRange(vni) => EncapError::VniOutOfRange(vni),
            VxlanError::Truncated | VxlanError::MissingIFlag => EncapError::BufferTooSmall {
                needed: VXLAN_HEADER_LEN,
                available: VXLAN_HEADER_LEN,
            },
        })
}

/// Writes a VXLAN datagram, the header for `vni` followed by a copy of `inner`, into
/// the front of `out`, and returns its length (`8 + inner.len()`).
///
/// For a batch, call it once per frame at `out[i * stride..]`.
///
/// # Errors
/// [`EncapError::VniOutOfRange`] for a VNI wider than 24 bits;
/// [`EncapError::BufferTooSmall`] when `out` is shorter than `8 + inner.len()`.
/// Nothing is written on error.
pub fn encapsulate(vni: u32, inner: &[u8], out: &mut [u8]) -> Result<usize, EncapError> {
    if vni > MAX_VNI {
        return Err(EncapError::VniOutOfRange(vni));
    }
    let len = VXLAN_HEADER_LEN + inner.len();
    let available = out.len();
    let datagram = out.get_mut(..len).ok_or(EncapError::BufferTooSmall {
        needed: len,
        available,
    })?;
    let (header, payload) = datagram.split_at_mut(VXLAN_HEADER_LEN);
    emit_header(vni, header)?;
    payload.copy_from_slice(inner);
    Ok(len)
}

/// Checks a received VXLAN datagram (the UDP payload) and returns the inner Ethernet
/// frame, borrowed from `datagram`.
///
/// # Errors
/// [`DecapError::Truncated`] for fewer than 8 bytes, [`DecapError::MissingIFlag`],
/// [`DecapError::WrongVni`] when the VNI is not `expected_vni`, and
/// [`DecapError::InnerTooShort`] when fewer than 14 bytes follow the header.
pub fn decapsulate(expected_vni: u32, datagram: &[u8]) -> Result<&[u8], DecapError> {
    let packet = VxlanPacket::new_checked(datagram).map_err(|_| DecapError::Truncated)?;
    let repr = VxlanRepr::parse(&packet).map_err(|error| match error {
        VxlanError::MissingIFlag => DecapError::MissingIFlag,
        VxlanError::Truncated | VxlanError::VniOutOfRange(_) => DecapError::Truncated,
    })?;
    if repr.vni != expected_vni {
        return Err(DecapError::WrongVni { got: repr.vni });
    }
    let inner = datagram.get(VXLAN_HEADER_LEN..).unwrap_or(&[]);
    if inner.len() < ETHERNET_HEADER_LEN {
        return Err(DecapError::InnerTooShort);
    }
    Ok(inner)
}

/// The outer Ethernet, IPv4 and UDP addressing of a VXLAN packet, for an underlay that
/// sends whole frames itself (AF_XDP) rather than through a UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterHeaders {
    /// Our underlay interface's MAC address.
    pub src_mac: [u8; 6],
    /// The next hop's MAC address (the remote VTEP's, or the gateway's).
    pub dst_mac: [u8; 6],
    /// Our VTEP address.
    pub src_ip: Ipv4Addr,
    /// The remote VTEP address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port: a hash of the inner flow ([`crate::flow_hash::source_port`]).
    pub src_port: u16,
    /// UDP destination port, normally [`crate::vxlan::DEFAULT_PORT`].
    pub dst_port: u16,
    /// IPv4 time to live.
    pub ttl: u8,
    /// The VXLAN network identifier, at most [`MAX_VNI`].
    pub vni: u32,
}

impl OuterHeaders {
    /// The number of bytes [`OuterHeaders::emit`] writes: [`OUTER_HEADERS_LEN`].
    pub const fn buffer_len(&self) -> usize {
        OUTER_HEADERS_LEN
    }

    /// Writes Ethernet + IPv4 + UDP + VXLAN headers for an inner frame of `inner_len`
    /// bytes into `out[..50]` and returns 50; the caller places the inner frame at
    /// `out[50..]`.
    ///
    /// The IPv4 header has no options, DF set, id 0 (allowed for atomic datagrams,
    /// RFC 6864 §4.1) and a correct header checksum; the UDP checksum is 0, which RFC
    /// 7348 §5 allows for VXLAN over IPv4.
    ///
    /// # Errors
    /// [`EncapError::VniOutOfRange`], [`EncapError::InnerTooLong`] when the IPv4 total
    /// length would pass 65 535, and [`EncapError::BufferTooSmall`] when `out` is shorter
    /// than [`OUTER_HEADERS_LEN`]. Nothing is written on error.
    pub fn emit(&self, inner_len: usize, out: &mut [u8]) -> Result<usize, EncapError> {
        if self.vni > MAX_VNI {
            return Err(EncapError::VniOutOfRange(self.vni));
        }
        let udp_len = inner_len
            .checked_add(UDP_HEADER_LEN + VXLAN_HEADER_LEN)
            .and_then(|len| u16::try_from(len).ok())
            .ok_or(EncapError::InnerTooLong(inner_len))?;
        let ip_total_len = udp_len
            .checked_add(20)
            .ok_or(EncapError::InnerTooLong(inner_len))?;
        let available = out.len();
        let headers: &mut [u8; OUTER_HEADERS_LEN] = out
            .get_mut(..OUTER_HEADERS_LEN)
            .and_then(|slice| slice.try_into().ok())
            .ok_or(EncapError::BufferTooSmall {
                needed: OUTER_HEADERS_LEN,
                available,
            })?;
        let (ethernet, rest) = headers.split_at_mut(ETHERNET_HEADER_LEN);
        let (ip, rest) = rest.split_at_mut(IPV4_HEADER_LEN);
        let (udp, vxlan) = rest.split_at_mut(UDP_HEADER_LEN);

        // Ethernet II.
        let (dst_mac, rest) = ethernet.split_at_mut(6);
        let (src_mac, ethertype) = rest.split_at_mut(6);
        dst_mac.copy_from_slice(&self.dst_mac);
        src_mac.copy_from_slice(&self.src_mac);
        ethertype.copy_from_slice(&ETHERTYPE_IPV4);

        // IPv4 (RFC 791 §3.1), checksum last.
        let [len_hi, len_lo] = ip_total_len.to_be_bytes();
        let [s0, s1, s2, s3] = self.src_ip.octets();
        let [d0, d1, d2, d3] = self.dst_ip.octets();
        let [df_hi, df_lo] = IPV4_FLAGS_DF;
        ip.copy_from_slice(&[
            IPV4_VERSION_IHL,
            0,
            len_hi,
            len_lo,
            0,
            0,
            df_hi,
            df_lo,
            self.ttl,
            IPPROTO_UDP,
            0,
            0,
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
        ]);
        let [c_hi, c_lo] = checksum::checksum(ip).to_be_bytes();
        if let Some(field) = ip.get_mut(10..12) {
            field.copy_from_slice(&[c_hi, c_lo]);
        }

        // UDP (RFC 768), checksum 0.
        let [sp_hi, sp_lo] = self.src_port.to_be_bytes();
        let [dp_hi, dp_lo] = self.dst_port.to_be_bytes();
        let [ul_hi, ul_lo] = udp_len.to_be_bytes();
        udp.copy_from_slice(&[sp_hi, sp_lo, dp_hi, dp_lo, ul_hi, ul_lo, 0, 0]);

        emit_header(self.vni, vxlan)?;
        Ok(OUTER_HEADERS_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vxlan::DEFAULT_PORT;

    fn inner_frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| u8::try_from(i % 256).unwrap()).collect()
    }

    #[test]
    fn encapsulate_then_decapsulate() {
        let inner = inner_frame(60);
        let mut out = [0u8; 128];
        let len = encapsulate(42, &inner, &mut out).unwrap();
        assert_eq!(len, 68);
        assert_eq!(&out[..8], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(decapsulate(42, &out[..len]).unwrap(), &inner[..]);
    }

    #[test]
    fn encapsulate_at_strides() {
        let mut out = [0u8; 3 * 100];
        for i in 0..3 {
            let inner = inner_frame(20 + i);
            let len = encapsulate(7, &inner, &mut out[i * 100..]).unwrap();
            assert_eq!(
                decapsulate(7, &out[i * 100..i * 100 + len]).unwrap(),
                &inner[..]
            );
        }
    }

    #[test]
    fn encapsulate_errors_write_nothing() {
        let inner = inner_frame(60);
        let mut out = [0u8; 67];
        assert_eq!(
            encapsulate(1, &inner, &mut out),
            Err(EncapError::BufferTooSmall {
                needed: 68,
                available: 67
            })
        );
        assert_eq!(
            encapsulate(1 << 24, &inner, &mut out),
            Err(EncapError::VniOutOfRange(1 << 24))
        );
        assert!(out.iter().all(|&b| b == 0));
        assert_eq!(
            emit_header(1, &mut out[..7]),
            Err(EncapError::BufferTooSmall {
                needed: 8,
                available: 7
            })
        );
    }

    #[test]
    fn decapsulate_errors() {
        let mut datagram = [0u8; 8 + 14];
        encapsulate(5, &[0u8; 14], &mut datagram).unwrap();
        assert_eq!(decapsulate(5, &datagram[..7]), Err(DecapError::Truncated));
        assert_eq!(
            decapsulate(5, &datagram[..8 + 13]),
            Err(DecapError::InnerTooShort)
        );
        assert_eq!(
            decapsulate(6, &datagram),
            Err(DecapError::WrongVni { got: 5 })
        );
        datagram[0] = 0;
        assert_eq!(decapsulate(5, &datagram), Err(DecapError::MissingIFlag));
    }

    #[test]
    fn decapsulates_kernel_fixture() {
        let inner = decapsulate(1, &crate::vxlan::tests::KERNEL_ICMP_ECHO).unwrap();
        assert_eq!(inner.len(), 98);
        assert_eq!(&inner[..6], &[0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01]);
    }

    fn outer() -> OuterHeaders {
        OuterHeaders {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(192, 168, 1, 10),
            dst_ip: Ipv4Addr::new(192, 168, 1, 20),
            src_port: 50051,
            dst_port: DEFAULT_PORT,
            ttl: 64,
            vni: 1,
        }
    }

    #[test]
    fn outer_headers_are_valid_ipv4_udp_vxlan() {
        let inner = inner_frame(98);
        let headers = outer();
        let mut out = vec![0u8; headers.buffer_len() + inner.len()];
        assert_eq!(
            headers.emit(inner.len(), &mut out).unwrap(),
            OUTER_HEADERS_LEN
        );
        out[OUTER_HEADERS_LEN..].copy_from_slice(&inner);

        // IPv4 header checksum verifies, by our sum and by etherparse.
        assert_eq!(checksum::checksum(&out[14..34]), 0);
        let parsed = etherparse::PacketHeaders::from_ethernet_slice(&out).unwrap();
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = parsed.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert!(ip.dont_fragment);
        assert_eq!(ip.identification, 0);
        assert_eq!(ip.time_to_live, 64);
        assert_eq!(usize::from(ip.total_len), out.len() - 14);
        assert_eq!(ip.source, [192, 168, 1, 10]);
        assert_eq!(ip.destination, [192, 168, 1, 20]);
        let Some(etherparse::TransportHeader::Udp(udp)) = parsed.transport else {
            panic!("not UDP")
        };
        assert_eq!(
            (udp.source_port, udp.destination_port),
            (50051, DEFAULT_PORT)
        );
        assert_eq!(usize::from(udp.length), 8 + 8 + inner.len());
        assert_eq!(udp.checksum, 0);
        assert_eq!(decapsulate(1, &out[42..]).unwrap(), &inner[..]);
    }

    /// The ICMP echo the kernel sent, wrapped by us, gives the same UDP payload the kernel
    /// sent: our VXLAN header is byte for byte the kernel's.
    #[test]
    fn outer_headers_carry_kernel_payload() {
        let kernel = &crate::vxlan::tests::KERNEL_ICMP_ECHO;
        let inner = &kernel[8..];
        let mut out = vec![0u8; OUTER_HEADERS_LEN + inner.len()];
        outer().emit(inner.len(), &mut out).unwrap();
        out[OUTER_HEADERS_LEN..].copy_from_slice(inner);
        assert_eq!(&out[42..], &kernel[..]);
    }

    #[test]
    fn outer_headers_errors() {
        let headers = outer();
        let mut out = [0u8; OUTER_HEADERS_LEN];
        assert_eq!(
            headers.emit(10, &mut out[..49]),
            Err(EncapError::BufferTooSmall {
                needed: 50,
                available: 49
            })
        );
        assert_eq!(
            headers.emit(65_535 - 36 + 1, &mut out),
            Err(EncapError::InnerTooLong(65_500))
        );
        assert_eq!(
            headers.emit(usize::MAX, &mut out),
            Err(EncapError::InnerTooLong(usize::MAX))
        );
        assert!(
            headers.emit(65_535 - 36, &mut out).is_ok(),
            "largest inner frame fits"
        );
        let bad = OuterHeaders {
            vni: 1 << 24,
            ..headers
        };
        assert_eq!(
            bad.emit(10, &mut out),
            Err(EncapError::VniOutOfRange(1 << 24))
        );
    }
}
