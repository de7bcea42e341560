//! The VXLAN header (RFC 7348 §5): eight bytes in front of the inner Ethernet frame,
//! carried in a UDP datagram to port 4789.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Invariants:
//! - [`VxlanPacket::new_checked`] is the only way untrusted bytes become a view; it
//!   guarantees the buffer holds at least [`VXLAN_HEADER_LEN`] bytes.
//! - No accessor panics, even on a view made with [`VxlanPacket::new_unchecked`] over a
//!   short buffer: getters then read 0 (and an empty payload) and setters write nothing.
//! - [`VxlanRepr::parse`] requires the I flag and ignores every reserved bit, as RFC 7348
//!   §5 asks of a receiver.
//! - [`VxlanRepr::emit`] writes the I flag, the VNI and zero reserved bits, and never
//!   panics on a buffer of [`VxlanRepr::buffer_len`] bytes; a VNI wider than 24 bits is
//!   an error, not a truncation.
#![forbid(unsafe_code)]

/// Length in bytes of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = 8;

/// The IANA-assigned UDP destination port for VXLAN (RFC 7348 §5).
pub const DEFAULT_PORT: u16 = 4789;

/// The I flag in the first byte: set when the VNI is valid. RFC 7348 requires it.
pub const FLAG_I: u8 = 0x08;

/// The largest VNI: the field is 24 bits wide.
pub const MAX_VNI: u32 = 0x00FF_FFFF;

/// Field offsets of the header.
mod field {
    use core::ops::{Range, RangeFrom};

    pub const FLAGS: usize = 0;
    pub const RESERVED_1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED_2: usize = 7;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Why VXLAN bytes were rejected or a header could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    /// The buffer is shorter than the 8-byte VXLAN header.
    #[error("buffer shorter than the 8-byte VXLAN header")]
    Truncated,
    /// The I flag is clear, so the VNI is not valid (RFC 7348 §5).
    #[error("VXLAN header without the I flag")]
    MissingIFlag,
    /// A VNI does not fit the 24-bit field.
    #[error("VNI {0} does not fit in 24 bits")]
    VniOutOfRange(u32),
}

/// A read/write view of a VXLAN header and the inner frame behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps a buffer without checking its length. Accessors on a short buffer read
    /// zeros instead of panicking; use [`VxlanPacket::new_checked`] for untrusted input.
    pub const fn new_unchecked(buffer: T) -> VxlanPacket<T> {
        VxlanPacket { buffer }
    }

    /// Wraps a buffer after checking that it holds a whole header.
    ///
    /// # Errors
    /// [`VxlanError::Truncated`] when the buffer is shorter than [`VXLAN_HEADER_LEN`].
    pub fn new_checked(buffer: T) -> Result<VxlanPacket<T>, VxlanError> {
        let packet = VxlanPacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds a whole header.
    ///
    /// # Errors
    /// [`VxlanError::Truncated`] when the buffer is shorter than [`VXLAN_HEADER_LEN`].
    pub fn check_len(&self) -> Result<(), VxlanError> {
        if self.buffer.as_ref().len() < VXLAN_HEADER_LEN {
            Err(VxlanError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte, reserved bits included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref().get(field::FLAGS).copied().unwrap_or(0)
    }

    /// Whether the I flag (valid VNI) is set.
    pub fn i_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VXLAN Network Identifier.
    pub fn vni(&self) -> u32 {
        match self.buffer.as_ref().get(field::VNI) {
            Some(&[a, b, c]) => u32::from_be_bytes([0, a, b, c]),
            _ => 0,
        }
    }

    /// The inner Ethernet frame (empty when the buffer holds no more than the header).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Writes the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(field::FLAGS) {
            *byte = flags;
        }
    }

    /// Writes the VNI; bits above the low 24 are dropped, so check against [`MAX_VNI`]
    /// first (as [`VxlanRepr::emit`] does).
    pub fn set_vni(&mut self, vni: u32) {
        if let Some(bytes) = self.buffer.as_mut().get_mut(field::VNI) {
            let [_, a, b, c] = vni.to_be_bytes();
            bytes.copy_from_slice(&[a, b, c]);
        }
    }

    /// Zeroes both reserved fields.
    pub fn clear_reserved(&mut self) {
        let buffer = self.buffer.as_mut();
        if let Some(bytes) = buffer.get_mut(field::RESERVED_1) {
            bytes.fill(0);
        }
        if let Some(byte) = buffer.get_mut(field::RESERVED_2) {
            *byte = 0;
        }
    }

    /// The inner Ethernet frame, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD)
            .unwrap_or(&mut [])
    }
}

