//! The AF_XDP underlay: VXLAN datagrams as whole Ethernet frames through AF_XDP
//! sockets, bypassing the kernel's UDP/IP stack on the node.
//!
//! [`AfxdpUnderlay::open`] sets it up on the underlay device:
//!
//! 1. an XSKMAP and the XDP program of [`program`], which redirects exactly this node's
//!    VXLAN packets (UDP to the VXLAN port on the VTEP address) to the socket of the
//!    queue they arrived on and passes everything else to the kernel;
//! 2. one AF_XDP socket per receive queue ([`xsk`]): UMEM, fill, completion, RX and TX
//!    rings, `XDP_USE_NEED_WAKEUP`; zero-copy where the driver has it, copy mode
//!    otherwise;
//! 3. the program attached as a BPF link: native XDP where the driver has it (veth
//!    does), generic XDP otherwise. A link detaches when its descriptor closes, so the
//!    program goes away when the underlay is dropped *and* when the process ends in any
//!    other way, `kill -9` included: a crash leaves nothing behind to replace.
//!
//! Sending builds the outer Ethernet/IPv4/UDP headers ([`frame`]) with the next-hop
//! MAC the [`neigh::Resolver`] keeps from the kernel's neighbour table.
//!
//! The unsafe code (bpf(), mmap, the rings' shared indices) is all in `sys`, the one
//! module allowed it; every other module here forbids it.
#![deny(unsafe_code)]

pub mod frame;
mod neigh;
pub mod netlink;
pub mod program;
mod sys;
mod xsk;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::encap::{OuterHeaders, ETHERNET_HEADER_LEN};

use super::{Received, SendReport, Underlay};
use netlink::Netlink;
use xsk::Xsk;

pub use frame::BadFrame;

/// The outer IPv4 TTL of frames we send (what Linux uses by default).
const TTL: u8 = 64;

/// How the underlay runs, for `vswitchctl show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfxdpMode {
    /// Native (driver) XDP rather than generic XDP.
    pub native: bool,
    /// Zero-copy sockets rather than copy mode.
    pub zero_copy: bool,
    /// Sockets, one per receive queue.
    pub queues: u32,
}

impl fmt::Display for AfxdpMode {
    /// `native, copy, 1 queue`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {} queue{}",
            if self.native { "native" } else { "generic" },
            if self.zero_copy { "zero-copy" } else { "copy" },
            self.queues,
            if self.queues == 1 { "" } else { "s" }
        )
    }
}

