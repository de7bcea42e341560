//! One node, its pods on TAP devices: addresses, reachability, the operator's view, the
//! CNI lifecycle and its errors, GC, a daemon crash, and concurrent ADDs.
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`); see the
//! harness, `vswitch_e2e`.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vswitch_e2e::{
    add_placeholder_link, assert_ping_within, default_route, devices_of_kind, ipv4_addresses,
    is_tap, link, mac_for_ip, parse_cidr, ping_within, port_by_container, port_container_ids,
    ports, preflight, str_field, subnet_contains, tcp_transfer, Cluster, CniRequest, Netns, Node,
    Pod, PodSpec,
};

/// A few MB for the TCP checks.
const TCP_BYTES: usize = 4 << 20;
/// How long a healthy data path may take to answer a first ping (ARP included).
const PING_WITHIN: Duration = Duration::from_secs(5);
/// How long a restarted daemon may take to carry traffic again.
const RECOVERY_WITHIN: Duration = Duration::from_secs(10);

/// Asserts that `ip` answers pings from `from`.
fn assert_ping(from: &Netns, ip: Ipv4Addr, what: &str) {
    assert_ping_within(from, ip, PING_WITHIN, what);
}

/// A counter of a port (`counters.<key>`).
fn counter(port: &Value, key: &str) -> u64 {
    port.get("counters")
        .and_then(|c| c.get(key))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no counter `{key}` in {port}"))
}

/// The node's subnet, `vsw0` address and pod MTU, from `show --json`.
fn node_facts(node: &Node) -> (String, Ipv4Addr, u64) {
    let show = node.show();
    let subnet = str_field(&show, "subnet").to_owned();
    let host_port = show
        .get("host_port")
        .unwrap_or_else(|| panic!("no `host_port` in {show}"));
    let (gateway, len) = parse_cidr(str_field(host_port, "address"));
    assert_eq!(
        len, 16,
        "vsw0 carries the cluster CIDR's prefix length: {show}"
    );
    let mtu = show
        .get("mtu")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no `mtu` in {show}"));
    (subnet, gateway, mtu)
}

/// Everything a user sees of a pod's interface: address, MAC, TAP, MTU, route, result.
fn assert_pod_interface(pod: &Pod, subnet: &str, gateway: Ipv4Addr, mtu: u64) {
    let who = pod.full_name();
    assert!(
        subnet_contains(subnet, pod.ip) && pod.ip != gateway,
        "{who}: address {} is not a pod address of the node subnet {subnet}",
        pod.ip
    );
    assert_eq!(pod.prefix_len, 16, "{who}: result prefix length");
    assert_eq!(
        pod.gateway, gateway,
        "{who}: result gateway is not vsw0's address"
    );
    assert_eq!(pod.mac, mac_for_ip(pod.ip), "{who}: MAC is not 0a:58 + IP");

    assert_eq!(
        ipv4_addresses(&pod.netns, "eth0"),
        vec![(pod.ip, 16)],
        "{who}: addresses on eth0"
    );
    let eth0 = link(&pod.netns, "eth0").unwrap_or_else(|| panic!("{who}: no eth0"));
    assert!(is_tap(&eth0), "{who}: eth0 is not a TAP: {eth0}");
    assert_eq!(
        eth0.get("address").and_then(Value::as_str),
        Some(pod.mac.as_str()),
        "{who}: eth0 MAC"
    );
    assert_eq!(
        eth0.get("mtu").and_then(Value::as_u64),
        Some(mtu),
        "{who}: eth0 MTU"
    );
    let up = eth0
        .get("flags")
        .and_then(Value::as_array)
        .is_some_and(|flags| flags.iter().any(|f| f.as_str() == Some("UP")));
    assert!(up, "{who}: eth0 is not up: {eth0}");

    let route = default_route(&pod.netns).unwrap_or_else(|| panic!("{who}: no default route"));
    assert_eq!(route.gateway, Some(gateway), "{who}: default route gateway");
    assert_eq!(route.dev, "eth0", "{who}: default route device");

    let interfaces = pod
        .result
        .get("interfaces")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{who}: result has no interfaces"));
    let listed = interfaces
        .iter()
        .find(|i| i.get("name").and_then(Value::as_str) == Some("eth0"))
        .unwrap_or_else(|| panic!("{who}: result does not list eth0: {}", pod.result));
    assert_eq!(
        listed.get("sandbox").and_then(Value::as_str),
        Some(pod.netns.path().as_str()),
        "{who}: result sandbox"
    );
    // Interfaces carry `mtu` from CNI 1.1.0 on; an older result may leave it out.
    let result_mtu = listed.get("mtu").and_then(Value::as_u64);
    if pod.spec.version == "1.1.0" || result_mtu.is_some() {
        assert_eq!(result_mtu, Some(mtu), "{who}: result MTU");
    }
}

/// No Linux bridge and no kernel VXLAN device in any of these namespaces: the switching
/// is ours.
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

/// Waits until `show --json` lists every one of `pods` as attached.
fn wait_attached(node: &Node, pods: &[&Pod], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let show = node.show();
        let all = pods.iter().all(|pod| {
            port_by_container(&show, &pod.container_id)
                .and_then(|port| port.get("attached"))
                .and_then(Value::as_bool)
                == Some(true)
        });
        if all {
            return show;
        }
        assert!(
            Instant::now() < deadline,
            "not every pod is attached after {within:?}: {show}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Tests 1 and 7: addresses, MACs, TAPs, routes; pod↔pod ping and TCP; node↔pod ping;
/// and no kernel bridge or VXLAN anywhere.
#[test]
fn pods_on_one_node_get_addresses_and_reach_each_other() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let (subnet, gateway, mtu) = node_facts(node);

    assert!(
        subnet_contains(&subnet, gateway),
        "vsw0 {gateway} outside {subnet}"
    );
    assert_eq!(
        ipv4_addresses(node.netns(), "vsw0"),
        vec![(gateway, 16)],
        "vsw0 in the node namespace"
    );
    let vsw0 = link(node.netns(), "vsw0").expect("no vsw0 in the node namespace");
    assert!(is_tap(&vsw0), "vsw0 is not a TAP: {vsw0}");

    assert_pod_interface(&a, &subnet, gateway, mtu);
    assert_pod_interface(&b, &subnet, gateway, mtu);
    assert_ne!(a.ip, b.ip, "two pods got the same address");

    assert_ping(&a.netns, b.ip, "pod a → pod b");
    assert_ping(&b.netns, a.ip, "pod b → pod a");
    let report = tcp_transfer(&b.netns, b.ip, &a.netns, TCP_BYTES)
        .unwrap_or_else(|e| panic!("TCP pod a → pod b: {e}"));
    eprintln!("TCP a → b: {} bytes in {:?}", report.bytes, report.elapsed);

    assert_ping(node.netns(), a.ip, "node → pod a");
    assert_ping(node.netns(), b.ip, "node → pod b");
    assert_ping(&a.netns, gateway, "pod a → vsw0");
    assert_ping(&b.netns, gateway, "pod b → vsw0");

    assert_no_kernel_switching(&[node.netns(), &a.netns, &b.netns]);
}

/// Test 2: `show` lists the ports with their addresses and live counters; `fdb` has
/// learned both pods; the human forms work too.
#[test]
fn vswitchctl_shows_ports_counters_and_learned_macs() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    assert_ping(&a.netns, b.ip, "pod a → pod b");
    tcp_transfer(&a.netns, a.ip, &b.netns, 1 << 20)
        .unwrap_or_else(|e| panic!("TCP pod b → pod a: {e}"));

    let show = node.show();
    assert_eq!(str_field(&show, "node"), "node1");
    assert_eq!(str_field(&show, "vtep"), node.underlay_ip().to_string());
    assert!(
        show.get("peers").is_some_and(Value::is_array),
        "no peers list: {show}"
    );
    assert_eq!(ports(&show).len(), 2, "two pods, two ports: {show}");
    for pod in [&a, &b] {
        let port = port_by_container(&show, &pod.container_id)
            .unwrap_or_else(|| panic!("{} not in show: {show}", pod.full_name()));
        assert_eq!(str_field(port, "address"), format!("{}/16", pod.ip));
        assert_eq!(str_field(port, "mac"), pod.mac);
        assert_eq!(str_field(port, "ifname"), "eth0");
        assert_eq!(str_field(port, "pod"), pod.full_name());
        assert_eq!(str_field(port, "netns"), pod.netns.path());
        assert_eq!(port.get("attached"), Some(&json!(true)), "{port}");
        for key in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
            assert!(counter(port, key) > 0, "{key} is 0 after traffic: {port}");
        }
    }

    let fdb = node.fdb();
    for pod in [&a, &b] {
        let entry = fdb
            .iter()
            .find(|e| e.get("mac").and_then(Value::as_str) == Some(pod.mac.as_str()))
            .unwrap_or_else(|| panic!("{} ({}) not in fdb: {fdb:?}", pod.full_name(), pod.mac));
        assert_eq!(
            str_field(entry, "location"),
            format!("{}:eth0", pod.full_name()),
            "fdb location of {}",
            pod.full_name()
        );
        assert!(entry.get("age_secs").is_some_and(Value::is_u64), "{entry}");
    }

    let human = node.ctl().run(&["show"]);
    assert!(human.success(), "`vswitchctl show` failed: {human:?}");
    for pod in [&a, &b] {
        assert!(
            human.stdout.contains(&pod.ip.to_string()),
            "`vswitchctl show` does not mention {}:\n{}",
            pod.ip,
            human.stdout
        );
    }
    let human = node.ctl().run(&["fdb"]);
    assert!(human.success(), "`vswitchctl fdb` failed: {human:?}");
    for pod in [&a, &b] {
        assert!(
            human.stdout.contains(&pod.mac),
            "`vswitchctl fdb` does not mention {}:\n{}",
            pod.mac,
            human.stdout
        );
    }
}

/// Test 3: CHECK after ADD, DEL, repeated DEL, CHECK after DEL.
#[test]
fn cni_check_del_and_repeated_del() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");

    node.check_pod(&a).expect_success("CHECK after ADD");
    assert!(port_by_container(&node.show(), &a.container_id).is_some());

    node.del_pod(&a).expect_success("DEL");
    assert!(
        link(&a.netns, "eth0").is_none(),
        "eth0 still in the pod after DEL"
    );
    assert!(
        port_by_container(&node.show(), &a.container_id).is_none(),
        "show still lists the pod after DEL"
    );
    node.del_pod(&a).expect_success("second DEL");
    node.check_pod(&a).expect_failure("CHECK after DEL");
}

/// Test 3: DEL succeeds when the pod's namespace is already gone.
#[test]
fn cni_del_succeeds_when_the_netns_is_gone() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let mut b = node.add_pod("default", "b");
    b.netns.delete();
    node.del_pod(&b)
        .expect_success("DEL with CNI_NETNS naming a deleted namespace");
    assert!(
        port_by_container(&node.show(), &b.container_id).is_none(),
        "show still lists the pod after DEL"
    );
    node.del_pod(&b).expect_success("second DEL");
}

/// Test 3: VERSION lists every version the contract names.
#[test]
fn cni_version_lists_supported_versions() {
    preflight();
    let host = Netns::new("host");
    let out = CniRequest::new("VERSION")
        .config(&json!({"cniVersion": "1.1.0"}))
        .run_in(&host);
    let reply = out
        .expect_success("VERSION")
        .unwrap_or_else(|| panic!("VERSION printed no JSON\n{}", out.describe()));
    let versions: Vec<&str> = reply
        .get("supportedVersions")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            versions.contains(&version),
            "{version} missing from {reply}"
        );
    }
}

/// Test 3: ADD with cniVersion 0.4.0 and 1.0.0 works and answers in that version's shape.
#[test]
fn cni_add_with_older_versions() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let (subnet, gateway, mtu) = node_facts(node);
    let mut pods = Vec::new();
    for (version, name) in [("0.4.0", "v040"), ("1.0.0", "v100")] {
        let pod = node.add_pod_spec(&PodSpec::new("default", name).version(version));
        assert_eq!(
            pod.result.get("cniVersion").and_then(Value::as_str),
            Some(version),
            "result version: {}",
            pod.result
        );
        let ip0 = pod
            .result
            .get("ips")
            .and_then(Value::as_array)
            .and_then(|ips| ips.first())
            .unwrap_or_else(|| panic!("no ips[0]: {}", pod.result));
        if version == "0.4.0" {
            assert_eq!(
                ip0.get("version").and_then(Value::as_str),
                Some("4"),
                "a 0.4.0 result has ips[].version: {}",
                pod.result
            );
        } else {
            assert!(
                ip0.get("version").is_none(),
                "a 1.0.0 result has no ips[].version: {}",
                pod.result
            );
        }
        assert_pod_interface(&pod, &subnet, gateway, mtu);
        node.check_pod(&pod)
            .expect_success(&format!("CHECK {version}"));
        pods.push(pod);
    }
    if let [p, q] = pods.as_slice() {
        assert_ping(&p.netns, q.ip, "0.4.0 pod → 1.0.0 pod");
    }
    for pod in &pods {
        node.del_pod(pod)
            .expect_success(&format!("DEL {}", pod.spec.version));
        assert!(link(&pod.netns, "eth0").is_none(), "eth0 left after DEL");
    }
}

/// Test 4: malformed input with the daemon up: the right CNI error codes, as error
/// objects on stdout, and nothing touched.
#[test]
fn cni_rejects_bad_input() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let pod_ns = Netns::new("bad");
    let container_id = format!("ctr-bad-{}", std::process::id());
    let add = || {
        CniRequest::new("ADD")
            .container_id(&container_id)
            .netns(&pod_ns.path())
            .ifname("eth0")
            .pod("default", "bad")
            .config(&node.netconf("1.1.0"))
    };

    node.cni(&add().stdin(b"{this is not json"))
        .expect_error("ADD with garbage on stdin", 6);

    let out = node.cni(&add().unset("CNI_CONTAINERID"));
    out.expect_error("ADD without CNI_CONTAINERID", 4);
    assert!(
        out.msg().contains("CNI_CONTAINERID"),
        "the message must name the variable: {}",
        out.msg()
    );

    let missing = format!("/run/netns/vt-{}-0-missing", std::process::id());
    node.cni(&add().netns(&missing))
        .expect_error("ADD into a namespace that does not exist", 4);

    assert!(
        link(&pod_ns, "eth0").is_none(),
        "a failed ADD left eth0 behind"
    );

    let kind = add_placeholder_link(&pod_ns, "eth1");
    let before = link(&pod_ns, "eth1").expect("placeholder eth1");
    node.cni(&add().ifname("eth1"))
        .expect_error("ADD with an interface name already taken", 4);
    let after = link(&pod_ns, "eth1").expect("ADD removed the existing eth1");
    assert_eq!(
        after.get("ifindex"),
        before.get("ifindex"),
        "eth1 was replaced"
    );
    assert_eq!(
        after
            .get("linkinfo")
            .and_then(|l| l.get("info_kind"))
            .and_then(Value::as_str),
        Some(kind.as_str()),
        "eth1 changed kind: {after}"
    );
    assert!(
        ipv4_addresses(&pod_ns, "eth1").is_empty(),
        "ADD put an address on the existing eth1"
    );
    assert!(
        default_route(&pod_ns).is_none(),
        "a failed ADD left a default route"
    );

    // A runtime DELs after a failed ADD; that must succeed and leave nothing listed.
    let del = CniRequest::new("DEL")
        .container_id(&container_id)
        .netns(&pod_ns.path())
        .ifname("eth1")
        .pod("default", "bad")
        .config(&node.netconf("1.1.0"));
    node.cni(&del).expect_success("DEL after a failed ADD");
    assert!(
        port_by_container(&node.show(), &container_id).is_none(),
        "a failed ADD is listed in show"
    );
}

/// Test 4: with the daemon stopped, ADD says "try again later" (11) and STATUS says
/// "unavailable" (50); once it is back, both work.
#[test]
fn cni_reports_a_stopped_daemon() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    node.cni_status()
        .expect_success("STATUS with the daemon up");

    node.stop();
    let (pod_ns, _, out) = node.try_add_pod(&PodSpec::new("default", "early"));
    out.expect_error("ADD with the daemon stopped", 11);
    assert!(link(&pod_ns, "eth0").is_none(), "a failed ADD left eth0");
    node.cni_status()
        .expect_error("STATUS with the daemon stopped", 50);

    node.restart();
    node.cni_status().expect_success("STATUS after restart");
    let pod = node.add_pod("default", "late");
    assert_ping(&pod.netns, pod.gateway, "pod → vsw0 after restart");
}

/// Test 5: GC removes every attachment the runtime no longer lists, and only those.
#[test]
fn gc_removes_unlisted_attachments() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let c = node.add_pod("default", "c");

    node.gc(&[&a, &b]).expect_success("GC listing a and b");

    assert!(link(&c.netns, "eth0").is_none(), "GC left c's interface");
    let show = node.show();
    let listed = port_container_ids(&show);
    assert!(
        !listed.contains(&c.container_id),
        "GC left c's port: {show}"
    );
    for pod in [&a, &b] {
        assert!(
            listed.contains(&pod.container_id),
            "GC removed {}: {show}",
            pod.full_name()
        );
    }
    assert_ping(&a.netns, b.ip, "pod a → pod b after GC");
    assert_ping(&b.netns, a.ip, "pod b → pod a after GC");
    node.del_pod(&c).expect_success("DEL of a collected pod");
}

/// Test 6: `kill -9` leaves the pods as they were; a restarted daemon holds the same
/// subnet, takes the ports back, forwards again, and hands out no address twice.
#[test]
fn daemon_crash_and_restart_keeps_pods() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    assert_ping(&a.netns, b.ip, "pod a → pod b before the crash");
    let (subnet, gateway, _) = node_facts(node);

    node.kill9();
    assert!(!node.daemon().is_running(), "vswitchd survived kill -9");
    for pod in [&a, &b] {
        assert_eq!(
            ipv4_addresses(&pod.netns, "eth0"),
            vec![(pod.ip, 16)],
            "{}: address after the crash",
            pod.full_name()
        );
        let eth0 = link(&pod.netns, "eth0").expect("eth0 gone after the crash");
        assert!(is_tap(&eth0));
    }

    node.restart();
    let (subnet_after, gateway_after, _) = node_facts(node);
    assert_eq!(
        subnet_after, subnet,
        "a restarted daemon leased another subnet"
    );
    assert_eq!(gateway_after, gateway);
    wait_attached(node, &[&a, &b], RECOVERY_WITHIN);
    assert!(
        ping_within(&a.netns, b.ip, RECOVERY_WITHIN),
        "pod a → pod b does not recover within {RECOVERY_WITHIN:?} of the restart"
    );
    assert_ping(&b.netns, a.ip, "pod b → pod a after the restart");

    let c = node.add_pod("default", "c");
    let taken = [a.ip, b.ip, gateway];
    assert!(
        !taken.contains(&c.ip),
        "after the restart a new pod got {} which is taken ({taken:?})",
        c.ip
    );
    assert!(subnet_contains(&subnet, c.ip));
    assert_ping(&c.netns, a.ip, "new pod → pod a");
}

/// Test 8: 12 ADDs from 4 threads at once: 12 distinct addresses; deleting them all
/// leaves no TAP and no port.
#[test]
fn concurrent_adds_get_distinct_addresses() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 3;
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let (subnet, gateway, _) = node_facts(node);

    let pods: Vec<Pod> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| node.add_pod("default", &format!("c{t}x{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an ADD thread panicked"))
            .collect()
    });
    assert_eq!(pods.len(), THREADS * PER_THREAD);
    let addresses: HashSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(
        addresses.len(),
        pods.len(),
        "concurrent ADDs handed out an address twice: {:?}",
        pods.iter().map(|p| p.ip).collect::<Vec<_>>()
    );
    for pod in &pods {
        assert!(subnet_contains(&subnet, pod.ip) && pod.ip != gateway);
    }
    assert_eq!(ports(&node.show()).len(), pods.len());
    if let [first, .., last] = pods.as_slice() {
        assert_ping(&first.netns, last.ip, "first pod → last pod");
    }

    thread::scope(|scope| {
        for chunk in pods.chunks(PER_THREAD) {
            scope.spawn(move || {
                for pod in chunk {
                    node.del_pod(pod)
                        .expect_success(&format!("DEL {}", pod.full_name()));
                }
            });
        }
    });
    for pod in &pods {
        let taps = devices_of_kind(&pod.netns, "tun");
        assert!(
            taps.is_empty(),
            "{} still has {taps:?} after DEL",
            pod.full_name()
        );
    }
    let show = node.show();
    assert!(ports(&show).is_empty(), "ports left after DEL: {show}");
}