/// A validated VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// The VXLAN Network Identifier, at most [`MAX_VNI`].
    pub vni: u32,
}

impl VxlanRepr {
    /// Reads a header, requiring the I flag and ignoring the reserved bits.
    ///
    /// # Errors
    /// [`VxlanError::Truncated`] for a short buffer (possible only through
    /// [`VxlanPacket::new_unchecked`]); [`VxlanError::MissingIFlag`] when the I flag is
    /// clear.
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> Result<VxlanRepr, VxlanError> {
        packet.check_len()?;
        if !packet.i_flag() {
            return Err(VxlanError::MissingIFlag);
        }
        Ok(VxlanRepr { vni: packet.vni() })
    }

    /// The length of the header [`VxlanRepr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        VXLAN_HEADER_LEN
    }

    /// Writes the header: the I flag, the VNI and zero reserved bits. The payload is not
    /// touched.
    ///
    /// # Errors
    /// [`VxlanError::VniOutOfRange`] when the VNI is wider than 24 bits;
    /// [`VxlanError::Truncated`] when the buffer is shorter than [`VXLAN_HEADER_LEN`].
    /// Nothing is written on error.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut VxlanPacket<T>,
    ) -> Result<(), VxlanError> {
        if self.vni > MAX_VNI {
            return Err(VxlanError::VniOutOfRange(self.vni));
        }
        packet.check_len()?;
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// I flag, VNI 0x123456, then a 4-byte payload.
    static PACKET_BYTES: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    /// One VXLAN UDP payload written by the Linux kernel's own VXLAN driver (kernel
    /// 6.18): the ICMP echo request of `ping 10.244.0.2` between two network namespaces
    /// joined by a veth pair, each with `ip link add vx0 type vxlan id 1 dstport 4789
    /// remote <peer> local <self> dev veth0` (vx0 MACs 0a:58:0a:f4:00:01 and
    /// 0a:58:0a:f4:01:01, addresses 10.244.0.1/24 and 10.244.0.2/24). Captured with
    /// `ip netns exec A tshark -i veth0 -w x.pcap udp port 4789` and extracted with
    /// `tshark -r x.pcap -T fields -e udp.payload`; the script is
    /// `overlay/fixtures/capture-kernel-vxlan.sh`.
    pub(crate) static KERNEL_ICMP_ECHO: [u8; 106] = [
        // VXLAN: I flag, VNI 1.
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, //
        // Ethernet: dst 0a:58:0a:f4:01:01, src 0a:58:0a:f4:00:01, IPv4.
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01, 0x08, 0x00,
        // IPv4: 10.244.0.1 -> 10.244.0.2, ICMP, total length 84.
        0x45, 0x00, 0x00, 0x54, 0x5d, 0x00, 0x40, 0x00, 0x40, 0x01, 0xc7, 0xbe, 0x0a, 0xf4, 0x00,
        0x01, 0x0a, 0xf4, 0x00, 0x02, //
        // ICMP echo request, id 0x2860, seq 1, 56 bytes of ping data.
        0x08, 0x00, 0x1d, 0x8e, 0x28, 0x60, 0x00, 0x01, 0x60, 0xec, 0x05, 0x6b, 0x00, 0x00, 0x00,
        0x00, 0x88, 0xe6, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
        0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24,
        0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
        0x34, 0x35, 0x36, 0x37,
    ];

    #[test]
    fn test_deconstruct() {
        let packet = VxlanPacket::new_checked(&PACKET_BYTES[..]).expect("whole header");
        assert_eq!(packet.flags(), FLAG_I);
        assert!(packet.i_flag());
        assert_eq!(packet.vni(), 0x12_3456);
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(VxlanRepr::parse(&packet), Ok(VxlanRepr { vni: 0x12_3456 }));
    }

    #[test]
    fn test_construct() {
        // Start from garbage so the test shows emit clears the reserved bits.
        let mut bytes = [0xffu8; 12];
        let mut packet = VxlanPacket::new_unchecked(&mut bytes[..]);
        VxlanRepr { vni: 0x12_3456 }
            .emit(&mut packet)
            .expect("VNI fits");
        packet
            .payload_mut()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn kernel_fixture_parses() {
        let packet = VxlanPacket::new_checked(&KERNEL_ICMP_ECHO[..]).expect("whole header");
        assert_eq!(VxlanRepr::parse(&packet), Ok(VxlanRepr { vni: 1 }));
        let inner = packet.payload();
        assert_eq!(inner.len(), 98);
        assert_eq!(inner.get(12..14), Some(&[0x08, 0x00][..]));
        // The kernel's inner IPv4 header and ICMP checksums verify with our sums.
        assert_eq!(crate::checksum::checksum(&inner[14..34]), 0);
        assert_eq!(crate::checksum::checksum(&inner[34..]), 0);
        // Our emitter writes the same header the kernel did.
        let mut ours = [0u8; VXLAN_HEADER_LEN];
        VxlanRepr { vni: 1 }
            .emit(&mut VxlanPacket::new_unchecked(&mut ours[..]))
            .expect("VNI fits");
        assert_eq!(KERNEL_ICMP_ECHO.get(..VXLAN_HEADER_LEN), Some(&ours[..]));
    }

    #[test]
    fn reserved_bits_ignored_on_receive() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x2a, 0xff];
        let packet = VxlanPacket::new_checked(&bytes[..]).expect("whole header");
        assert_eq!(VxlanRepr::parse(&packet), Ok(VxlanRepr { vni: 42 }));
    }

    #[test]
    fn missing_i_flag_rejected() {
        let bytes = [0xf7, 0, 0, 0, 0, 0, 1, 0];
        let packet = VxlanPacket::new_checked(&bytes[..]).expect("whole header");
        assert_eq!(VxlanRepr::parse(&packet), Err(VxlanError::MissingIFlag));
    }

    #[test]
    fn truncated_rejected_and_unchecked_view_does_not_panic() {
        for len in 0..VXLAN_HEADER_LEN {
            let bytes = [FLAG_I; VXLAN_HEADER_LEN];
            let short = bytes.get(..len).unwrap_or(&[]);
            assert_eq!(VxlanPacket::new_checked(short), Err(VxlanError::Truncated));
            let view = VxlanPacket::new_unchecked(short);
            assert_eq!(VxlanRepr::parse(&view), Err(VxlanError::Truncated));
            assert!(view.payload().is_empty());
            let _ = (view.flags(), view.vni());
            let mut buf = [0u8; VXLAN_HEADER_LEN];
            let mut view = VxlanPacket::new_unchecked(buf.get_mut(..len).unwrap_or(&mut []));
            assert_eq!(
                VxlanRepr { vni: 1 }.emit(&mut view),
                Err(VxlanError::Truncated)
            );
            view.set_vni(7);
            view.set_flags(1);
            view.clear_reserved();
            assert!(view.payload_mut().is_empty());
        }
    }

    #[test]
    fn vni_above_24_bits_is_an_emit_error() {
        let mut bytes = [0u8; VXLAN_HEADER_LEN];
        let mut packet = VxlanPacket::new_unchecked(&mut bytes[..]);
        assert_eq!(
            VxlanRepr { vni: MAX_VNI + 1 }.emit(&mut packet),
            Err(VxlanError::VniOutOfRange(MAX_VNI + 1))
        );
        assert_eq!(bytes, [0u8; VXLAN_HEADER_LEN], "nothing written on error");
        let mut packet = VxlanPacket::new_unchecked(&mut bytes[..]);
        VxlanRepr { vni: MAX_VNI }
            .emit(&mut packet)
            .expect("largest VNI fits");
        assert_eq!(VxlanRepr::parse(&packet), Ok(VxlanRepr { vni: MAX_VNI }));
    }
}