/// Why AF_XDP cannot run on the underlay device.
#[derive(Debug, thiserror::Error)]
pub enum AfxdpError {
    /// The device could not be read.
    #[error("reading underlay device {dev}: {source}")]
    Device {
        /// The device.
        dev: String,
        /// Why.
        source: io::Error,
    },
    /// Frames of the device's MTU do not fit a UMEM frame.
    #[error("underlay device {dev} has MTU {mtu}; AF_XDP here carries frames up to MTU {max}")]
    Mtu {
        /// The device.
        dev: String,
        /// Its MTU.
        mtu: u32,
        /// The largest MTU we take.
        max: usize,
    },
    /// The kernel refused a BPF map or program (no `CAP_BPF`, old kernel, verifier).
    #[error("loading the XDP program: {0} (needs Linux >= 5.9, CAP_BPF and CAP_NET_ADMIN)")]
    Program(#[source] io::Error),
    /// An AF_XDP socket could not be set up.
    #[error("AF_XDP socket for queue {queue} of {dev}: {source}")]
    Socket {
        /// The device.
        dev: String,
        /// The queue.
        queue: u32,
        /// Why.
        source: io::Error,
    },
    /// Another XDP program is attached to the device.
    #[error("another XDP program is attached to {0}; vswitchd replaces only its own (links it holds), detach it first (ip link set dev {0} xdp off)")]
    Busy(String),
    /// The program could not be attached in either mode.
    #[error("attaching the XDP program to {dev}: {source}")]
    Attach {
        /// The device.
        dev: String,
        /// Why.
        source: io::Error,
    },
    /// The neighbour resolver could not start.
    #[error("reading the neighbour table: {0}")]
    Neighbours(#[source] io::Error),
}

/// Counters of the AF_XDP underlay itself (frames it saw that never became datagrams).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AfxdpCounters {
    /// Received frames that failed the checks of [`frame`].
    pub rx_bad_frames: u64,
    /// Datagrams not sent because the next hop's MAC is not known yet.
    pub tx_no_neighbour: u64,
    /// Received frames the kernel dropped before we saw them (RX ring full, no free
    /// receive buffer): the data path fell behind.
    pub rx_kernel_drops: u64,
}

impl AfxdpCounters {
    /// What was counted since `earlier`.
    pub fn since(&self, earlier: &AfxdpCounters) -> AfxdpCounters {
        AfxdpCounters {
            rx_bad_frames: self.rx_bad_frames.saturating_sub(earlier.rx_bad_frames),
            tx_no_neighbour: self.tx_no_neighbour.saturating_sub(earlier.tx_no_neighbour),
            rx_kernel_drops: self.rx_kernel_drops.saturating_sub(earlier.rx_kernel_drops),
        }
    }
}

/// The underlay as AF_XDP sockets on one device.
pub struct AfxdpUnderlay {
    // First: closing the link detaches the program before the sockets go.
    _link: OwnedFd,
    _program: OwnedFd,
    _map: OwnedFd,
    sockets: Vec<RefCell<Xsk>>,
    next_rx: Cell<usize>,
    local: Ipv4Addr,
    port: u16,
    src_mac: [u8; 6],
    mode: AfxdpMode,
    resolver: neigh::Resolver,
    next_hops: RefCell<HashMap<Ipv4Addr, [u8; 6]>>,
    next_hops_seen: Cell<u64>,
    counters: Cell<AfxdpCounters>,
    /// Sends only queue their descriptors; the owner calls [`AfxdpUnderlay::flush`] at
    /// the end of each batch.
    defer_wakeups: Cell<bool>,
}

impl fmt::Debug for AfxdpUnderlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfxdpUnderlay")
            .field("local", &self.local)
            .field("port", &self.port)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl AfxdpUnderlay {
    /// Sets up AF_XDP on device `dev` for VTEP address `local` and VXLAN port `port`
    /// (both for receiving and as the peers' port).
    ///
    /// # Errors
    /// An [`AfxdpError`] saying what is missing; nothing stays attached on error.
    pub fn open(dev: &str, local: Ipv4Addr, port: u16) -> Result<AfxdpUnderlay, AfxdpError> {
        let device = |source| AfxdpError::Device {
            dev: dev.to_owned(),
            source,
        };
        let mut netlink = Netlink::open(0, Duration::from_secs(2)).map_err(device)?;
        let link = netlink.link(dev).map_err(device)?;
        let max = xsk::MAX_FRAME - ETHERNET_HEADER_LEN;
        if usize::try_from(link.mtu).unwrap_or(usize::MAX) > max {
            return Err(AfxdpError::Mtu {
                dev: dev.to_owned(),
                mtu: link.mtu,
                max,
            });
        }
        let map = sys::xskmap_create(link.rx_queues).map_err(AfxdpError::Program)?;
        let insns = program::classifier(link.mac, local, port, map.as_raw_fd(), program::XDP_PASS);
        let program = sys::xdp_prog_load(&insns, "vswitch_xsk").map_err(AfxdpError::Program)?;
        // Attached before the sockets exist: a device that already has a program says so
        // first, and meanwhile our VXLAN finds no socket and passes to the kernel.
        let (link_fd, native) = attach(&program, link.ifindex, dev)?;

        let mut sockets = Vec::new();
        for queue in 0..link.rx_queues {
            let socket = match Xsk::open(link.ifindex, queue) {
                Ok(socket) => socket,
                // A device may allocate more queues than it runs (EINVAL past the last
                // real one): serve the ones it has.
                Err(e) if queue > 0 && e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(source) => {
                    return Err(AfxdpError::Socket {
                        dev: dev.to_owned(),
                        queue,
                        source,
                    })
                }
            };
            sys::xskmap_set(&map, queue, socket.fd()).map_err(|source| AfxdpError::Socket {
                dev: dev.to_owned(),
                queue,
                source,
            })?;
            sockets.push(RefCell::new(socket));
        }

        let resolver = neigh::Resolver::start(link.ifindex).map_err(AfxdpError::Neighbours)?;
        let mode = AfxdpMode {
            native,
            zero_copy: sockets.iter().all(|s| s.borrow().zero_copy()),
            queues: u32::try_from(sockets.len()).unwrap_or(u32::MAX),
        };
        Ok(AfxdpUnderlay {
            _link: link_fd,
            _program: program,
            _map: map,
            sockets,
            next_rx: Cell::new(0),
            local,
            port,
            src_mac: link.mac,
            mode,
            resolver,
            next_hops: RefCell::new(HashMap::new()),
            next_hops_seen: Cell::new(0),
            counters: Cell::new(AfxdpCounters::default()),
            defer_wakeups: Cell::new(false),
        })
    }

    /// Native or generic XDP, zero-copy or copy, and the number of queues.
    pub fn mode(&self) -> AfxdpMode {
        self.mode
    }

    /// The underlay's own counters; `rx_kernel_drops` is read from the kernel (one
    /// `getsockopt` per queue).
    pub fn counters(&self) -> AfxdpCounters {
        AfxdpCounters {
            rx_kernel_drops: self
                .sockets
                .iter()
                .map(|s| s.borrow().kernel_rx_drops())
                .sum(),
            ..self.counters.get()
        }
    }

    /// Has the next hops of `vteps` resolved now, ahead of the first frame to them
    /// (which would otherwise be dropped as `no_neighbour` while they resolve).
    pub fn resolve_ahead(&self, vteps: impl IntoIterator<Item = Ipv4Addr>) {
        for vtep in vteps {
            self.resolver.want(vtep);
        }
    }

    /// From now on [`Underlay::send`] and [`Underlay::send_segments`] only queue their
    /// frames on the TX ring and wake the kernel only when a ring runs full: the caller
    /// promises to call [`AfxdpUnderlay::flush`] at the end of every batch of sends, so
    /// a batch of many single datagrams costs one wake-up (`sendto`) rather than one
    /// each.
    pub fn defer_wakeups(&self) {
        self.defer_wakeups.set(true);
    }

    /// Wakes the kernel for send descriptors still queued: those a deferred send left
    /// (see [`AfxdpUnderlay::defer_wakeups`]) or a wake-up the kernel answered "busy"
    /// to. The data path calls it at the end of every batch and once a second, so a
    /// burst's tail cannot wait for the next frame.
    pub fn flush(&self) {
        for socket in &self.sockets {
            socket.borrow_mut().flush();
        }
    }

    /// Every socket's descriptor: poll them all for readability (one per queue).
    pub fn poll_fds(&self) -> Vec<RawFd> {
        self.sockets
            .iter()
            .map(|s| s.borrow().fd().as_raw_fd())
            .collect()
    }

    /// The outer headers to `dst` and the socket `src_port_hint` picks (so one flow
    /// keeps one queue). An unknown next hop counts `datagrams` as `tx_no_neighbour`
    /// and is `HostUnreachable`.
    fn route(
        &self,
        dst: Ipv4Addr,
        src_port_hint: u16,
        datagrams: usize,
    ) -> io::Result<(OuterHeaders, &RefCell<Xsk>)> {
        let Some(dst_mac) = self.next_hop(dst) else {
            let lost = u64::try_from(datagrams).unwrap_or(u64::MAX);
            self.count(|c| c.tx_no_neighbour = c.tx_no_neighbour.saturating_add(lost));
            return Err(io::Error::new(
                io::ErrorKind::HostUnreachable,
                format!("next hop of {dst} not resolved yet"),
            ));
        };
        let headers = OuterHeaders {
            src_mac: self.src_mac,
            dst_mac,
            src_ip: self.local,
            dst_ip: dst,
            src_port: src_port_hint,
            dst_port: self.port,
            ttl: TTL,
            vni: 0,
        };
        let index = usize::from(src_port_hint) % self.sockets.len().max(1);
        let socket = self
            .sockets
            .get(index)
            .ok_or_else(|| io::Error::other("no AF_XDP socket"))?;
        Ok((headers, socket))
    }

    fn count(&self, update: impl FnOnce(&mut AfxdpCounters)) {
        let mut counters = self.counters.get();
        update(&mut counters);
        self.counters.set(counters);
    }

    /// The MAC of `vtep`'s next hop; on a miss, asks the resolver for it.
    fn next_hop(&self, vtep: Ipv4Addr) -> Option<[u8; 6]> {
        let mut seen = self.next_hops_seen.get();
        if let Some(table) = self.resolver.table_if_newer(&mut seen) {
            self.next_hops_seen.set(seen);
            *self.next_hops.borrow_mut() = table;
        }
        let mac = self.next_hops.borrow().get(&vtep).copied();
        if mac.is_none() {
            self.resolver.want(vtep);
        }
        mac
    }
}

/// Attaches `program` to `ifindex`: native first, then generic. Returns the link and
/// whether it is native.
fn attach(program: &OwnedFd, ifindex: u32, dev: &str) -> Result<(OwnedFd, bool), AfxdpError> {
    let busy = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST));
    match sys::xdp_link_create(program, ifindex, sys::XDP_FLAGS_DRV_MODE) {
        Ok(link) => return Ok((link, true)),
        Err(e) if busy(&e) => return Err(AfxdpError::Busy(dev.to_owned())),
        Err(_) => {}
    }
    match sys::xdp_link_create(program, ifindex, sys::XDP_FLAGS_SKB_MODE) {
        Ok(link) => Ok((link, false)),
        Err(e) if busy(&e) => Err(AfxdpError::Busy(dev.to_owned())),
        Err(source) => Err(AfxdpError::Attach {
            dev: dev.to_owned(),
            source,
        }),
    }
}

