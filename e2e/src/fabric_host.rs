//! A host on the underlay that is no node of ours: a namespace joined to a cluster's
//! fabric bridge by a veth pair, with one underlay address. It stands for a hardware or
//! kernel VTEP, or a stranger on the physical network.
//!
//! ```text
//!   fabric ns:  br0 ── h<last octet> ─┐ veth
//!   host ns:    ul0 192.168.250.X/24 ─┘
//! ```
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use crate::cluster::{Cluster, FABRIC_ADDRESS, UNDERLAY_PREFIX_LEN};
use crate::netns::Netns;

/// A namespace on the fabric with address `ip` on `ul0`. Dropping it deletes the
/// namespace, and with it both ends of the veth pair.
#[derive(Debug)]
pub struct FabricHost {
    netns: Netns,
    ip: Ipv4Addr,
    fabric_port: String,
}

impl FabricHost {
    /// A new namespace (`role` names it) on `cluster`'s fabric with `ip`/24 on `ul0` and
    /// a default route via the fabric bridge. Its port on the fabric bridge is named
    /// `h<last octet of ip>`.
    ///
    /// # Panics
    /// When `ip` is not on the underlay /24, or any `ip` command fails.
    pub fn new(cluster: &Cluster, role: &str, ip: Ipv4Addr) -> FabricHost {
        let [a, b, c, last] = ip.octets();
        let [fa, fb, fc, _] = FABRIC_ADDRESS.octets();
        assert!(
            [a, b, c] == [fa, fb, fc],
            "{ip} is not on the underlay {FABRIC_ADDRESS}/{UNDERLAY_PREFIX_LEN}"
        );
        let netns = Netns::new(role);
        let fabric = cluster.fabric();
        let fabric_port = format!("h{last}");
        netns.ip_ok(&[
            "link",
            "add",
            "ul0",
            "type",
            "veth",
            "peer",
            "name",
            &fabric_port,
            "netns",
            fabric.name(),
        ]);
        fabric.ip_ok(&["link", "set", &fabric_port, "master", "br0", "up"]);
        netns.ip_ok(&[
            "addr",
            "add",
            &format!("{ip}/{UNDERLAY_PREFIX_LEN}"),
            "dev",
            "ul0",
        ]);
        netns.ip_ok(&["link", "set", "ul0", "up"]);
        netns.ip_ok(&[
            "route",
            "add",
            "default",
            "via",
            &FABRIC_ADDRESS.to_string(),
        ]);
        FabricHost {
            netns,
            ip,
            fabric_port,
        }
    }

    /// Its namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Its underlay address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The name of its port on the fabric bridge (in the fabric namespace), to capture on.
    pub fn fabric_port(&self) -> &str {
        &self.fabric_port
    }
}
