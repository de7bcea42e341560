//! The virtio-net header that prefixes every frame read from or written to our TAPs.
//!
//! Layout (virtio 1.2, section 5.1.6 "Device Operation", `struct virtio_net_hdr`; with
//! `VIRTIO_F_VERSION_1` the header always carries `num_buffers` and is little-endian):
//!
//! ```text
//!  0        1          2           4           6             8              10            12
//!  | flags  | gso_type | hdr_len   | gso_size  | csum_start  | csum_offset  | num_buffers |
//!  |  u8    |   u8     | u16 le    | u16 le    | u16 le      | u16 le       | u16 le      |
//! ```
//!
//! The TAP only speaks this 12-byte little-endian form when the daemon sets
//! `TUNSETVNETHDRSZ` to [`VIRTIO_NET_HDR_LEN`] (the kernel default is the 10-byte legacy
//! header) and, on big-endian hosts, `TUNSETVNETLE`.
//!
//! Invariants:
//! - [`VirtioNetHdr::new_checked`] is the only way untrusted bytes become a view; it
//!   guarantees the buffer holds at least [`VIRTIO_NET_HDR_LEN`] bytes.
//! - No accessor panics, even on a view made with [`VirtioNetHdr::new_unchecked`] over a
//!   short buffer: getters then read 0 and setters write nothing.
//! - [`VirtioNetRepr::parse`] accepts only the flags and GSO types Linux emits; a GSO type
//!   other than [`VIRTIO_NET_HDR_GSO_NONE`] requires a non-zero `gso_size`.
//! - [`VirtioNetRepr::emit`] writes all 12 bytes (`num_buffers` = 0) and never panics on a
//!   buffer of [`VirtioNetRepr::buffer_len`] bytes.
#![forbid(unsafe_code)]

/// Length in bytes of the header on our TAPs (`struct virtio_net_hdr_mrg_rxbuf`).
pub const VIRTIO_NET_HDR_LEN: usize = 12;

/// `flags`: the checksum from `csum_start` on is partial; the receiver must finish it by
/// storing the folded sum at `csum_start + csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has been validated (set by a device on receive).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;

/// `gso_type`: not a GSO frame.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 segmentation (TSO).
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO, legacy).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 segmentation.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO, `UDP_SEGMENT`).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP segments carry ECN (CWR must be set on the first one only).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// Flags bits this implementation understands; any other bit makes a header invalid.
const KNOWN_FLAGS: u8 = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;

/// Field offsets of the header.
mod field {
    use core::ops::Range;

    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
    pub const NUM_BUFFERS: Range<usize> = 10..12;
}

/// Why a virtio-net header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VirtioNetError {
    /// The buffer is shorter than the 12-byte header.
    #[error("buffer shorter than the 12-byte virtio-net header")]
    Truncated,
    /// `flags` has a bit other than NEEDS_CSUM and DATA_VALID.
    #[error("virtio-net header has unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// `gso_type` (ECN bit aside) is not NONE, TCPV4, UDP, TCPV6 or UDP_L4.
    #[error("virtio-net header has unknown GSO type {0:#04x}")]
    UnknownGsoType(u8),
    /// A GSO frame with `gso_size` 0.
    #[error("virtio-net GSO header with a zero gso_size")]
    ZeroGsoSize,
}