impl Underlay for AfxdpUnderlay {
    /// Builds the whole frame in a send frame of the socket `src_port_hint` picks (so
    /// one flow keeps one queue). An unknown next hop is resolved in the background;
    /// meanwhile the datagram is refused with `HostUnreachable`.
    fn send(&self, datagram: &[u8], dst: Ipv4Addr, src_port_hint: u16) -> io::Result<()> {
        let (headers, socket) = self.route(dst, src_port_hint, 1)?;
        socket.borrow_mut().send(self.defer_wakeups.get(), |out| {
            build(&headers, datagram, out)
        })
    }

    /// Builds every datagram's frame in a send frame of the one socket `src_port_hint`
    /// picks (one next-hop lookup for all), queues them on its TX ring together and
    /// wakes the kernel once for the batch. When the send frames or the TX ring run
    /// out, the report says how many went (`WouldBlock`).
    fn send_segments(
        &self,
        datagrams: &[u8],
        segment_len: usize,
        dst: Ipv4Addr,
        src_port_hint: u16,
    ) -> SendReport {
        if segment_len == 0 {
            return SendReport {
                sent: 0,
                error: Some(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "segment length 0",
                )),
            };
        }
        let count = datagrams.len().div_ceil(segment_len);
        if count == 0 {
            return SendReport::default();
        }
        let (headers, socket) = match self.route(dst, src_port_hint, count) {
            Ok(route) => route,
            Err(error) => {
                return SendReport {
                    sent: 0,
                    error: Some(error),
                }
            }
        };
        let (sent, error) = socket.borrow_mut().send_batch(
            datagrams.chunks(segment_len),
            self.defer_wakeups.get(),
            |datagram, out| build(&headers, datagram, out),
        );
        SendReport { sent, error }
    }

    /// Takes the next frame from the sockets in turn; frames that fail the checks of
    /// [`frame`] are counted and skipped.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
        let count = self.sockets.len();
        let mut empty = 0;
        while empty < count {
            let index = self.next_rx.get() % count.max(1);
            let Some(socket) = self.sockets.get(index) else {
                return Ok(None);
            };
            let received = socket.borrow_mut().receive(|frame| {
                let (range, src) = frame::parse(frame, self.local, self.port)?;
                let payload = frame.get(range).unwrap_or_default();
                let len = payload.len().min(buf.len());
                if let (Some(to), Some(from)) = (buf.get_mut(..len), payload.get(..len)) {
                    to.copy_from_slice(from);
                }
                Ok::<_, BadFrame>((len, src))
            });
            match received {
                Some(Ok(datagram)) => {
                    // Queues take turns frame by frame, so a busy one cannot starve
                    // the others when the data path cuts a batch short.
                    self.next_rx.set(index + 1);
                    return Ok(Some(datagram));
                }
                Some(Err(_)) => self.count(|c| c.rx_bad_frames += 1),
                None => {
                    socket.borrow_mut().idle();
                    empty += 1;
                    self.next_rx.set(index + 1);
                }
            }
        }
        Ok(None)
    }

    /// Drains the queues into up to `blocks.len()` blocks, taking from the sockets in
    /// rounds of at most [`RX_SHARE`] frames each (starting one socket further on every
    /// call), so a busy queue cannot starve the others; each socket's frames are
    /// released and refilled as one batch. Like UDP GRO, consecutive datagrams from one
    /// VTEP of one length share a block (a shorter one ends it), so a block carries up
    /// to `slot` bytes of a TCP stream's segments. Frames that fail the checks of
    /// [`frame`] are counted and skipped.
    fn recv_segments(
        &self,
        buf: &mut [u8],
        slot: usize,
        blocks: &mut [Received],
    ) -> io::Result<usize> {
        let count = self.sockets.len();
        if slot == 0 || count == 0 {
            return Ok(0);
        }
        let mut packer = Packer {
            buf,
            slot,
            blocks,
            filled: 0,
            open: None,
            bad: 0,
        };
        let first = self.next_rx.get() % count;
        self.next_rx.set(first + 1);
        let mut full = false;
        while !full {
            let mut taken = 0;
            for turn in 0..count {
                let Some(socket) = self.sockets.get((first + turn) % count) else {
                    continue;
                };
                let mut socket = socket.borrow_mut();
                let took = socket.receive_batch(RX_SHARE, |frame| {
                    let took = packer.push(frame, self.local, self.port);
                    full |= !took;
                    took
                });
                if took == 0 && !full {
                    socket.idle();
                }
                taken += took;
                if full {
                    break;
                }
            }
            if taken == 0 {
                break;
            }
        }
        packer.close();
        if packer.bad > 0 {
            let bad = packer.bad;
            self.count(|c| c.rx_bad_frames += bad);
        }
        Ok(packer.filled)
    }
}

