//! Fuzz target: a VXLAN datagram (the UDP payload) from the underlay.
//!
//! [`overlay::decapsulate`] with VNI 1 must return the inner frame that follows the
//! header, or a clean error; [`VxlanPacket::new_checked`] + [`VxlanRepr::parse`] must
//! agree with it, and what parses must emit and parse back to the same value. Whatever
//! decapsulates must encapsulate back to a datagram that decapsulates to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay::vxlan::{FLAG_I, MAX_VNI};
use overlay::{
    decapsulate, encapsulate, DecapError, VxlanError, VxlanPacket, VxlanRepr, VXLAN_HEADER_LEN,
};

const VNI: u32 = 1;

fuzz_target!(|data: &[u8]| {
    let decap = decapsulate(VNI, data);
    match decap {
        Ok(inner) => {
            assert_eq!(inner, &data[VXLAN_HEADER_LEN..]);
            assert!(inner.len() >= 14, "inner frame shorter than Ethernet");
            // Re-encapsulate: the same inner frame comes back out.
            let mut out = vec![0u8; VXLAN_HEADER_LEN + inner.len()];
            assert_eq!(encapsulate(VNI, inner, &mut out), Ok(out.len()));
            assert_eq!(decapsulate(VNI, &out), Ok(inner));
        }
        Err(DecapError::Truncated) => assert!(data.len() < VXLAN_HEADER_LEN),
        Err(DecapError::MissingIFlag) => assert_eq!(data[0] & FLAG_I, 0),
        Err(DecapError::WrongVni { got }) => assert_ne!(got, VNI),
        Err(DecapError::InnerTooShort) => assert!(data.len() < VXLAN_HEADER_LEN + 14),
    }

    // Accessors of an unchecked view never panic, short buffers included.
    let unchecked = VxlanPacket::new_unchecked(data);
    let _ = (
        unchecked.flags(),
        unchecked.i_flag(),
        unchecked.vni(),
        unchecked.payload(),
    );

    let packet = match VxlanPacket::new_checked(data) {
        Ok(packet) => packet,
        Err(e) => {
            assert_eq!(e, VxlanError::Truncated);
            assert!(data.len() < VXLAN_HEADER_LEN);
            return;
        }
    };
    assert_eq!(packet.payload(), &data[VXLAN_HEADER_LEN..]);
    let repr = match VxlanRepr::parse(&packet) {
        Ok(repr) => repr,
        Err(e) => {
            assert_eq!(e, VxlanError::MissingIFlag);
            assert!(!packet.i_flag());
            return;
        }
    };
    assert!(repr.vni <= MAX_VNI);
    assert_eq!(repr.vni, packet.vni());
    // The view and decapsulate agree: with a whole inner Ethernet header, the datagram
    // decapsulates exactly when it carries our VNI.
    if data.len() >= VXLAN_HEADER_LEN + 14 {
        assert_eq!(decap.is_ok(), repr.vni == VNI);
    }

    // Round trip: emit over garbage (the payload stays) and parse again.
    let mut bytes = data.to_vec();
    let mut view = VxlanPacket::new_unchecked(&mut bytes[..]);
    assert_eq!(repr.emit(&mut view), Ok(()));
    let again = VxlanPacket::new_checked(&bytes[..]).expect("same length");
    assert_eq!(VxlanRepr::parse(&again), Ok(repr));
    assert_eq!(again.flags(), FLAG_I, "reserved flag bits not cleared");
    assert_eq!(again.payload(), packet.payload());
});
