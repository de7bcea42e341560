//! The overlay: VXLAN encapsulation (RFC 7348) and the underlay I/O that carries it
//! between nodes. It knows nothing of MAC tables or pods: the switch hands it inner
//! frames and a destination VTEP, and gets inner frames and a source VTEP back.
//!
//! Today this crate holds nothing but its place in the workspace; the VXLAN view,
//! segmentation and the underlay implementations arrive with the overlay work.
#![forbid(unsafe_code)]
