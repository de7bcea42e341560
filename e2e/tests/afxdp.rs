//! The AF_XDP underlay (`--datapath afxdp`) on the harness's veth underlays: pods on two
//! nodes ping and carry bulk TCP with AF_XDP on both ends and mixed with the UDP
//! socket; the node's own traffic on the underlay still reaches its stack; the XDP
//! program is gone once the daemon stops, `kill -9` included; `auto` and the explicit
//! demand behave as documented when AF_XDP cannot run.
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`); see the
//! harness, `vswitch_e2e`.

use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_e2e::{
    bin, ping_all, run_timeout, tcp_transfer, Cluster, Daemon, DaemonConfig, Netns, Node,
    FABRIC_ADDRESS,
};

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

/// One AF_XDP socket per queue: a 4-queue underlay veth gets four, and traffic arriving
/// on any of them reaches the pods.
#[test]
fn one_socket_per_underlay_queue() {
    let cluster = Cluster::builder(2)
        .underlay_queues(4)
        .daemon_args(&["--datapath", "afxdp"])
        .build();
    for node in cluster.nodes() {
        assert_eq!(
            datapath(node),
            "afxdp (native, copy, 4 queues)",
            "{}",
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

#[test]
fn the_nodes_own_traffic_on_the_underlay_reaches_its_stack() {
    let cluster = Cluster::builder(2)
        .daemon_args(&["--datapath", "afxdp"])
        .build();
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let fabric = cluster.fabric();
    // ICMP both ways, and TCP to and from the node's own address, while the program
    // is attached and VXLAN flows.
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    ping_all(
        &[
            (
                fabric,
                node1.underlay_ip(),
                "fabric → node1's underlay".into(),
            ),
            (node1.netns(), FABRIC_ADDRESS, "node1 → fabric".into()),
            (
                node1.netns(),
                node2.underlay_ip(),
                "node1 → node2 (underlay)".into(),
            ),
            (&a.netns, b.ip, "pod a → pod b".into()),
        ],
        PING_WITHIN,
    );
    assert!(xdp_program(node1.netns()).is_some());
    tcp_transfer(node1.netns(), node1.underlay_ip(), fabric, 4 << 20)
        .unwrap_or_else(|e| panic!("TCP fabric → node1's own address: {e}"));
    tcp_transfer(fabric, FABRIC_ADDRESS, node1.netns(), 4 << 20)
        .unwrap_or_else(|e| panic!("TCP node1 → fabric: {e}"));
    tcp_transfer(node2.netns(), node2.underlay_ip(), node1.netns(), 4 << 20)
        .unwrap_or_else(|e| panic!("TCP node1 → node2 (underlay): {e}"));
}

#[test]
fn the_program_is_gone_once_the_daemon_stops() {
    let cluster = Cluster::builder(2)
        .daemon_args(&["--datapath", "afxdp"])
        .build();
    let node1 = cluster.node(1);
    assert!(xdp_program(node1.netns()).is_some(), "attached at start");

    node1.stop();
    assert_eq!(xdp_program(node1.netns()), None, "after SIGTERM");

    node1.restart();
    assert!(xdp_program(node1.netns()).is_some(), "attached again");

    // A crash: the BPF link dies with the process, so nothing is left to replace.
    node1.kill9();
    assert_eq!(xdp_program(node1.netns()), None, "after kill -9");

    node1.restart();
    assert!(datapath(node1).starts_with("afxdp ("));
    pods_talk(&cluster);
}

/// The next-hop MAC follows the kernel's neighbour table: a wrong entry put there by
/// hand stops traffic. With the peer unreachable (its fabric port down) and the entry
/// deleted, frames are counted as `no_neighbour` while the daemon has the kernel try to
/// resolve the peer again and again; once the peer is back, that resolution succeeds
/// (the node's kernel sends nothing to the peer itself, so the fresh entry is the
/// daemon's doing) and traffic flows.
#[test]
fn next_hops_follow_the_neighbour_table() {
    let cluster = Cluster::builder(2)
        .daemon_args(&["--datapath", "afxdp"])
        .build();
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    ping_all(&[(&a.netns, b.ip, "a → b".into())], PING_WITHIN);
    let peer = node2.underlay_ip().to_string();
    let ul0 = |args: &[&str]| {
        let mut all = vec!["neigh"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[&peer, "dev", UNDERLAY_DEV]);
        node1.netns().ip_ok(&all)
    };

    ul0(&["replace", "lladdr", "02:00:00:00:de:ad", "nud", "permanent"]);
    assert!(
        eventually(|| !vswitch_e2e::ping(&a.netns, b.ip)),
        "a → b still works with a wrong MAC for node2"
    );

    let before = overlay_drop(node1, "no_neighbour");
    cluster.fabric().ip_ok(&["link", "set", "n2", "down"]);
    ul0(&["del"]);
    assert!(
        eventually(|| {
            let _ = vswitch_e2e::ping(&a.netns, b.ip);
            overlay_drop(node1, "no_neighbour") > before
        }),
        "frames to an unresolved node2 are not counted as no_neighbour"
    );
    cluster.fabric().ip_ok(&["link", "set", "n2", "up"]);
    ping_all(
        &[(&a.netns, b.ip, "a → b after re-resolution".into())],
        PING_WITHIN,
    );
    let entry = node1
        .netns()
        .ip_ok(&["neigh", "show", &peer, "dev", UNDERLAY_DEV]);
    assert!(
        entry.contains("lladdr") && !entry.contains("02:00:00:00:de:ad"),
        "node1 has no fresh entry for node2: {entry:?}"
    );
}

/// A peer behind a gateway: with a route to node 2 via the fabric (a router here), node
/// 1 sends to the gateway's MAC. A bogus neighbour entry for node 2 itself, which would
/// break a direct path, changes nothing; taking the route away again makes it matter.
#[test]
fn next_hops_go_through_the_gateway_a_route_names() {
    let cluster = Cluster::builder(2)
        .daemon_args(&["--datapath", "afxdp"])
        .build();
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let fabric = cluster.fabric();
    for setting in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.br0.send_redirects=0",
    ] {
        let done = fabric.exec(&["sysctl", "-qw", setting]);
        assert!(done.success(), "sysctl {setting}: {}", done.stderr);
    }
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    ping_all(&[(&a.netns, b.ip, "a → b".into())], PING_WITHIN);

    let peer = format!("{}/32", node2.underlay_ip());
    let gateway = FABRIC_ADDRESS.to_string();
    node1
        .netns()
        .ip_ok(&["route", "add", &peer, "via", &gateway, "dev", UNDERLAY_DEV]);
    node1.netns().ip_ok(&[
        "neigh",
        "replace",
        &node2.underlay_ip().to_string(),
        "lladdr",
        "02:00:00:00:de:ad",
        "dev",
        UNDERLAY_DEV,
        "nud",
        "permanent",
    ]);
    ping_all(
        &[(&a.netns, b.ip, "a → b through the gateway".into())],
        PING_WITHIN,
    );
    tcp_transfer(&b.netns, b.ip, &a.netns, 4 << 20)
        .unwrap_or_else(|e| panic!("TCP a → b through the gateway: {e}"));

    node1
        .netns()
        .ip_ok(&["route", "del", &peer, "via", &gateway, "dev", UNDERLAY_DEV]);
    assert!(
        eventually(|| !vswitch_e2e::ping(&a.netns, b.ip)),
        "a → b works without the route, with a wrong MAC for node2"
    );
}

/// Whether `check` holds within 5 s.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A second daemon demanding AF_XDP on a device whose XDP hook is taken exits saying
/// so, before it touches anything, and the first daemon's overlay keeps working.
#[test]
fn afxdp_demanded_on_a_taken_device_exits() {
    let cluster = Cluster::builder(2)
        .daemon_args(&["--datapath", "afxdp"])
        .build();
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let dir = cluster.dir().join("intruder");
    let store = format!("file:{}", dir.join("cluster.json").display());
    let state = dir.join("state").display().to_string();
    let socket = dir.join("intruder.sock").display().to_string();
    let underlay_ip = node1.underlay_ip().to_string();
    let mut cmd = node1
        .netns()
        .command(&bin("vswitchd").display().to_string());
    cmd.args([
        "--node",
        "intruder",
        "--underlay-ip",
        &underlay_ip,
        "--store",
        &store,
        "--state-dir",
        &state,
        "--socket",
        &socket,
        "--datapath",
        "afxdp",
    ]);
    let done = run_timeout(&mut cmd, None, Duration::from_secs(10)).expect("vswitchd ran");
    assert!(!done.success(), "a second AF_XDP daemon started on ul0");
    assert!(
        done.stderr
            .contains("another XDP program is attached to ul0"),
        "unclear error: {}",
        done.stderr
    );
    assert!(!dir.join("cluster.json").exists(), "it joined a store");
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    ping_all(&[(&a.netns, b.ip, "a → b".into())], PING_WITHIN);
}

/// An underlay MTU larger than a UMEM frame holds: AF_XDP cannot run there.
#[test]
fn afxdp_demanded_exits_and_auto_falls_back_where_it_cannot_run() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    node.stop();
    let config = node.daemon().config().clone();
    node.netns()
        .ip_ok(&["link", "set", UNDERLAY_DEV, "mtu", "9000"]);

    let mut args: Vec<&str> = config.args.iter().map(String::as_str).collect();
    args.extend(["--mtu", "1400", "--datapath", "afxdp"]);
    let mut cmd = node.netns().command(&bin("vswitchd").display().to_string());
    cmd.args(&args);
    let done = run_timeout(&mut cmd, None, Duration::from_secs(10)).expect("vswitchd ran");
    assert!(!done.success(), "vswitchd --datapath afxdp started anyway");
    assert!(
        done.stderr
            .contains("--datapath afxdp: AF_XDP is not available on ul0")
            && done.stderr.contains("MTU 9000"),
        "unclear error: {}",
        done.stderr
    );
    assert_eq!(xdp_program(node.netns()), None);

    let log = config.log.with_extension("auto.log");
    let mut auto = DaemonConfig {
        log: log.clone(),
        ..config.clone()
    };
    auto.args
        .extend(["--mtu", "1400", "--datapath", "auto"].map(String::from));
    let daemon = Daemon::start(auto);
    assert_eq!(datapath_of(&daemon.ctl().show()), "udp");
    let text = daemon.log();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("AF_XDP unavailable on ul0, using the UDP socket"))
        .collect();
    assert_eq!(lines.len(), 1, "one log line on the fallback:\n{text}");
    assert!(
        lines[0].contains("MTU 9000"),
        "the line says why: {}",
        lines[0]
    );
    drop(daemon);
}

fn datapath_of(show: &Value) -> String {
    show.get("datapath")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
