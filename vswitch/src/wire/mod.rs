//! Wire formats the switch reads and writes that etherparse does not cover, and the
//! one-pass frame classification the switch decides on.
//!
//! - [`virtio_net`]: the virtio-net header on every frame of our TAPs, as a smoltcp-style
//!   view ([`VirtioNetHdr`]) and validated representation ([`VirtioNetRepr`]).
//! - [`frame`]: [`classify`], which reads an Ethernet frame (Ethernet, one VLAN tag, ARP,
//!   IPv4 + L4 ports, IPv6) with etherparse into a small [`FrameInfo`].
//!
//! Invariants: parsing untrusted bytes never panics and never allocates; nothing here
//! does I/O.
#![forbid(unsafe_code)]

pub mod frame;
pub mod virtio_net;

pub use frame::{
    classify, ArpInfo, FrameError, FrameInfo, L3Info, L4Ports, ARP_OP_REPLY, ARP_OP_REQUEST,
};
pub use virtio_net::{VirtioNetError, VirtioNetHdr, VirtioNetRepr, VIRTIO_NET_HDR_LEN};
