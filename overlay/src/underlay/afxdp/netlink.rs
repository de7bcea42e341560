//! Just enough rtnetlink (RFC 3549, `NETLINK_ROUTE`) for the AF_XDP underlay: a
//! device's index, MAC, MTU and queue count; the route to a peer VTEP (its next hop);
//! the IPv4 neighbour table, as a dump and as change events; and asking the kernel to
//! resolve a neighbour (`RTM_NEWNEIGH` with `NTF_USE`, which starts ARP as if the
//! kernel itself had a packet for it).
//!
//! Messages are built and parsed here in safe code over byte buffers; a message or
//! attribute with a bad length ends the parse of its buffer, never a panic.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::sys;

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

/// `RTM_NEWLINK` and friends (linux/rtnetlink.h).
pub const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
/// A route was added or changed.
pub const RTM_NEWROUTE: u16 = 24;
/// A route was removed.
pub const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
/// A neighbour entry was added or changed.
pub const RTM_NEWNEIGH: u16 = 28;
/// A neighbour entry was removed.
pub const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

/// Multicast groups: neighbour and IPv4 route changes.
pub const RTMGRP_NEIGH: u32 = 0x4;
/// IPv4 route changes.
pub const RTMGRP_IPV4_ROUTE: u32 = 0x40;

const AF_INET: u8 = 2;
const NTF_USE: u8 = 0x01;

/// Neighbour states (`NUD_*`) in which the entry's MAC may be used.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80; // REACHABLE STALE DELAY PROBE NOARP PERMANENT
/// `NUD_STALE`: usable, but the kernel should confirm it.
pub const NUD_STALE: u16 = 0x04;

/// What the AF_XDP underlay needs of its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub ifindex: u32,
    /// Its MAC address (the outer source MAC).
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
    /// Receive queues (one AF_XDP socket each).
    pub rx_queues: u32,
}

