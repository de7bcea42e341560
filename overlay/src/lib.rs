//! The overlay: VXLAN encapsulation (RFC 7348) and the underlay I/O that carries it
//! between nodes. It knows nothing of MAC tables or pods: the switch hands it inner
//! frames and a destination VTEP, and gets inner frames and a source VTEP back.
//!
//! - [`vxlan`]: the 8-byte VXLAN header as a zero-copy view and a validated `Repr`.
//! - [`encap`]: VXLAN datagrams for the UDP underlay, and whole outer
//!   Ethernet/IPv4/UDP/VXLAN headers for an underlay that sends raw frames.
//! - [`flow_hash`]: the outer UDP source port, a hash of the inner flow.
//! - [`gso`] and [`checksum`]: cutting a pod's TSO/USO super-frame into MTU-sized frames
//!   with correct headers and checksums before it enters the overlay.
//! - [`underlay`]: the underlay I/O trait, its UDP-socket implementation and (with the
//!   `test-utils` feature) an in-memory mesh for tests and benches.
//!
//! Everything but [`underlay`] is sans-IO: it reads and writes caller-provided buffers,
//! never allocates and never panics on any input. The only unsafe code is in the
//! underlay's two OS-facing files (`underlay/udp_sys.rs`: UDP GSO/GRO and batched
//! system calls; `underlay/afxdp/sys.rs`: bpf(), mmap, ring indices); every other module
//! forbids it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod checksum;
pub mod encap;
pub mod flow_hash;
pub mod gro;
pub mod gso;
pub mod underlay;
pub mod vxlan;

pub use encap::{decapsulate, encapsulate, DecapError, EncapError, OuterHeaders};
pub use flow_hash::source_port;
pub use gro::{Coalescer, Push};
pub use gso::{segment, segment_len, GsoError, GsoKind, Offload};
pub use underlay::{
    AfxdpError, AfxdpMode, AfxdpUnderlay, Received, SendReport, UdpOffloads, UdpUnderlay, Underlay,
};
#[cfg(any(test, feature = "test-utils"))]
pub use underlay::{MemoryMesh, MemoryUnderlay};
pub use vxlan::{VxlanError, VxlanPacket, VxlanRepr, DEFAULT_PORT, VXLAN_HEADER_LEN};
