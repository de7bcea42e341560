//! The UDP-socket underlay: one non-blocking, close-on-exec IPv4 UDP socket bound to
//! the VXLAN port to receive, and a small pool of sockets bound to ephemeral ports to
//! send. The kernel builds the outer IPv4 and UDP headers (RFC 7348 §5), routes, and
//! picks the outer MACs.
//!
//! RFC 7348 §5 recommends an outer UDP source port derived from a hash of the inner
//! flow, so that multipath underlays (ECMP, LACP) spread flows. A UDP socket's source
//! port is the one it is bound to, so the flow hash picks one of [`SEND_SOCKETS`] send
//! sockets: one flow always leaves from the same port (no reordering), different flows
//! spread over as many ports.
//!
//! Batches (see [`Underlay::send_segments`] and [`Underlay::recv_segments`]) use the
//! kernel's UDP offloads where it has them, probed when the underlay is bound:
//!
//! - Send: UDP GSO (`UDP_SEGMENT`, Linux 4.18): the datagrams of one inner super-frame
//!   go down in one `sendmsg`, at most [`GSO_MAX_SEGMENTS`] and 64 KiB per call, and
//!   the kernel cuts them (in the NIC or just before it). Without it, `sendmmsg`.
//! - Receive: UDP GRO (`UDP_GRO`, Linux 5.0): the kernel hands over runs of datagrams
//!   of one flow as one block with their size in a control message; `recvmmsg` fills
//!   up to [`udp_sys::MAX_BATCH`] blocks per call. Without GRO, one datagram a block.
//!
//! A feature missing at bind time, or failing for good at run time (GSO needs checksum
//! offload on the route's device, `EIO`), is switched off and logged once on stderr.
#![deny(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

use super::udp_sys::{self, UDP_GRO, UDP_SEGMENT};
use super::{Received, SendReport, Underlay};

/// The most datagrams one UDP GSO send carries (the kernel's `UDP_MAX_SEGMENTS` is 64
/// before Linux 6.9 and 128 after).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// The most bytes of datagrams one UDP GSO send carries: an IPv4 packet's 65,535 less
/// the IPv4 and UDP headers, as the kernel sizes the unsegmented packet.
pub const GSO_MAX_BYTES: usize = 65_535 - 20 - 8;

/// The smallest receive slot for which GRO is switched on: a coalesced block is up to
/// 64 KiB and the kernel truncates one that does not fit.
pub const GRO_SLOT: usize = 65_536;

/// Socket buffer size asked for in each direction. The kernel caps it at
/// `net.core.rmem_max` / `wmem_max`; a burst of 64 KiB super-frames cut into
/// datagrams needs far more than the usual 208 KiB default.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// How many send sockets (and so distinct outer source ports) the flow hash spreads
/// flows over.
pub const SEND_SOCKETS: usize = 16;

/// The underlay as a kernel UDP socket.
///
/// The socket is owned (closed on drop), non-blocking and close-on-exec. It has
/// `SO_REUSEADDR` and `SO_REUSEPORT`, so that each worker thread can bind its own
/// socket to the same address and port and the kernel spreads incoming flows over them.
#[derive(Debug)]
pub struct UdpUnderlay {
    socket: UdpSocket,
    senders: Vec<UdpSocket>,
    peer_port: u16,
    /// UDP GSO is usable (probed at bind, cleared when the kernel refuses it for good).
    gso: AtomicBool,
    /// The kernel accepts `UDP_GRO` on the receive socket.
    gro_supported: bool,
    /// `UDP_GRO` is switched on (by the first [`Underlay::recv_segments`] with a slot of
    /// at least [`GRO_SLOT`]; [`Underlay::recv`] switches it off again).
    gro_on: AtomicBool,
}

/// Which kernel offloads a [`UdpUnderlay`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOffloads {
    /// UDP GSO (`UDP_SEGMENT`) for [`Underlay::send_segments`]; otherwise `sendmmsg`.
    pub gso: bool,
    /// UDP GRO (`UDP_GRO`) for [`Underlay::recv_segments`]; otherwise `recvmmsg` of
    /// single datagrams.
    pub gro: bool,
}

