//! The OS-facing side of vswitch, and the only module of the crate with `unsafe`.
//!
//! It owns three things: entering another network namespace for the length of a closure
//! ([`netns`]), TAP devices and their file descriptors ([`tap`]), and the configuration of
//! an interface in the calling thread's namespace: address, MTU, MAC, link state, default
//! route ([`iface`]).
//!
//! Invariants kept throughout:
//! - Every descriptor is owned (`File` / `OwnedFd`) and opened `O_CLOEXEC`; TAP fds are
//!   also `O_NONBLOCK`.
//! - Every `unsafe` block says why it is sound in a `// SAFETY:` comment, and every
//!   syscall's return value is checked and turned into a [`SysError`] or `io::Error`.
//! - Interface names are validated ([`SysError::InvalidName`]) before they reach the
//!   kernel or a `/proc` path.
//! - Nothing here changes the network namespace of a thread that outlives the call.

pub mod iface;
pub mod netns;
pub mod tap;

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_char, c_int};

/// The errors of the OS-facing operations. Each message names what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The interface name is one the kernel would refuse or misread.
    #[error(
        "invalid interface name {0:?}: it must be 1 to 15 bytes, not \".\" or \"..\", \
         and contain no '/', ':', '%', NUL or whitespace"
    )]
    InvalidName(String),
    /// The network namespace file could not be opened.
    #[error("cannot open network namespace {path}: {source}")]
    NetnsOpen {
        /// The namespace path as given (e.g. `/var/run/netns/cni-1234`).
        path: String,
        /// The error of `open(2)`.
        source: io::Error,
    },
    /// `setns(2)` into the namespace failed (not a network namespace, or not privileged).
    #[error("cannot enter network namespace {path} (setns): {source}")]
    Setns {
        /// The namespace path as given.
        path: String,
        /// The error of `setns(2)`.
        source: io::Error,
    },
    /// The thread that enters the namespace could not be started.
    #[error("cannot start a thread to enter network namespace {path}: {source}")]
    ThreadSpawn {
        /// The namespace path as given.
        path: String,
        /// The error of spawning the thread.
        source: io::Error,
    },
    /// The closure run inside a network namespace panicked.
    #[error("the closure run inside a network namespace panicked")]
    ThreadPanicked,
    /// `/dev/net/tun` could not be opened.
    #[error(
        "cannot open /dev/net/tun: {0} (is the tun module loaded, and is the process privileged?)"
    )]
    TunOpen(#[source] io::Error),
    /// A device of that name already exists in the namespace.
    #[error("interface {0} already exists")]
    InterfaceExists(String),
    /// There is no device of that name in the namespace.
    #[error("no interface named {0} in this network namespace")]
    NoSuchInterface(String),
    /// A single-queue TAP already has its one file descriptor, held by another process.
    #[error(
        "TAP {0} is in use by another process (a single-queue TAP takes one fd): \
         stop that process or delete the device"
    )]
    InterfaceBusy(String),
    /// The device exists but is not a TAP of the requested queue mode.
    #[error(
        "interface {name} is not a {} TAP device: delete it, or attach in the mode it was created with",
        if *multi_queue { "multi-queue" } else { "single-queue" }
    )]
    AttachMismatch {
        /// The device name.
        name: String,
        /// The queue mode that was asked for.
        multi_queue: bool,
    },
    /// The device has no IPv4 address.
    #[error("interface {0} has no IPv4 address")]
    NoIpv4Address(String),
    /// The default route's gateway is on no subnet of the device.
    #[error(
        "gateway {gateway} is not reachable through {dev}: give {dev} an address on the \
         gateway's subnet and bring it up first"
    )]
    GatewayUnreachable {
        /// The gateway asked for.
        gateway: Ipv4Addr,
        /// The device the route was to go out of.
        dev: String,
    },
    /// The socket used for interface ioctls could not be opened.
    #[error("cannot open a socket for interface configuration: {0}")]
    Socket(#[source] io::Error),
    /// An ioctl on an interface failed.
    #[error("{op} on interface {ifname} failed: {source}")]
    Ioctl {
        /// The request, e.g. `SIOCSIFMTU`.
        op: &'static str,
        /// The interface name.
        ifname: String,
        /// The error the kernel returned.
        source: io::Error,
    },
    /// A sysctl file under `/proc/sys` could not be written.
    #[error("cannot write {path}: {source}")]
    Sysctl {
        /// The sysctl file.
        path: String,
        /// The error of opening or writing it.
        source: io::Error,
    },
    /// A file under `/proc` could not be read.
    #[error("cannot read {path}: {source}")]
    ProcRead {
        /// The file.
        path: String,
        /// The error of reading it.
        source: io::Error,
    },
    /// A file under `/proc` holds a line this module cannot parse.
    #[error("unexpected line in {path}: {line:?}")]
    ProcParse {
        /// The file.
        path: String,
        /// The offending line.
        line: String,
    },
}

