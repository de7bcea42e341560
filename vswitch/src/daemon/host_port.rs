//! The host port `vsw0`: a TAP in the node's own namespace that holds the node subnet's
//! first address with the cluster CIDR's prefix length. It is the pods' default gateway
//! and the node's path to every pod, without NAT.
#![forbid(unsafe_code)]

use crate::ipnet::Ipv4Net;
use crate::mac::MacAddr;
use crate::sys::tap::Tap;
use crate::sys::{self, iface};

/// The host port's interface name.
pub const NAME: &str = "vsw0";

/// Takes back the persistent `vsw0` of an earlier run, or creates it, and configures it.
///
/// # Errors
/// When the device can be neither attached nor created, or not configured.
pub fn open(address: Ipv4Net, mac: MacAddr, mtu: u32) -> sys::Result<Tap> {
    let tap = if iface::exists(NAME)? {
        match Tap::attach(NAME, false) {
            Ok(tap) => tap,
            Err(e) => {
                // Not a TAP of ours (or made with other flags): refuse rather than break it.
                return Err(e);
            }
        }
    } else {
        Tap::create(NAME, false)?
    };
    iface::disable_ipv6(NAME)?;
    iface::set_mac(NAME, mac)?;
    iface::set_mtu(NAME, mtu)?;
    iface::set_ipv4(NAME, address)?;
    iface::set_up(NAME)?;
    Ok(tap)
}
