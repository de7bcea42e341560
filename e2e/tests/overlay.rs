//! The VXLAN overlay across nodes: pods on three nodes reach each other and every node;
//! interoperability with the Linux kernel's own VXLAN; what Wireshark decodes on the
//! wire; node add/remove reaching every daemon; datagrams from strangers, with a wrong
//! VNI or a bad header dropped and counted; the pod MTU and an unfragmented underlay;
//! UDP datagrams merged into super-frames for the receiving pod and cut back intact.
//!
//! Needs root, the built binaries (`cargo build --workspace --bins`), the kernel's
//! `vxlan` driver and `tshark`; see the harness, `vswitch_e2e`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_e2e::{
    arp_request, assert_ping_within, capture_count, devices_of_kind, icmp_echo, is_set, mac_for_ip,
    parse_arp, parse_mac, ping_all, port_by_container, read_fields, require_tshark, run_timeout,
    send_datagrams, str_field, subnet_contains, tcp_transfer, udp_burst, udp_source_seen,
    vxlan_datagram, vxlan_datagram_with_flags, Capture, Cluster, FabricHost, KernelNode, Netns,
    Node, Pod, VXLAN_PORT,
};

/// The VNI the daemons use by default.
const VNI: u32 = 1;
/// The underlay MTU of the harness's veths.
const UNDERLAY_MTU: u64 = 1500;
/// VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
const VXLAN_OVERHEAD: u64 = 50;
/// A few MB for the TCP checks.
const TCP_BYTES: usize = 6 << 20;
/// How long a healthy overlay may take to answer a first ping (ARP included).
const PING_WITHIN: Duration = Duration::from_secs(6);
/// The contract: the store is applied every 250 ms; a change reaches every daemon in 1 s.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);
/// How often propagation is polled.
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Asserts that `ip` answers pings from `from`.
fn assert_ping(from: &Netns, ip: Ipv4Addr, what: &str) {
    assert_ping_within(from, ip, PING_WITHIN, what);
}

/// The `peers` list of `show --json`.
fn peers(show: &Value) -> Vec<Value> {
    show.get("peers")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("`show --json` has no `peers` list: {show}"))
        .clone()
}

/// The peer named `name` in `show --json`, if listed.
fn peer<'a>(show: &'a Value, name: &str) -> Option<&'a Value> {
    show.get("peers")
        .and_then(Value::as_array)?
        .iter()
        .find(|p| p.get("node").and_then(Value::as_str) == Some(name))
}

/// The overlay port's object in `show --json`.
fn overlay(show: &Value) -> &Value {
    show.get("overlay")
        .unwrap_or_else(|| panic!("`show --json` has no `overlay`: {show}"))
}

/// A counter of the overlay port (`overlay.counters.<key>`).
fn overlay_counter(show: &Value, key: &str) -> u64 {
    overlay(show)
        .get("counters")
        .and_then(|c| c.get(key))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no `overlay.counters.{key}` in {show}"))
}

/// Drops of the overlay port for `reason` (`drops` lists non-zero reasons only).
fn overlay_drops(show: &Value, reason: &str) -> u64 {
    let drops = overlay(show)
        .get("counters")
        .and_then(|c| c.get("drops"))
        .unwrap_or_else(|| panic!("no `overlay.counters.drops` in {show}"));
    drops.get(reason).and_then(Value::as_u64).unwrap_or(0)
}

/// The pod MTU `show --json` reports.
fn show_mtu(show: &Value) -> usize {
    show.get("mtu")
        .and_then(Value::as_u64)
        .and_then(|mtu| usize::try_from(mtu).ok())
        .unwrap_or_else(|| panic!("no `mtu` in {show}"))
}

/// Polls `node`'s `show --json` until `done` holds or `within` has passed; the last
/// `show` and whether `done` held.
fn wait_show(node: &Node, within: Duration, done: impl Fn(&Value) -> bool) -> (Value, bool) {
    let deadline = Instant::now() + within;
    loop {
        let show = node.show();
        if done(&show) {
            return (show, true);
        }
        if Instant::now() >= deadline {
            return (show, false);
        }
        thread::sleep(POLL);
    }
}

/// No Linux bridge and no kernel VXLAN device in any of these namespaces.
fn assert_no_kernel_switching(namespaces: &[&Netns]) {
    for ns in namespaces {
        for kind in ["bridge", "vxlan"] {
            let found = devices_of_kind(ns, kind);
            assert!(
                found.is_empty(),
                "{kind} device(s) {found:?} in namespace {}",
                ns.name()
            );
        }
    }
}

/// `vswitchctl node add NAME --underlay-ip IP --subnet CIDR` on `node`.
fn node_add(node: &Node, name: &str, ip: Ipv4Addr, subnet: &str) {
    let done = node.ctl().run(&[
        "node",
        "add",
        name,
        "--underlay-ip",
        &ip.to_string(),
        "--subnet",
        subnet,
    ]);
    assert!(
        done.success(),
        "`vswitchctl node add {name} --underlay-ip {ip} --subnet {subnet}` failed ({}): {}{}",
        done.status,
        done.stdout,
        done.stderr
    );
}

/// `vswitchctl node remove NAME` on `node`.
fn node_remove(node: &Node, name: &str) {
    let done = node.ctl().run(&["node", "remove", name]);
    assert!(
        done.success(),
        "`vswitchctl node remove {name}` failed ({}): {}{}",
        done.status,
        done.stdout,
        done.stderr
    );
}

