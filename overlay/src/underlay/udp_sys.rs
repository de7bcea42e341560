//! The system calls of the UDP underlay that the standard library and `socket2` do not
//! wrap: `setsockopt(SOL_UDP, UDP_SEGMENT | UDP_GRO)`, `sendmsg` with a `UDP_SEGMENT`
//! control message (UDP GSO), `sendmmsg`, and `recvmmsg` reading the `UDP_GRO` control
//! message (UDP GRO). Every `unsafe` block says why it is sound (the crate's other
//! unsafe module is AF_XDP's `afxdp/sys.rs`). Every function takes borrowed descriptors and buffers and
//! returns the kernel's error as `io::Error`.
//!
//! Linux ABI: `include/uapi/linux/udp.h` (`UDP_SEGMENT` 103, `UDP_GRO` 104), `udp(7)`,
//! `sendmmsg(2)`, `recvmmsg(2)`, `cmsg(3)`.
//!
//! Why not safe wrappers: `socket2` has `sendmsg`/`recvmsg` with control buffers, but
//! no `setsockopt` for these options and no `sendmmsg`/`recvmmsg`, so this module would
//! exist anyway; `nix` has all of it, at the price of a new dependency for a handful of
//! calls. One `unsafe` block per call or struct.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{c_int, c_uint, c_void, cmsghdr, iovec, mmsghdr, msghdr, sockaddr_in, socklen_t};

/// `UDP_SEGMENT` (Linux 4.18): the size of the datagrams a send is cut into.
pub const UDP_SEGMENT: c_int = 103;
/// `UDP_GRO` (Linux 5.0): deliver coalesced datagrams, with their size in a cmsg.
pub const UDP_GRO: c_int = 104;

/// The most datagrams one `sendmmsg` or `recvmmsg` call here handles.
pub const MAX_BATCH: usize = 64;

/// A control-message buffer aligned for `cmsghdr`, large enough for one `int` payload
/// (`CMSG_SPACE(sizeof(int))` is 24 on 64-bit Linux, 16 on 32-bit).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 32]);

/// Sets an `int` option at level `SOL_UDP`.
pub fn set_udp_option(fd: BorrowedFd<'_>, option: c_int, value: c_int) -> io::Result<()> {
    let len = socklen_t::try_from(size_of::<c_int>()).unwrap_or(4);
    // SAFETY: `fd` is an open descriptor for the duration of the borrow; the option value
    // points at a live `c_int` and `len` is its size, as setsockopt(2) expects.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            option,
            std::ptr::from_ref(&value).cast::<c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sockaddr(addr: SocketAddrV4) -> sockaddr_in {
    // SAFETY: `sockaddr_in` is a plain C struct for which all-zero bytes are valid.
    let mut raw: sockaddr_in = unsafe { zeroed() };
    raw.sin_family = libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(2);
    raw.sin_port = addr.port().to_be();
    raw.sin_addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(addr.ip().octets()),
    };
    raw
}

fn sockaddr_len() -> socklen_t {
    socklen_t::try_from(size_of::<sockaddr_in>()).unwrap_or(16)
}

