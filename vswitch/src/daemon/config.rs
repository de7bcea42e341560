//! The daemon's configuration: what `vswitchd`'s flags say, with the defaults of
//! ../shared/CONTRACT.md resolved against the node (hostname, default route, MTU).
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::ipnet::Ipv4Net;
use crate::switch::{FloodRate, SwitchConfig};
use crate::sys;

/// VXLAN's outer headers: Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const OVERLAY_OVERHEAD: u32 = 50;

/// The smallest pod MTU we accept: IPv4's minimum datagram size.
pub const MIN_MTU: u32 = 576;

/// The largest pod MTU we accept (a TAP's limit).
pub const MAX_MTU: u32 = 65_535;

/// The daemon's settings, defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// This node's name in the cluster store.
    pub node: String,
    /// This node's VTEP address.
    pub underlay_ip: Ipv4Addr,
    /// The underlay device (for its MTU, and AF_XDP's device).
    pub underlay_dev: String,
    /// The pod network.
    pub cluster_cidr: Ipv4Net,
    /// The prefix length of each node's block.
    pub node_subnet_len: u8,
    /// The cluster store URL.
    pub store: String,
    /// Node-local state.
    pub state_dir: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// VXLAN network identifier.
    pub vni: u32,
    /// VXLAN UDP port.
    pub vxlan_port: u16,
    /// The pod MTU.
    pub mtu: u32,
    /// TLS files for an etcd store.
    pub etcd_tls: crate::store::EtcdTls,
    /// The switch's bounds: MAC table size, MACs per port, flood rate.
    pub switch: SwitchConfig,
    /// Underlay I/O: UDP socket or AF_XDP.
    pub datapath: DatapathKind,
}

/// `--datapath`: how VXLAN datagrams reach the underlay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DatapathKind {
    /// A kernel UDP socket (the default).
    #[default]
    Udp,
    /// AF_XDP sockets on `--underlay-dev`; the daemon exits when they cannot run.
    Afxdp,
    /// AF_XDP where it can run, else the UDP socket, with one log line saying why.
    Auto,
}

impl std::str::FromStr for DatapathKind {
    type Err = String;

    fn from_str(text: &str) -> Result<DatapathKind, String> {
        match text {
            "udp" => Ok(DatapathKind::Udp),
            "afxdp" => Ok(DatapathKind::Afxdp),
            "auto" => Ok(DatapathKind::Auto),
            other => Err(format!(
                "`{other}` is not a datapath: use udp, afxdp or auto"
            )),
        }
    }
}

/// What the flags gave, before defaults are resolved against the node.
#[derive(Debug, Clone, Default)]
pub struct DaemonFlags {
    /// `--node`.
    pub node: Option<String>,
    /// `--underlay-ip`.
    pub underlay_ip: Option<Ipv4Addr>,
    /// `--underlay-dev`.
    pub underlay_dev: Option<String>,
    /// `--cluster-cidr`.
    pub cluster_cidr: Option<Ipv4Net>,
    /// `--node-subnet-len`.
    pub node_subnet_len: Option<u8>,
    /// `--store`.
    pub store: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--vni`.
    pub vni: Option<u32>,
    /// `--vxlan-port`.
    pub vxlan_port: Option<u16>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--etcd-cacert`, `--etcd-cert`, `--etcd-key`.
    pub etcd_tls: crate::store::EtcdTls,
    /// `--mac-table-size`.
    pub mac_table_size: Option<usize>,
    /// `--mac-table-per-port`.
    pub mac_table_per_port: Option<usize>,
    /// `--flood-rate`.
    pub flood_rate: Option<u32>,
    /// `--flood-burst`.
    pub flood_burst: Option<u32>,
    /// `--datapath`.
    pub datapath: Option<DatapathKind>,
}

/// A configuration the daemon cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `--node` and no hostname.
    #[error("cannot tell this node's name: pass --node NAME ({0})")]
    NodeName(String),
    /// A node name the store cannot hold.
    #[error("node name `{0}` is invalid: use 1 to 63 characters of [A-Za-z0-9._-]")]
    BadNodeName(String),
    /// No `--underlay-ip`/`--underlay-dev` and no default route to take them from.
    #[error("no default route in this network namespace to take the underlay from: pass --underlay-ip and --underlay-dev")]
    NoDefaultRoute,
    /// The default route could not be read.
    #[error("reading the default route: {0}")]
    Route(#[source] sys::SysError),
    /// The underlay device's MTU could not be read.
    #[error("reading the MTU of underlay device {dev}: {source}")]
    UnderlayMtu {
        /// The device.
        dev: String,
        /// Why.
        source: sys::SysError,
    },
    /// The node subnet length does not fit the cluster CIDR.
    #[error("--node-subnet-len {len} does not fit --cluster-cidr {cidr}: it must be between the CIDR's prefix length and 30")]
    SubnetLen {
        /// The cluster CIDR.
        cidr: Ipv4Net,
        /// The subnet length.
        len: u8,
    },
    /// The cluster CIDR has host bits set.
    #[error("--cluster-cidr {0} has host bits set (did you mean {1}?)")]
    CidrHostBits(Ipv4Net, Ipv4Net),
    /// The MTU is out of range.
    #[error("pod MTU {0} is out of range ({MIN_MTU}..={MAX_MTU})")]
    Mtu(u32),
    /// The VNI does not fit 24 bits.
    #[error("--vni {0} does not fit VXLAN's 24 bits (1..=16777215)")]
    Vni(u32),
    /// Port 0.
    #[error("--vxlan-port must not be 0")]
    VxlanPort,
    /// A MAC table that cannot hold a station.
    #[error("--{flag} must be at least 1")]
    MacTable {
        /// The flag.
        flag: &'static str,
    },
}

