//! Fuzz target: the 12-byte virtio-net header in front of every frame a pod writes to its
//! TAP.
//!
//! [`VirtioNetHdr::new_checked`] must reject exactly the buffers shorter than 12 bytes;
//! [`VirtioNetRepr::parse`] must agree with the raw getters, and what it accepts must
//! emit to 12 bytes that parse back to the same value. The getters and setters of an
//! unchecked view over a short buffer must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::wire::{VirtioNetError, VirtioNetHdr, VirtioNetRepr, VIRTIO_NET_HDR_LEN};

fuzz_target!(|data: &[u8]| {
    // Accessors on any unchecked view, short ones included, never panic.
    let unchecked = VirtioNetHdr::new_unchecked(data);
    let _ = (
        unchecked.flags(),
        unchecked.gso_type(),
        unchecked.hdr_len(),
        unchecked.gso_size(),
        unchecked.csum_start(),
        unchecked.csum_offset(),
        unchecked.num_buffers(),
    );
    let mut scratch = data.to_vec();
    let mut view = VirtioNetHdr::new_unchecked(&mut scratch[..]);
    VirtioNetRepr::PLAIN.emit(&mut view);

    let hdr = match VirtioNetHdr::new_checked(data) {
        Ok(hdr) => hdr,
        Err(e) => {
            assert_eq!(e, VirtioNetError::Truncated);
            assert!(data.len() < VIRTIO_NET_HDR_LEN);
            assert_eq!(
                VirtioNetRepr::parse(&unchecked),
                Err(VirtioNetError::Truncated)
            );
            return;
        }
    };
    assert!(data.len() >= VIRTIO_NET_HDR_LEN);
    let Ok(repr) = VirtioNetRepr::parse(&hdr) else {
        return;
    };
    assert_eq!(repr.flags, hdr.flags());
    assert_eq!(repr.gso_type, hdr.gso_type());
    assert_eq!(repr.hdr_len, hdr.hdr_len());
    assert_eq!(repr.gso_size, hdr.gso_size());
    assert_eq!(repr.csum_start, hdr.csum_start());
    assert_eq!(repr.csum_offset, hdr.csum_offset());
    if repr.is_gso() {
        assert_ne!(repr.gso_size, 0, "GSO header with gso_size 0 accepted");
    }

    // Round trip: emit into 12 bytes (from garbage) and parse again.
    let mut bytes = [0xa5u8; VIRTIO_NET_HDR_LEN];
    assert_eq!(repr.buffer_len(), VIRTIO_NET_HDR_LEN);
    repr.emit(&mut VirtioNetHdr::new_unchecked(&mut bytes[..]));
    let again = VirtioNetHdr::new_checked(&bytes[..]).expect("12 bytes are a whole header");
    assert_eq!(again.num_buffers(), 0);
    assert_eq!(VirtioNetRepr::parse(&again), Ok(repr));
    // The header bytes are the input's, but for num_buffers, which emit zeroes.
    assert_eq!(bytes[..10], data[..10]);
});