/// A read/write view of a virtio-net header over a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioNetHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VirtioNetHdr<T> {
    /// Wraps `buffer` without checking its length. Getters on a short buffer read 0.
    pub const fn new_unchecked(buffer: T) -> VirtioNetHdr<T> {
        VirtioNetHdr { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole header.
    ///
    /// # Errors
    /// [`VirtioNetError::Truncated`] when `buffer` is shorter than [`VIRTIO_NET_HDR_LEN`].
    pub fn new_checked(buffer: T) -> Result<VirtioNetHdr<T>, VirtioNetError> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// Checks the buffer holds a whole header.
    ///
    /// # Errors
    /// [`VirtioNetError::Truncated`] when it does not.
    pub fn check_len(&self) -> Result<(), VirtioNetError> {
        if self.buffer.as_ref().len() < VIRTIO_NET_HDR_LEN {
            Err(VirtioNetError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives back the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u8(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        self.buffer
            .as_ref()
            .get(range)
            .and_then(|bytes| <[u8; 2]>::try_from(bytes).ok())
            .map_or(0, u16::from_le_bytes)
    }

    /// The `flags` field (`VIRTIO_NET_HDR_F_*`).
    pub fn flags(&self) -> u8 {
        self.read_u8(field::FLAGS)
    }

    /// The `gso_type` field (`VIRTIO_NET_HDR_GSO_*`, possibly with the ECN bit).
    pub fn gso_type(&self) -> u8 {
        self.read_u8(field::GSO_TYPE)
    }

    /// The `hdr_len` field: length of the Ethernet, IP and L4 headers (a hint).
    pub fn hdr_len(&self) -> u16 {
        self.read_u16(field::HDR_LEN)
    }

    /// The `gso_size` field: payload bytes per segment (MSS for TCP).
    pub fn gso_size(&self) -> u16 {
        self.read_u16(field::GSO_SIZE)
    }

    /// The `csum_start` field: offset in the frame where checksumming starts.
    pub fn csum_start(&self) -> u16 {
        self.read_u16(field::CSUM_START)
    }

    /// The `csum_offset` field: where, after `csum_start`, the checksum is stored.
    pub fn csum_offset(&self) -> u16 {
        self.read_u16(field::CSUM_OFFSET)
    }

    /// The `num_buffers` field (mergeable receive buffers; 0 on a TAP).
    pub fn num_buffers(&self) -> u16 {
        self.read_u16(field::NUM_BUFFERS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VirtioNetHdr<T> {
    fn write_u8(&mut self, at: usize, value: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(at) {
            *byte = value;
        }
    }

    fn write_u16(&mut self, range: core::ops::Range<usize>, value: u16) {
        if let Some(bytes) = self.buffer.as_mut().get_mut(range) {
            bytes.copy_from_slice(&value.to_le_bytes());
        }
    }

    /// Sets the `flags` field.
    pub fn set_flags(&mut self, value: u8) {
        self.write_u8(field::FLAGS, value);
    }

    /// Sets the `gso_type` field.
    pub fn set_gso_type(&mut self, value: u8) {
        self.write_u8(field::GSO_TYPE, value);
    }

    /// Sets the `hdr_len` field.
    pub fn set_hdr_len(&mut self, value: u16) {
        self.write_u16(field::HDR_LEN, value);
    }

    /// Sets the `gso_size` field.
    pub fn set_gso_size(&mut self, value: u16) {
        self.write_u16(field::GSO_SIZE, value);
    }

    /// Sets the `csum_start` field.
    pub fn set_csum_start(&mut self, value: u16) {
        self.write_u16(field::CSUM_START, value);
    }

    /// Sets the `csum_offset` field.
    pub fn set_csum_offset(&mut self, value: u16) {
        self.write_u16(field::CSUM_OFFSET, value);
    }

    /// Sets the `num_buffers` field.
    pub fn set_num_buffers(&mut self, value: u16) {
        self.write_u16(field::NUM_BUFFERS, value);
    }
}

/// A validated, decoded virtio-net header. `num_buffers` is not carried: it is 0 on a TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VirtioNetRepr {
    /// `VIRTIO_NET_HDR_F_*` bits.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`, possibly with [`VIRTIO_NET_HDR_GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers before the payload to segment (a hint, may be 0).
    pub hdr_len: u16,
    /// Payload bytes per segment; non-zero for GSO frames.
    pub gso_size: u16,
    /// Where checksumming starts, when `flags` has NEEDS_CSUM.
    pub csum_start: u16,
    /// Offset from `csum_start` of the checksum field, when `flags` has NEEDS_CSUM.
    pub csum_offset: u16,
}

impl VirtioNetRepr {
    /// The header of a plain frame: no offload, nothing to finish.
    pub const PLAIN: VirtioNetRepr = VirtioNetRepr {
        flags: 0,
        gso_type: VIRTIO_NET_HDR_GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Decodes and validates a header.
    ///
    /// # Errors
    /// [`VirtioNetError::Truncated`] on a short buffer, `UnknownFlags` / `UnknownGsoType` on
    /// values Linux does not produce, `ZeroGsoSize` on a GSO frame without a segment size.
    pub fn parse<T: AsRef<[u8]>>(hdr: &VirtioNetHdr<T>) -> Result<VirtioNetRepr, VirtioNetError> {
        hdr.check_len()?;
        let flags = hdr.flags();
        if flags & !KNOWN_FLAGS != 0 {
            return Err(VirtioNetError::UnknownFlags(flags));
        }
        let gso_type = hdr.gso_type();
        let repr = VirtioNetRepr {
            flags,
            gso_type,
            hdr_len: hdr.hdr_len(),
            gso_size: hdr.gso_size(),
            csum_start: hdr.csum_start(),
            csum_offset: hdr.csum_offset(),
        };
        match repr.gso_kind() {
            VIRTIO_NET_HDR_GSO_NONE => Ok(repr),
            VIRTIO_NET_HDR_GSO_TCPV4
            | VIRTIO_NET_HDR_GSO_UDP
            | VIRTIO_NET_HDR_GSO_TCPV6
            | VIRTIO_NET_HDR_GSO_UDP_L4 => {
                if repr.gso_size == 0 {
                    Err(VirtioNetError::ZeroGsoSize)
                } else {
                    Ok(repr)
                }
            }
            _ => Err(VirtioNetError::UnknownGsoType(gso_type)),
        }
    }

    /// The GSO type without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !VIRTIO_NET_HDR_GSO_ECN
    }

    /// True when the frame is a GSO super-frame to be segmented by someone.
    pub fn is_gso(&self) -> bool {
        self.gso_kind() != VIRTIO_NET_HDR_GSO_NONE
    }

    /// True when the frame's L4 checksum is partial (NEEDS_CSUM).
    pub fn needs_csum(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    /// Length of the emitted header: always [`VIRTIO_NET_HDR_LEN`].
    pub const fn buffer_len(&self) -> usize {
        VIRTIO_NET_HDR_LEN
    }

    /// Writes the header (`num_buffers` = 0). Never panics; on a buffer shorter than
    /// [`Self::buffer_len`] (only possible with `new_unchecked`) the fields that do not
    /// fit are left out.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, hdr: &mut VirtioNetHdr<T>) {
        hdr.set_flags(self.flags);
        hdr.set_gso_type(self.gso_type);
        hdr.set_hdr_len(self.hdr_len);
        hdr.set_gso_size(self.gso_size);
        hdr.set_csum_start(self.csum_start);
        hdr.set_csum_offset(self.csum_offset);
        hdr.set_num_buffers(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO super-frame as the kernel hands it up: NEEDS_CSUM, TCPV4, hdr_len 66,
    /// MSS 1448, checksum from byte 34 (after Ethernet + IPv4), TCP checksum at +16.
    static TSO_BYTES: [u8; 12] = [
        0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x00, 0x00,
    ];

    fn tso_repr() -> VirtioNetRepr {
        VirtioNetRepr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    #[test]
    fn test_deconstruct() {
        let hdr = VirtioNetHdr::new_checked(&TSO_BYTES[..]).unwrap();
        assert_eq!(hdr.flags(), VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(hdr.gso_type(), VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(hdr.hdr_len(), 66);
        assert_eq!(hdr.gso_size(), 1448);
        assert_eq!(hdr.csum_start(), 34);
        assert_eq!(hdr.csum_offset(), 16);
        assert_eq!(hdr.num_buffers(), 0);
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0xa5u8; 12];
        let mut hdr = VirtioNetHdr::new_unchecked(&mut bytes[..]);
        hdr.set_flags(VIRTIO_NET_HDR_F_NEEDS_CSUM);
        hdr.set_gso_type(VIRTIO_NET_HDR_GSO_TCPV4);
        hdr.set_hdr_len(66);
        hdr.set_gso_size(1448);
        hdr.set_csum_start(34);
        hdr.set_csum_offset(16);
        hdr.set_num_buffers(0);
        assert_eq!(bytes, TSO_BYTES);
    }

    #[test]
    fn test_parse() {
        let hdr = VirtioNetHdr::new_checked(&TSO_BYTES[..]).unwrap();
        let repr = VirtioNetRepr::parse(&hdr).unwrap();
        assert_eq!(repr, tso_repr());
        assert!(repr.is_gso() && repr.needs_csum());
    }

    #[test]
    fn test_emit() {
        let repr = tso_repr();
        let mut bytes = [0xffu8; 12];
        assert_eq!(repr.buffer_len(), 12);
        repr.emit(&mut VirtioNetHdr::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, TSO_BYTES);
    }

    #[test]
    fn plain_header_is_all_zeros() {
        let mut bytes = [0xffu8; 12];
        VirtioNetRepr::PLAIN.emit(&mut VirtioNetHdr::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, [0u8; 12]);
        let repr = VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&bytes[..])).unwrap();
        assert!(!repr.is_gso() && !repr.needs_csum());
    }

    #[test]
    fn ecn_bit_is_kept_and_ignored_for_kind() {
        let mut bytes = TSO_BYTES;
        bytes[1] = VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN;
        let repr = VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&bytes[..])).unwrap();
        assert_eq!(repr.gso_type, 0x84);
        assert_eq!(repr.gso_kind(), VIRTIO_NET_HDR_GSO_TCPV6);
    }

    #[test]
    fn rejects_bogus_headers() {
        assert_eq!(
            VirtioNetHdr::new_checked(&TSO_BYTES[..11]).unwrap_err(),
            VirtioNetError::Truncated
        );
        let short = VirtioNetHdr::new_unchecked(&TSO_BYTES[..3]);
        assert_eq!(VirtioNetRepr::parse(&short), Err(VirtioNetError::Truncated));
        // Getters on a short unchecked view read 0 rather than panic.
        assert_eq!(short.gso_size(), 0);

        let mut bad_flags = TSO_BYTES;
        bad_flags[0] = 0x04;
        assert_eq!(
            VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&bad_flags[..])),
            Err(VirtioNetError::UnknownFlags(0x04))
        );
        let mut bad_type = TSO_BYTES;
        bad_type[1] = 2;
        assert_eq!(
            VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&bad_type[..])),
            Err(VirtioNetError::UnknownGsoType(2))
        );
        let mut zero_mss = TSO_BYTES;
        zero_mss[4] = 0;
        zero_mss[5] = 0;
        assert_eq!(
            VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&zero_mss[..])),
            Err(VirtioNetError::ZeroGsoSize)
        );
    }

    #[test]
    fn short_unchecked_buffer_never_panics() {
        let mut bytes = [0u8; 5];
        let mut hdr = VirtioNetHdr::new_unchecked(&mut bytes[..]);
        tso_repr().emit(&mut hdr);
        assert_eq!(bytes, [0x01, 0x01, 0x42, 0x00, 0x00]);
    }
}
