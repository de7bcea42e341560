//! Configuring and inspecting an interface of the calling thread's network namespace:
//! MAC, MTU, link state, IPv4 address, default route, IPv6 switch.
//!
//! Every function acts on the namespace of the thread that calls it; wrap calls in
//! [`run_in_netns`](super::netns::run_in_netns) to act on a pod's. Each call opens its own
//! `AF_INET` datagram socket in that namespace (an owned fd, closed on return) and makes
//! classic `SIOC*` ioctls on it, so no netlink is needed. Routes are read from
//! `/proc/thread-self/net/route`, which shows the calling thread's namespace (unlike
//! `/proc/self/net`, which shows the thread-group leader's).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libc::c_int;

use super::{
    c_name, check, control_socket, from_c_char, if_index, ifreq_for, ifreq_ioctl, sockaddr_v4,
    sockaddr_v4_addr, to_c_char, validate_name, IfreqRequest, Result, SysError,
};
use crate::ipnet::Ipv4Net;
use crate::mac::MacAddr;

/// The kernel's IPv4 routing table (main table) as seen by the calling thread.
const ROUTE_PATH: &str = "/proc/thread-self/net/route";

/// Whether a device named `name` exists in the calling thread's namespace.
///
/// # Errors
/// [`SysError::InvalidName`], or [`SysError::Ioctl`] when the lookup itself fails.
pub fn exists(name: &str) -> Result<bool> {
    Ok(if_index(name)?.is_some())
}

/// Sets the Ethernet address of `name` (`SIOCSIFHWADDR`).
///
/// # Errors
/// [`SysError::NoSuchInterface`], or [`SysError::Ioctl`] (e.g. `EADDRNOTAVAIL` for a
/// multicast address, `EBUSY` on some drivers while the device is up).
pub fn set_mac(name: &str, mac: MacAddr) -> Result<()> {
    let sock = control_socket()?;
    let mut ifr = ifreq_for(name)?;
    let mut sa_data = [0; 14];
    for (dst, src) in sa_data.iter_mut().zip(mac.octets()) {
        *dst = to_c_char(src);
    }
    ifr.ifr_ifru.ifru_hwaddr = libc::sockaddr {
        sa_family: libc::ARPHRD_ETHER,
        sa_data,
    };
    request(&sock, name, IfreqRequest::SetHwAddr, &mut ifr)
}

/// Sets the MTU of `name` (`SIOCSIFMTU`).
///
/// # Errors
/// [`SysError::NoSuchInterface`], or [`SysError::Ioctl`] (`EINVAL` for an MTU outside the
/// device's range).
pub fn set_mtu(name: &str, mtu: u32) -> Result<()> {
    let sock = control_socket()?;
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_mtu = c_int::try_from(mtu).map_err(|_| SysError::Ioctl {
        op: IfreqRequest::SetMtu.name(),
        ifname: name.to_owned(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("MTU {mtu} is too large"),
        ),
    })?;
    request(&sock, name, IfreqRequest::SetMtu, &mut ifr)
}

/// Brings `name` up: reads its flags (`SIOCGIFFLAGS`) and writes them back with
/// `IFF_UP` (`SIOCSIFFLAGS`).
///
/// # Errors
/// [`SysError::NoSuchInterface`], or [`SysError::Ioctl`].
pub fn set_up(name: &str) -> Result<()> {
    let sock = control_socket()?;
    let mut ifr = ifreq_for(name)?;
    request(&sock, name, IfreqRequest::GetFlags, &mut ifr)?;
    // SAFETY: the union holds plain integers and C structs, valid for any bit pattern;
    // SIOCGIFFLAGS just filled its `ifru_flags` member.
    let flags = c_int::from(unsafe { ifr.ifr_ifru.ifru_flags }) | libc::IFF_UP;
    // `flags` came from a `short` and IFF_UP is bit 0, so it fits a `short` again.
    ifr.ifr_ifru.ifru_flags = libc::c_short::try_from(flags).map_err(|_| SysError::Ioctl {
        op: IfreqRequest::SetFlags.name(),
        ifname: name.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidData),
    })?;
    request(&sock, name, IfreqRequest::SetFlags, &mut ifr)
}

