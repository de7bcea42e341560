//! TAP devices: creating a persistent one, re-attaching to it, and moving frames through
//! its file descriptor.
//!
//! A [`Tap`] owns one queue's file descriptor, opened `O_RDWR | O_NONBLOCK | O_CLOEXEC`
//! on `/dev/net/tun`. The device itself lives in the namespace of the thread that made
//! it and, being persistent, outlives the descriptor: after a daemon restart
//! [`Tap::attach`] finds it again by name. Every frame read or written carries a
//! [`VNET_HDR_LEN`]-byte virtio-net header in the host's byte order, followed by the
//! Ethernet frame (`IFF_NO_PI`: no packet-info prefix).
//!
//! A multi-queue TAP has one descriptor per queue: [`Tap::create`] opens the first,
//! [`Tap::attach`] each further one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use libc::{c_int, c_short, c_uint, c_ulong};

use super::{check, if_index, ifreq_for, ifreq_ioctl, ifreq_name, validate_name};
use super::{IfreqRequest, Result, SysError};

/// The length of the virtio-net header in front of every frame: `struct
/// virtio_net_hdr_v1`, `num_buffers` included. Set on every queue with `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 12;

/// The control device that TAP queues are opened on.
const TUN_PATH: &str = "/dev/net/tun";

/// Every offload vswitch asks for: checksum, TCP segmentation (v4, v6, ECN), UDP
/// segmentation (v4, v6).
const OFFLOADS_ALL: c_uint = libc::TUN_F_CSUM
    | libc::TUN_F_TSO4
    | libc::TUN_F_TSO6
    | libc::TUN_F_TSO_ECN
    | libc::TUN_F_USO4
    | libc::TUN_F_USO6;

/// The offloads to fall back to on kernels without USO (before 6.2).
const OFFLOADS_NO_USO: c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

/// The offloads the kernel accepted on a TAP (`TUNSETOFFLOAD`): which kinds of partial
/// frames the device may hand the switch, and so which ones the switch must finish
/// before it sends them elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// Frames may carry a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub csum: bool,
    /// Frames may be TCP super-frames (TSO over IPv4 and IPv6, ECN included).
    pub tso: bool,
    /// Frames may be UDP super-frames (USO over IPv4 and IPv6).
    pub uso: bool,
}

impl Offloads {
    /// What a `TUNSETOFFLOAD` argument turns on.
    fn from_flags(flags: c_uint) -> Offloads {
        Offloads {
            csum: flags & libc::TUN_F_CSUM != 0,
            tso: flags & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) != 0,
            uso: flags & (libc::TUN_F_USO4 | libc::TUN_F_USO6) != 0,
        }
    }
}

/// One queue of a TAP device: an owned, non-blocking `/dev/net/tun` descriptor attached to
/// the device. Dropping it closes the queue; the device stays while it is persistent.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    offloads: Offloads,
}

impl Tap {
    /// Creates a new persistent TAP `name` in the calling thread's namespace and returns
    /// its first queue. `TUNSETIFF` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR |
    /// IFF_TUN_EXCL` (and `IFF_MULTI_QUEUE` when `multi_queue`), then the vnet header size,
    /// the offloads (probed, see [`Tap::offloads`]) and last `TUNSETPERSIST`, so a failure
    /// part way leaves no device behind.
    ///
    /// # Errors
    /// - [`SysError::InvalidName`] for a name the kernel would refuse;
    /// - [`SysError::InterfaceExists`] when any device of that name exists;
    /// - [`SysError::TunOpen`] when `/dev/net/tun` cannot be opened;
    /// - [`SysError::Ioctl`] when the kernel refuses a step (e.g. `EPERM` without
    ///   `CAP_NET_ADMIN`).
    pub fn create(name: &str, multi_queue: bool) -> Result<Tap> {
        validate_name(name)?;
        if if_index(name)?.is_some() {
            return Err(SysError::InterfaceExists(name.to_owned()));
        }
        let tap = Tap::open(name, multi_queue, true)?;
        tap.set_persist(true)?;
        Ok(tap)
    }

    /// Attaches a new queue to the existing TAP `name` in the calling thread's namespace,
    /// e.g. after a daemon restart or for a further worker of a multi-queue TAP. Same
    /// flags as [`Tap::create`] without `IFF_TUN_EXCL`; sets the vnet header size and the
    /// offloads again. Leaves the persist flag as it is.
    ///
    /// # Errors
    /// - [`SysError::InvalidName`] for a name the kernel would refuse;
    /// - [`SysError::NoSuchInterface`] when there is no device of that name;
    /// - [`SysError::AttachMismatch`] when it is not a TAP, or not of this queue mode;
    /// - [`SysError::InterfaceBusy`] when it is a single-queue TAP another fd holds;
    /// - [`SysError::TunOpen`] or [`SysError::Ioctl`] as for [`Tap::create`].
    pub fn attach(name: &str, multi_queue: bool) -> Result<Tap> {
        validate_name(name)?;
        if if_index(name)?.is_none() {
            return Err(SysError::NoSuchInterface(name.to_owned()));
        }
        Tap::open(name, multi_queue, false)
    }