/// Sends `buf` to `to` as datagrams of `segment` bytes (the last may be shorter) with one
/// `sendmsg` carrying a `UDP_SEGMENT` control message. Returns the bytes sent.
///
/// # Errors
/// The error of `sendmsg`: `EIO` when the route's device cannot checksum (GSO needs
/// checksum offload), `EINVAL` when a segment does not fit the path MTU or there are
/// too many, `EAGAIN` when the socket buffer is full.
pub fn send_gso(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    segment: u16,
    to: SocketAddrV4,
) -> io::Result<usize> {
    let mut addr = sockaddr(to);
    let mut iov = iovec {
        iov_base: buf.as_ptr().cast_mut().cast::<c_void>(),
        iov_len: buf.len(),
    };
    let mut control = Control([0; 32]);
    let payload_len = u32::try_from(size_of::<u16>()).unwrap_or(2);
    // SAFETY: `msghdr` is a plain C struct for which all-zero bytes are valid.
    let mut msg: msghdr = unsafe { zeroed() };
    msg.msg_name = std::ptr::from_mut(&mut addr).cast::<c_void>();
    msg.msg_namelen = sockaddr_len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast::<c_void>();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload_len) } as usize;
    msg.msg_controllen = space.min(control.0.len()) as _;
    // SAFETY: `msg.msg_control` points at `control`, which is aligned for `cmsghdr` and
    // at least CMSG_SPACE(2) bytes long, so CMSG_FIRSTHDR returns a pointer into it with
    // room for the header and a u16 payload; the writes stay inside `control`.
    unsafe {
        let cmsg: *mut cmsghdr = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the UDP_SEGMENT cmsg"));
        }
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload_len) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
    loop {
        // SAFETY: `msg` points at `addr`, `iov` (which borrows `buf`) and `control`, all
        // alive for this call; sendmsg(2) only reads them.
        let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) };
        match usize::try_from(rc) {
            Ok(sent) => return Ok(sent),
            Err(_) => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// Sends the datagrams of `buf` (back to back, `segment` bytes each but the last) to
/// `to` with `sendmmsg`, at most [`MAX_BATCH`] per call. Returns how many were sent
/// before the first error, and that error.
pub fn send_mmsg(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    segment: usize,
    to: SocketAddrV4,
) -> (usize, Option<io::Error>) {
    if segment == 0 {
        return (0, Some(io::Error::from(io::ErrorKind::InvalidInput)));
    }
    let mut addr = sockaddr(to);
    let mut sent_total = 0;
    for chunk in buf.chunks(segment * MAX_BATCH) {
        // SAFETY: `iovec` and `mmsghdr` are plain C structs; all-zero bytes are valid.
        let mut iovs: [iovec; MAX_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        let mut count = 0;
        for ((datagram, iov), msg) in chunk.chunks(segment).zip(&mut iovs).zip(&mut msgs) {
            iov.iov_base = datagram.as_ptr().cast_mut().cast::<c_void>();
            iov.iov_len = datagram.len();
            msg.msg_hdr.msg_name = std::ptr::from_mut(&mut addr).cast::<c_void>();
            msg.msg_hdr.msg_namelen = sockaddr_len();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            count += 1;
        }
        let mut done = 0;
        while done < count {
            let rest = msgs.get_mut(done..count).unwrap_or_default();
            let vlen = c_uint::try_from(rest.len()).unwrap_or(0);
            // SAFETY: `rest` holds `vlen` initialised headers whose name, iovec and data
            // pointers (`addr`, `iovs`, `buf`) outlive the call; sendmmsg(2) reads them
            // and writes only `msg_len` of each.
            let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), rest.as_mut_ptr(), vlen, 0) };
            match usize::try_from(rc) {
                Ok(0) => return (sent_total + done, Some(io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(_) => {
                    let error = io::Error::last_os_error();
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return (sent_total + done, Some(error));
                }
            }
        }
        sent_total += count;
    }
    (sent_total, None)
}

/// One block `recv_mmsg` filled: bytes, datagram size (from the `UDP_GRO` cmsg, or the
/// whole block), source.
pub type Block = (usize, usize, Ipv4Addr);

/// Receives up to `out.len()` (at most [`MAX_BATCH`]) blocks with one non-blocking
/// `recvmmsg`, block `i` into `buf[i * slot..][..slot]`. Returns how many were filled;
/// 0 when nothing is waiting.
///
/// # Errors
/// The error of `recvmmsg` other than `EAGAIN` and `EINTR`.
pub fn recv_mmsg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    slot: usize,
    out: &mut [Block],
) -> io::Result<usize> {
    if slot == 0 {
        return Ok(0);
    }
    // SAFETY: plain C structs; all-zero bytes are valid for each.
    let mut iovs: [iovec; MAX_BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut msgs: [mmsghdr; MAX_BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut addrs: [sockaddr_in; MAX_BATCH] = unsafe { zeroed() };
    let mut controls = [Control([0; 32]); MAX_BATCH];
    let mut count = 0;
    let rooms = buf.chunks_exact_mut(slot).take(out.len().min(MAX_BATCH));
    for ((((room, iov), msg), addr), control) in rooms
        .zip(&mut iovs)
        .zip(&mut msgs)
        .zip(&mut addrs)
        .zip(&mut controls)
    {
        iov.iov_base = room.as_mut_ptr().cast::<c_void>();
        iov.iov_len = room.len();
        msg.msg_hdr.msg_name = std::ptr::from_mut(addr).cast::<c_void>();
        msg.msg_hdr.msg_namelen = sockaddr_len();
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
        msg.msg_hdr.msg_control = control.0.as_mut_ptr().cast::<c_void>();
        msg.msg_hdr.msg_controllen = control.0.len() as _;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    let vlen = c_uint::try_from(count).unwrap_or(0);
    let received = loop {
        // SAFETY: the first `count` headers point at live, exclusively borrowed buffers
        // (`buf` rooms, `addrs`, `controls`) with their true lengths; recvmmsg(2) writes
        // only inside them. A null timeout is allowed.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match usize::try_from(rc) {
            Ok(n) => break n,
            Err(_) => {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(0),
                    _ => return Err(error),
                }
            }
        }
    };
    let mut filled = 0;
    for ((msg, addr), block) in msgs.iter().zip(&addrs).zip(out.iter_mut()).take(received) {
        let len = usize::try_from(msg.msg_len).unwrap_or(0).min(slot);
        let src = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        let segment = gro_segment(&msg.msg_hdr).filter(|&s| s > 0).unwrap_or(len);
        *block = (len, segment.min(len.max(1)), src);
        filled += 1;
    }
    Ok(filled)
}

/// The `UDP_GRO` control message's datagram size, if the kernel attached one.
fn gro_segment(hdr: &msghdr) -> Option<usize> {
    // SAFETY: `hdr` is a header recvmmsg(2) filled: `msg_control`/`msg_controllen`
    // describe the initialised part of one of our `Control` buffers, and the CMSG macros
    // only walk inside that range; the payload is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}