/// Gives `name` the IPv4 address and prefix of `addr` (`SIOCSIFADDR`, then
/// `SIOCSIFNETMASK`), replacing its primary address. The kernel adds the prefix route
/// once the device is up.
///
/// # Errors
/// [`SysError::NoSuchInterface`], or [`SysError::Ioctl`] (`EINVAL` for a prefix the
/// address does not fit, such as /0).
pub fn set_ipv4(name: &str, addr: Ipv4Net) -> Result<()> {
    let sock = control_socket()?;
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_addr = sockaddr_v4(addr.addr());
    request(&sock, name, IfreqRequest::SetAddr, &mut ifr)?;
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_netmask = sockaddr_v4(addr.netmask());
    request(&sock, name, IfreqRequest::SetNetmask, &mut ifr)
}

/// Adds the default route `0.0.0.0/0 via gateway dev dev` to the main table
/// (`SIOCADDRT` with `RTF_UP | RTF_GATEWAY`, metric 0). An identical route already there
/// counts as success.
///
/// # Errors
/// - [`SysError::NoSuchInterface`] when `dev` does not exist;
/// - [`SysError::GatewayUnreachable`] when `dev` is down or has no subnet holding
///   `gateway`;
/// - [`SysError::Ioctl`] otherwise.
pub fn add_default_route(gateway: Ipv4Addr, dev: &str) -> Result<()> {
    let dev_name = c_name(dev)?;
    let sock = control_socket()?;
    // SAFETY: rtentry is plain C data (integers, sockaddrs, a raw pointer); all zeros is a
    // valid value of every field, the null `rt_dev` included.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_v4(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_v4(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_v4(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // The kernel only reads the name; the field is `char *` in C all the same.
    rt.rt_dev = dev_name.as_ptr().cast_mut();
    // SAFETY: SIOCADDRT reads one `struct rtentry` through its argument and, through
    // `rt_dev`, one NUL-terminated name. `rt` and `dev_name` both live past the call, the
    // kernel writes through neither, and `sock` is an open socket.
    let ret = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCADDRT,
            std::ptr::from_mut(&mut rt),
        )
    };
    match check(ret) {
        Ok(_) => Ok(()),
        Err(e) => match e.raw_os_error() {
            Some(libc::EEXIST) => Ok(()),
            Some(libc::ENODEV) => Err(SysError::NoSuchInterface(dev.to_owned())),
            Some(libc::ENETUNREACH | libc::ENETDOWN) => Err(SysError::GatewayUnreachable {
                gateway,
                dev: dev.to_owned(),
            }),
            _ => Err(SysError::Ioctl {
                op: "SIOCADDRT",
                ifname: dev.to_owned(),
                source: e,
            }),
        },
    }
}

/// Turns IPv6 off on `name` by writing `1` to `/proc/sys/net/ipv6/conf/<name>/disable_ipv6`
/// (resolved in the namespace of the calling thread). Succeeds without effect when the
/// kernel has no IPv6.
///
/// # Errors
/// [`SysError::NoSuchInterface`], or [`SysError::Sysctl`] when the file cannot be written.
pub fn disable_ipv6(name: &str) -> Result<()> {
    validate_name(name)?;
    if !exists(name)? {
        return Err(SysError::NoSuchInterface(name.to_owned()));
    }
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    let mut file = match OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(SysError::Sysctl { path, source }),
    };
    file.write_all(b"1")
        .map_err(|source| SysError::Sysctl { path, source })
}

/// What [`inspect`] reports about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceInfo {
    /// The device name.
    pub name: String,
    /// Its Ethernet address.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u32,
    /// Whether it is administratively up (`IFF_UP`).
    pub up: bool,
    /// Its primary IPv4 address with prefix length, if it has one.
    pub ipv4: Option<Ipv4Net>,
    /// The gateway of the default route, when that route goes out of this device.
    pub default_gateway: Option<Ipv4Addr>,
}