    /// Opens a queue, binds it to `name` and sets the vnet header size and the offloads.
    fn open(name: &str, multi_queue: bool, exclusive: bool) -> Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(TUN_PATH)
            .map_err(SysError::TunOpen)?;

        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if exclusive {
            flags |= libc::IFF_TUN_EXCL;
        }
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let mut ifr = ifreq_for(name)?;
        ifr.ifr_ifru.ifru_flags = ifr_flags(flags, name)?;
        if let Err(source) = ifreq_ioctl(file.as_fd(), IfreqRequest::TunSetIff, &mut ifr) {
            let name = name.to_owned();
            return Err(match source.raw_os_error() {
                Some(libc::EBUSY | libc::EEXIST) if exclusive => SysError::InterfaceExists(name),
                Some(libc::EBUSY) => SysError::InterfaceBusy(name),
                Some(libc::EINVAL) if !exclusive => SysError::AttachMismatch { name, multi_queue },
                _ => SysError::Ioctl {
                    op: IfreqRequest::TunSetIff.name(),
                    ifname: name,
                    source,
                },
            });
        }
        // The kernel writes back the name it used; with `%` ruled out it is `name`.
        let name = ifreq_name(&ifr);

        let hdr_len = c_int::try_from(VNET_HDR_LEN).map_err(|_| SysError::Ioctl {
            op: "TUNSETVNETHDRSZ",
            ifname: name.clone(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through its argument; `hdr_len` is a
        // live `c_int` for the whole call, and `file` is an open tun descriptor.
        let ret = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETVNETHDRSZ,
                std::ptr::from_ref(&hdr_len),
            )
        };
        check(ret).map_err(|source| SysError::Ioctl {
            op: "TUNSETVNETHDRSZ",
            ifname: name.clone(),
            source,
        })?;

        let offloads = probe_offloads(&file, &name)?;
        Ok(Tap {
            file,
            name,
            offloads,
        })
    }

    /// The device name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offloads the kernel accepted. The probe asks for checksum, TSO (v4, v6, ECN)
    /// and USO (v4, v6); on `EINVAL` again without USO; on `EINVAL` again for none.
    #[must_use]
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Sets or clears the device's persist flag (`TUNSETPERSIST`). A device that is not
    /// persistent disappears when its last queue closes, that is when the last copy of
    /// each queue's fd is closed: a child forked meanwhile holds copies until it execs.
    ///
    /// # Errors
    /// [`SysError::Ioctl`] when the kernel refuses.
    pub fn set_persist(&self, persist: bool) -> Result<()> {
        // SAFETY: TUNSETPERSIST takes its argument by value and touches no memory of
        // ours; `self.file` is an open tun descriptor attached to a device.
        let ret = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETPERSIST,
                c_ulong::from(persist),
            )
        };
        check(ret).map(drop).map_err(|source| SysError::Ioctl {
            op: "TUNSETPERSIST",
            ifname: self.name.clone(),
            source,
        })
    }

    /// Reads one frame, vnet header first, into `buf`; returns its length. Non-blocking:
    /// `WouldBlock` when the queue is empty. A frame longer than `buf` is truncated, so
    /// size buffers for the largest super-frame: `VNET_HDR_LEN + 65_550` bytes.
    ///
    /// # Errors
    /// Those of `read(2)` on the descriptor; `WouldBlock` when nothing is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame, vnet header first. Non-blocking: `WouldBlock` when the device's
    /// queue is full.
    ///
    /// # Errors
    /// Those of `write(2)` on the descriptor; `EINVAL` for a frame shorter than the vnet
    /// header or a header the kernel rejects, `EIO` while the device is down.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.file).write(buf)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// `TUNSETIFF` flags as the `short` of `ifr_flags`. The flags go up to `IFF_TUN_EXCL`
