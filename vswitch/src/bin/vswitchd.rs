//! `vswitchd`: the node daemon. Flags and defaults are those of ../shared/CONTRACT.md.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;
use vswitch::daemon::config::{DaemonFlags, DatapathKind};
use vswitch::ipnet::Ipv4Net;

/// The vswitch node daemon: userspace switch, overlay, IPAM and control socket.
#[derive(Debug, Parser)]
#[command(name = "vswitchd", version)]
struct Args {
    /// This node's name in the cluster store [default: the hostname]
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// This node's VTEP address [default: source address of the default route]
    #[arg(long, value_name = "IPV4")]
    underlay_ip: Option<Ipv4Addr>,
    /// Underlay device (MTU, AF_XDP) [default: device of the default route]
    #[arg(long, value_name = "IFACE")]
    underlay_dev: Option<String>,
    /// The pod network; all pods share this one L2 segment [default: 10.244.0.0/16]
    #[arg(long, value_name = "CIDR")]
    cluster_cidr: Option<Ipv4Net>,
    /// Size of the block each node allocates pod addresses from [default: 24]
    #[arg(long, value_name = "N")]
    node_subnet_len: Option<u8>,
    /// Cluster store: file:PATH or etcd://HOST:PORT[,HOST:PORT...] [default: file:/var/lib/vswitch/cluster.json]
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Node-local state (ports, address leases) [default: /var/lib/vswitch]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Control socket, mode 0600 [default: /run/vswitch/vswitchd.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// VXLAN network identifier [default: 1]
    #[arg(long, value_name = "N")]
    vni: Option<u32>,
    /// VXLAN UDP port, send and receive [default: 4789]
    #[arg(long, value_name = "N")]
    vxlan_port: Option<u16>,
    /// Underlay I/O: udp (kernel UDP socket), afxdp (AF_XDP on --underlay-dev, exit if
    /// unavailable) or auto (AF_XDP where available, else udp) [default: udp]
    #[arg(long, value_name = "udp|afxdp|auto")]
    datapath: Option<DatapathKind>,
    /// Pod MTU [default: underlay MTU - 50]
    #[arg(long, value_name = "N")]
    mtu: Option<u32>,
    /// CA certificate (PEM) that signs the etcd servers' certificates; turns on TLS
    #[arg(long, value_name = "FILE")]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --etcd-key
    #[arg(long, value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd, with --etcd-cert
    #[arg(long, value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// Most MAC table entries; beyond, the least recently seen goes [default: 8192]
    #[arg(long, value_name = "N")]
    mac_table_size: Option<usize>,
    /// Most MACs learned behind one port or one remote VTEP; beyond, that port's least
    /// recently seen goes [default: 1024]
    #[arg(long, value_name = "N")]
    mac_table_per_port: Option<usize>,
    /// Flooded frames (broadcast, multicast, unknown unicast) per second from one port or
    /// one remote VTEP; the excess is dropped. 0: no limit [default: 1000]
    #[arg(long, value_name = "N")]
    flood_rate: Option<u32>,
    /// Flooded frames one port may send back to back within --flood-rate [default: 200]
    #[arg(long, value_name = "N")]
    flood_burst: Option<u32>,
}

fn main() {
    let args = Args::parse();
    let flags = DaemonFlags {
        node: args.node,
        underlay_ip: args.underlay_ip,
        underlay_dev: args.underlay_dev,
        cluster_cidr: args.cluster_cidr,
        node_subnet_len: args.node_subnet_len,
        store: args.store,
        state_dir: args.state_dir,
        socket: args.socket,
        vni: args.vni,
        vxlan_port: args.vxlan_port,
        mtu: args.mtu,
        datapath: args.datapath,
        etcd_tls: vswitch::store::EtcdTls {
            cacert: args.etcd_cacert,
            cert: args.etcd_cert,
            key: args.etcd_key,
        },
        mac_table_size: args.mac_table_size,
        mac_table_per_port: args.mac_table_per_port,
        flood_rate: args.flood_rate,
        flood_burst: args.flood_burst,
    };
    let result = flags
        .resolve()
        .map_err(anyhow::Error::from)
        .and_then(vswitch::daemon::run);
    if let Err(e) = result {
        eprintln!("vswitchd: {e:#}");
        std::process::exit(1);
    }
}
