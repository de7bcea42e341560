//! Test harness: the real `vswitchd`, `vswitchctl` and `vswitch-cni` binaries in real
//! network namespaces.
//!
//! A test builds a [`Cluster`]: an underlay "fabric" namespace (a Linux bridge `br0`,
//! 192.168.250.1/24, standing for the physical network, which the product never touches)
//! and one namespace per node, joined to the fabric by a veth pair (`ul0`,
//! 192.168.250.(10+i)/24 for node *i*, counted from 1), each running its own `vswitchd`.
//! All daemons of a cluster share one store: a `file:` store by default, or an [`Etcd`]
//! server in the fabric namespace ([`Cluster::builder`] with [`StoreKind::Etcd`]). Pods are made the way a container
//! runtime makes them: a fresh network namespace and a `vswitch-cni` ADD
//! ([`Node::add_pod`]).
//!
//! Every resource is a guard ([`Netns`], [`Daemon`], [`TempDir`], and the [`Cluster`] and
//! [`Pod`] that hold them): dropping it removes it, also while a test panics, and a daemon
//! dropped during a panic prints its log. Names carry the test process's id and a counter
//! (`vt-<pid>-<n>-<role>`), so tests run in parallel threads and processes; leftovers of a
//! killed run (namespaces, temporary directories) are removed by the next run.
//!
//! For the overlay between nodes: a [`FabricHost`] is a namespace on the fabric that is
//! no node of ours (a stranger, or a VTEP we add with `node add`); a [`KernelNode`] is one
//! doing VXLAN with the Linux kernel's own bridge and `vxlan` device, with [`KernelPod`]s;
//! a [`Capture`] runs `tshark` on the wire and [`read_fields`] decodes the capture with
//! Wireshark's dissectors; [`send_datagrams`] sends hand-made VXLAN datagrams and returns
//! the answers; [`inject`] writes hand-made Ethernet frames onto a pod's interface from
//! inside its namespace (a raw socket, as a compromised pod would); [`udp_source_seen`] tells the source address a receiver saw (no NAT).
//!
//! For faults: a [`PingFlow`] is a continuous `ping` whose replies carry the time they
//! arrived (when did traffic stop, when did it come back); a [`Tmpfs`] is a tiny file
//! system to fill to the last byte (give it to [`ClusterBuilder::state_root`]); a
//! [`ReadOnlyBind`] turns a directory read-only under one running daemon.
//!
//! Binaries come from `$VSWITCH_BIN_DIR` if set, else from the profile directory of this
//! very test build (`target/debug` for `cargo test`), else `<workspace>/target/debug`.
//! They are not built by `cargo test`: run `cargo build --workspace --bins` first.
//!
//! Everything here needs root and panics with a clear message otherwise: a test that
//! cannot run must not pass.
#![deny(unsafe_code)]

mod capture;
mod cluster;
mod cmd;
mod cni;
mod ctl;
mod daemon;
mod echo;
mod env;
mod etcd;
mod fabric_host;
mod flow;
mod inject;
mod kernel_vtep;
mod links;
mod mount;
mod net;
mod netns;
mod pod;
mod probe;
mod python;
#[allow(unsafe_code)]
mod sys;
mod tempdir;
mod traffic;
mod udp_burst;
mod vxlan_probe;

pub use capture::{count as capture_count, is_set, read_fields, require_tshark, Capture, Row};
pub use cluster::{Cluster, ClusterBuilder, Node, StoreKind, FABRIC_ADDRESS, UNDERLAY_PREFIX_LEN};
pub use cmd::{run, run_ok, run_timeout, Finished};
pub use cni::{netconf, with_prev_result, CniOutput, CniRequest};
pub use ctl::{port_by_container, port_container_ids, ports, str_field, Ctl};
pub use daemon::{Daemon, DaemonConfig};
pub use echo::udp_source_seen;
pub use env::{bin, bin_dir, next_id, preflight, require_root};
pub use etcd::{Etcd, ETCDCTL_BIN, ETCD_BIN, ETCD_CLIENT};
pub use fabric_host::FabricHost;
pub use flow::{unix_now, EchoReply, PingFlow};
pub use inject::{inject, Burst, Injected};
pub use kernel_vtep::{set_tx_checksum, KernelNode, KernelPod, VXLAN_PORT};
pub use links::{
    add_placeholder_link, default_route, devices_of_kind, ipv4_addresses, is_tap, link, links,
    DefaultRoute,
};
pub use mount::{ReadOnlyBind, Tmpfs};
pub use net::{mac_for_ip, parse_cidr, subnet_contains};
pub use netns::Netns;
pub use pod::{Pod, PodSpec};
pub use probe::{ConnId, PortServer, Probe, Prober};
pub use tempdir::TempDir;
pub use traffic::{assert_ping_within, ping, ping_all, ping_within, tcp_transfer, TcpReport};
pub use udp_burst::{udp_burst, BurstReport};
pub use vxlan_probe::{
    arp_request, format_mac, icmp_echo, internet_checksum, parse_arp, parse_mac, send_datagrams,
    vxlan_datagram, vxlan_datagram_with_flags, vxlan_header, Arp, Received, FLAG_I,
};
