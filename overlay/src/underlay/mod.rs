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
//!   [`crate::encap::OuterHeaders`].
//!
//! Besides one datagram at a time, the trait moves batches:
//! [`Underlay::send_segments`] sends several datagrams laid out back to back at one
//! stride (the layout of Linux UDP GSO, `UDP_SEGMENT`), and [`Underlay::recv_segments`]
//! fills several blocks of datagrams at once (the layout of UDP GRO and `recvmmsg`).
//! Both have default implementations on top of `send` and `recv`, so an implementation
//! only overrides them when it has a faster way.
//!
//! The crate's unsafe code is in two OS-facing files, each block with its `// SAFETY:`:
//! `udp_sys.rs` (`sendmsg` with `UDP_SEGMENT`, `sendmmsg`, `recvmmsg`) and
//! `afxdp/sys.rs` (bpf(), mmap, ring indices). Every other module forbids it.
#![deny(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;

pub mod afxdp;
mod udp;
mod udp_sys;
pub use afxdp::{AfxdpError, AfxdpMode, AfxdpUnderlay};
pub use udp::{UdpOffloads, UdpUnderlay, GRO_SLOT, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};

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

    /// Sends the datagrams in `datagrams` to the VTEP at `dst`: they lie back to back,
    /// every one `segment_len` bytes long but the last, which may be shorter (the layout
    /// of a Linux UDP GSO send). `src_port_hint` is as for [`Underlay::send`]; every
    /// datagram of one call belongs to one inner flow.
    ///
    /// The default sends them one by one with [`Underlay::send`] and stops at the first
    /// error.
    fn send_segments(
        &self,
        datagrams: &[u8],
        segment_len: usize,
        dst: Ipv4Addr,
        src_port_hint: u16,
    ) -> SendReport {
        let mut report = SendReport::default();
        if segment_len == 0 {
            report.error = Some(io::Error::new(
                io::ErrorKind::InvalidInput,
                "segment length 0",
            ));
            return report;
        }
        for datagram in datagrams.chunks(segment_len) {
            match self.send(datagram, dst, src_port_hint) {
                Ok(()) => report.sent += 1,
                Err(error) => {
                    report.error = Some(error);
                    break;
                }
            }
        }
        report
    }

    /// Receives without blocking into up to `blocks.len()` blocks of `buf`, block `i`
    /// at `buf[i * slot..(i + 1) * slot]`; returns how many blocks were filled
    /// (0 when nothing is waiting). Block `i` holds `blocks[i].len` bytes: datagrams
    /// from `blocks[i].src` back to back, every one `blocks[i].segment_len` bytes long
    /// but the last, which may be shorter (with UDP GRO one block holds many datagrams;
    /// otherwise `segment_len == len` and a block is one datagram). A datagram longer
    /// than `slot` is truncated to `slot` bytes.
    ///
    /// The default fills one block per [`Underlay::recv`] call.
    ///
    /// # Errors
    /// The I/O error of the receive (never `WouldBlock`) when no block was filled; an
    /// error after the first block ends the batch early instead and is reported on the
    /// next call.
    fn recv_segments(
        &self,
        buf: &mut [u8],
        slot: usize,
        blocks: &mut [Received],
    ) -> io::Result<usize> {
        if slot == 0 {
            return Ok(0);
        }
        let mut filled = 0;
        for (room, block) in buf.chunks_exact_mut(slot).zip(blocks.iter_mut()) {
            match self.recv(room) {
                Ok(Some((len, src))) => {
                    *block = Received {
                        len,
                        segment_len: len,
                        src,
                    };
                    filled += 1;
                }
                Ok(None) => break,
                Err(error) if filled == 0 => return Err(error),
                Err(_) => break,
            }
        }
        Ok(filled)
    }
}

/// What [`Underlay::send_segments`] did: how many datagrams (from the front) left, and
/// the error that stopped the rest, if any.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Datagrams sent, counted from the first.
    pub sent: usize,
    /// Why the others were not sent (`None` when all were).
    pub error: Option<io::Error>,
}

/// One block of datagrams [`Underlay::recv_segments`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes in the block.
    pub len: usize,
    /// Length of every datagram in the block but the last (which may be shorter);
    /// equal to `len` when the block is one datagram. Never 0 for a filled block.
    pub segment_len: usize,
    /// The sending VTEP.
    pub src: Ipv4Addr,
}

impl Received {
    /// An empty block, to fill a `blocks` array with.
    pub const EMPTY: Received = Received {
        len: 0,
        segment_len: 0,
        src: Ipv4Addr::UNSPECIFIED,
    };
}

impl Default for Received {
    fn default() -> Received {
        Received::EMPTY
    }
}