/// Reads the state of `name`, or `None` when there is no such device.
///
/// # Errors
/// [`SysError::InvalidName`], [`SysError::Socket`], [`SysError::Ioctl`], or
/// [`SysError::ProcRead`] / [`SysError::ProcParse`] for the route table.
pub fn inspect(name: &str) -> Result<Option<IfaceInfo>> {
    validate_name(name)?;
    match inspect_existing(name) {
        Ok(info) => Ok(Some(info)),
        Err(SysError::NoSuchInterface(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`inspect`], with a missing device as [`SysError::NoSuchInterface`].
fn inspect_existing(name: &str) -> Result<IfaceInfo> {
    let sock = control_socket()?;

    let mut ifr = ifreq_for(name)?;
    request(&sock, name, IfreqRequest::GetFlags, &mut ifr)?;
    // SAFETY: the union holds plain data valid for any bit pattern; SIOCGIFFLAGS just
    // filled `ifru_flags`.
    let up = c_int::from(unsafe { ifr.ifr_ifru.ifru_flags }) & libc::IFF_UP != 0;

    let mut ifr = ifreq_for(name)?;
    request(&sock, name, IfreqRequest::GetHwAddr, &mut ifr)?;
    // SAFETY: as above; SIOCGIFHWADDR just filled `ifru_hwaddr`.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = MacAddr::ZERO;
    for (dst, src) in mac.0.iter_mut().zip(hw.sa_data) {
        *dst = from_c_char(src);
    }

    Ok(IfaceInfo {
        name: name.to_owned(),
        mac,
        mtu: mtu_on(&sock, name)?,
        up,
        ipv4: ipv4_on(&sock, name)?,
        default_gateway: default_routes()?
            .into_iter()
            .find(|r| r.dev == name && r.gateway.is_some())
            .and_then(|r| r.gateway),
    })
}

/// The node's default route as (source address, device): the lowest-metric default
/// route of the calling thread's namespace, and the primary IPv4 address of its device.
/// `None` when there is no default route.
///
/// # Errors
/// [`SysError::NoIpv4Address`] when the route's device has no IPv4 address;
/// [`SysError::ProcRead`] / [`SysError::ProcParse`] for the route table;
/// [`SysError::Ioctl`] otherwise.
pub fn default_route_source() -> Result<Option<(Ipv4Addr, String)>> {
    let Some(route) = default_routes()?.into_iter().next() else {
        return Ok(None);
    };
    let sock = control_socket()?;
    match ipv4_on(&sock, &route.dev)? {
        Some(net) => Ok(Some((net.addr(), route.dev))),
        None => Err(SysError::NoIpv4Address(route.dev)),
    }
}

/// The MTU of `name` (`SIOCGIFMTU`).
///
/// # Errors
/// [`SysError::NoSuchInterface`], or [`SysError::Ioctl`].
pub fn mtu(name: &str) -> Result<u32> {
    let sock = control_socket()?;
    mtu_on(&sock, name)
}

/// `SIOCGIFMTU` on an open socket.
fn mtu_on(sock: &OwnedFd, name: &str) -> Result<u32> {
    let mut ifr = ifreq_for(name)?;
    request(sock, name, IfreqRequest::GetMtu, &mut ifr)?;
    // SAFETY: the union holds plain data valid for any bit pattern; SIOCGIFMTU just
    // filled `ifru_mtu`.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| SysError::Ioctl {
        op: IfreqRequest::GetMtu.name(),
        ifname: name.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("negative MTU {mtu}")),
    })
}

/// The primary IPv4 address and prefix of `name` (`SIOCGIFADDR`, `SIOCGIFNETMASK`), or
/// `None` when it has none.
fn ipv4_on(sock: &OwnedFd, name: &str) -> Result<Option<Ipv4Net>> {
    let mut ifr = ifreq_for(name)?;
    match ifreq_ioctl(sock.as_fd(), IfreqRequest::GetAddr, &mut ifr) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => return Ok(None),
        other => other.map_err(|source| ioctl_error(name, IfreqRequest::GetAddr, source))?,
    }
    // SAFETY: the union holds plain data valid for any bit pattern; SIOCGIFADDR just
    // filled `ifru_addr`.
    let addr = sockaddr_v4_addr(&unsafe { ifr.ifr_ifru.ifru_addr });

    let mut ifr = ifreq_for(name)?;
    request(sock, name, IfreqRequest::GetNetmask, &mut ifr)?;
    // SAFETY: as above; SIOCGIFNETMASK just filled `ifru_netmask`.
    let mask = sockaddr_v4_addr(&unsafe { ifr.ifr_ifru.ifru_netmask });

    let (Some(addr), Some(mask)) = (addr, mask) else {
        return Ok(None);
    };
    // The kernel keeps masks contiguous, so the prefix length is the count of leading
    // ones, at most 32; `Ipv4Net::new` cannot refuse it.
    let prefix = u8::try_from(u32::from(mask).leading_ones()).unwrap_or(32);
    Ok(Ipv4Net::new(addr, prefix).ok())
}

