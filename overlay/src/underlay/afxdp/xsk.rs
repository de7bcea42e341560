//! One AF_XDP socket bound to one queue of the underlay device, with its own UMEM and
//! its four rings. Safe code over [`super::sys`].
//!
//! The UMEM is cut into [`FRAMES`] frames of [`FRAME_SIZE`] bytes: the first half
//! receives (they start in the fill ring and go back to it as soon as a frame is
//! copied out), the second half sends (a free list; a frame returns to it from the
//! completion ring). A frame is touched only while it is in no ring.
#![forbid(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::sys::{Ring, RingKind, Umem, XskSocket};

/// Bytes per UMEM frame (a page: the largest aligned chunk AF_XDP takes).
pub const FRAME_SIZE: u32 = 4096;
/// Frames per socket: half receive, half send.
pub const FRAMES: u32 = 4096;
/// Room the kernel keeps before a received packet in its frame (`XDP_PACKET_HEADROOM`).
pub const KERNEL_HEADROOM: u32 = 256;
/// The largest frame one UMEM frame holds.
pub const MAX_FRAME: usize = (FRAME_SIZE - KERNEL_HEADROOM) as usize;

const RX_FRAMES: u32 = FRAMES / 2;
/// Frames the kernel sends per wake-up in copy mode (`TX_BATCH_SIZE` in net/xdp/xsk.c).
const KERNEL_TX_BATCH: u32 = 32;
const RING_SIZE: u32 = FRAMES / 2;

/// `sxdp_flags`.
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;

/// How long a queue may stay busy after the socket that had it closed.
const BUSY_GRACE: Duration = Duration::from_secs(3);