/// The result of the operations of this module.
pub type Result<T> = std::result::Result<T, SysError>;

/// `AF_INET` as the `sa_family_t` of a `struct sockaddr`. `AF_INET` is 2; the C headers
/// narrow it the same way, and the value fits `u16` exactly.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const AF_INET_FAMILY: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;

/// Checks `name` against the kernel's rules for interface names (`dev_valid_name`), plus
/// `%`, which `TUNSETIFF` would expand as a format.
///
/// # Errors
/// [`SysError::InvalidName`] when the name is empty, longer than 15 bytes, `.` or `..`, or
/// contains `/`, `:`, `%`, NUL or whitespace.
pub fn validate_name(name: &str) -> Result<()> {
    let bad_char =
        |c: char| c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control();
    if name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name == "."
        || name == ".."
        || name.contains(bad_char)
    {
        return Err(SysError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// The name as a C string. `validate_name` has ruled out NUL bytes.
fn c_name(name: &str) -> Result<CString> {
    validate_name(name)?;
    CString::new(name).map_err(|_| SysError::InvalidName(name.to_owned()))
}

/// The index of interface `name` in the calling thread's namespace, or `None` when there
/// is no such device.
fn if_index(name: &str) -> Result<Option<u32>> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; if_nametoindex
    // only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index != 0 {
        return Ok(Some(index));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENODEV) {
        Ok(None)
    } else {
        Err(SysError::Ioctl {
            op: "if_nametoindex",
            ifname: name.to_owned(),
            source: err,
        })
    }
}

/// A byte as the platform's `c_char` (signed on x86, unsigned on arm): same bits.
fn to_c_char(byte: u8) -> c_char {
    c_char::from_ne_bytes([byte])
}

/// A `c_char` as a byte: same bits.
fn from_c_char(c: c_char) -> u8 {
    u8::from_ne_bytes(c.to_ne_bytes())
}

/// A zeroed `struct ifreq` carrying `name`.
fn ifreq_for(name: &str) -> Result<libc::ifreq> {
    validate_name(name)?;
    // SAFETY: ifreq is plain C data (arrays, integers, sockaddrs and a raw pointer in a
    // union); all zeros is a valid value of every field.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // validate_name keeps the name below IFNAMSIZ bytes, so the zeroed last byte stays
    // the terminating NUL.
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = to_c_char(src);
    }
    Ok(ifr)
}

/// The name the kernel left in `ifr.ifr_name` (up to the first NUL).
fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .map(|&c| from_c_char(c))
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An IPv4 `struct sockaddr` (the layout of `sockaddr_in`: family, port 0, address).
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let [a, b, c, d] = addr.octets();
    let mut sa_data = [0; 14];
    for (dst, src) in sa_data.iter_mut().skip(2).zip([a, b, c, d]) {
        *dst = to_c_char(src);
    }
    libc::sockaddr {
        sa_family: AF_INET_FAMILY,
        sa_data,
    }
}