/// Makes `req` on `sock` for `name`, mapping `ENODEV` to [`SysError::NoSuchInterface`].
fn request(sock: &OwnedFd, name: &str, req: IfreqRequest, ifr: &mut libc::ifreq) -> Result<()> {
    ifreq_ioctl(sock.as_fd(), req, ifr).map_err(|source| ioctl_error(name, req, source))
}

/// The error of a failed ifreq ioctl on `name`.
fn ioctl_error(name: &str, req: IfreqRequest, source: io::Error) -> SysError {
    if source.raw_os_error() == Some(libc::ENODEV) {
        SysError::NoSuchInterface(name.to_owned())
    } else {
        SysError::Ioctl {
            op: req.name(),
            ifname: name.to_owned(),
            source,
        }
    }
}

/// A default route (`0.0.0.0/0`, up) of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DefaultRoute {
    /// The device it goes out of.
    dev: String,
    /// Its gateway, when it has one (`RTF_GATEWAY`).
    gateway: Option<Ipv4Addr>,
    /// Its metric; the lowest wins.
    metric: u32,
}

/// The default routes of the calling thread's namespace, lowest metric first.
fn default_routes() -> Result<Vec<DefaultRoute>> {
    let text = std::fs::read_to_string(ROUTE_PATH).map_err(|source| SysError::ProcRead {
        path: ROUTE_PATH.to_owned(),
        source,
    })?;
    parse_default_routes(&text)
}

/// Parses the text of `/proc/net/route` and keeps the default routes that are up, lowest
/// metric first (ties in table order). Columns: `Iface Destination Gateway Flags RefCnt
/// Use Metric Mask MTU Window IRTT`; addresses are the in-memory (network order) bytes of
/// a `__be32` printed as a host integer in hex, flags are hex, the metric decimal.
fn parse_default_routes(text: &str) -> Result<Vec<DefaultRoute>> {
    let bad_line = |line: &str| SysError::ProcParse {
        path: ROUTE_PATH.to_owned(),
        line: line.to_owned(),
    };
    let mut routes = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let mut next = || fields.next().ok_or_else(|| bad_line(line));
        let dev = next()?;
        let destination = hex_addr(next()?).ok_or_else(|| bad_line(line))?;
        let gateway = hex_addr(next()?).ok_or_else(|| bad_line(line))?;
        let flags = u16::from_str_radix(next()?, 16).map_err(|_| bad_line(line))?;
        let _refcnt = next()?;
        let _use = next()?;
        let metric: u32 = next()?.parse().map_err(|_| bad_line(line))?;
        let mask = hex_addr(next()?).ok_or_else(|| bad_line(line))?;
        let is_default = destination.is_unspecified() && mask.is_unspecified();
        if is_default && flags & libc::RTF_UP != 0 {
            routes.push(DefaultRoute {
                dev: dev.to_owned(),
                gateway: (flags & libc::RTF_GATEWAY != 0).then_some(gateway),
                metric,
            });
        }
    }
    routes.sort_by_key(|r| r.metric);
    Ok(routes)
}

