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
#![forbid(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::Underlay;

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
        Ok(UdpUnderlay {
            socket,
            senders,
            peer_port,
        })
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
        let index = usize::from(src_port_hint) % self.senders.len().max(1);
        let socket = self.senders.get(index).unwrap_or(&self.socket);
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

    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
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