/// The address of an IPv4 `struct sockaddr`, or `None` for another family.
fn sockaddr_v4_addr(sa: &libc::sockaddr) -> Option<Ipv4Addr> {
    if sa.sa_family != AF_INET_FAMILY {
        return None;
    }
    let [_, _, a, b, c, d, ..] = sa.sa_data;
    Some(Ipv4Addr::new(
        from_c_char(a),
        from_c_char(b),
        from_c_char(c),
        from_c_char(d),
    ))
}

/// The ioctl requests this module makes whose argument is a pointer to one `struct ifreq`.
/// Keeping them in a closed set is what makes [`ifreq_ioctl`] safe to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfreqRequest {
    /// `TUNSETIFF`, on a `/dev/net/tun` fd.
    TunSetIff,
    /// `SIOCGIFFLAGS`.
    GetFlags,
    /// `SIOCSIFFLAGS`.
    SetFlags,
    /// `SIOCGIFMTU`.
    GetMtu,
    /// `SIOCSIFMTU`.
    SetMtu,
    /// `SIOCGIFHWADDR`.
    GetHwAddr,
    /// `SIOCSIFHWADDR`.
    SetHwAddr,
    /// `SIOCGIFADDR`.
    GetAddr,
    /// `SIOCSIFADDR`.
    SetAddr,
    /// `SIOCGIFNETMASK`.
    GetNetmask,
    /// `SIOCSIFNETMASK`.
    SetNetmask,
}

impl IfreqRequest {
    /// The request number.
    fn code(self) -> libc::Ioctl {
        match self {
            IfreqRequest::TunSetIff => libc::TUNSETIFF,
            IfreqRequest::GetFlags => libc::SIOCGIFFLAGS,
            IfreqRequest::SetFlags => libc::SIOCSIFFLAGS,
            IfreqRequest::GetMtu => libc::SIOCGIFMTU,
            IfreqRequest::SetMtu => libc::SIOCSIFMTU,
            IfreqRequest::GetHwAddr => libc::SIOCGIFHWADDR,
            IfreqRequest::SetHwAddr => libc::SIOCSIFHWADDR,
            IfreqRequest::GetAddr => libc::SIOCGIFADDR,
            IfreqRequest::SetAddr => libc::SIOCSIFADDR,
            IfreqRequest::GetNetmask => libc::SIOCGIFNETMASK,
            IfreqRequest::SetNetmask => libc::SIOCSIFNETMASK,
        }
    }

    /// The request's C name, for error messages.
    fn name(self) -> &'static str {
        match self {
            IfreqRequest::TunSetIff => "TUNSETIFF",
            IfreqRequest::GetFlags => "SIOCGIFFLAGS",
            IfreqRequest::SetFlags => "SIOCSIFFLAGS",
            IfreqRequest::GetMtu => "SIOCGIFMTU",
            IfreqRequest::SetMtu => "SIOCSIFMTU",
            IfreqRequest::GetHwAddr => "SIOCGIFHWADDR",
            IfreqRequest::SetHwAddr => "SIOCSIFHWADDR",
            IfreqRequest::GetAddr => "SIOCGIFADDR",
            IfreqRequest::SetAddr => "SIOCSIFADDR",
            IfreqRequest::GetNetmask => "SIOCGIFNETMASK",
            IfreqRequest::SetNetmask => "SIOCSIFNETMASK",
        }
    }
}

/// Makes `request` on `fd` with `ifr` as its argument. The kernel reads and may write back
/// `ifr`.
fn ifreq_ioctl(fd: BorrowedFd<'_>, request: IfreqRequest, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the borrow. Every request in
    // `IfreqRequest` reads and writes at most one `struct ifreq` through its argument, and
    // `ifr` is a valid, exclusively borrowed `struct ifreq` for the whole call. The kernel
    // keeps no reference to it after returning.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request.code(), std::ptr::from_mut(ifr)) };
    check(ret).map(drop)
}