/// Frames [`AfxdpUnderlay::recv_segments`] takes from one queue before it turns to the
/// next.
const RX_SHARE: usize = 64;

/// Packs received datagrams into the blocks of [`Underlay::recv_segments`].
struct Packer<'a> {
    buf: &'a mut [u8],
    slot: usize,
    blocks: &'a mut [Received],
    /// Blocks done.
    filled: usize,
    /// The block being filled (index `filled`).
    open: Option<Received>,
    bad: u64,
}

impl Packer<'_> {
    /// Puts the datagram of `frame` into the open block or a new one; false (frame
    /// not taken) when every block is used. A frame that fails the checks is taken and
    /// counted.
    fn push(&mut self, frame: &[u8], local: Ipv4Addr, port: u16) -> bool {
        let Ok((range, src)) = frame::parse(frame, local, port) else {
            self.bad += 1;
            return true;
        };
        let payload = frame.get(range).unwrap_or_default();
        let len = payload.len();
        if let Some(open) = self.open.as_mut() {
            let joins = open.src == src
                && open.len % open.segment_len.max(1) == 0
                && len <= open.segment_len
                && len > 0
                && open.len + len <= self.slot;
            if joins {
                let at = self.filled * self.slot + open.len;
                if let (Some(to), Some(from)) = (self.buf.get_mut(at..at + len), payload.get(..)) {
                    to.copy_from_slice(from);
                    open.len += len;
                    return true;
                }
            }
        }
        self.close();
        if self.filled >= self.blocks.len() || (self.filled + 1) * self.slot > self.buf.len() {
            return false;
        }
        let len = len.min(self.slot);
        let at = self.filled * self.slot;
        if let (Some(to), Some(from)) = (self.buf.get_mut(at..at + len), payload.get(..len)) {
            to.copy_from_slice(from);
        }
        self.open = Some(Received {
            len,
            segment_len: len,
            src,
        });
        true
    }

    /// Ends the open block.
    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            if let Some(block) = self.blocks.get_mut(self.filled) {
                *block = open;
                self.filled += 1;
            }
        }
    }
}

/// Builds the frame of `datagram` in `out`; a datagram too long for a frame is
/// `EMSGSIZE`, as from a UDP socket.
fn build(headers: &OuterHeaders, datagram: &[u8], out: &mut [u8]) -> io::Result<usize> {
    frame::build(headers, datagram, out).map_err(|e| match e {
        crate::EncapError::BufferTooSmall { .. } | crate::EncapError::InnerTooLong(_) => {
            io::Error::from_raw_os_error(libc::EMSGSIZE)
        }
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    })
}

#[cfg(test)]
mod tests;