/// (0x8000), the sign bit of a `short`, so the bits are carried over, not the value.
fn ifr_flags(flags: c_int, name: &str) -> Result<c_short> {
    let bits = u16::try_from(flags).map_err(|_| SysError::Ioctl {
        op: IfreqRequest::TunSetIff.name(),
        ifname: name.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    Ok(c_short::from_ne_bytes(bits.to_ne_bytes()))
}

/// Turns on the widest set of offloads the kernel accepts and reports it: all, then
/// without USO, then none.
fn probe_offloads(file: &File, name: &str) -> Result<Offloads> {
    let error = |source| SysError::Ioctl {
        op: "TUNSETOFFLOAD",
        ifname: name.to_owned(),
        source,
    };
    for flags in [OFFLOADS_ALL, OFFLOADS_NO_USO] {
        match set_offload(file, flags) {
            Ok(()) => return Ok(Offloads::from_flags(flags)),
            // The kernel lacks one of these offloads: try the next, smaller set.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(source) => return Err(error(source)),
        }
    }
    set_offload(file, 0).map_err(error)?;
    Ok(Offloads::default())
}

/// `TUNSETOFFLOAD` with `flags`.
fn set_offload(file: &File, flags: c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value and touches no memory of ours;
    // `file` is an open tun descriptor attached to a device.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETOFFLOAD, c_ulong::from(flags)) };
    check(ret).map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::sys::iface;
    use crate::sys::netns::run_in_netns;
    use crate::sys::test_support::{attach_when_free, wait_until_gone, TestNetns};

    #[test]
    fn offloads_from_flags() {
        assert_eq!(
            Offloads::from_flags(OFFLOADS_ALL),
            Offloads {
                csum: true,
                tso: true,
                uso: true
            }
        );
        assert_eq!(
            Offloads::from_flags(OFFLOADS_NO_USO),
            Offloads {
                csum: true,
                tso: true,
                uso: false
            }
        );
        assert_eq!(Offloads::from_flags(0), Offloads::default());
    }

    #[test]
    fn tun_flags_keep_their_bits() {
        let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_TUN_EXCL;
        let short = ifr_flags(flags, "eth0").unwrap();
        assert_eq!(u16::from_ne_bytes(short.to_ne_bytes()), 0xd002);
    }

    #[test]
    fn invalid_names_are_rejected_before_the_kernel() {
        for bad in ["", "much-too-long-name", "a/b", ".."] {
            assert!(matches!(
                Tap::create(bad, false),
                Err(SysError::InvalidName(_))
            ));
            assert!(matches!(
                Tap::attach(bad, false),
                Err(SysError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn create_twice_is_interface_exists() {
        let ns = TestNetns::new();
        run_in_netns(ns.path(), || {
            let _first = Tap::create("eth0", false).unwrap();
            let err = Tap::create("eth0", false).unwrap_err();
            assert!(
                matches!(&err, SysError::InterfaceExists(n) if n == "eth0"),
                "{err}"
            );
            // Any device of that name counts, not only a TAP.
            let err = Tap::create("lo", false).unwrap_err();
            assert!(
                matches!(&err, SysError::InterfaceExists(n) if n == "lo"),
                "{err}"
            );
        })
        .unwrap();
    }

    #[test]
    fn attach_errors() {
        let ns = TestNetns::new();
        run_in_netns(ns.path(), || {
            let err = Tap::attach("eth9", false).unwrap_err();
            assert!(
                matches!(&err, SysError::NoSuchInterface(n) if n == "eth9"),
                "{err}"
            );
            let err = Tap::attach("lo", false).unwrap_err();
            assert!(matches!(&err, SysError::AttachMismatch { .. }), "{err}");

            let single = Tap::create("single0", false).unwrap();
            let err = Tap::attach("single0", false).unwrap_err();
            assert!(matches!(&err, SysError::InterfaceBusy(_)), "{err}");
            let err = Tap::attach("single0", true).unwrap_err();
            assert!(
                matches!(
                    &err,
                    SysError::AttachMismatch {
                        multi_queue: true,
                        ..
                    }
                ),
                "{err}"
            );
            drop(single);
        })
        .unwrap();
    }

    #[test]
    fn multi_queue_takes_one_fd_per_queue() {
        let ns = TestNetns::new();
        run_in_netns(ns.path(), || {
            let first = Tap::create("mq0", true).unwrap();
            let second = Tap::attach("mq0", true).unwrap();
            let third = Tap::attach("mq0", true).unwrap();
            assert_eq!(second.name(), "mq0");
            assert_eq!(second.offloads(), first.offloads());
            assert_ne!(first.as_raw_fd(), third.as_raw_fd());
            let err = Tap::attach("mq0", false).unwrap_err();
            assert!(
                matches!(
                    &err,
                    SysError::AttachMismatch {
                        multi_queue: false,
                        ..
                    }
                ),
                "{err}"
            );
        })
        .unwrap();
    }

    #[test]
    fn offloads_probe_reports_what_stuck() {
        let ns = TestNetns::new();
        let offloads =
            run_in_netns(ns.path(), || Tap::create("eth0", false).unwrap().offloads()).unwrap();
        eprintln!("TAP offloads on this kernel: {offloads:?}");
        assert!(offloads.csum && offloads.tso, "{offloads:?}");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut version = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
        if (major, minor) >= (6, 2) {
            assert!(offloads.uso, "kernel {release} has USO: {offloads:?}");
        }
    }

    #[test]
    fn persistence_and_reattach() {
        let ns = TestNetns::new();
        run_in_netns(ns.path(), || {
            let tap = Tap::create("eth0", false).unwrap();
            drop(tap);
            assert!(
                iface::exists("eth0").unwrap(),
                "a persistent TAP outlives its fd"
            );
            let tap = attach_when_free("eth0");
            assert_eq!(tap.name(), "eth0");
            tap.set_persist(false).unwrap();
            assert!(iface::exists("eth0").unwrap());
            drop(tap);
            wait_until_gone("eth0");
        })
        .unwrap();
    }

    #[test]
    fn empty_queue_would_block() {
        let ns = TestNetns::new();
        run_in_netns(ns.path(), || {
            let tap = Tap::create("eth0", false).unwrap();
            tap.set_persist(false).unwrap();
            let mut buf = [0u8; 2048];
            let err = tap.read(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        })
        .unwrap();
    }
}