/// An IPv4 neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// The device it is on.
    pub ifindex: u32,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC, when known.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` state.
    pub state: u16,
}

impl Neighbour {
    /// The MAC when the state allows sending to it.
    pub fn usable_mac(&self) -> Option<[u8; 6]> {
        (self.state & NUD_USABLE != 0).then_some(self.mac).flatten()
    }
}

/// The route to an address: the device and the gateway, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Output device.
    pub oif: Option<u32>,
    /// Next-hop gateway; `None` when the destination is on-link.
    pub gateway: Option<Ipv4Addr>,
}

/// One message from the kernel.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A message of type `kind` with its payload (after the netlink header).
    Data {
        /// `RTM_*`.
        kind: u16,
        /// The payload.
        payload: &'a [u8],
    },
    /// An error (negative errno) or, with 0, an acknowledgement.
    Error(i32),
    /// The end of a dump.
    Done,
}

/// Splits a receive buffer into messages; a truncated message ends the list.
pub fn messages(mut buf: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDR_LEN {
        let len = usize::try_from(u32_at(buf, 0)).unwrap_or(0);
        let kind = u16_at(buf, 4);
        if len < NLMSG_HDR_LEN || len > buf.len() {
            break;
        }
        let payload = buf.get(NLMSG_HDR_LEN..len).unwrap_or_default();
        out.push(match kind {
            NLMSG_ERROR => Message::Error(i32::from_ne_bytes(u32_at(payload, 0).to_ne_bytes())),
            NLMSG_DONE => Message::Done,
            _ => Message::Data { kind, payload },
        });
        buf = buf.get(align(len)..).unwrap_or_default();
    }
    out
}

/// The attributes (type, value) that follow a fixed header of `fixed` bytes.
fn attributes(payload: &[u8], fixed: usize) -> Vec<(u16, &[u8])> {
    let mut rest = payload.get(fixed..).unwrap_or_default();
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let len = usize::from(u16_at(rest, 0));
        let kind = u16_at(rest, 2) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        out.push((kind, rest.get(4..len).unwrap_or_default()));
        rest = rest.get(align(len)..).unwrap_or_default();
    }
    out
}

/// Parses an `RTM_NEWNEIGH`/`RTM_DELNEIGH` payload; `None` for a family other than
/// IPv4 or a malformed one.
pub fn parse_neighbour(payload: &[u8]) -> Option<Neighbour> {
    if payload.len() < 12 || payload.first() != Some(&AF_INET) {
        return None;
    }
    let ifindex = u32_at(payload, 4);
    let state = u16_at(payload, 8);
    let mut ip = None;
    let mut mac = None;
    for (kind, value) in attributes(payload, 12) {
        match kind {
            NDA_DST => ip = ipv4(value),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(value).ok(),
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex,
        ip: ip?,
        mac,
        state,
    })
}

fn parse_link(payload: &[u8]) -> Option<LinkInfo> {
    if payload.len() < 16 {
        return None;
    }
    let ifindex = u32_at(payload, 4);
    let mut info = LinkInfo {
        ifindex,
        mac: [0; 6],
        mtu: 0,
        rx_queues: 1,
    };
    for (kind, value) in attributes(payload, 16) {
        match kind {
            IFLA_ADDRESS => info.mac = <[u8; 6]>::try_from(value).ok()?,
            IFLA_MTU => info.mtu = u32_at(value, 0),
            IFLA_NUM_RX_QUEUES => info.rx_queues = u32_at(value, 0).max(1),
            _ => {}
        }
    }
    Some(info)
}

fn parse_route(payload: &[u8]) -> Option<Route> {
    if payload.len() < 12 {
        return None;
    }
    let mut route = Route {
        oif: None,
        gateway: None,
    };
    for (kind, value) in attributes(payload, 12) {
        match kind {
            RTA_OIF => route.oif = Some(u32_at(value, 0)),
            RTA_GATEWAY => route.gateway = ipv4(value),
            _ => {}
        }
    }
    Some(route)
}

fn ipv4(value: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    buf.get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, u16::from_ne_bytes)
}

const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A request under construction: header, fixed part, attributes.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(kind: u16, flags: u16, seq: u32, fixed: &[u8]) -> Request {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(fixed);
        buf.resize(align(buf.len()), 0);
        Request { buf }
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Request {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        if let Some(head) = self.buf.get_mut(..4) {
            head.copy_from_slice(&len.to_ne_bytes());
        }
        self.buf
    }
}

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct Netlink {
    socket: File,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// A socket for requests (`groups` 0) or subscribed to `RTMGRP_*` groups. Receives
    /// wait at most `timeout`.
    ///
    /// # Errors
    /// The error of `socket`, `bind` or `setsockopt`.
    pub fn open(groups: u32, timeout: Duration) -> io::Result<Netlink> {
        let fd: OwnedFd = sys::netlink_route_socket(groups)?;
        socket2::SockRef::from(&fd).set_read_timeout(Some(timeout))?;
        socket2::SockRef::from(&fd).set_recv_buffer_size(1 << 20)?;
        Ok(Netlink {
            socket: File::from(fd),
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Receives one datagram of messages into the internal buffer and returns its
    /// length; `Ok(0)` on timeout.
    ///
    /// # Errors
    /// The error of `read` other than a timeout.
    pub fn receive(&mut self) -> io::Result<&[u8]> {
        match self.socket.read(&mut self.buf) {
            Ok(len) => Ok(self.buf.get(..len).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(&[])
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a request and collects the payloads of type `want` in its answer (one
    /// message, or a dump until `NLMSG_DONE`).
    fn request(&mut self, request: Request, want: u16, dump: bool) -> io::Result<Vec<Vec<u8>>> {
        self.socket.write_all(&request.finish())?;
        let mut found = Vec::new();
        loop {
            let data = self.receive()?;
            if data.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from rtnetlink",
                ));
            }
            for message in messages(data) {
                match message {
                    Message::Data { kind, payload } if kind == want => {
                        found.push(payload.to_vec());
                        if !dump {
                            return Ok(found);
                        }
                    }
                    Message::Data { .. } => {}
                    Message::Error(0) | Message::Done => return Ok(found),
                    Message::Error(errno) => return Err(io::Error::from_raw_os_error(-errno)),
                }
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The device named `name`.
    ///
    /// # Errors
    /// `NotFound` (`ENODEV`) when there is no such device; other netlink errors.
    pub fn link(&mut self, name: &str) -> io::Result<LinkInfo> {
        let seq = self.next_seq();
        let mut ifname = name.as_bytes().to_vec();
        ifname.push(0);
        let request =
            Request::new(RTM_GETLINK, NLM_F_REQUEST, seq, &[0u8; 16]).attr(IFLA_IFNAME, &ifname);
        let answer = self.request(request, RTM_NEWLINK, false)?;
        answer
            .first()
            .and_then(|payload| parse_link(payload))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no device {name}")))
    }

    /// The route the kernel would use to reach `dst`.
    ///
    /// # Errors
    /// `ENETUNREACH` and friends when there is none.
    pub fn route(&mut self, dst: Ipv4Addr) -> io::Result<Route> {
        let seq = self.next_seq();
        let fixed = [AF_INET, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let request =
            Request::new(RTM_GETROUTE, NLM_F_REQUEST, seq, &fixed).attr(RTA_DST, &dst.octets());
        let answer = self.request(request, RTM_NEWROUTE, false)?;
        answer
            .first()
            .and_then(|payload| parse_route(payload))
            .ok_or_else(|| io::Error::other(format!("no route answer for {dst}")))
    }

    /// Every IPv4 neighbour entry.
    ///
    /// # Errors
    /// A netlink error.
    pub fn neighbours(&mut self) -> io::Result<Vec<Neighbour>> {
        let seq = self.next_seq();
        let fixed = [AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let request = Request::new(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq, &fixed);
        Ok(self
            .request(request, RTM_NEWNEIGH, true)?
            .iter()
            .filter_map(|payload| parse_neighbour(payload))
            .collect())
    }

    /// Asks the kernel to resolve (or re-confirm) `ip` on device `ifindex`: the entry
    /// is created if missing and the kernel sends ARP as if it had a packet for it.
    ///
    /// # Errors
    /// A netlink error.
    pub fn resolve(&mut self, ifindex: u32, ip: Ipv4Addr) -> io::Result<()> {
        let seq = self.next_seq();
        let mut fixed = [0u8; 12];
        fixed[0] = AF_INET;
        fixed[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        fixed[10] = NTF_USE;
        let request = Request::new(
            RTM_NEWNEIGH,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            seq,
            &fixed,
        )
        .attr(NDA_DST, &ip.octets());
        self.request(request, u16::MAX, false).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWNEIGH as `ip monitor neigh` receives it: 10.0.0.2 at 02:00:00:00:00:02
    /// on ifindex 7, REACHABLE.
    fn newneigh() -> Vec<u8> {
        let mut fixed = [0u8; 12];
        fixed[0] = AF_INET;
        fixed[4..8].copy_from_slice(&7u32.to_ne_bytes());
        fixed[8..10].copy_from_slice(&0x02u16.to_ne_bytes());
        Request::new(RTM_NEWNEIGH, 0, 1, &fixed)
            .attr(NDA_DST, &[10, 0, 0, 2])
            .attr(NDA_LLADDR, &[2, 0, 0, 0, 0, 2])
            .finish()
    }

    #[test]
    fn parses_a_neighbour_event() {
        let buf = newneigh();
        let list = messages(&buf);
        assert_eq!(list.len(), 1);
        let Message::Data { kind, payload } = list[0] else {
            panic!("not data")
        };
        assert_eq!(kind, RTM_NEWNEIGH);
        let neighbour = parse_neighbour(payload).unwrap();
        assert_eq!(neighbour.ifindex, 7);
        assert_eq!(neighbour.ip, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(neighbour.usable_mac(), Some([2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn incomplete_neighbour_has_no_usable_mac() {
        let mut buf = newneigh();
        // state NUD_INCOMPLETE (0x01) at payload offset 8.
        buf[16 + 8..16 + 10].copy_from_slice(&0x01u16.to_ne_bytes());
        let Message::Data { payload, .. } = messages(&buf)[0] else {
            panic!()
        };
        assert_eq!(parse_neighbour(payload).unwrap().usable_mac(), None);
    }

    #[test]
    fn truncated_and_garbage_input_end_the_parse() {
        let buf = newneigh();
        for cut in 0..buf.len() {
            for message in messages(&buf[..cut]) {
                if let Message::Data { payload, .. } = message {
                    let _ = parse_neighbour(payload);
                }
            }
        }
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(messages(&bad).is_empty());
        // An attribute whose length runs past the message is ignored.
        let mut bad = buf;
        let at = 16 + 12;
        bad[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
        let Message::Data { payload, .. } = messages(&bad)[0] else {
            panic!()
        };
        assert_eq!(parse_neighbour(payload), None);
    }

    #[test]
    fn error_message_carries_errno() {
        let mut buf = Request::new(NLMSG_ERROR, 0, 1, &(-19i32).to_ne_bytes()).finish();
        buf.extend(Request::new(NLMSG_DONE, 0, 1, &[0; 4]).finish());
        assert_eq!(messages(&buf), vec![Message::Error(-19), Message::Done]);
    }

    /// The real kernel, no privileges needed: the loopback device is there in every
    /// namespace.
    #[test]
    fn reads_loopback_link() {
        let mut netlink = Netlink::open(0, Duration::from_secs(2)).unwrap();
        let lo = netlink.link("lo").unwrap();
        assert_eq!(lo.ifindex, 1);
        assert_eq!(lo.mac, [0; 6]);
        assert!(lo.mtu > 0);
        assert_eq!(
            netlink.link("no-such-dev0").unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
    }
}
