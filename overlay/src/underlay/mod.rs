//! The underlay: how VXLAN datagrams travel between nodes.
//!
//! [`Underlay`] is the I/O interface the switch's data path drives: send one VXLAN
//! datagram (VXLAN header + inner frame, see [`crate::encap`]) to a remote VTEP, and
//! receive one without blocking. Implementations:
//!
//! - [`UdpUnderlay`]: a kernel UDP socket; the kernel adds the outer IPv4/UDP headers.
//! - [`MemoryUnderlay`] (feature `test-utils`): nodes of an in-memory [`MemoryMesh`],
//!   so several switches can be joined in one process for tests and benches.
//! - [`AfxdpUnderlay`]: AF_XDP sockets on the underlay device and an XDP program that
//!   steers this node's VXLAN packets to them; whole frames, with outer headers from
//!   [`crate::encap::OuterHeaders`]. Its OS-facing code (`afxdp/sys.rs`) is the only
//!   unsafe code of the crate.
#![deny(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;

pub mod afxdp;
mod udp;
pub use afxdp::{AfxdpError, AfxdpMode, AfxdpUnderlay};
pub use udp::UdpUnderlay;

#[cfg(any(test, feature = "test-utils"))]
mod memory;
#[cfg(any(test, feature = "test-utils"))]
pub use memory::{MemoryMesh, MemoryUnderlay};

/// Carries VXLAN datagrams between VTEPs.
pub trait Underlay {
    /// Sends one VXLAN datagram (VXLAN header + inner frame) to the VTEP at `dst`, on
    /// the underlay's VXLAN port.
    ///
    /// `src_port_hint` is the outer UDP source port the inner flow hashes to
    /// ([`crate::flow_hash::source_port`]); an underlay that builds its own UDP header
    /// uses it, one that cannot choose it per datagram may ignore it.
    ///
    /// # Errors
    /// The I/O error of the send, including `WouldBlock` when the underlay cannot take
    /// the datagram now; the caller counts it as a drop.
    fn send(&self, datagram: &[u8], dst: Ipv4Addr, src_port_hint: u16) -> io::Result<()>;

    /// Receives one datagram into `buf` without blocking: `Ok(Some((len, src)))` with
    /// the datagram's length and the sending VTEP's address, or `Ok(None)` when nothing
    /// is waiting. A datagram longer than `buf` is truncated to `buf.len()`.
    ///
    /// # Errors
    /// The I/O error of the receive (never `WouldBlock`, which is `Ok(None)`).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>>;
}
