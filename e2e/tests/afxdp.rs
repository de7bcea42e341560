//! The AF_XDP underlay (`--datapath afxdp`) on the harness's veth underlays: pods on two
//! nodes ping and carry bulk TCP with AF_XDP on both ends and mixed with the UDP
//! socket; the node's own traffic on the underlay still reaches its stack; the XDP
//! program is gone once the daemon stops, `kill -9` included; `auto` and the explicit
//! demand behave as documented when AF_XDP cannot run.
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`); see the
//! harness, `vswitch_e2e`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_e2e::{ping_all, tcp_transfer, Cluster, Netns, Node, FABRIC_ADDRESS};

/// Bulk TCP: enough to cycle every UMEM frame many times.
const TCP_BYTES: usize = 32 << 20;
/// How long a first ping may take (ARP in the pod, neighbour resolution on the node).
const PING_WITHIN: Duration = Duration::from_secs(8);
/// The harness's underlay device in every node.
const UNDERLAY_DEV: &str = "ul0";

/// `show --json`'s `datapath`.
fn datapath(node: &Node) -> String {
    let show = node.show();
    show.get("datapath")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`show --json` has no `datapath`: {show}"))
        .to_owned()
}

/// The XDP program attached to the node's underlay device, as `ip link` reports it
/// (`None` when there is none).
fn xdp_program(netns: &Netns) -> Option<String> {
    let json = netns.ip_ok(&["-d", "-j", "link", "show", "dev", UNDERLAY_DEV]);
    let links: Value = serde_json::from_str(&json).expect("ip -j link output is JSON");
    let xdp = links.get(0)?.get("xdp")?;
    Some(xdp.to_string())
}

/// A drop counter of the overlay port.
fn overlay_drop(node: &Node, reason: &str) -> u64 {
    let show = node.show();
    show.pointer(&format!("/overlay/counters/drops/{reason}"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Pings and a bulk TCP transfer each way between a pod on node 1 and one on node 2.
fn pods_talk(cluster: &Cluster) {
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    ping_all(
        &[
            (&a.netns, b.ip, "pod a (node1) → pod b (node2)".into()),
            (&b.netns, a.ip, "pod b (node2) → pod a (node1)".into()),
            (&a.netns, node2.gateway(), "pod a → node2's vsw0".into()),
        ],
        PING_WITHIN,
    );
    let report = tcp_transfer(&b.netns, b.ip, &a.netns, TCP_BYTES)
        .unwrap_or_else(|e| panic!("TCP a → b: {e}"));
    eprintln!("TCP a → b: {report:?}");
    let report = tcp_transfer(&a.netns, a.ip, &b.netns, TCP_BYTES)
        .unwrap_or_else(|e| panic!("TCP b → a: {e}"));
    eprintln!("TCP b → a: {report:?}");
}

#[test]
fn afxdp_on_both_nodes_carries_ping_and_bulk_tcp() {
    let cluster = Cluster::builder(2)
        .daemon_args(&["--datapath", "afxdp"])
        .build();
    for node in cluster.nodes() {
        let mode = datapath(node);
        // veth has native XDP and no zero-copy AF_XDP.
        assert_eq!(mode, "afxdp (native, copy, 1 queue)", "{}", node.name());
        assert!(
            xdp_program(node.netns()).is_some(),
            "{}: no XDP program on {UNDERLAY_DEV}",
            node.name()
        );
    }
    pods_talk(&cluster);
}

#[test]
fn afxdp_and_udp_nodes_interoperate() {
    let cluster = Cluster::builder(2)
        .node_args(1, &["--datapath", "afxdp"])
        .node_args(2, &["--datapath", "udp"])
        .build();
    assert!(datapath(cluster.node(1)).starts_with("afxdp ("));
    assert_eq!(datapath(cluster.node(2)), "udp");
    assert_eq!(xdp_program(cluster.node(2).netns()), None);
    pods_talk(&cluster);
}