/// Binds, waiting while the queue is still held by a socket that is going away (the
/// kernel releases a closed socket's UMEM pool in deferred work: a daemon restarted at
/// once finds the queue `EBUSY` for a moment).
fn bind(socket: &XskSocket, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let deadline = Instant::now() + BUSY_GRACE;
    loop {
        match socket.bind(ifindex, queue, flags) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// One socket and its memory.
#[derive(Debug)]
pub struct Xsk {
    // Rings before the socket and UMEM: unmapped before the socket closes.
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: Umem,
    socket: XskSocket,
    free_tx: Vec<u64>,
    zero_copy: bool,
}

impl Xsk {
    /// Opens a socket on queue `queue` of device `ifindex`: zero-copy when the driver
    /// has it, copy mode otherwise.
    ///
    /// # Errors
    /// The error of the copy-mode attempt (the zero-copy one failing is expected on
    /// drivers without it).
    pub fn open(ifindex: u32, queue: u32) -> io::Result<Xsk> {
        match Xsk::open_with(ifindex, queue, XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP) {
            Ok(xsk) => Ok(xsk),
            Err(_) => Xsk::open_with(ifindex, queue, XDP_COPY | XDP_USE_NEED_WAKEUP),
        }
    }

    fn open_with(ifindex: u32, queue: u32, flags: u16) -> io::Result<Xsk> {
        let socket = XskSocket::new()?;
        let umem_len =
            usize::try_from(u64::from(FRAMES) * u64::from(FRAME_SIZE)).map_err(io::Error::other)?;
        let umem = Umem::new(umem_len)?;
        socket.register_umem(&umem, FRAME_SIZE)?;
        for kind in [
            RingKind::Fill,
            RingKind::Completion,
            RingKind::Rx,
            RingKind::Tx,
        ] {
            socket.set_ring_size(kind, RING_SIZE)?;
        }
        let mut fill = socket.map_ring::<u64>(RingKind::Fill, RING_SIZE)?;
        let completion = socket.map_ring::<u64>(RingKind::Completion, RING_SIZE)?;
        let rx = socket.map_ring::<libc::xdp_desc>(RingKind::Rx, RING_SIZE)?;
        let tx = socket.map_ring::<libc::xdp_desc>(RingKind::Tx, RING_SIZE)?;
        // Every receive frame into the fill ring before bind, so the first packet has
        // somewhere to go.
        let count = RX_FRAMES.min(fill.free());
        for i in 0..count {
            fill.write(i, u64::from(i) * u64::from(FRAME_SIZE));
        }
        fill.submit(count);
        bind(&socket, ifindex, queue, flags)?;
        let zero_copy = socket.is_zero_copy().unwrap_or(false);
        let free_tx = (RX_FRAMES..FRAMES)
            .map(|i| u64::from(i) * u64::from(FRAME_SIZE))
            .collect();
        Ok(Xsk {
            fill,
            completion,
            rx,
            tx,
            umem,
            socket,
            free_tx,
            zero_copy,
        })
    }

    /// The socket's descriptor (to poll and to put in the XSKMAP).
    pub fn fd(&self) -> &OwnedFd {
        self.socket.fd()
    }

    /// Received frames the kernel dropped on this socket so far: RX ring full, no free
    /// receive buffer, or a bad descriptor. 0 when the kernel cannot say.
    pub fn kernel_rx_drops(&self) -> u64 {
        self.socket.statistics().map_or(0, |s| {
            s.rx_dropped
                .saturating_add(s.rx_ring_full)
                .saturating_add(s.rx_invalid_descs)
        })
    }

    /// True when the socket runs zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Takes the next received frame, hands it to `read`, and gives the frame back to
    /// the kernel. `None` when the RX ring is empty.
    pub fn receive<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut read = Some(read);
        let mut result = None;
        self.receive_batch(1, |frame| {
            if let Some(read) = read.take() {
                result = Some(read(frame));
            }
            true
        });
        result
    }

    /// Takes up to `max` received frames, hands each to `read` in order, and gives them
    /// back to the kernel together: one release of the RX ring and one submit to the
    /// fill ring for the whole batch. `read` returns false to leave its frame (and the
    /// rest) in the ring for later. Returns how many frames it took (0 when the RX
    /// ring is empty).
    pub fn receive_batch(&mut self, max: usize, mut read: impl FnMut(&[u8]) -> bool) -> usize {
        let available = self
            .rx
            .available()
            .min(u32::try_from(max).unwrap_or(u32::MAX));
        if available == 0 {
            return 0;
        }
        // The fill ring has room for all of them: it and the RX ring share the receive
        // frames. Checked anyway; a frame that does not fit is lost to receiving.
        let room = self.fill.free();
        let mut taken = 0;
        let mut refilled = 0;
        while taken < available {
            let desc = self.rx.read(taken);
            let len = usize::try_from(desc.len).unwrap_or(0);
            // An out-of-range descriptor (never from a sane kernel) reads as an empty
            // frame.
            if !read(self.umem.get(desc.addr, len).unwrap_or_default()) {
                break;
            }
            taken += 1;
            // The frame goes back to the fill ring (its start: the kernel adds headroom).
            if refilled < room {
                self.fill
                    .write(refilled, desc.addr - desc.addr % u64::from(FRAME_SIZE));
                refilled += 1;
            }
        }
        self.rx.release(taken);
        self.fill.submit(refilled);
        usize::try_from(taken).unwrap_or(usize::MAX)
    }

    /// Called when the RX ring is empty: wakes the driver if it waits for fill buffers,
    /// and pushes out TX descriptors a previous wake-up left behind.
    pub fn idle(&mut self) {
        if self.fill.needs_wakeup() {
            let _ = self.socket.kick_rx();
        }
        if self.tx.outstanding() > 0 {
            self.kick();
        }
    }

    /// Builds a frame with `write` (which returns its length or an error) in a free
    /// send frame and queues it for transmission; wakes the kernel unless `defer`.
    ///
    /// # Errors
    /// `WouldBlock` when every send frame is in flight; the error `write` returns.
    pub fn send(
        &mut self,
        defer: bool,
        write: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut write = Some(write);
        let (_, error) = self.send_batch(std::iter::once(()), defer, |(), out| {
            write
                .take()
                .map_or_else(|| Err(io::Error::other("written twice")), |w| w(out))
        });
        error.map_or(Ok(()), Err)
    }

    /// Builds one frame per item of `items` with `write` (which returns the frame's
    /// length or an error) in free send frames, queues them on the TX ring together
    /// (one submit) and wakes the kernel once for the batch, unless `defer` (then
    /// only when the ring or the free frames run out mid-batch; the caller
    /// [`Xsk::flush`]es later). Stops at the first item that cannot go.
    ///
    /// Returns how many frames were queued, from the first, and the error that stopped
    /// the rest: `WouldBlock` when every send frame is in flight or the TX ring is
    /// full, or the error `write` returns.
    pub fn send_batch<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        defer: bool,
        mut write: impl FnMut(T, &mut [u8]) -> io::Result<usize>,
    ) -> (usize, Option<io::Error>) {
        self.reap();
        let mut sent = 0;
        let mut pending = 0u32;
        let mut error = None;
        for item in items {
            if self.free_tx.is_empty() || self.tx.free() <= pending {
                // Out of room: publish what is written, have the kernel send it, take
                // back what it completed, and look again.
                self.tx.submit(pending);
                pending = 0;
                self.kick();
                self.reap();
                if self.free_tx.is_empty() || self.tx.free() == 0 {
                    error = Some(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "every AF_XDP send frame is in flight",
                    ));
                    break;
                }
            }
            let Some(addr) = self.free_tx.pop() else {
                break;
            };
            let written = self
                .umem
                .get_mut(addr, MAX_FRAME)
                .ok_or_else(|| io::Error::other("send frame outside the UMEM"))
                .and_then(|out| write(item, out))
                .and_then(|len| u32::try_from(len).map_err(io::Error::other));
            match written {
                Ok(len) => {
                    self.tx.write(
                        pending,
                        libc::xdp_desc {
                            addr,
                            len,
                            options: 0,
                        },
                    );
                    pending += 1;
                    sent += 1;
                }
                Err(e) => {
                    self.free_tx.push(addr);
                    error = Some(e);
                    break;
                }
            }
        }
        self.tx.submit(pending);
        if !defer && self.tx.outstanding() > 0 {
            self.kick();
        }
        (sent, error)
    }

    /// Wakes the kernel when send descriptors are still queued.
    pub fn flush(&mut self) {
        self.reap();
        if self.tx.outstanding() > 0 {
            self.kick();
        }
    }

    /// Moves completed send frames back to the free list.
    fn reap(&mut self) {
        let done = self.completion.available();
        for i in 0..done {
            self.free_tx.push(self.completion.read(i));
        }
        self.completion.release(done);
    }

    /// Wakes the kernel to send what the TX ring holds. In copy mode the kernel sends at
    /// most [`KERNEL_TX_BATCH`] frames per call and answers `EAGAIN` when more is left,
    /// so as many tries as a full ring takes (a deferred batch may have filled it).
    fn kick(&mut self) {
        if !self.tx.needs_wakeup() && self.zero_copy {
            return;
        }
        for _ in 0..RING_SIZE / KERNEL_TX_BATCH + 2 {
            match self.socket.kick_tx() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // ENOBUFS/EBUSY: the device queue is full; the descriptors stay queued
                // and the next kick sends them. Anything else shows in the drop counters
                // of the frames that cannot be sent.
                _ => return,
            }
            if self.tx.outstanding() == 0 {
                return;
            }
        }
    }
}