/// Waits until every node of `cluster` lists `name` as a peer (at most `within`).
fn wait_peer_everywhere(cluster: &Cluster, name: &str, within: Duration) {
    for node in cluster.nodes() {
        let (show, ok) = wait_show(node, within, |s| peer(s, name).is_some());
        assert!(
            ok,
            "{} does not list peer {name} after {within:?}: {}",
            node.name(),
            show.get("peers").unwrap_or(&Value::Null)
        );
    }
}

/// `ping` with its own arguments from inside `ns` (bounded); the outcome.
fn ping_args(ns: &Netns, args: &[&str]) -> vswitch_e2e::Finished {
    let mut cmd = ns.command("ping");
    cmd.args(args);
    run_timeout(&mut cmd, None, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"))
}

/// The MAC `ns`'s neighbour table holds for `ip` on `dev`, if any.
fn neighbour_mac(ns: &Netns, dev: &str, ip: Ipv4Addr) -> Option<String> {
    let out = ns.ip_ok(&["-j", "neigh", "show", &ip.to_string(), "dev", dev]);
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
    entries
        .iter()
        .find_map(|e| e.get("lladdr").and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
}

/// A path for a capture file in the cluster's directory.
fn capture_file(cluster: &Cluster, name: &str) -> std::path::PathBuf {
    cluster.dir().join(name)
}

/// Prints a one-line summary of what a capture holds (for the test log).
fn describe_capture(file: &Path) -> String {
    let rows = read_fields(file, "", &["frame.len"]);
    format!("{} packets in {}", rows.len(), file.display())
}

// ---------------------------------------------------------------------------------------
// 1. Three nodes, two pods each
// ---------------------------------------------------------------------------------------

/// Every pod reaches every pod and every node; no NAT between node and pod or between
/// pods; bulk TCP across nodes; each node lists the others as peers; node1's MAC table
/// has the remote pods behind their VTEPs; no kernel bridge or VXLAN device anywhere.
#[test]
fn three_nodes_pods_and_nodes_reach_each_other() {
    let started = Instant::now();
    let cluster = Cluster::new(3);
    let mut pods: Vec<(usize, Pod)> = Vec::new();
    for node in cluster.nodes() {
        for x in ["a", "b"] {
            let pod = node.add_pod("default", &format!("{x}{}", node.number()));
            let subnet = node.subnet();
            assert!(
                subnet_contains(&subnet, pod.ip),
                "{} got {} outside {}'s subnet {subnet}",
                pod.full_name(),
                pod.ip,
                node.name()
            );
            pods.push((node.number(), pod));
        }
    }

    // Every pod pings every other pod: all 30 ordered pairs at once.
    let mut checks = Vec::new();
    for (_, from) in &pods {
        for (_, to) in &pods {
            if from.ip != to.ip {
                let what = format!("pod {} → pod {}", from.full_name(), to.full_name());
                checks.push((&from.netns, to.ip, what));
            }
        }
    }
    // Every node pings every pod (from the node namespace, through vsw0).
    for node in cluster.nodes() {
        for (_, to) in &pods {
            let what = format!("{} → pod {}", node.name(), to.full_name());
            checks.push((node.netns(), to.ip, what));
        }
    }
    ping_all(&checks, PING_WITHIN);

    // The node reaches the pod network through vsw0 with vsw0's address, no NAT: the
    // route says so and a pod on another node sees that address as the source.
    for node in cluster.nodes() {
        let gateway = node.gateway();
        for (_, pod) in &pods {
            let out = node
                .netns()
                .ip_ok(&["-j", "route", "get", &pod.ip.to_string()]);
            let route: Vec<Value> = serde_json::from_str(&out).expect("ip -j route get");
            let route = route.first().expect("ip route get printed no route");
            assert_eq!(
                route.get("dev").and_then(Value::as_str),
                Some("vsw0"),
                "{} reaches {} through {route}",
                node.name(),
                pod.ip
            );
            assert_eq!(
                route.get("prefsrc").and_then(Value::as_str),
                Some(gateway.to_string().as_str()),
                "{} reaches {} from {route}",
                node.name(),
                pod.ip
            );
        }
    }
    let (node1, node2, node3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let on = |n: usize| -> Vec<&Pod> {
        pods.iter()
            .filter(|(number, _)| *number == n)
            .map(|(_, p)| p)
            .collect()
    };
    let (p1, p2, p3) = (on(1), on(2), on(3));
    let seen = udp_source_seen(&p2[0].netns, p2[0].ip, node1.netns())
        .unwrap_or_else(|e| panic!("UDP node1 → {}: {e}", p2[0].full_name()));
    assert_eq!(
        seen,
        node1.gateway(),
        "a pod on node2 sees node1's traffic from {seen}, not node1's vsw0 address"
    );
    let seen = udp_source_seen(&p3[1].netns, p3[1].ip, &p1[0].netns)
        .unwrap_or_else(|e| panic!("UDP {} → {}: {e}", p1[0].full_name(), p3[1].full_name()));
    assert_eq!(seen, p1[0].ip, "pod → pod across nodes is NATed");

    // Bulk TCP across nodes, both ways, bytes verified.
    for (from, to) in [(p1[0], p2[0]), (p3[0], p1[1])] {
        let report = tcp_transfer(&to.netns, to.ip, &from.netns, TCP_BYTES)
            .unwrap_or_else(|e| panic!("TCP {} → {}: {e}", from.full_name(), to.full_name()));
        eprintln!(
            "TCP {} → {}: {} bytes in {:?}",
            from.full_name(),
            to.full_name(),
            report.bytes,
            report.elapsed
        );
    }

    // Each node lists the two others as (dynamic) peers, with their VTEP and subnet.
    for node in cluster.nodes() {
        let show = node.show();
        assert_eq!(str_field(&show, "vtep"), node.underlay_ip().to_string());
        let listed = peers(&show);
        assert_eq!(listed.len(), 2, "{}: peers {listed:?}", node.name());
        for other in cluster
            .nodes()
            .iter()
            .filter(|o| o.number() != node.number())
        {
            let entry = peer(&show, other.name()).unwrap_or_else(|| {
                panic!("{} does not list {}: {listed:?}", node.name(), other.name())
            });
            assert_eq!(
                str_field(entry, "vtep"),
                other.underlay_ip().to_string(),
                "{entry}"
            );
            assert_eq!(str_field(entry, "subnet"), other.subnet(), "{entry}");
            assert_eq!(entry.get("static"), Some(&Value::Bool(false)), "{entry}");
        }
        let ov = overlay(&show);
        assert_eq!(
            ov.get("vni").and_then(Value::as_u64),
            Some(u64::from(VNI)),
            "{ov}"
        );
        assert_eq!(
            ov.get("vxlan_port").and_then(Value::as_u64),
            Some(u64::from(VXLAN_PORT)),
            "{ov}"
        );
        for key in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
            assert!(
                overlay_counter(&show, key) > 0,
                "{}: overlay {key} is 0 after traffic: {ov}",
                node.name()
            );
        }
    }

    // node1's MAC table: every remote pod behind its node's VTEP.
    let fdb = node1.fdb();
    for (number, pod) in pods.iter().filter(|(n, _)| *n != 1) {
        let vtep = cluster.node(*number).underlay_ip();
        let entry = fdb
            .iter()
            .find(|e| e.get("mac").and_then(Value::as_str) == Some(pod.mac.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "{} ({}) not in node1's fdb: {fdb:?}",
                    pod.full_name(),
                    pod.mac
                )
            });
        assert_eq!(
            str_field(entry, "location"),
            format!("vtep:{vtep}"),
            "node1's fdb entry for {}",
            pod.full_name()
        );
    }
    for pod in &p1 {
        let entry = fdb
            .iter()
            .find(|e| e.get("mac").and_then(Value::as_str) == Some(pod.mac.as_str()))
            .unwrap_or_else(|| panic!("local pod {} not in node1's fdb: {fdb:?}", pod.full_name()));
        assert_eq!(
            str_field(entry, "location"),
            format!("{}:eth0", pod.full_name())
        );
    }

    let mut namespaces: Vec<&Netns> = vec![node1.netns(), node2.netns(), node3.netns()];
    namespaces.extend(pods.iter().map(|(_, p)| &p.netns));
    assert_no_kernel_switching(&namespaces);
    eprintln!("three nodes: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 2. The Linux kernel's VXLAN on the other end
// ---------------------------------------------------------------------------------------

/// A kernel VXLAN node (bridge + `vxlan` device, head-end replication to our VTEPs) added
/// as a static node: ARP resolves both ways with the right MACs, ping works both ways,
/// and bulk TCP works both ways (ours are segmented TSO super-frames, the kernel's are
/// GSO-segmented by its vxlan device).
#[test]
fn interoperates_with_the_kernel_vxlan() {
    let started = Instant::now();
    let cluster = Cluster::new(2);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    let mtu = node1
        .show()
        .get("mtu")
        .and_then(Value::as_u64)
        .expect("show has no mtu");
    assert_eq!(mtu, UNDERLAY_MTU - VXLAN_OVERHEAD, "pod MTU");

    let knode_ip = Ipv4Addr::new(192, 168, 250, 50);
    let knode = KernelNode::new(&cluster, knode_ip, VNI, u32::try_from(mtu).expect("mtu"));
    let kpod = knode.add_pod(Ipv4Addr::new(10, 244, 200, 2), 16);
    node_add(node1, "knode", knode_ip, "10.244.200.0/24");
    for node in cluster.nodes() {
        knode.flood_to(node.underlay_ip());
    }
    wait_peer_everywhere(&cluster, "knode", Duration::from_secs(2));
    let entry = peer(&node2.show(), "knode").cloned().expect("knode listed");
    assert_eq!(str_field(&entry, "vtep"), knode_ip.to_string(), "{entry}");
    assert_eq!(str_field(&entry, "subnet"), "10.244.200.0/24", "{entry}");
    assert_eq!(entry.get("static"), Some(&Value::Bool(true)), "{entry}");

    // Watch the kernel node's port on the fabric while ARP resolves.
    let file = capture_file(&cluster, "knode.pcapng");
    let mut capture = Capture::start(
        cluster.fabric(),
        &[knode.host().fabric_port()],
        "udp port 4789",
        &file,
    );
    assert_ping(&a.netns, kpod.ip, "our pod (node1) → kernel pod");
    assert_ping(&kpod.netns, a.ip, "kernel pod → our pod (node1)");
    assert_ping(&kpod.netns, b.ip, "kernel pod → our pod (node2)");
    assert_ping(&b.netns, kpod.ip, "our pod (node2) → kernel pod");
    thread::sleep(Duration::from_millis(200));
    capture.stop();

    // The kernel's ARP requests are replicated to every VTEP; only the node that holds
    // the pod may answer, or the kernel's vxlan learns the pod behind the wrong VTEP.
    let replies = read_fields(
        &file,
        "vxlan && arp.opcode == 2",
        &["ip.src", "arp.src.proto_ipv4", "arp.src.hw_mac"],
    );
    let mut answered_b = 0;
    for row in &replies {
        for (pod, node) in [(&a, node1), (&b, node2)] {
            if row.first(1) == Some(pod.ip.to_string().as_str()) {
                assert_eq!(
                    row.first(0),
                    Some(node.underlay_ip().to_string().as_str()),
                    "the ARP reply for {} ({}) to the kernel node came from another VTEP \
                     than its node's: {row:?}; all replies: {replies:?}",
                    pod.ip,
                    pod.full_name()
                );
                assert_eq!(row.first(2), Some(pod.mac.as_str()), "{row:?}");
                if pod.ip == b.ip {
                    answered_b += 1;
                }
            }
        }
    }
    assert!(
        answered_b >= 1,
        "no ARP reply for {} seen going to the kernel node: {replies:?}",
        b.ip
    );

    // ARP resolved both ways, to the right MACs.
    assert_eq!(
        kpod.neighbour_mac(a.ip).as_deref(),
        Some(a.mac.as_str()),
        "the kernel pod's neighbour entry for {}",
        a.ip
    );
    assert_eq!(
        kpod.neighbour_mac(b.ip).as_deref(),
        Some(mac_for_ip(b.ip).as_str()),
        "the kernel pod's neighbour entry for {}",
        b.ip
    );
    assert_eq!(
        neighbour_mac(&a.netns, "eth0", kpod.ip).as_deref(),
        Some(kpod.mac.as_str()),
        "our pod's neighbour entry for the kernel pod {}",
        kpod.ip
    );
    // The kernel's vxlan device learned our pods behind our VTEPs, and we learned the
    // kernel pod behind the kernel's VTEP.
    let kfdb = knode.vxlan_fdb();
    for (pod, vtep) in [(&a, node1.underlay_ip()), (&b, node2.underlay_ip())] {
        let learned = kfdb.iter().any(|e| {
            e.get("mac").and_then(Value::as_str) == Some(pod.mac.as_str())
                && e.get("dst").and_then(Value::as_str) == Some(vtep.to_string().as_str())
        });
        assert!(
            learned,
            "the kernel vxlan0 did not learn {} at {vtep}: {kfdb:?}",
            pod.mac
        );
    }
    let fdb = node1.fdb();
    let entry = fdb
        .iter()
        .find(|e| e.get("mac").and_then(Value::as_str) == Some(kpod.mac.as_str()))
        .unwrap_or_else(|| panic!("kernel pod {} not in node1's fdb: {fdb:?}", kpod.mac));
    assert_eq!(str_field(entry, "location"), format!("vtep:{knode_ip}"));

    // Bulk TCP both ways.
    let report = tcp_transfer(&kpod.netns, kpod.ip, &a.netns, TCP_BYTES)
        .unwrap_or_else(|e| panic!("TCP our pod → kernel pod: {e}"));
    eprintln!(
        "TCP our pod → kernel pod: {} bytes in {:?}",
        report.bytes, report.elapsed
    );
    let report = tcp_transfer(&b.netns, b.ip, &kpod.netns, TCP_BYTES)
        .unwrap_or_else(|e| panic!("TCP kernel pod → our pod: {e}"));
    eprintln!(
        "TCP kernel pod → our pod: {} bytes in {:?}",
        report.bytes, report.elapsed
    );

    let show = node1.show();
    for reason in ["unknown_vtep", "wrong_vni", "bad_vxlan", "too_big"] {
        assert_eq!(
            overlay_drops(&show, reason),
            0,
            "node1 dropped kernel VXLAN as {reason}: {}",
            overlay(&show)
        );
    }
    eprintln!("kernel interop: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 3. Wireshark decodes what we send
// ---------------------------------------------------------------------------------------

/// tshark, capturing on the fabric, decodes our datagrams as VXLAN: I flag, VNI 1, the
/// inner Ethernet source a `0a:58:` pod MAC, the inner IPv4 addresses our pods'; nothing
/// malformed.
#[test]
fn tshark_decodes_our_vxlan() {
    require_tshark();
    let started = Instant::now();
    let cluster = Cluster::new(2);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    let file = capture_file(&cluster, "vxlan.pcapng");
    let mut capture = Capture::start(cluster.fabric(), &["n1"], "udp port 4789", &file);

    assert_ping(&a.netns, b.ip, "pod a → pod b");
    let done = ping_args(
        &a.netns,
        &[
            "-n",
            "-q",
            "-c",
            "5",
            "-i",
            "0.1",
            "-W",
            "2",
            &b.ip.to_string(),
        ],
    );
    assert!(done.success(), "ping a → b: {}{}", done.stdout, done.stderr);
    tcp_transfer(&b.netns, b.ip, &a.netns, 256 << 10).unwrap_or_else(|e| panic!("TCP a → b: {e}"));
    thread::sleep(Duration::from_millis(300));
    capture.stop();
    eprintln!("capture: {}", describe_capture(&file));

    let total = capture_count(&file, "");
    assert!(
        total >= 10,
        "only {total} packets captured: {}",
        capture.stderr_text()
    );
    let fields = [
        "vxlan.flag_i",
        "vxlan.vni",
        "eth.src",
        "ip.src",
        "ip.dst",
        "udp.dstport",
    ];
    let rows = read_fields(&file, "vxlan", &fields);
    assert_eq!(
        rows.len(),
        total,
        "tshark decoded {} of {total} datagrams as VXLAN",
        rows.len()
    );
    let clean = capture_count(&file, "vxlan && !_ws.malformed");
    assert_eq!(
        clean,
        total,
        "{} of {total} datagrams are malformed",
        total - clean
    );

    let vteps = [
        node1.underlay_ip().to_string(),
        node2.underlay_ip().to_string(),
    ];
    let pod_ips = [a.ip.to_string(), b.ip.to_string()];
    let (mut a_to_b, mut b_to_a) = (0, 0);
    for row in &rows {
        assert!(is_set(row.first(0)), "I flag not set: {row:?}");
        assert_eq!(row.first(1), Some("1"), "VNI: {row:?}");
        assert_eq!(
            row.first(5),
            Some("4789"),
            "outer UDP destination port: {row:?}"
        );
        let macs = row.all(2);
        assert_eq!(macs.len(), 2, "outer and inner Ethernet: {row:?}");
        assert!(
            macs[1].starts_with("0a:58:"),
            "inner Ethernet source {} is no pod MAC: {row:?}",
            macs[1]
        );
        let (srcs, dsts) = (row.all(3), row.all(4));
        assert!(
            vteps.contains(&srcs[0]) && vteps.contains(&dsts[0]),
            "outer IPv4 {} → {} is not VTEP to VTEP: {row:?}",
            srcs[0],
            dsts[0]
        );
        if srcs.len() == 2 {
            assert!(
                pod_ips.contains(&srcs[1]) && pod_ips.contains(&dsts[1]),
                "inner IPv4 {} → {} are not our pods': {row:?}",
                srcs[1],
                dsts[1]
            );
            if srcs[1] == pod_ips[0] {
                a_to_b += 1;
                assert_eq!(macs[1], a.mac, "inner source MAC of a's packet");
            } else {
                b_to_a += 1;
                assert_eq!(macs[1], b.mac, "inner source MAC of b's packet");
            }
        }
    }
    assert!(
        a_to_b >= 5 && b_to_a >= 5,
        "inner IPv4 a→b {a_to_b}, b→a {b_to_a}"
    );
    let echoes = capture_count(
        &file,
        &format!("vxlan && icmp.type == 8 && ip.dst == {}", b.ip),
    );
    assert!(
        echoes >= 5,
        "tshark found {echoes} inner ICMP echoes to {}",
        b.ip
    );
    eprintln!("tshark: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 4. Node add and remove reach every daemon within 1 s
// ---------------------------------------------------------------------------------------

/// Polls every node in `watch` until `present(show)` holds for each; returns how long each
/// took from `since`, or panics after `PROPAGATION_BOUND` + 2 s.
fn time_until(watch: &[&Node], since: Instant, present: impl Fn(&Value) -> bool) -> Vec<Duration> {
    let give_up = since + PROPAGATION_BOUND + Duration::from_secs(2);
    let mut took: Vec<Option<Duration>> = vec![None; watch.len()];
    loop {
        for (node, slot) in watch.iter().zip(took.iter_mut()) {
            if slot.is_none() && present(&node.show()) {
                *slot = Some(since.elapsed());
            }
        }
        if took.iter().all(Option::is_some) {
            return took.into_iter().flatten().collect();
        }
        assert!(
            Instant::now() < give_up,
            "not every node changed within {:?}: {took:?}",
            give_up - since
        );
        thread::sleep(POLL);
    }
}

/// `node add` on node1 shows on node2 and node3 within 1 s; `node remove` likewise.
#[test]
fn node_add_and_remove_reach_every_daemon_within_a_second() {
    let started = Instant::now();
    let cluster = Cluster::new(3);
    let (node1, node2, node3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let hw_ip = Ipv4Addr::new(192, 168, 250, 60);
    let hw_subnet = "10.244.201.0/24";

    let t0 = Instant::now();
    node_add(node1, "hw1", hw_ip, hw_subnet);
    let took = time_until(&[node1, node2, node3], t0, |s| peer(s, "hw1").is_some());
    eprintln!("node add reached node1, node2, node3 after {took:?}");
    for (node, took) in [node1, node2, node3].iter().zip(&took) {
        assert!(
            *took <= PROPAGATION_BOUND,
            "`node add` reached {} after {took:?} (> {PROPAGATION_BOUND:?})",
            node.name()
        );
        let show = node.show();
        let entry = peer(&show, "hw1").expect("hw1 listed");
        assert_eq!(
            str_field(entry, "vtep"),
            hw_ip.to_string(),
            "{}: {entry}",
            node.name()
        );
        assert_eq!(
            str_field(entry, "subnet"),
            hw_subnet,
            "{}: {entry}",
            node.name()
        );
        assert_eq!(
            entry.get("static"),
            Some(&Value::Bool(true)),
            "{}: {entry}",
            node.name()
        );
        assert_eq!(peers(&show).len(), 3, "{}: {:?}", node.name(), peers(&show));
    }

    let t0 = Instant::now();
    node_remove(node1, "hw1");
    let took = time_until(&[node1, node2, node3], t0, |s| peer(s, "hw1").is_none());
    eprintln!("node remove reached node1, node2, node3 after {took:?}");
    for (node, took) in [node1, node2, node3].iter().zip(&took) {
        assert!(
            *took <= PROPAGATION_BOUND,
            "`node remove` reached {} after {took:?} (> {PROPAGATION_BOUND:?})",
            node.name()
        );
        assert_eq!(
            peers(&node.show()).len(),
            2,
            "{}: only the daemons remain",
            node.name()
        );
    }
    eprintln!("node add/remove: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 5. VXLAN from strangers, with a wrong VNI or a bad header
// ---------------------------------------------------------------------------------------

/// Datagrams from an address that is no node are dropped (`unknown_vtep`) and never reach
/// the pod. Once that address is a static node: VNI 2 → `wrong_vni`; no I flag or a
/// truncated header → `bad_vxlan`; an inner frame over the pod MTU (the sender's kernel
/// fragments the datagram, ours reassembles it) → `too_big`; none reaches the pod either. A well-formed datagram is
/// delivered: an ARP request for the pod is answered over VXLAN with the pod's MAC.
#[test]
fn vxlan_from_strangers_and_bad_datagrams_are_dropped_and_counted() {
    require_tshark();
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node1 = cluster.node(1);
    let pod = node1.add_pod("default", "a");
    let stranger = FabricHost::new(&cluster, "strngr", Ipv4Addr::new(192, 168, 250, 99));
    let me = SocketAddrV4::new(stranger.ip(), VXLAN_PORT);
    let vtep = SocketAddrV4::new(node1.underlay_ip(), VXLAN_PORT);
    // As if from a pod 10.244.99.5 behind the stranger.
    let src_ip = Ipv4Addr::new(10, 244, 99, 5);
    let src_mac = parse_mac(&mac_for_ip(src_ip));
    let echo = |seq: u16| {
        icmp_echo(
            src_mac,
            parse_mac(&pod.mac),
            src_ip,
            pod.ip,
            0x7a7a,
            seq,
            b"vswitch-e2e probe",
        )
    };
    let arp = arp_request(src_mac, src_ip, pod.ip);
    let pod_sees = format!("ip.src == {src_ip} || arp.src.proto_ipv4 == {src_ip}");

    // From no node at all.
    let before = node1.show();
    let pod_file = capture_file(&cluster, "pod-dropped.pcapng");
    let mut pod_capture = Capture::start(&pod.netns, &["eth0"], "icmp or arp", &pod_file);
    let replies = send_datagrams(
        stranger.netns(),
        me,
        vtep,
        &[vxlan_datagram(VNI, &echo(1)), vxlan_datagram(VNI, &arp)],
        Duration::from_millis(500),
    );
    assert!(replies.is_empty(), "a stranger got answers: {replies:?}");
    let base = overlay_drops(&before, "unknown_vtep");
    let (show, ok) = wait_show(node1, Duration::from_secs(2), |s| {
        overlay_drops(s, "unknown_vtep") >= base + 2
    });
    assert!(
        ok,
        "unknown_vtep did not count 2 datagrams from {}: {}",
        stranger.ip(),
        overlay(&show)
    );
    assert_eq!(
        overlay_counter(&show, "rx_packets"),
        overlay_counter(&before, "rx_packets"),
        "datagrams from a stranger were counted as received: {}",
        overlay(&show)
    );

    // The stranger becomes a static node: now the header checks decide.
    node_add(node1, "stranger", stranger.ip(), "10.244.99.0/24");
    wait_peer_everywhere(&cluster, "stranger", Duration::from_secs(2));
    let before = node1.show();
    let no_i_flag = vxlan_datagram_with_flags(0x00, VNI, &echo(3));
    let truncated = vxlan_datagram(VNI, &arp)[..10].to_vec();
    let pod_mtu = show_mtu(&before);
    let oversized = vxlan_datagram(
        VNI,
        &icmp_echo(
            src_mac,
            parse_mac(&pod.mac),
            src_ip,
            pod.ip,
            0x7a7a,
            5,
            &vec![0x5a; pod_mtu + 100],
        ),
    );
    send_datagrams(
        stranger.netns(),
        me,
        vtep,
        &[vxlan_datagram(2, &echo(2)), no_i_flag, truncated, oversized],
        Duration::from_millis(300),
    );
    let (w0, b0, t0) = (
        overlay_drops(&before, "wrong_vni"),
        overlay_drops(&before, "bad_vxlan"),
        overlay_drops(&before, "too_big"),
    );
    let (show, ok) = wait_show(node1, Duration::from_secs(2), |s| {
        overlay_drops(s, "wrong_vni") > w0
            && overlay_drops(s, "bad_vxlan") >= b0 + 2
            && overlay_drops(s, "too_big") > t0
    });
    assert!(
        ok,
        "expected wrong_vni +1, bad_vxlan +2 (no I flag, truncated) and too_big +1: before {}, after {}",
        overlay(&before),
        overlay(&show)
    );
    assert_eq!(
        overlay_drops(&show, "too_big"),
        t0 + 1,
        "{}",
        overlay(&show)
    );
    assert_eq!(
        overlay_drops(&show, "wrong_vni"),
        w0 + 1,
        "{}",
        overlay(&show)
    );
    assert_eq!(
        overlay_drops(&show, "bad_vxlan"),
        b0 + 2,
        "{}",
        overlay(&show)
    );
    assert_eq!(
        overlay_drops(&show, "unknown_vtep"),
        overlay_drops(&before, "unknown_vtep"),
        "a static node's datagrams counted as unknown_vtep: {}",
        overlay(&show)
    );
    thread::sleep(Duration::from_millis(200));
    pod_capture.stop();
    let leaked = read_fields(&pod_file, &pod_sees, &["frame.number", "_ws.col.Info"]);
    assert!(
        leaked.is_empty(),
        "the pod saw frames of dropped datagrams: {leaked:?}"
    );

    // A well-formed datagram from the static node is delivered, and answered.
    let pod_file = capture_file(&cluster, "pod-delivered.pcapng");
    let mut pod_capture = Capture::start(&pod.netns, &["eth0"], "icmp or arp", &pod_file);
    let replies = send_datagrams(
        stranger.netns(),
        me,
        vtep,
        &[vxlan_datagram(VNI, &arp), vxlan_datagram(VNI, &echo(4))],
        Duration::from_secs(2),
    );
    thread::sleep(Duration::from_millis(200));
    pod_capture.stop();
    let arp_replies: Vec<_> = replies
        .iter()
        .filter_map(|r| {
            let (flags, vni, inner) = r.vxlan()?;
            let arp = parse_arp(inner)?;
            (arp.op == 2).then_some((r.from, flags, vni, arp))
        })
        .collect();
    let (from, flags, vni, reply) = arp_replies
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no ARP reply over VXLAN; received {replies:?}"));
    assert_eq!(*from.ip(), node1.underlay_ip(), "ARP reply's outer source");
    assert_eq!(flags & 0x08, 0x08, "ARP reply without the I flag");
    assert_eq!(vni, VNI, "ARP reply's VNI");
    assert_eq!(reply.sender_ip, pod.ip, "{reply:?}");
    assert_eq!(reply.sender_mac, pod.mac, "{reply:?}");
    assert_eq!(reply.eth_src, pod.mac, "{reply:?}");
    assert_eq!(reply.target_ip, src_ip, "{reply:?}");
    assert_eq!(reply.target_mac, mac_for_ip(src_ip), "{reply:?}");
    let echoes = read_fields(
        &pod_file,
        &format!("icmp.type == 8 && ip.src == {src_ip} && icmp.ident == 0x7a7a"),
        &["frame.number"],
    );
    assert_eq!(
        echoes.len(),
        1,
        "the pod did not get the delivered ICMP echo"
    );
    let show = node1.show();
    assert!(
        overlay_counter(&show, "rx_packets") >= overlay_counter(&before, "rx_packets") + 2,
        "delivered datagrams not counted as received: {}",
        overlay(&show)
    );
    eprintln!("bad VXLAN: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 6. Pod MTU and the underlay
// ---------------------------------------------------------------------------------------

/// Across nodes, a DF ping of 1422 bytes (1450 − 28) passes, one of 1423 fails in the
/// pod itself; big non-DF pings and bulk TCP pass; and no IP fragment and no frame over
/// the underlay MTU ever appears on the underlay.
#[test]
fn pod_mtu_fits_the_underlay_without_fragments() {
    require_tshark();
    let started = Instant::now();
    let cluster = Cluster::new(2);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    let mtu = node1
        .show()
        .get("mtu")
        .and_then(Value::as_u64)
        .expect("mtu");
    assert_eq!(mtu, UNDERLAY_MTU - VXLAN_OVERHEAD, "pod MTU");
    assert_ping(&a.netns, b.ip, "pod a → pod b");
    // vswitchd hands the kernel a TCP super-frame's segments as one UDP GSO send; a veth
    // takes GSO packets whole, so a capture behind it would see the batch, not the
    // packets a wire carries. Have each node's `ul0` cut GSO packets in software before
    // they leave, as a NIC cuts them in hardware.
    for node in [node1, node2] {
        node.netns()
            .ip_ok(&["link", "set", "ul0", "gso_max_segs", "1"]);
    }

    let file = capture_file(&cluster, "mtu.pcapng");
    let mut capture = Capture::start(cluster.fabric(), &["n1", "n2"], "ip", &file);
    let largest = (mtu - 28).to_string();
    let too_large = (mtu - 27).to_string();
    let target = b.ip.to_string();
    let done = ping_args(
        &a.netns,
        &[
            "-n", "-M", "do", "-s", &largest, "-c", "3", "-i", "0.2", "-W", "2", &target,
        ],
    );
    assert!(
        done.success() && done.stdout.contains(" 0% packet loss"),
        "DF ping with {largest} bytes a → b: {}{}",
        done.stdout,
        done.stderr
    );
    let done = ping_args(
        &a.netns,
        &[
            "-n", "-M", "do", "-s", &too_large, "-c", "1", "-W", "2", &target,
        ],
    );
    assert!(
        !done.success(),
        "DF ping with {too_large} bytes passed: {}",
        done.stdout
    );
    let said = format!("{}{}", done.stdout, done.stderr).to_ascii_lowercase();
    assert!(
        said.contains("message too long") && said.contains(&format!("mtu={mtu}")),
        "DF ping with {too_large} bytes did not fail locally on the pod MTU: {said}"
    );
    let done = ping_args(
        &b.netns,
        &[
            "-n",
            "-s",
            "4000",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &a.ip.to_string(),
        ],
    );
    assert!(
        done.success(),
        "non-DF ping with 4000 bytes b → a (fragmented by the pod): {}{}",
        done.stdout,
        done.stderr
    );
    tcp_transfer(&b.netns, b.ip, &a.netns, 2 << 20).unwrap_or_else(|e| panic!("TCP a → b: {e}"));
    tcp_transfer(&a.netns, a.ip, &b.netns, 2 << 20).unwrap_or_else(|e| panic!("TCP b → a: {e}"));
    thread::sleep(Duration::from_millis(300));
    capture.stop();
    eprintln!("capture: {}", describe_capture(&file));

    // Outer headers only: the first occurrence of each field.
    let rows = read_fields(
        &file,
        "ip",
        &["frame.len", "ip.flags.mf", "ip.frag_offset", "ip.len"],
    );
    assert!(rows.len() > 100, "only {} packets captured", rows.len());
    let mut biggest = 0u64;
    for row in &rows {
        assert!(
            !is_set(row.first(1)),
            "an outer IP fragment (MF) on the underlay: {row:?}"
        );
        assert_eq!(
            row.first(2),
            Some("0"),
            "an outer IP fragment (offset) on the underlay: {row:?}"
        );
        let len: u64 = row.first(3).and_then(|l| l.parse().ok()).expect("ip.len");
        assert!(
            len <= UNDERLAY_MTU,
            "an outer IP packet of {len} bytes: {row:?}"
        );
        biggest = biggest.max(len);
    }
    assert_eq!(
        biggest, UNDERLAY_MTU,
        "the largest outer packet should fill the underlay MTU exactly"
    );
    // No echo of the too-large size ever went out (inner IPv4 total length 1451).
    let oversized = capture_count(&file, &format!("vxlan && icmp && ip.len == {}", mtu + 1));
    assert_eq!(oversized, 0, "a {too_large}-byte echo crossed the underlay");
    // The pods' 4000-byte pings did cross, as inner fragments (the pod's, not ours).
    let inner_fragments = capture_count(&file, "vxlan && ip.flags.mf == 1");
    assert!(
        inner_fragments > 0,
        "the non-DF pings' inner fragments are missing"
    );
    eprintln!("MTU: {:?}", started.elapsed());
}

/// `counters.tx_packets` of `pod`'s port on `node`: the frames written to its TAP.
fn tap_writes(node: &Node, pod: &Pod) -> u64 {
    let show = node.show();
    port_by_container(&show, &pod.container_id)
        .and_then(|port| port.get("counters"))
        .and_then(|counters| counters.get("tx_packets"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no tx_packets for {} in {show}", pod.full_name()))
}

#[test]
fn udp_datagrams_reach_a_pod_on_another_node_merged_and_intact() {
    // A pod sends bursts of 64-byte datagrams with UDP GSO; its node segments them for
    // the overlay, the other node receives them as GRO blocks and writes them to the
    // receiving pod's TAP as UDP super-frames (USO), which that pod's kernel cuts back.
    // Every datagram must arrive once, with its size and bytes, and the TAP must have
    // taken far fewer writes than datagrams.
    const COUNT: usize = 3200;
    const SIZE: usize = 64;
    let cluster = Cluster::new(2);
    let a = cluster.node(1).add_pod("default", "burst-a");
    let b = cluster.node(2).add_pod("default", "burst-b");
    assert_ping_within(&a.netns, b.ip, PING_WITHIN, "a → b before the burst");
    let writes_before = tap_writes(cluster.node(2), &b);
    let report = udp_burst(&b.netns, b.ip, &a.netns, COUNT, SIZE).expect("the burst ran");
    let writes = tap_writes(cluster.node(2), &b) - writes_before;
    eprintln!("{writes} TAP writes for {report:?}");
    assert_eq!(
        (report.bad_size, report.bad_payload, report.duplicates),
        (0, 0, 0),
        "every datagram arrives once, whole: {report:?}"
    );
    assert_eq!(report.distinct, report.received, "{report:?}");
    assert!(
        report.received * 100 >= COUNT * 99,
        "{} of {COUNT} datagrams arrived: {report:?}",
        report.received
    );
    // TAPs take UDP super-frames (USO) from Linux 6.2 on; before, the daemon writes
    // every datagram on its own, which the checks above cover.
    if kernel_at_least(6, 2) {
        assert!(
            writes * 4 <= u64::try_from(report.received).unwrap_or(u64::MAX),
            "{writes} TAP writes for {} datagrams: they were not merged",
            report.received
        );
    }
}

/// Whether the running kernel is `major.minor` or later.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut version = release
        .trim()
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (version.next().unwrap_or(0), version.next().unwrap_or(0)) >= (major, minor)
}
