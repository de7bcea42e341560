//! The only unsafe code of the AF_XDP underlay: the `bpf()` system call (maps, program
//! load, link, test run), the AF_XDP socket (UMEM registration, ring mmaps, bind, the
//! wake-up `sendto`/`recvfrom`), the rings' shared producer/consumer indices, and the
//! raw netlink socket. Everything above this module is safe code over the small API
//! below.
//!
//! Invariants the safe API keeps:
//! - Every descriptor is an [`OwnedFd`], opened close-on-exec.
//! - A [`Mmap`] is unmapped exactly once, on drop, and outlives every pointer into it
//!   (rings and the UMEM own their mapping).
//! - A ring index is always masked by `size - 1` (sizes are powers of two, checked), so
//!   no access leaves the mapped descriptor array.
//! - UMEM frames are handed out as slices only by range-checked offsets; the caller
//!   ([`super::xsk`]) keeps the ownership discipline of AF_XDP: a frame is touched only
//!   while it is in no ring, i.e. while the kernel does not own it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `bpf()` commands (`enum bpf_cmd`, linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_MAP_TYPE_XSKMAP`.
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of an XDP link.
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE` (linux/if_link.h): generic XDP, in the stack.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The mmap offsets of the rings (linux/if_xdp.h).
const XDP_PGOFF_RX_RING: i64 = 0;
const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high one.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[cfg(test)]
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Calls `bpf(cmd, attr, size_of::<A>())` and returns the new descriptor or 0.
///
/// # Safety
/// `attr` must be the attribute struct of `cmd`, and every pointer in it must be valid
/// for the access `cmd` makes for the duration of the call.
unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    let size = libc::c_uint::try_from(size_of::<A>()).map_err(io::Error::other)?;
    // SAFETY: the caller vouches for `attr`'s layout and pointers; `size` is its size.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret).map_err(io::Error::other)?;
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: &impl AsRawFd) -> io::Result<u32> {
    u32::try_from(fd.as_raw_fd()).map_err(io::Error::other)
}

/// Creates an `XSKMAP` with `entries` slots (one per device queue).
///
/// # Errors
/// The error of `bpf(BPF_MAP_CREATE)` (`EPERM` without `CAP_BPF`/`CAP_SYS_ADMIN`,
/// `EINVAL` on a kernel without XSKMAP).
pub fn xskmap_create(entries: u32) -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name.get_mut(..9)
        .unwrap_or_default()
        .copy_from_slice(b"vswitch_x");
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_name: name,
        ..MapCreateAttr::default()
    };
    // SAFETY: a MAP_CREATE attribute with no pointers.
    owned_fd(unsafe { bpf(BPF_MAP_CREATE, &mut attr) }?)
}

/// Sets `map[key] = value_fd` in an `XSKMAP`.
///
/// # Errors
/// The error of `bpf(BPF_MAP_UPDATE_ELEM)`.
pub fn xskmap_set(map: &OwnedFd, key: u32, value_fd: &OwnedFd) -> io::Result<()> {
    let value = fd_u32(value_fd)?;
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map)?,
        key: std::ptr::from_ref(&key) as u64,
        value: std::ptr::from_ref(&value) as u64,
        ..MapElemAttr::default()
    };
    // SAFETY: key and value point to live u32s (the map's key and value size) for the
    // duration of the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// Loads an XDP program; on a verifier error the message carries the verifier's log.
///
/// # Errors
/// The error of `bpf(BPF_PROG_LOAD)`.
pub fn xdp_prog_load(insns: &[BpfInsn], name: &str) -> io::Result<OwnedFd> {
    // Without a log first: a verbose log that outgrows its buffer fails the load
    // (ENOSPC). Only a refused program is loaded again, to read why.
    match prog_load(insns, name, None) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            let mut log = vec![0u8; 256 * 1024];
            let _ = prog_load(insns, name, Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(log.get(..end).unwrap_or_default());
            let text = text.trim();
            if text.is_empty() {
                Err(error)
            } else {
                Err(io::Error::new(
                    error.kind(),
                    format!("{error}; verifier: {text}"),
                ))
            }
        }
    }
}

fn prog_load(insns: &[BpfInsn], name: &str, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = CString::new("Apache-2.0").map_err(io::Error::other)?;
    let mut prog_name = [0u8; 16];
    for (slot, byte) in prog_name.iter_mut().take(15).zip(name.bytes()) {
        *slot = byte;
    }
    let (log_level, log_size, log_buf) = match log {
        Some(log) => (
            1,
            u32::try_from(log.len()).map_err(io::Error::other)?,
            log.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: u32::try_from(insns.len()).map_err(io::Error::other)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name,
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    // SAFETY: insns and license point to live buffers of the sizes given, and log_buf
    // is null with size 0 or a live buffer of log_size bytes; all outlive the call.
    owned_fd(unsafe { bpf(BPF_PROG_LOAD, &mut attr) }?)
}

#[cfg(test)]
/// Runs an XDP program once over `packet` (`BPF_PROG_TEST_RUN`, no device needed) and
/// returns its verdict.
///
/// # Errors
/// The error of `bpf(BPF_PROG_TEST_RUN)`.
pub fn xdp_test_run(prog: &OwnedFd, packet: &[u8]) -> io::Result<u32> {
    let mut out = vec![0u8; packet.len() + 512];
    let mut attr = TestRunAttr {
        prog_fd: fd_u32(prog)?,
        data_size_in: u32::try_from(packet.len()).map_err(io::Error::other)?,
        data_size_out: u32::try_from(out.len()).map_err(io::Error::other)?,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: data_in and data_out point to live buffers of the sizes given.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok(attr.retval)
}

/// Attaches an XDP program to the device `ifindex` as a BPF link, in the mode `flags`
/// names. The program stays attached exactly as long as the returned descriptor is
/// open: closing it, or the process ending in any way, detaches it.
///
/// # Errors
/// The error of `bpf(BPF_LINK_CREATE)`: `EBUSY` when another program is attached,
/// `EOPNOTSUPP`/`EINVAL` when the driver lacks the mode.
pub fn xdp_link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog)?,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: a LINK_CREATE attribute with no pointers.
    owned_fd(unsafe { bpf(BPF_LINK_CREATE, &mut attr) }?)
}

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; which thread unmaps it does not matter, and
// shared access goes through the atomics and ownership rules of the users below.
unsafe impl Send for Mmap {}

impl Mmap {
    fn new(
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: RawFd,
        offset: i64,
    ) -> io::Result<Mmap> {
        // SAFETY: a fresh mapping (no fixed address), so no existing memory is affected.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(ptr.cast::<u8>())
            .map(|ptr| Mmap { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned NULL"))
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing points into the
        // mapping any more (its owners are being dropped).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The UMEM: the packet buffer area shared with the kernel, `frames * frame_size` bytes.
#[derive(Debug)]
pub struct Umem {
    map: Mmap,
}

impl Umem {
    /// Maps `len` bytes of zeroed anonymous memory.
    ///
    /// # Errors
    /// The error of `mmap`.
    pub fn new(len: usize) -> io::Result<Umem> {
        let map = Mmap::new(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )?;
        Ok(Umem { map })
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.map.len
    }

    /// The bytes `offset..offset + len`, `None` when out of range. The caller owns the
    /// frame (it is in no ring).
    pub fn get(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        if start.checked_add(len)? > self.map.len {
            return None;
        }
        // SAFETY: the range lies inside the mapping (checked above), which lives as long
        // as `self`; the kernel writes only frames it owns (in the fill ring), and the
        // caller asks only for frames it owns.
        Some(unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(start), len) })
    }

    /// The bytes `offset..offset + len` for writing, `None` when out of range.
    pub fn get_mut(&mut self, offset: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(offset).ok()?;
        if start.checked_add(len)? > self.map.len {
            return None;
        }
        // SAFETY: as in `get`; `&mut self` makes the slice the only one we hand out.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(start), len) })
    }
}

/// One AF_XDP ring: fill and completion hold UMEM addresses (`u64`), RX and TX hold
/// descriptors ([`libc::xdp_desc`]). The producer and consumer indices are free-running
/// `u32`s in shared memory; we keep a local copy of the side we own.
#[derive(Debug)]
pub struct Ring<T: Copy> {
    /// Keeps the memory the pointers below point into.
    _map: Mmap,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    /// Our copy of the index we advance (producer for fill/TX, consumer for RX/completion).
    local: u32,
}

// SAFETY: the ring's memory is owned by `map`; the raw pointers point into it.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn index_ptr(&self, index: u32) -> *mut T {
        let slot = usize::try_from(index & self.mask).unwrap_or(0);
        // SAFETY: slot < size, and the mapping holds `size` entries after `desc` (checked
        // when the ring was mapped).
        unsafe { self.descs.as_ptr().add(slot) }
    }

    fn shared(&self, which: NonNull<AtomicU32>) -> u32 {
        // SAFETY: the pointer is into our live mapping, aligned (the kernel's offsets are
        // u32-aligned, checked at map time).
        unsafe { which.as_ref() }.load(Ordering::Acquire)
    }

    fn publish(&self, which: NonNull<AtomicU32>, value: u32) {
        // SAFETY: as in `shared`.
        unsafe { which.as_ref() }.store(value, Ordering::Release);
    }

    /// True when the kernel asks for a wake-up (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `shared`.
        let flags = unsafe { self.flags.as_ref() }.load(Ordering::Relaxed);
        flags & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // --- producer side (fill, TX) ---

    /// Entries we may produce now.
    pub fn free(&self) -> u32 {
        let consumer = self.shared(self.consumer);
        self.size - self.local.wrapping_sub(consumer).min(self.size)
    }

    /// Writes `value` at our producer index plus `offset`; call [`Ring::submit`] after.
    /// The caller has checked [`Ring::free`] > `offset`.
    pub fn write(&mut self, offset: u32, value: T) {
        let ptr = self.index_ptr(self.local.wrapping_add(offset));
        // SAFETY: `ptr` is inside the descriptor array; the entry is not yet published,
        // so the kernel does not read it.
        unsafe { ptr.write(value) };
    }

    /// Publishes `count` written entries to the kernel.
    pub fn submit(&mut self, count: u32) {
        self.local = self.local.wrapping_add(count);
        self.publish(self.producer, self.local);
    }

    /// Entries the producer side has published and the kernel not yet consumed.
    pub fn outstanding(&self) -> u32 {
        self.local.wrapping_sub(self.shared(self.consumer))
    }

    // --- consumer side (RX, completion) ---

    /// Entries waiting for us.
    pub fn available(&self) -> u32 {
        self.shared(self.producer)
            .wrapping_sub(self.local)
            .min(self.size)
    }

    /// Reads the entry at our consumer index plus `offset`; the caller has checked
    /// [`Ring::available`] > `offset`.
    pub fn read(&self, offset: u32) -> T {
        let ptr = self.index_ptr(self.local.wrapping_add(offset));
        // SAFETY: `ptr` is inside the descriptor array, and the kernel published the
        // entry (acquire load in `available`) and will not touch it until we release.
        unsafe { ptr.read() }
    }

    /// Hands `count` read entries back to the kernel.
    pub fn release(&mut self, count: u32) {
        self.local = self.local.wrapping_add(count);
        self.publish(self.consumer, self.local);
    }
}

/// Moves the calling thread (only it) into the network namespace at `path` (tests that
/// make devices in namespaces of their own).
#[cfg(test)]
pub fn enter_netns(path: &str) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: setns reads only the descriptor, which `file` keeps open for the call;
    // CLONE_NEWNET changes only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which ring to map.
#[derive(Debug, Clone, Copy)]
pub enum RingKind {
    /// RX descriptors.
    Rx,
    /// TX descriptors.
    Tx,
    /// Fill addresses.
    Fill,
    /// Completion addresses.
    Completion,
}

/// An AF_XDP socket.
#[derive(Debug)]
pub struct XskSocket {
    fd: OwnedFd,
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` is a live T of `len` bytes, the option's argument type.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl XskSocket {
    /// Opens an AF_XDP socket.
    ///
    /// # Errors
    /// `EAFNOSUPPORT` on a kernel without AF_XDP, `EPERM` without `CAP_NET_RAW`.
    pub fn new() -> io::Result<XskSocket> {
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(XskSocket { fd })
    }

    /// The descriptor (to poll, and to put in the XSKMAP).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Registers `umem` with frames of `frame_size` bytes.
    ///
    /// # Errors
    /// The error of `setsockopt(XDP_UMEM_REG)`.
    pub fn register_umem(&self, umem: &Umem, frame_size: u32) -> io::Result<()> {
        let reg = libc::xdp_umem_reg {
            addr: umem.map.ptr.as_ptr() as u64,
            len: u64::try_from(umem.len()).map_err(io::Error::other)?,
            chunk_size: frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&self.fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
    }

    /// Sets a ring's size (a power of two).
    ///
    /// # Errors
    /// The error of `setsockopt`.
    pub fn set_ring_size(&self, kind: RingKind, entries: u32) -> io::Result<()> {
        let name = match kind {
            RingKind::Rx => libc::XDP_RX_RING,
            RingKind::Tx => libc::XDP_TX_RING,
            RingKind::Fill => libc::XDP_UMEM_FILL_RING,
            RingKind::Completion => libc::XDP_UMEM_COMPLETION_RING,
        };
        let entries = libc::c_int::try_from(entries).map_err(io::Error::other)?;
        setsockopt(&self.fd, libc::SOL_XDP, name, &entries)
    }

    /// Maps a ring whose size was set with [`XskSocket::set_ring_size`].
    ///
    /// # Errors
    /// The error of `getsockopt(XDP_MMAP_OFFSETS)` or `mmap`, or `InvalidInput` for a
    /// size that is no power of two or an entry type that does not fit the ring.
    pub fn map_ring<T: Copy>(&self, kind: RingKind, entries: u32) -> io::Result<Ring<T>> {
        if !entries.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring size must be a power of two",
            ));
        }
        let expected = match kind {
            RingKind::Rx | RingKind::Tx => size_of::<libc::xdp_desc>(),
            RingKind::Fill | RingKind::Completion => size_of::<u64>(),
        };
        if size_of::<T>() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "wrong ring entry type",
            ));
        }
        let mut offsets = libc::xdp_mmap_offsets {
            rx: ring_offset_zero(),
            tx: ring_offset_zero(),
            fr: ring_offset_zero(),
            cr: ring_offset_zero(),
        };
        let mut len = libc::socklen_t::try_from(size_of::<libc::xdp_mmap_offsets>())
            .map_err(io::Error::other)?;
        // SAFETY: `offsets` is a live xdp_mmap_offsets of `len` bytes.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                std::ptr::from_mut(&mut offsets).cast(),
                &mut len,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        let (off, pgoff) = match kind {
            RingKind::Rx => (offsets.rx, XDP_PGOFF_RX_RING),
            RingKind::Tx => (offsets.tx, XDP_PGOFF_TX_RING),
            RingKind::Fill => (offsets.fr, XDP_UMEM_PGOFF_FILL_RING),
            RingKind::Completion => (offsets.cr, XDP_UMEM_PGOFF_COMPLETION_RING),
        };
        let to_usize = |v: u64| usize::try_from(v).map_err(io::Error::other);
        let (producer, consumer, flags, desc) = (
            to_usize(off.producer)?,
            to_usize(off.consumer)?,
            to_usize(off.flags)?,
            to_usize(off.desc)?,
        );
        let entries_len = usize::try_from(entries).map_err(io::Error::other)?;
        let len = desc
            .checked_add(
                entries_len
                    .checked_mul(size_of::<T>())
                    .ok_or_else(|| io::Error::other("ring too large"))?,
            )
            .ok_or_else(|| io::Error::other("ring too large"))?;
        let aligned = |o: usize, a: usize| o.is_multiple_of(a) && o + 4 <= len;
        if !(aligned(producer, 4)
            && aligned(consumer, 4)
            && aligned(flags, 4)
            && desc.is_multiple_of(std::mem::align_of::<T>()))
        {
            return Err(io::Error::other("kernel ring offsets out of range"));
        }
        let map = Mmap::new(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            self.fd.as_raw_fd(),
            pgoff,
        )?;
        let base = map.ptr.as_ptr();
        // SAFETY: every offset was checked to lie inside the `len`-byte mapping and to be
        // aligned for its type; the pointers are non-null since `base` is.
        let (producer, consumer, flags, descs) = unsafe {
            (
                NonNull::new_unchecked(base.add(producer).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(consumer).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(flags).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(desc).cast::<T>()),
            )
        };
        let mut ring = Ring {
            _map: map,
            producer,
            consumer,
            flags,
            descs,
            mask: entries - 1,
            size: entries,
            local: 0,
        };
        // Start from the kernel's current indices (zero on a fresh socket).
        ring.local = match kind {
            RingKind::Rx | RingKind::Completion => ring.shared(ring.consumer),
            RingKind::Tx | RingKind::Fill => ring.shared(ring.producer),
        };
        Ok(ring)
    }

    /// Binds to queue `queue` of device `ifindex` with `flags` (`XDP_COPY`,
    /// `XDP_ZEROCOPY`, `XDP_USE_NEED_WAKEUP`).
    ///
    /// # Errors
    /// The error of `bind`: `EOPNOTSUPP` for zero-copy on a driver without it,
    /// `EINVAL` for a queue the device does not have, `EBUSY` for a queue taken.
    pub fn bind(&self, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
        let addr = libc::sockaddr_xdp {
            sxdp_family: u16::try_from(libc::AF_XDP).map_err(io::Error::other)?,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        let len =
            libc::socklen_t::try_from(size_of::<libc::sockaddr_xdp>()).map_err(io::Error::other)?;
        // SAFETY: `addr` is a live sockaddr_xdp of `len` bytes.
        let ret = unsafe { libc::bind(self.fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Asks the kernel to send what the TX ring holds (`sendto` with no data).
    ///
    /// # Errors
    /// The error of `sendto`; `WouldBlock`/`EBUSY`/`ENOBUFS` mean "try again later".
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length send with null buffer and address is what AF_XDP
        // documents as the TX wake-up; nothing is read from the pointers.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wakes the driver to take buffers from the fill ring (`recvfrom` with no data).
    ///
    /// # Errors
    /// The error of `recvfrom`.
    pub fn kick_rx(&self) -> io::Result<()> {
        // SAFETY: a zero-length receive with null buffer and address, AF_XDP's RX wake-up;
        // nothing is written through the pointers.
        let ret = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The kernel's counters of this socket (`XDP_STATISTICS`).
    ///
    /// # Errors
    /// The error of `getsockopt`.
    pub fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        let mut stats = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        let mut len = libc::socklen_t::try_from(size_of::<libc::xdp_statistics>())
            .map_err(io::Error::other)?;
        // SAFETY: `stats` is a live xdp_statistics of `len` bytes; the kernel writes at
        // most `len` bytes (fewer on an older kernel, leaving the rest zero).
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                std::ptr::from_mut(&mut stats).cast(),
                &mut len,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stats)
    }

    /// Whether the socket runs zero-copy (`XDP_OPTIONS`).
    ///
    /// # Errors
    /// The error of `getsockopt`.
    pub fn is_zero_copy(&self) -> io::Result<bool> {
        let mut options = libc::xdp_options { flags: 0 };
        let mut len =
            libc::socklen_t::try_from(size_of::<libc::xdp_options>()).map_err(io::Error::other)?;
        // SAFETY: `options` is a live xdp_options of `len` bytes.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_OPTIONS,
                std::ptr::from_mut(&mut options).cast(),
                &mut len,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }
}

fn ring_offset_zero() -> libc::xdp_ring_offset {
    libc::xdp_ring_offset {
        producer: 0,
        consumer: 0,
        desc: 0,
        flags: 0,
    }
}

/// Opens a `NETLINK_ROUTE` socket subscribed to the multicast groups `groups` (a
/// bitmask of `RTMGRP_*`; 0 for a request socket). It is blocking; set a read timeout
/// on the returned socket to bound a receive.
///
/// # Errors
/// The error of `socket` or `bind`.
pub fn netlink_route_socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = u16::try_from(libc::AF_NETLINK).map_err(io::Error::other)?;
    addr.nl_groups = groups;
    let len =
        libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).map_err(io::Error::other)?;
    // SAFETY: `addr` is a live sockaddr_nl of `len` bytes.
    let ret = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