/// An address field of `/proc/net/route`: the `__be32`'s memory printed as a host `u32`.
fn hex_addr(field: &str) -> Option<Ipv4Addr> {
    let raw = u32::from_str_radix(field, 16).ok()?;
    Some(Ipv4Addr::from(raw.to_ne_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::net::UdpSocket;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sys::netns::run_in_netns;
    use crate::sys::tap::{Tap, VNET_HDR_LEN};
    use crate::sys::test_support::{attach_when_free, wait_until_gone, TestNetns};

    const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

    fn pod_net() -> Ipv4Net {
        Ipv4Net::new(POD_IP, 16).unwrap()
    }

    /// The `<FLAG,FLAG>` list of an `ip link show` line.
    fn link_flags(ip_link: &str) -> Vec<String> {
        let start = ip_link.find('<').unwrap() + 1;
        let end = ip_link.find('>').unwrap();
        ip_link[start..end].split(',').map(str::to_owned).collect()
    }

    /// Host byte order for the route fixture: how the kernel prints `a.b.c.d`.
    fn hex(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    #[test]
    fn route_table_fixture() {
        let text = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth1\t00000000\t{gw2}\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
             eth0\t00000000\t{gw1}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t{net}\t00000000\t0001\t0\t0\t0\t{mask}\t0\t0\t0\n\
             down0\t00000000\t{gw1}\t0002\t0\t0\t0\t00000000\t0\t0\t0\n\
             wg0\t00000000\t00000000\t0001\t0\t0\t300\t00000000\t0\t0\t0\n",
            gw1 = hex(GATEWAY),
            gw2 = hex(Ipv4Addr::new(192, 168, 0, 1)),
            net = hex(Ipv4Addr::new(10, 244, 0, 0)),
            mask = hex(Ipv4Addr::new(255, 255, 0, 0)),
        );
        let routes = parse_default_routes(&text).unwrap();
        assert_eq!(
            routes,
            [
                DefaultRoute {
                    dev: "eth0".into(),
                    gateway: Some(GATEWAY),
                    metric: 100
                },
                DefaultRoute {
                    dev: "eth1".into(),
                    gateway: Some(Ipv4Addr::new(192, 168, 0, 1)),
                    metric: 200
                },
                DefaultRoute {
                    dev: "wg0".into(),
                    gateway: None,
                    metric: 300
                },
            ]
        );
        assert_eq!(parse_default_routes("Iface\tDestination\n").unwrap(), []);
        let err = parse_default_routes("header\neth0\t0000000G\n").unwrap_err();
        assert!(matches!(err, SysError::ProcParse { .. }), "{err}");
        let err = parse_default_routes("header\neth0\t00000000\n").unwrap_err();
        assert!(matches!(err, SysError::ProcParse { .. }), "{err}");
    }

    /// The whole setup of a pod interface, checked with iproute2 and with `inspect`.
    #[test]
    fn pod_interface_setup_is_what_ip_shows() {
        let ns = TestNetns::new();
        let mac = MacAddr::from_ipv4(POD_IP);
        let tap = run_in_netns(ns.path(), || -> Result<Tap> {
            let tap = Tap::create("eth0", false)?;
            set_mac("eth0", mac)?;
            set_mtu("eth0", 1400)?;
            set_ipv4("eth0", pod_net())?;
            disable_ipv6("eth0")?;
            set_up("eth0")?;
            add_default_route(GATEWAY, "eth0")?;
            add_default_route(GATEWAY, "eth0")?; // already there: still Ok
            Ok(tap)
        })
        .unwrap()
        .unwrap();
        assert_eq!(tap.name(), "eth0");

        let link = ns.ip(&["-d", "link", "show", "eth0"]);
        assert!(link.contains("tun type tap"), "{link}");
        assert!(
            link.contains("vnet_hdr on") && link.contains("persist on"),
            "{link}"
        );
        assert!(link.contains(&format!("link/ether {mac} ")), "{link}");
        assert!(link.contains(" mtu 1400 "), "{link}");
        assert!(link_flags(&link).iter().any(|f| f == "UP"), "{link}");
        let addr = ns.ip(&["-4", "addr", "show", "eth0"]);
        assert!(addr.contains("inet 10.244.1.5/16 "), "{addr}");
        let routes = ns.ip(&["-4", "route", "show"]);
        assert!(
            routes.contains("default via 10.244.1.1 dev eth0"),
            "{routes}"
        );
        assert!(routes.contains("10.244.0.0/16 dev eth0"), "{routes}");
        let ipv6 = Command::new("ip")
            .args(["netns", "exec", ns.name(), "cat"])
            .arg("/proc/sys/net/ipv6/conf/eth0/disable_ipv6")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ipv6.stdout).trim(),
            "1",
            "{ipv6:?}"
        );

        let (info, source, mtu_seen) = run_in_netns(ns.path(), || {
            (inspect("eth0"), default_route_source(), mtu("eth0"))
        })
        .unwrap();
        assert_eq!(
            info.unwrap(),
            Some(IfaceInfo {
                name: "eth0".into(),
                mac,
                mtu: 1400,
                up: true,
                ipv4: Some(pod_net()),
                default_gateway: Some(GATEWAY),
            })
        );
        assert_eq!(source.unwrap(), Some((POD_IP, "eth0".to_owned())));
        assert_eq!(mtu_seen.unwrap(), 1400);

        // Persistent: the device outlives the fd, keeps its setup, and can be re-attached.
        drop(tap);
        let link = ns.ip(&["link", "show", "eth0"]);
        assert!(link.contains(" mtu 1400 "), "{link}");
        run_in_netns(ns.path(), || {
            let tap = attach_when_free("eth0");
            // A restarted daemon configures again: that is idempotent on a live device
            // and keeps the default route.
            set_mac("eth0", mac).unwrap();
            set_mtu("eth0", 1400).unwrap();
            set_ipv4("eth0", pod_net()).unwrap();
            set_up("eth0").unwrap();
            add_default_route(GATEWAY, "eth0").unwrap();
            let again = inspect("eth0").unwrap().unwrap();
            assert_eq!((again.mac, again.ipv4), (mac, Some(pod_net())));
            assert_eq!(again.default_gateway, Some(GATEWAY));
            tap.set_persist(false).unwrap();
            drop(tap);
            wait_until_gone("eth0");
            assert_eq!(inspect("eth0").unwrap(), None);
        })
        .unwrap();
        let gone = ns.ip_output(&["link", "show", "eth0"]);
        assert!(!gone.status.success(), "{gone:?}");
    }

    #[test]
    fn fresh_namespace_state() {
        let ns = TestNetns::new();
        run_in_netns(ns.path(), || {
            assert_eq!(default_route_source().unwrap(), None);
            let lo = inspect("lo").unwrap().unwrap();
            assert_eq!((lo.up, lo.ipv4, lo.default_gateway), (false, None, None));
            assert_eq!(lo.mac, MacAddr::ZERO);
            assert_eq!(inspect("eth0").unwrap(), None);
            assert!(exists("lo").unwrap());
            assert!(!exists("eth0").unwrap());
        })
        .unwrap();
    }

    #[test]
    fn errors_name_the_problem() {
        let ns = TestNetns::new();
        run_in_netns(ns.path(), || {
            let no_dev =
                |r: Result<()>| matches!(r, Err(SysError::NoSuchInterface(n)) if n == "eth0");
            assert!(no_dev(set_mtu("eth0", 1500)));
            assert!(no_dev(set_mac("eth0", MacAddr::from_ipv4(POD_IP))));
            assert!(no_dev(set_up("eth0")));
            assert!(no_dev(set_ipv4("eth0", pod_net())));
            assert!(no_dev(disable_ipv6("eth0")));
            assert!(no_dev(add_default_route(GATEWAY, "eth0")));
            assert!(matches!(mtu("eth0"), Err(SysError::NoSuchInterface(_))));
            assert!(matches!(inspect("a/b"), Err(SysError::InvalidName(_))));
            assert!(matches!(
                disable_ipv6("../all"),
                Err(SysError::InvalidName(_))
            ));

            let _tap = Tap::create("eth0", false).unwrap();
            let err = add_default_route(GATEWAY, "eth0").unwrap_err();
            assert!(matches!(err, SysError::GatewayUnreachable { .. }), "{err}");
            set_ipv4("eth0", pod_net()).unwrap();
            set_up("eth0").unwrap();
            let err = add_default_route(Ipv4Addr::new(192, 168, 9, 1), "eth0").unwrap_err();
            assert!(matches!(err, SysError::GatewayUnreachable { .. }), "{err}");
            assert!(err.to_string().contains("192.168.9.1"), "{err}");
            let err = set_mtu("eth0", 10).unwrap_err();
            assert!(
                matches!(
                    err,
                    SysError::Ioctl {
                        op: "SIOCSIFMTU",
                        ..
                    }
                ),
                "{err}"
            );
            let err = set_mtu("eth0", u32::MAX).unwrap_err();
            assert!(
                matches!(
                    err,
                    SysError::Ioctl {
                        op: "SIOCSIFMTU",
                        ..
                    }
                ),
                "{err}"
            );
        })
        .unwrap();
    }

    /// Reads frames from `tap` until one passes `wanted` or two seconds pass.
    fn read_frame(tap: &Tap, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = vec![0u8; VNET_HDR_LEN + 65_550];
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match tap.read(&mut buf) {
                Ok(n) => {
                    let frame = &buf[VNET_HDR_LEN..n];
                    if wanted(frame) {
                        return frame.to_vec();
                    }
                    seen.push(frame.to_vec());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("read from TAP: {e}"),
            }
        }
        panic!("no matching frame within 2 s; saw {seen:02x?}");
    }

    /// An Ethernet + ARP frame (RFC 826) for IPv4 over Ethernet.
    fn arp_frame(
        op: u16,
        eth_dst: MacAddr,
        sha: MacAddr,
        spa: Ipv4Addr,
        tha: MacAddr,
        tpa: Ipv4Addr,
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(eth_dst.octets());
        f.extend(sha.octets());
        f.extend(0x0806u16.to_be_bytes());
        f.extend([0, 1, 0x08, 0x00, 6, 4]);
        f.extend(op.to_be_bytes());
        f.extend(sha.octets());
        f.extend(spa.octets());
        f.extend(tha.octets());
        f.extend(tpa.octets());
        f
    }

    fn is_arp(frame: &[u8], op: u16, tpa: Ipv4Addr) -> bool {
        frame.len() >= 42
            && frame[12..14] == [0x08, 0x06]
            && frame[20..22] == op.to_be_bytes()
            && frame[38..42] == tpa.octets()
    }

    /// Frames cross the TAP fd both ways with a zero virtio-net header: the kernel answers
    /// an ARP request written to the fd, and its own ARP request can be read from the fd.
    #[test]
    fn frames_cross_the_tap_both_ways() {
        let ns = TestNetns::new();
        let mac = MacAddr::from_ipv4(POD_IP);
        let neighbour_ip = Ipv4Addr::new(10, 244, 1, 9);
        let neighbour = MacAddr::from_ipv4(neighbour_ip);
        let stranger = Ipv4Addr::new(10, 244, 1, 7);
        run_in_netns(ns.path(), || {
            let tap = Tap::create("eth0", false).unwrap();
            tap.set_persist(false).unwrap();
            set_mac("eth0", mac).unwrap();
            set_ipv4("eth0", pod_net()).unwrap();
            disable_ipv6("eth0").unwrap();
            set_up("eth0").unwrap();

            // In: who-has 10.244.1.5 tell 10.244.1.9. Out: the kernel's reply.
            let mut frame = vec![0u8; VNET_HDR_LEN];
            frame.extend(arp_frame(
                1,
                MacAddr::BROADCAST,
                neighbour,
                neighbour_ip,
                MacAddr::ZERO,
                POD_IP,
            ));
            assert_eq!(tap.write(&frame).unwrap(), frame.len());
            let reply = read_frame(&tap, |f| is_arp(f, 2, neighbour_ip));
            let expected = arp_frame(2, neighbour, mac, POD_IP, neighbour, neighbour_ip);
            assert_eq!(reply[..expected.len()], expected[..]);

            // Out: the kernel resolves a stranger before sending it a datagram.
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            sock.send_to(b"hello", (stranger, 9)).unwrap();
            let request = read_frame(&tap, |f| is_arp(f, 1, stranger));
            assert_eq!(request[0..6], MacAddr::BROADCAST.octets());
            assert_eq!(request[6..12], mac.octets());
            assert_eq!(request[28..32], POD_IP.octets());

            let stats = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
            let eth0 = stats
                .lines()
                .find(|l| l.trim_start().starts_with("eth0:"))
                .unwrap();
            let counters = eth0.split_once(':').unwrap().1;
            let rx_packets: u64 = counters.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(rx_packets >= 1, "{eth0}");
        })
        .unwrap();
    }
}