impl DaemonFlags {
    /// Resolves the defaults of CONTRACT.md against this node and validates the result.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag to pass or fix.
    pub fn resolve(self) -> Result<DaemonConfig, ConfigError> {
        let node = match self.node {
            Some(node) => node,
            None => hostname()?,
        };
        let valid_name = !node.is_empty()
            && node.len() <= 63
            && node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_name {
            return Err(ConfigError::BadNodeName(node));
        }
        let (underlay_ip, underlay_dev) = match (self.underlay_ip, self.underlay_dev) {
            (Some(ip), Some(dev)) => (ip, dev),
            (ip, dev) => {
                let (route_ip, route_dev) = sys::iface::default_route_source()
                    .map_err(ConfigError::Route)?
                    .ok_or(ConfigError::NoDefaultRoute)?;
                (ip.unwrap_or(route_ip), dev.unwrap_or(route_dev))
            }
        };
        let cluster_cidr = self.cluster_cidr.unwrap_or(DEFAULT_CLUSTER_CIDR);
        if cluster_cidr.network() != cluster_cidr {
            return Err(ConfigError::CidrHostBits(
                cluster_cidr,
                cluster_cidr.network(),
            ));
        }
        let node_subnet_len = self.node_subnet_len.unwrap_or(24);
        if node_subnet_len < cluster_cidr.prefix_len() || node_subnet_len > 30 {
            return Err(ConfigError::SubnetLen {
                cidr: cluster_cidr,
                len: node_subnet_len,
            });
        }
        let mtu = match self.mtu {
            Some(mtu) => mtu,
            None => {
                let underlay =
                    sys::iface::mtu(&underlay_dev).map_err(|source| ConfigError::UnderlayMtu {
                        dev: underlay_dev.clone(),
                        source,
                    })?;
                underlay.saturating_sub(OVERLAY_OVERHEAD)
            }
        };
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(ConfigError::Mtu(mtu));
        }
        let vni = self.vni.unwrap_or(1);
        if vni == 0 || vni > 0x00ff_ffff {
            return Err(ConfigError::Vni(vni));
        }
        let vxlan_port = self.vxlan_port.unwrap_or(4789);
        if vxlan_port == 0 {
            return Err(ConfigError::VxlanPort);
        }
        let switch = switch_config(
            self.mac_table_size,
            self.mac_table_per_port,
            self.flood_rate,
            self.flood_burst,
        )?;
        Ok(DaemonConfig {
            node,
            underlay_ip,
            underlay_dev,
            cluster_cidr,
            node_subnet_len,
            store: self
                .store
                .unwrap_or_else(|| "file:/var/lib/vswitch/cluster.json".to_owned()),
            state_dir: self
                .state_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/vswitch")),
            socket: self
                .socket
                .unwrap_or_else(|| PathBuf::from(crate::control::DEFAULT_SOCKET)),
            vni,
            vxlan_port,
            mtu,
            etcd_tls: self.etcd_tls,
            switch,
            datapath: self.datapath.unwrap_or_default(),
        })
    }
}

/// The switch's bounds from the flags, defaults for the ones not given.
fn switch_config(
    size: Option<usize>,
    per_port: Option<usize>,
    rate: Option<u32>,
    burst: Option<u32>,
) -> Result<SwitchConfig, ConfigError> {
    let defaults = SwitchConfig::default();
    let mac_capacity = size.unwrap_or(defaults.mac_capacity);
    if mac_capacity == 0 {
        return Err(ConfigError::MacTable {
            flag: "mac-table-size",
        });
    }
    let mac_per_port = per_port.unwrap_or(defaults.mac_per_port);
    if mac_per_port == 0 {
        return Err(ConfigError::MacTable {
            flag: "mac-table-per-port",
        });
    }
    Ok(SwitchConfig {
        mac_capacity,
        mac_per_port,
        flood_rate: FloodRate {
            per_second: rate.unwrap_or(defaults.flood_rate.per_second),
            burst: burst.unwrap_or(defaults.flood_rate.burst),
        },
        ..defaults
    })
}

/// 10.244.0.0/16, Kubernetes' customary pod CIDR.
pub const DEFAULT_CLUSTER_CIDR: Ipv4Net = Ipv4Net::new_const(Ipv4Addr::new(10, 244, 0, 0), 16);

fn hostname() -> Result<String, ConfigError> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| ConfigError::NodeName(e.to_string()))?;
    let name = text.trim().to_owned();
    if name.is_empty() {
        return Err(ConfigError::NodeName("the hostname is empty".into()));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_bounds_from_flags() {
        assert_eq!(
            switch_config(None, None, None, None).ok(),
            Some(SwitchConfig::default())
        );
        let config = switch_config(Some(100), Some(10), Some(0), Some(5)).ok();
        assert_eq!(config.map(|c| c.mac_capacity), Some(100));
        assert_eq!(config.map(|c| c.mac_per_port), Some(10));
        assert!(config.is_some_and(|c| c.flood_rate.is_unlimited()));
        for (size, per_port, flag) in [
            (Some(0), None, "--mac-table-size must be at least 1"),
            (None, Some(0), "--mac-table-per-port must be at least 1"),
        ] {
            let error = switch_config(size, per_port, None, None).err();
            assert_eq!(error.map(|e| e.to_string()).as_deref(), Some(flag));
        }
    }
}
