//! A "kernel node": a host on the fabric that does VXLAN the way Linux does it, with a
//! Linux bridge and a `vxlan` device, and "kernel pods" on that bridge. It is the
//! reference implementation our overlay must interoperate with.
//!
//! ```text
//!   kernel node ns:  ul0 192.168.250.X ── (fabric)
//!                    br0 ── vxlan0 (id VNI dstport 4789 local X dev ul0, learning)
//!                     └──── k<n> ─┐ veth
//!   kernel pod ns:   eth0 ────────┘ 10.244.200.N/16
//! ```
//!
//! Every device on the pod path gets the same MTU (the pod MTU). Broadcast and unknown
//! unicast go to the VTEPs given to [`KernelNode::flood_to`] (an all-zero FDB entry per
//! VTEP: head-end replication, as `bridge fdb append 00:00:00:00:00:00` makes it).
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::fabric_host::FabricHost;
use crate::netns::Netns;

/// The VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;

/// A kernel VXLAN node on the fabric. Dropping it deletes its namespace (pods are
/// separate guards).
#[derive(Debug)]
pub struct KernelNode {
    host: FabricHost,
    mtu: u32,
    pods: std::sync::atomic::AtomicU32,
}

/// A namespace attached to a [`KernelNode`]'s bridge by a veth pair. Dropping it deletes
/// the namespace (and the veth pair).
#[derive(Debug)]
pub struct KernelPod {
    /// Its namespace.
    pub netns: Netns,
    /// Its address on `eth0`.
    pub ip: Ipv4Addr,
    /// `eth0`'s MAC (lower case).
    pub mac: String,
}

impl KernelNode {
    /// A kernel node at `ip` on `cluster`'s fabric: bridge `br0` and `vxlan0` (`vni`,
    /// dstport 4789, local `ip`, dev `ul0`, learning), both with MTU `mtu`.
    ///
    /// # Panics
    /// When any command fails (e.g. no `vxlan` driver).
    pub fn new(cluster: &Cluster, ip: Ipv4Addr, vni: u32, mtu: u32) -> KernelNode {
        let host = FabricHost::new(cluster, "knode", ip);
        let ns = host.netns();
        let mtu_text = mtu.to_string();
        ns.ip_ok(&["link", "add", "br0", "mtu", &mtu_text, "type", "bridge"]);
        ns.ip_ok(&[
            "link",
            "add",
            "vxlan0",
            "mtu",
            &mtu_text,
            "type",
            "vxlan",
            "id",
            &vni.to_string(),
            "dstport",
            &VXLAN_PORT.to_string(),
            "local",
            &ip.to_string(),
            "dev",
            "ul0",
            "learning",
        ]);
        ns.ip_ok(&["link", "set", "vxlan0", "master", "br0", "up"]);
        ns.ip_ok(&["link", "set", "br0", "up"]);
        set_tx_checksum(ns, "ul0", false);
        KernelNode {
            host,
            mtu,
            pods: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Its namespace.
    pub fn netns(&self) -> &Netns {
        self.host.netns()
    }

    /// Its VTEP (underlay) address.
    pub fn ip(&self) -> Ipv4Addr {
        self.host.ip()
    }

    /// The fabric host it is built on.
    pub fn host(&self) -> &FabricHost {
        &self.host
    }

    /// Adds `vtep` to the head-end replication list of `vxlan0`
    /// (`bridge fdb append 00:00:00:00:00:00 dev vxlan0 dst VTEP`).
    ///
    /// # Panics
    /// When `bridge` fails.
    pub fn flood_to(&self, vtep: Ipv4Addr) {
        let done = self.netns().exec(&[
            "bridge",
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vxlan0",
            "dst",
            &vtep.to_string(),
        ]);
        assert!(
            done.success(),
            "bridge fdb append ... dst {vtep} in {} failed: {}",
            self.netns().name(),
            done.stderr
        );
    }

    /// `bridge -j fdb show dev vxlan0`, as JSON.
    ///
    /// # Panics
    /// When `bridge` fails or prints no JSON list.
    pub fn vxlan_fdb(&self) -> Vec<Value> {
        let done = self
            .netns()
            .exec(&["bridge", "-j", "fdb", "show", "dev", "vxlan0"]);
        assert!(done.success(), "bridge fdb show failed: {}", done.stderr);
        match serde_json::from_str(&done.stdout) {
            Ok(Value::Array(items)) => items,
            _ => panic!("bridge -j fdb show: not a JSON list:\n{}", done.stdout),
        }
    }

    /// A new kernel pod on the bridge with `ip`/`prefix_len` on `eth0`, MTU as the node's.
    ///
    /// # Panics
    /// When any command fails.
    pub fn add_pod(&self, ip: Ipv4Addr, prefix_len: u8) -> KernelPod {
        let n = self.pods.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let netns = Netns::new("kpod");
        let bridge_end = format!("k{n}");
        let mtu = self.mtu.to_string();
        let node = self.netns();
        node.ip_ok(&[
            "link",
            "add",
            &bridge_end,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "mtu",
            &mtu,
            "netns",
            netns.name(),
        ]);
        node.ip_ok(&["link", "set", &bridge_end, "master", "br0", "up"]);
        netns.ip_ok(&["addr", "add", &format!("{ip}/{prefix_len}"), "dev", "eth0"]);
        netns.ip_ok(&["link", "set", "eth0", "up"]);
        let mac = crate::links::link(&netns, "eth0")
            .and_then(|l| l.get("address").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| panic!("no MAC on eth0 in {}", netns.name()))
            .to_ascii_lowercase();
        KernelPod { netns, ip, mac }
    }
}

/// Turns a device's transmit checksum offload on or off (`ethtool -K DEV tx on|off`,
/// done with the `ETHTOOL_STXCSUM` ioctl so that no `ethtool` binary is needed).
///
/// Why the kernel node needs it off on `ul0`: a veth never computes an offloaded
/// checksum, it hands the packet over still marked "partial", and a receiving kernel
/// trusts such a packet. Our daemon reads the datagram from a UDP socket and cannot know;
/// the inner TCP checksum the kernel's vxlan left for "the NIC" would reach our pod
/// unfinished and be dropped there. A real NIC fills it in; with the offload off on
/// `ul0` the kernel does, in software, as it does for a NIC without tunnel offloads.
///
/// # Panics
/// When the ioctl fails.
pub fn set_tx_checksum(ns: &Netns, ifname: &str, on: bool) {
    const SCRIPT: &str = r"
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17
value = ctypes.create_string_buffer(struct.pack('II', ETHTOOL_STXCSUM, int(sys.argv[2])))
ifreq = struct.pack('16sP', sys.argv[1].encode(), ctypes.addressof(value))
ifreq += bytes(40 - len(ifreq))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
";
    let done = ns.exec(&["python3", "-c", SCRIPT, ifname, if on { "1" } else { "0" }]);
    assert!(
        done.success(),
        "turning tx checksum offload {} on {ifname} in {} failed: {}",
        if on { "on" } else { "off" },
        ns.name(),
        done.stderr
    );
}

impl KernelPod {
    /// The MAC its neighbour table holds for `ip`, if any (`ip neigh show IP dev eth0`;
    /// entries that are FAILED or INCOMPLETE have none).
    ///
    /// # Panics
    /// When `ip` fails.
    pub fn neighbour_mac(&self, ip: Ipv4Addr) -> Option<String> {
        let out = self
            .netns
            .ip_ok(&["-j", "neigh", "show", &ip.to_string(), "dev", "eth0"]);
        let entries: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
        entries.iter().find_map(|e| {
            e.get("lladdr")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
    }
}