/// Turns a C return value into `io::Result`: negative means failure, with `errno`.
fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new `AF_INET` datagram socket in the calling thread's namespace, the handle that
/// interface ioctls go through.
fn control_socket() -> Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; its result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let fd = check(fd).map_err(SysError::Socket)?;
    // SAFETY: `fd` was just returned by socket(2), is valid, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Helpers for the real-kernel tests of this module.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// A network namespace made with `ip netns add vt-sys-<pid>-<n>` and deleted on drop,
    /// panics included. Deleting it destroys the devices made in it.
    pub(crate) struct TestNetns {
        name: String,
        path: PathBuf,
    }

    impl TestNetns {
        pub(crate) fn new() -> TestNetns {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("vt-sys-{}-{n}", std::process::id());
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .expect("run ip netns add");
            assert!(out.status.success(), "ip netns add {name}: {out:?}");
            let path = Path::new("/run/netns").join(&name);
            TestNetns { name, path }
        }

        pub(crate) fn name(&self) -> &str {
            &self.name
        }

        pub(crate) fn path(&self) -> &Path {
            &self.path
        }

        /// Runs `ip -n <ns> <args>` and returns its stdout; panics when it fails.
        pub(crate) fn ip(&self, args: &[&str]) -> String {
            let out = self.ip_output(args);
            assert!(
                out.status.success(),
                "ip -n {} {args:?}: {out:?}",
                self.name
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        /// Runs `ip -n <ns> <args>`.
        pub(crate) fn ip_output(&self, args: &[&str]) -> Output {
            Command::new("ip")
                .args(["-n", &self.name])
                .args(args)
                .output()
                .expect("run ip")
        }
    }

    /// Waits up to two seconds for device `name` of the calling thread's namespace to
    /// disappear. A non-persistent TAP goes with its last fd, but a child another test
    /// thread forks holds a copy of every fd until it execs, so the close can lag.
    pub(crate) fn wait_until_gone(name: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while crate::sys::iface::exists(name).expect("look up device") {
            assert!(Instant::now() < deadline, "{name} still exists after 2 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Attaches to the single-queue TAP `name` once no other descriptor holds it (at most
    /// two seconds). The fd a test closed can live on for a moment in a child another test
    /// thread forks (it holds a copy of every fd until it execs), and while it does the
    /// kernel refuses a second queue with `EBUSY`; a test that re-attaches at once would
    /// then fail only when the machine is busy.
    pub(crate) fn attach_when_free(name: &str) -> crate::sys::tap::Tap {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match crate::sys::tap::Tap::attach(name, false) {
                Err(crate::sys::SysError::InterfaceBusy(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) => panic!("attach {name}: {err}"),
                Ok(tap) => return tap,
            }
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let out = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output();
            let deleted = matches!(&out, Ok(o) if o.status.success());
            // A second panic while unwinding would abort and hide the first.
            assert!(
                deleted || std::thread::panicking(),
                "ip netns del {}: {out:?}",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["eth0", "vsw0", "a", "veth-1234567890", "tap_x.1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:1",
            "tap%d",
            "a b",
            "a\tb",
            "a\0b",
            "sixteen-bytes-xx",
        ] {
            assert!(
                matches!(validate_name(bad), Err(SysError::InvalidName(n)) if n == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ifreq_round_trips_name_and_sockaddr() {
        let ifr = ifreq_for("eth0").unwrap();
        assert_eq!(ifreq_name(&ifr), "eth0");
        let ip = Ipv4Addr::new(10, 244, 1, 5);
        assert_eq!(sockaddr_v4_addr(&sockaddr_v4(ip)), Some(ip));
        let mut other = sockaddr_v4(ip);
        other.sa_family = 1;
        assert_eq!(sockaddr_v4_addr(&other), None);
    }
}