impl UdpUnderlay {
    /// Binds a socket to `local:port` and sends to the same port on remote VTEPs (VXLAN
    /// peers share one port, by default [`crate::vxlan::DEFAULT_PORT`]). Port 0 picks a
    /// free port, which then is also the peer port.
    ///
    /// Path MTU discovery is left at the kernel default (`IP_PMTUDISC_WANT`: DF set,
    /// local fragmentation when a datagram exceeds the route MTU) rather than
    /// `IP_PMTUDISC_DO`: the switch sizes segments so datagrams fit the underlay MTU,
    /// and should one not, a fragmented datagram beats a silent `EMSGSIZE` drop.
    ///
    /// # Errors
    /// The error of `socket`, `setsockopt` or `bind` (for instance `AddrInUse`, or
    /// `AddrNotAvailable` when `local` is not an address of this host).
    pub fn bind(local: Ipv4Addr, port: u16) -> io::Result<UdpUnderlay> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES)?;
        socket.set_send_buffer_size(SOCKET_BUFFER_BYTES)?;
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(local, port)).into())?;
        let socket = UdpSocket::from(socket);
        let peer_port = match socket.local_addr()? {
            SocketAddr::V4(addr) => addr.port(),
            SocketAddr::V6(addr) => addr.port(),
        };
        let senders = (0..SEND_SOCKETS)
            .map(|_| {
                let sender = Socket::new(
                    Domain::IPV4,
                    Type::DGRAM.nonblocking().cloexec(),
                    Some(Protocol::UDP),
                )?;
                sender.set_send_buffer_size(SOCKET_BUFFER_BYTES)?;
                sender.bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())?;
                Ok(UdpSocket::from(sender))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let gso = match senders
            .iter()
            .try_for_each(|sender| udp_sys::set_udp_option(sender.as_fd(), UDP_SEGMENT, 0))
        {
            Ok(()) => true,
            Err(error) => {
                eprintln!(
                    "overlay: UDP GSO (UDP_SEGMENT) unavailable, sending with sendmmsg: {error}"
                );
                false
            }
        };
        // Probe GRO by switching it on and off again: it stays off until a caller asks
        // for blocks (see `recv_segments`).
        let gro_supported = match udp_sys::set_udp_option(socket.as_fd(), UDP_GRO, 1)
            .and_then(|()| udp_sys::set_udp_option(socket.as_fd(), UDP_GRO, 0))
        {
            Ok(()) => true,
            Err(error) => {
                eprintln!(
                    "overlay: UDP GRO (UDP_GRO) unavailable, receiving with recvmmsg: {error}"
                );
                false
            }
        };
        Ok(UdpUnderlay {
            socket,
            senders,
            peer_port,
            gso: AtomicBool::new(gso),
            gro_supported,
            gro_on: AtomicBool::new(false),
        })
    }

    /// Which offloads are in use now. GRO reads as on when the kernel has it (it is
    /// switched on at the first batch receive).
    pub fn offloads(&self) -> UdpOffloads {
        UdpOffloads {
            gso: self.gso.load(Ordering::Relaxed),
            gro: self.gro_supported,
        }
    }

    /// Switches UDP GSO off, for benchmarks and tests of the `sendmmsg` path.
    #[must_use]
    pub fn without_gso(self) -> UdpUnderlay {
        self.gso.store(false, Ordering::Relaxed);
        self
    }

    /// Never switches UDP GRO on, for benchmarks and tests of the `recvmmsg` path.
    #[must_use]
    pub fn without_gro(mut self) -> UdpUnderlay {
        self.gro_supported = false;
        self
    }

    fn sender(&self, src_port_hint: u16) -> &UdpSocket {
        let index = usize::from(src_port_hint) % self.senders.len().max(1);
        self.senders.get(index).unwrap_or(&self.socket)
    }

    /// Switches GRO on the receive socket to `on` if it is not already.
    fn set_gro(&self, on: bool) -> io::Result<()> {
        if self.gro_on.load(Ordering::Relaxed) != on {
            udp_sys::set_udp_option(self.socket.as_fd(), UDP_GRO, i32::from(on))?;
            self.gro_on.store(on, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One UDP GSO send of at most [`GSO_MAX_SEGMENTS`] datagrams; `Ok(false)` when GSO
    /// refused and the caller should fall back.
    fn send_gso_chunk(
        &self,
        socket: &UdpSocket,
        chunk: &[u8],
        segment_len: usize,
        to: SocketAddrV4,
    ) -> io::Result<bool> {
        let Ok(segment) = u16::try_from(segment_len) else {
            return Ok(false);
        };
        match udp_sys::send_gso(socket.as_fd(), chunk, segment, to) {
            Ok(sent) if sent == chunk.len() => Ok(true),
            Ok(sent) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes to {to}", chunk.len()),
            )),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                ) =>
            {
                if self.gso.swap(false, Ordering::Relaxed) {
                    eprintln!(
                        "overlay: UDP GSO refused by the kernel ({error}), sending with sendmmsg from now on"
                    );
                }
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Sends to `port` on remote VTEPs instead of our own port (for a peer, such as a
    /// kernel VXLAN device, configured with another `dstport`).
    #[must_use]
    pub fn with_peer_port(mut self, port: u16) -> UdpUnderlay {
        self.peer_port = port;
        self
    }

    /// The address and port the socket is bound to.
    ///
    /// # Errors
    /// The error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        match self.socket.local_addr()? {
            SocketAddr::V4(addr) => Ok(addr),
            SocketAddr::V6(addr) => Err(io::Error::other(format!(
                "IPv4 underlay socket bound to IPv6 address {addr}"
            ))),
        }
    }

    /// The UDP port datagrams are sent to.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }
}

impl Underlay for UdpUnderlay {
    /// Sends with `sendto` from the send socket `src_port_hint` picks (the hint is the
    /// inner flow's hash, so one flow keeps one source port).
    fn send(&self, datagram: &[u8], dst: Ipv4Addr, src_port_hint: u16) -> io::Result<()> {
        let to = SocketAddrV4::new(dst, self.peer_port);
        let socket = self.sender(src_port_hint);
        loop {
            match socket.send_to(datagram, to) {
                Ok(sent) if sent == datagram.len() => return Ok(()),
                Ok(sent) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("sent {sent} of {} bytes to {to}", datagram.len()),
                    ))
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends with UDP GSO, one `sendmsg` per [`GSO_MAX_SEGMENTS`] datagrams (and at most
    /// [`GSO_MAX_BYTES`]); without GSO, or when the kernel refuses it, with `sendmmsg`.
    fn send_segments(
        &self,
        datagrams: &[u8],
        segment_len: usize,
        dst: Ipv4Addr,
        src_port_hint: u16,
    ) -> SendReport {
        let to = SocketAddrV4::new(dst, self.peer_port);
        let socket = self.sender(src_port_hint);
        let mut report = SendReport::default();
        if segment_len == 0 {
            report.error = Some(io::Error::from(io::ErrorKind::InvalidInput));
            return report;
        }
        let per_send = (GSO_MAX_BYTES / segment_len).clamp(1, GSO_MAX_SEGMENTS);
        for chunk in datagrams.chunks(per_send * segment_len) {
            let count = chunk.len().div_ceil(segment_len);
            if self.gso.load(Ordering::Relaxed) {
                match self.send_gso_chunk(socket, chunk, segment_len, to) {
                    Ok(true) => {
                        report.sent += count;
                        continue;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        report.error = Some(error);
                        return report;
                    }
                }
            }
            let (sent, error) = udp_sys::send_mmsg(socket.as_fd(), chunk, segment_len, to);
            report.sent += sent;
            if error.is_some() {
                report.error = error;
                return report;
            }
        }
        report
    }

    /// Receives with one `recvmmsg`; with a `slot` of at least [`GRO_SLOT`] and a kernel
    /// that has it, UDP GRO is switched on first, so a block may hold many datagrams.
    fn recv_segments(
        &self,
        buf: &mut [u8],
        slot: usize,
        blocks: &mut [Received],
    ) -> io::Result<usize> {
        self.set_gro(self.gro_supported && slot >= GRO_SLOT)?;
        let mut raw = [(0, 0, Ipv4Addr::UNSPECIFIED); udp_sys::MAX_BATCH];
        let want = blocks.len().min(raw.len());
        let filled = udp_sys::recv_mmsg(
            self.socket.as_fd(),
            buf,
            slot,
            raw.get_mut(..want).unwrap_or_default(),
        )?;
        for (block, &(len, segment_len, src)) in blocks.iter_mut().zip(&raw).take(filled) {
            *block = Received {
                len,
                segment_len,
                src,
            };
        }
        Ok(filled)
    }

    /// Switches GRO off first if [`Underlay::recv_segments`] had switched it on, so that
    /// one call returns one datagram. (Datagrams the kernel had already coalesced before
    /// the switch arrive as one.)
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
        self.set_gro(false)?;
        loop {
            match self.socket.recv_from(buf) {
                Ok((len, SocketAddr::V4(from))) => return Ok(Some((len, *from.ip()))),
                // An IPv4 socket only hears IPv4 peers; never happens.
                Ok((_, SocketAddr::V6(_))) => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

impl AsRawFd for UdpUnderlay {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for UdpUnderlay {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Polls `recv` until a datagram arrives (the socket is non-blocking).
    fn recv_within(underlay: &UdpUnderlay, buf: &mut [u8]) -> (usize, Ipv4Addr) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(got) = underlay.recv(buf).unwrap() {
                return got;
            }
            assert!(Instant::now() < deadline, "no datagram within 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    // Each test binds its own loopback addresses (all of 127/8 is local on Linux):
    // with SO_REUSEADDR the kernel may hand two tests the same ephemeral port, and
    // distinct addresses keep their datagrams apart.

    /// Two VTEPs on two loopback addresses share one port, as real nodes share 4789.
    #[test]
    fn two_sockets_exchange_datagrams() {
        let (addr_a, addr_b) = (Ipv4Addr::new(127, 0, 10, 1), Ipv4Addr::new(127, 0, 10, 2));
        let a = UdpUnderlay::bind(addr_a, 0).unwrap();
        let port = a.local_addr().unwrap().port();
        let b = UdpUnderlay::bind(addr_b, port).unwrap();
        assert_eq!(b.peer_port(), port);
        assert_eq!(b.local_addr().unwrap(), SocketAddrV4::new(addr_b, port));

        let mut datagram = [0u8; 8 + 60];
        let len = crate::encap::encapsulate(1, &[0xab; 60], &mut datagram).unwrap();
        a.send(&datagram[..len], addr_b, 50000).unwrap();

        let mut buf = [0u8; 2048];
        let (got, from) = recv_within(&b, &mut buf);
        assert_eq!(from, addr_a);
        assert_eq!(
            crate::encap::decapsulate(1, &buf[..got]).unwrap(),
            &[0xab; 60][..]
        );

        b.send(b"reply-from-b", addr_a, 0).unwrap();
        let (got, from) = recv_within(&a, &mut buf);
        assert_eq!((&buf[..got], from), (&b"reply-from-b"[..], addr_b));
        assert_eq!(a.recv(&mut buf).unwrap(), None, "nothing more waiting");
    }

    /// RFC 7348 §5: the outer source port follows the inner flow. One hint always
    /// leaves from one port; different hints spread over several.
    #[test]
    fn source_port_follows_the_flow_hint() {
        let (addr_a, addr_b) = (Ipv4Addr::new(127, 0, 10, 5), Ipv4Addr::new(127, 0, 10, 6));
        let a = UdpUnderlay::bind(addr_a, 0).unwrap();
        let receiver = UdpSocket::bind(SocketAddrV4::new(addr_b, a.peer_port())).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let mut port_of = |hint: u16| {
            a.send(b"x", addr_b, hint).unwrap();
            match receiver.recv_from(&mut buf).unwrap().1 {
                SocketAddr::V4(from) => from.port(),
                SocketAddr::V6(_) => unreachable!(),
            }
        };
        let first = port_of(49_200);
        assert_eq!(port_of(49_200), first, "one flow, one source port");
        let ports: std::collections::HashSet<u16> = (0..64).map(|h| port_of(49_152 + h)).collect();
        assert_eq!(
            ports.len(),
            SEND_SOCKETS,
            "flows spread over every send socket"
        );
        assert!(
            !ports.contains(&a.peer_port()),
            "sent from ephemeral ports, not the VXLAN port"
        );
    }

    #[test]
    fn socket_is_nonblocking_and_cloexec() {
        let a = UdpUnderlay::bind(Ipv4Addr::new(127, 0, 20, 1), 0).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(a.recv(&mut buf).unwrap(), None);
        let fd = a.as_raw_fd();
        let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = flags
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .unwrap();
        let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
        const O_NONBLOCK: u32 = 0o4000;
        const O_CLOEXEC: u32 = 0o2000000;
        assert_ne!(flags & O_NONBLOCK, 0);
        assert_ne!(flags & O_CLOEXEC, 0);
    }

    /// Collects the datagrams of every block `recv_segments` returns until `want` have
    /// arrived.
    fn recv_datagrams(underlay: &UdpUnderlay, slot: usize, want: usize) -> (Vec<Vec<u8>>, usize) {
        let mut buf = vec![0u8; slot * 4];
        let mut blocks = [Received::EMPTY; 4];
        let mut datagrams = Vec::new();
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while datagrams.len() < want {
            assert!(
                Instant::now() < deadline,
                "got {} of {want}",
                datagrams.len()
            );
            let filled = underlay.recv_segments(&mut buf, slot, &mut blocks).unwrap();
            if filled == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            calls += 1;
            for (i, block) in blocks.iter().take(filled).enumerate() {
                assert!(block.segment_len > 0);
                let bytes = &buf[i * slot..i * slot + block.len];
                datagrams.extend(bytes.chunks(block.segment_len).map(<[u8]>::to_vec));
            }
        }
        (datagrams, calls)
    }

    /// `count` datagrams of `segment` bytes (the last `last` bytes), datagram `i` filled
    /// with byte `i`.
    fn strided(count: usize, segment: usize, last: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let datagrams: Vec<Vec<u8>> = (0..count)
            .map(|i| vec![u8::try_from(i).unwrap(); if i + 1 == count { last } else { segment }])
            .collect();
        (datagrams.concat(), datagrams)
    }

    /// Every combination of GSO and GRO on and off delivers the same datagrams, in
    /// order, with their boundaries: more than fit one GSO send, a short last one.
    #[test]
    fn segments_round_trip_with_and_without_offloads() {
        for (n, (gso, gro)) in [(true, true), (true, false), (false, true), (false, false)]
            .into_iter()
            .enumerate()
        {
            let n = u8::try_from(n).unwrap();
            let (addr_a, addr_b) = (
                Ipv4Addr::new(127, 0, 40, 1 + 2 * n),
                Ipv4Addr::new(127, 0, 40, 2 + 2 * n),
            );
            let mut a = UdpUnderlay::bind(addr_a, 0).unwrap();
            let mut b = UdpUnderlay::bind(addr_b, a.peer_port()).unwrap();
            if !gso {
                a = a.without_gso();
            }
            if !gro {
                b = b.without_gro();
            }
            let (bytes, sent) = strided(100, 1200, 77);
            let report = a.send_segments(&bytes, 1200, addr_b, 7);
            assert!(report.error.is_none(), "{:?}", report.error);
            assert_eq!(report.sent, 100);
            assert_eq!(
                a.offloads().gso,
                gso,
                "GSO stays as it was: loopback can checksum"
            );
            let (got, calls) = recv_datagrams(&b, GRO_SLOT, 100);
            assert_eq!(got, sent, "gso {gso} gro {gro}");
            if gso && gro {
                assert!(
                    calls < 100,
                    "GRO hands over blocks, not {calls} single datagrams"
                );
            }
        }
    }

    /// After a batch receive switched GRO on, `recv` still returns one datagram a call.
    #[test]
    fn recv_returns_single_datagrams_after_batches() {
        let (addr_a, addr_b) = (Ipv4Addr::new(127, 0, 41, 1), Ipv4Addr::new(127, 0, 41, 2));
        let a = UdpUnderlay::bind(addr_a, 0).unwrap();
        let b = UdpUnderlay::bind(addr_b, a.peer_port()).unwrap();
        let (bytes, sent) = strided(3, 500, 500);
        assert_eq!(a.send_segments(&bytes, 500, addr_b, 1).sent, 3);
        assert_eq!(recv_datagrams(&b, GRO_SLOT, 3).0, sent);
        let mut buf = [0u8; 2048];
        assert_eq!(b.recv(&mut buf).unwrap(), None, "nothing left; GRO now off");
        assert_eq!(a.send_segments(&bytes, 500, addr_b, 1).sent, 3);
        for datagram in &sent {
            let (len, from) = recv_within(&b, &mut buf);
            assert_eq!((&buf[..len], from), (&datagram[..], addr_a));
        }
    }

    #[test]
    fn with_peer_port_redirects_sends() {
        let (addr_r, addr_s) = (Ipv4Addr::new(127, 0, 30, 1), Ipv4Addr::new(127, 0, 30, 2));
        let receiver = UdpUnderlay::bind(addr_r, 0).unwrap();
        let receiver_port = receiver.local_addr().unwrap().port();
        let sender = UdpUnderlay::bind(addr_s, 0)
            .unwrap()
            .with_peer_port(receiver_port);
        sender.send(b"x", addr_r, 0).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(recv_within(&receiver, &mut buf), (1, addr_s));
    }
}
