//! The cluster store shared by the daemons: etcd (`--store etcd://...`) with daemons that
//! join at once, an etcd outage that the data path and the CNI ride out, a daemon crash,
//! a node whose lease runs out; and Kubernetes objects (`vswitchctl apply/delete/get`)
//! reaching every node, for the file store and for etcd.
//!
//! Needs root, the built binaries (`cargo build --workspace --bins`) and, for the etcd
//! tests, Debian's `etcd-server` and `etcd-client` (`/usr/bin/etcd`, `/usr/bin/etcdctl`);
//! see the harness, `vswitch_e2e`.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_e2e::{
    assert_ping_within, bin, ipv4_addresses, ping_all, port_by_container, run_timeout, str_field,
    subnet_contains, Cluster, Finished, Netns, Node, Pod, StoreKind,
};

/// How long a healthy overlay may take to answer a first ping (ARP included).
const PING_WITHIN: Duration = Duration::from_secs(6);
/// The store's promise: a change reaches every daemon within 1 s.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);
/// How long a node may take to notice that etcd is gone.
const OUTAGE_NOTICED_WITHIN: Duration = Duration::from_secs(5);
/// How long a node may take to be connected and caught up again once etcd is back.
const RESYNC_WITHIN: Duration = Duration::from_secs(10);
/// How long a restarted daemon may take to carry traffic again.
const RECOVERY_WITHIN: Duration = Duration::from_secs(5);
/// The TTL of a daemon's etcd lease, which holds its node record: a node that stops
/// renewing it disappears from its peers once it expires (`NODE_LEASE_TTL` in
/// `docs/store.md`; renewals go out every third of it).
const LEASE_TTL: Duration = Duration::from_secs(10);
/// Slack on top of the TTL for etcd to expire the lease and the peers to see it.
const EXPIRY_SLACK: Duration = Duration::from_secs(5);
/// The background ping of the outage test: 100 probes, 0.1 s apart.
const OUTAGE_PINGS: u32 = 100;
/// Of those, at least this many must be answered.
const OUTAGE_PINGS_MIN_RECEIVED: u32 = 90;
/// What the daemon logs, once, when it loses the store and when it has it back
/// (`docs/store.md`).
const LOST_LINE: &str = "vswitchd: cluster store lost: ";
/// See [`LOST_LINE`].
const BACK_LINE: &str = "vswitchd: cluster store back after ";
/// Over the whole outage, with its ADD and DEL, this many lines leave room for a few
/// more than those two but not for a line per retry.
const MAX_OUTAGE_LOG_LINES: usize = 10;
/// How often state is polled.
const POLL: Duration = Duration::from_millis(50);
/// Where the daemons keep their pod records in etcd.
const PODS_PREFIX: &str = "/vswitch/v1/pods/";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A cluster of `nodes` nodes on `store`, the daemons started all at once.
fn cluster(nodes: usize, store: StoreKind) -> Cluster {
    Cluster::builder(nodes)
        .store(store)
        .start_together()
        .build()
}

/// The peer names of `show --json`.
fn peer_names(show: &Value) -> Vec<String> {
    show.get("peers")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("`show --json` has no `peers` list: {show}"))
        .iter()
        .map(|p| str_field(p, "node").to_owned())
        .collect()
}

/// The `store` object of `show --json`.
fn store_info(show: &Value) -> &Value {
    show.get("store")
        .unwrap_or_else(|| panic!("`show --json` has no `store`: {show}"))
}

/// `store.health.state` of `show --json` (`connected` or `disconnected`).
fn health_state(show: &Value) -> &str {
    store_info(show)
        .get("health")
        .and_then(|h| h.get("state"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`show --json` has no `store.health.state`: {show}"))
}

/// `store.behind` of `show --json`.
fn behind(show: &Value) -> bool {
    store_info(show)
        .get("behind")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| panic!("`show --json` has no boolean `store.behind`: {show}"))
}

/// Polls `node`'s `show --json` until `done` holds or `within` has passed; the last
/// `show`, whether `done` held, and how long it took.
fn wait_show(
    node: &Node,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, bool, Duration) {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        let show = node.show();
        if done(&show) {
            return (show, true, started.elapsed());
        }
        if Instant::now() >= deadline {
            return (show, false, started.elapsed());
        }
        thread::sleep(POLL);
    }
}

/// The address `show --json` lists for `pod`'s port.
fn listed_address(node: &Node, pod: &Pod) -> String {
    let show = node.show();
    let port = port_by_container(&show, &pod.container_id).unwrap_or_else(|| {
        panic!(
            "{} lists no port for {} ({}): {show}",
            node.name(),
            pod.full_name(),
            pod.container_id
        )
    });
    str_field(port, "address").to_owned()
}

/// Every string in the etcd pod records: each key's `/`-separated parts and every string
/// value of each record's JSON, so a test can ask whether a container id is recorded
/// without matching substrings of longer ids.
fn recorded_pod_strings(cluster: &Cluster) -> (HashSet<String>, String) {
    let pairs = cluster.etcd().get_prefix(PODS_PREFIX);
    let mut strings = HashSet::new();
    let mut listing = String::new();
    for (key, value) in &pairs {
        listing.push_str(&format!("{key} = {value}\n"));
        strings.extend(key.split('/').map(str::to_owned));
        if let Ok(record) = serde_json::from_str::<Value>(value) {
            collect_strings(&record, &mut strings);
        }
    }
    (strings, listing)
}

/// Every string anywhere in `value`.
fn collect_strings(value: &Value, into: &mut HashSet<String>) {
    match value {
        Value::String(s) => {
            into.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, into)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, into)),
        _ => {}
    }
}

/// `ping -n -q -i 0.1 -c <count> -W 1 <ip>` from `from`, on its own thread; join it for
/// the output.
fn background_ping(from: &Netns, ip: Ipv4Addr, count: u32) -> thread::JoinHandle<Finished> {
    let mut cmd = from.command("ping");
    cmd.args([
        "-n",
        "-q",
        "-i",
        "0.1",
        "-W",
        "1",
        "-c",
        &count.to_string(),
        &ip.to_string(),
    ]);
    // 100 probes take 10 s; the bound only keeps a hung ping from hanging the test.
    let bound = Duration::from_secs(u64::from(count) / 10 + 20);
    thread::spawn(move || run_timeout(&mut cmd, None, bound).unwrap_or_else(|e| panic!("{e}")))
}

/// Transmitted and received counts from ping's summary line.
fn ping_counts(out: &str) -> (u32, u32) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no summary in ping's output:\n{out}"));
    let number_before = |word: &str| -> u32 {
        line.split(", ")
            .find(|part| part.contains(word))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{word}` count in `{line}`"))
    };
    (number_before("transmitted"), number_before("received"))
}

/// `vswitchctl --socket <node's> <args>` with `stdin`; the outcome.
fn ctl_with_stdin(node: &Node, args: &[&str], stdin: &str) -> Finished {
    let mut cmd = Command::new(bin("vswitchctl"));
    cmd.arg("--socket").arg(node.socket()).args(args);
    run_timeout(&mut cmd, Some(stdin.as_bytes()), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `vswitchctl apply -f -` or `delete -f -` with `text`, which must succeed.
fn apply_or_delete(node: &Node, verb: &str, text: &str) {
    let done = ctl_with_stdin(node, &[verb, "-f", "-"], text);
    assert!(
        done.success(),
        "`vswitchctl {verb} -f -` on {} failed ({}):\n{}{}\ninput:\n{text}",
        node.name(),
        done.status,
        done.stdout,
        done.stderr
    );
}

/// An object's identity in `get --json`: (kind, namespace, name).
type ObjectId = (String, String, String);

/// `vswitchctl get --json` on `node`: the stored objects by identity.
fn stored_objects(node: &Node) -> Vec<(ObjectId, Value)> {
    let listed = node
        .ctl()
        .try_json(&["get", "--json"])
        .unwrap_or_else(|e| panic!("{} `get --json`: {e}", node.name()));
    let Value::Array(objects) = listed else {
        panic!("`get --json` on {} is not a list: {listed}", node.name());
    };
    objects
        .into_iter()
        .map(|o| {
            let id = (
                str_field(&o, "kind").to_owned(),
                o.get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                str_field(&o, "name").to_owned(),
            );
            let document = o
                .get("document")
                .cloned()
                .unwrap_or_else(|| panic!("no `document` in {o}"));
            (id, document)
        })
        .collect()
}

/// The identities only.
fn stored_ids(node: &Node) -> Vec<ObjectId> {
    stored_objects(node).into_iter().map(|(id, _)| id).collect()
}

/// An object identity.
fn id(kind: &str, namespace: &str, name: &str) -> ObjectId {
    (kind.to_owned(), namespace.to_owned(), name.to_owned())
}

/// Polls `get --json` on every node until `done` holds for each, at most `within` from
/// now; panics naming the node that did not get there.
fn wait_objects_everywhere(
    cluster: &Cluster,
    within: Duration,
    what: &str,
    done: impl Fn(&[ObjectId]) -> bool,
) {
    let deadline = Instant::now() + within;
    for node in cluster.nodes() {
        loop {
            let ids = stored_ids(node);
            if done(&ids) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not so on {} within {within:?}; `get --json` lists {ids:?}",
                node.name()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. Joining at once
// ---------------------------------------------------------------------------------------

/// Three daemons that join the etcd store at the same moment lease three distinct
/// subnets, each lists the other two as peers, and one pod per node reaches every other
/// pod across the overlay.
#[test]
fn three_daemons_joining_at_once_get_distinct_subnets() {
    let started = Instant::now();
    let cluster = cluster(3, StoreKind::Etcd);
    let subnets: Vec<String> = cluster.nodes().iter().map(Node::subnet).collect();
    let distinct: HashSet<&String> = subnets.iter().collect();
    assert_eq!(
        distinct.len(),
        subnets.len(),
        "daemons that joined at once share a subnet: {subnets:?}"
    );
    for node in cluster.nodes() {
        let expected: HashSet<String> = cluster
            .nodes()
            .iter()
            .filter(|n| n.number() != node.number())
            .map(|n| n.name().to_owned())
            .collect();
        let (show, ok, _) = wait_show(node, PROPAGATION_BOUND, |s| {
            expected.iter().all(|e| peer_names(s).contains(e))
        });
        assert!(
            ok,
            "{} does not list peers {expected:?}: {:?}",
            node.name(),
            peer_names(&show)
        );
    }

    let pods: Vec<Pod> = cluster
        .nodes()
        .iter()
        .map(|node| {
            let pod = node.add_pod("default", &format!("p{}", node.number()));
            let subnet = node.subnet();
            assert!(
                subnet_contains(&subnet, pod.ip),
                "{} got {} outside {}'s subnet {subnet}",
                pod.full_name(),
                pod.ip,
                node.name()
            );
            pod
        })
        .collect();
    let mut checks = Vec::new();
    for from in &pods {
        for to in &pods {
            if from.ip != to.ip {
                let what = format!("{} → {}", from.full_name(), to.full_name());
                checks.push((&from.netns, to.ip, what));
            }
        }
    }
    ping_all(&checks, PING_WITHIN);
    eprintln!(
        "three_daemons_joining_at_once_get_distinct_subnets: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 2. An etcd outage
// ---------------------------------------------------------------------------------------

/// With etcd killed, traffic between nodes keeps flowing, the node says it is
/// disconnected, and CNI ADD and DEL keep working for its own pods; once etcd is back
/// the node catches up (connected, not behind), etcd holds the pod added during the
/// outage and not the one deleted, and the other node reaches the new pod.
#[test]
fn etcd_outage_keeps_the_data_path_and_cni_working() {
    let started = Instant::now();
    let cluster = cluster(2, StoreKind::Etcd);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let d = node1.add_pod("default", "d");
    let b = node2.add_pod("default", "b");
    assert_ping_within(&a.netns, b.ip, PING_WITHIN, "a → b before the outage");
    assert_ping_within(&b.netns, d.ip, PING_WITHIN, "b → d before the outage");
    let (show, ok, _) = wait_show(node1, PROPAGATION_BOUND, |s| {
        health_state(s) == "connected" && !behind(s)
    });
    assert!(
        ok,
        "node1 is not connected before the outage: {}",
        store_info(&show)
    );

    let log_lines_before = node1.daemon().log().lines().count();
    let ping = background_ping(&a.netns, b.ip, OUTAGE_PINGS);
    thread::sleep(Duration::from_millis(500));
    cluster.etcd().kill9();
    let killed = Instant::now();

    let (show, ok, noticed) = wait_show(node1, OUTAGE_NOTICED_WITHIN, |s| {
        health_state(s) == "disconnected"
    });
    assert!(
        ok,
        "node1 still says the store is {} {OUTAGE_NOTICED_WITHIN:?} after etcd was killed: {}",
        health_state(&show),
        store_info(&show)
    );
    let health = store_info(&show).get("health").cloned().unwrap_or_default();
    assert!(
        health.get("since_unix").and_then(Value::as_u64).is_some()
            && health
                .get("reason")
                .and_then(Value::as_str)
                .is_some_and(|r| !r.is_empty()),
        "a disconnected store has `since_unix` and a `reason`: {health}"
    );
    eprintln!("node1 noticed the outage after {noticed:?}");

    // CNI during the outage: ADD a new pod, DEL an existing one; both on node1 alone.
    let c = node1.add_pod("default", "c");
    let del = node1.del_pod(&d);
    del.expect_success("DEL d during the etcd outage");
    let shown = node1.show();
    assert!(
        port_by_container(&shown, &d.container_id).is_none(),
        "node1 still lists d after its DEL: {shown}"
    );
    assert!(
        port_by_container(&shown, &c.container_id).is_some(),
        "node1 does not list c after its ADD: {shown}"
    );
    assert_ping_within(
        &c.netns,
        a.ip,
        PING_WITHIN,
        "c → a (same node) during the outage",
    );
    assert_ping_within(
        &a.netns,
        c.ip,
        PING_WITHIN,
        "a → c (same node) during the outage",
    );

    let ping = ping.join().expect("the background ping thread panicked");
    let (sent, received) = ping_counts(&ping.stdout);
    eprintln!(
        "background ping a → b: {received}/{sent} answered; etcd was down for the last {:?}",
        killed.elapsed()
    );
    assert_eq!(
        sent, OUTAGE_PINGS,
        "ping output:\n{}{}",
        ping.stdout, ping.stderr
    );
    assert!(
        received >= OUTAGE_PINGS_MIN_RECEIVED,
        "a → b across nodes lost {} of {sent} pings while etcd was down (at most {} may be lost)",
        sent - received,
        OUTAGE_PINGS - OUTAGE_PINGS_MIN_RECEIVED
    );
    let show = node1.show();
    assert_eq!(
        health_state(&show),
        "disconnected",
        "etcd is still down: {}",
        store_info(&show)
    );
    assert!(
        behind(&show),
        "node1 made an ADD and a DEL it could not write, so it is behind: {}",
        store_info(&show)
    );

    // etcd comes back on the same data.
    cluster.etcd().start();
    let (show, ok, resynced) = wait_show(node1, RESYNC_WITHIN, |s| {
        health_state(s) == "connected" && !behind(s)
    });
    assert!(
        ok,
        "node1 is not connected and caught up {RESYNC_WITHIN:?} after etcd came back: {}",
        store_info(&show)
    );
    eprintln!("node1 reconnected and caught up after {resynced:?}");
    let log = node1.daemon().log();
    let outage_log: Vec<&str> = log.lines().skip(log_lines_before).collect();
    let count = |prefix: &str| outage_log.iter().filter(|l| l.starts_with(prefix)).count();
    let quiet = outage_log.len() <= MAX_OUTAGE_LOG_LINES;
    assert!(
        count(LOST_LINE) == 1 && count(BACK_LINE) == 1 && quiet,
        "node1's log over the outage: expected one `{LOST_LINE}...` line, one \
         `{BACK_LINE}...` line and at most {MAX_OUTAGE_LOG_LINES} lines in all; it logged:\n{}",
        outage_log.join("\n")
    );
    let (recorded, listing) = recorded_pod_strings(&cluster);
    assert!(
        recorded.contains(&c.container_id),
        "etcd has no record of c ({}), added during the outage:\n{listing}",
        c.container_id
    );
    assert!(
        !recorded.contains(&d.container_id),
        "etcd still has d ({}), deleted during the outage:\n{listing}",
        d.container_id
    );
    assert!(
        recorded.contains(&a.container_id) && recorded.contains(&b.container_id),
        "etcd lost a ({}) or b ({}):\n{listing}",
        a.container_id,
        b.container_id
    );
    assert_ping_within(
        &b.netns,
        c.ip,
        PING_WITHIN,
        "b (node2) → c (added on node1 during the outage) after the resync",
    );
    eprintln!(
        "etcd_outage_keeps_the_data_path_and_cni_working: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 3. A daemon crash
// ---------------------------------------------------------------------------------------

/// A daemon killed with -9 and started again leases the same subnet from etcd, its pods
/// keep their addresses, and traffic across nodes flows again at once; once the crashed
/// process's lease has run out the node is still everybody's peer and still reachable.
#[test]
fn daemon_killed_and_restarted_keeps_subnet_and_pods() {
    let started = Instant::now();
    let cluster = cluster(2, StoreKind::Etcd);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let b = node2.add_pod("default", "b");
    assert_ping_within(&a.netns, b.ip, PING_WITHIN, "a → b before the crash");
    let subnet = node1.subnet();
    let listed = listed_address(node1, &a);
    let on_interface = ipv4_addresses(&a.netns, a.ifname());

    node1.kill9();
    let crashed = Instant::now();
    node1.restart();
    assert_eq!(node1.subnet(), subnet, "node1's subnet after a restart");
    assert_eq!(
        listed_address(node1, &a),
        listed,
        "a's address as node1 lists it after a restart"
    );
    assert_eq!(
        ipv4_addresses(&a.netns, a.ifname()),
        on_interface,
        "a's interface addresses after a restart"
    );
    assert_ping_within(
        &a.netns,
        b.ip,
        RECOVERY_WITHIN,
        "a → b after node1's restart",
    );
    assert_ping_within(
        &b.netns,
        a.ip,
        RECOVERY_WITHIN,
        "b → a after node1's restart",
    );
    let (show, ok, _) = wait_show(node2, PROPAGATION_BOUND, |s| {
        peer_names(s).iter().any(|p| p == node1.name())
    });
    assert!(
        ok,
        "node2 does not list node1 after its restart: {:?}",
        peer_names(&show)
    );

    // The lease the killed process held runs out; the restarted daemon's must carry on.
    let expired = crashed + LEASE_TTL + Duration::from_secs(2);
    thread::sleep(expired.saturating_duration_since(Instant::now()));
    let show = node2.show();
    assert!(
        peer_names(&show).iter().any(|p| p == node1.name()),
        "node2 lost node1 once the lease of node1's killed process ran out: {:?}",
        peer_names(&show)
    );
    assert_eq!(
        node1.subnet(),
        subnet,
        "node1's subnet after the old lease ran out"
    );
    assert_ping_within(
        &b.netns,
        a.ip,
        PING_WITHIN,
        "b → a after the old lease ran out",
    );
    eprintln!(
        "daemon_killed_and_restarted_keeps_subnet_and_pods: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 4. A node that stops
// ---------------------------------------------------------------------------------------

/// A node whose daemon is killed and not restarted stops renewing its lease and drops
/// out of its peers' `show` once the TTL has passed, and not long before: renewals go
/// out every third of the TTL, so the lease outlives the daemon by at least two thirds
/// of it (half is asserted).
#[test]
fn a_node_that_stops_disappears_from_its_peers_after_the_ttl() {
    let started = Instant::now();
    let cluster = cluster(2, StoreKind::Etcd);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let (show, ok, _) = wait_show(node1, PROPAGATION_BOUND, |s| {
        peer_names(s).iter().any(|p| p == node2.name())
    });
    assert!(ok, "node1 does not list node2: {:?}", peer_names(&show));

    node2.kill9();
    let within = LEASE_TTL + EXPIRY_SLACK;
    let (show, ok, gone_after) = wait_show(node1, within, |s| {
        !peer_names(s).iter().any(|p| p == node2.name())
    });
    assert!(
        ok,
        "node1 still lists node2 {within:?} after node2's daemon was killed: {:?}",
        peer_names(&show)
    );
    eprintln!("node2 left node1's peers {gone_after:?} after it was killed");
    assert!(
        gone_after >= LEASE_TTL / 2,
        "node2 left node1's peers {gone_after:?} after it was killed, well before its lease \
         (TTL {LEASE_TTL:?}) could have expired"
    );
    eprintln!(
        "a_node_that_stops_disappears_from_its_peers_after_the_ttl: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 5. Kubernetes objects
// ---------------------------------------------------------------------------------------

/// A Namespace with labels, a Pod with labels and a named container port, and a
/// NetworkPolicy that uses both.
const OBJECTS: &str = r"apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    team: shop
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - name: http
      containerPort: 8080
      protocol: TCP
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-shop
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes:
  - Ingress
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          team: shop
    ports:
    - protocol: TCP
      port: http
";

/// Three documents, the first two valid, the third a NetworkPolicy whose port range ends
/// below where it starts.
const INVALID_THIRD: &str = r"apiVersion: v1
kind: Namespace
metadata:
  name: broken
  labels:
    team: broken
---
apiVersion: v1
kind: Pod
metadata:
  name: api
  namespace: broken
  labels:
    app: api
spec:
  containers:
  - name: api
    image: api
    ports:
    - name: grpc
      containerPort: 9000
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad-range
  namespace: broken
spec:
  podSelector: {}
  policyTypes:
  - Ingress
  ingress:
  - ports:
    - protocol: TCP
      port: 9000
      endPort: 8000
";

/// `apply -f -` on node1 reaches `get --json` on node2 within 1 s with the labels and
/// named port intact; `delete -f -` of the same text removes it everywhere within 1 s; a
/// file whose third document is invalid is refused as a whole, naming the document and
/// the field.
fn objects_applied_on_one_node_are_seen_by_all(store: StoreKind) {
    let started = Instant::now();
    let cluster = cluster(2, store);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let before = stored_ids(node2);
    let wanted = [
        id("Namespace", "", "shop"),
        id("Pod", "shop", "web"),
        id("NetworkPolicy", "shop", "web-from-shop"),
    ];
    for w in &wanted {
        assert!(
            !before.contains(w),
            "{w:?} is stored before any apply: {before:?}"
        );
    }

    apply_or_delete(node1, "apply", OBJECTS);
    wait_objects_everywhere(
        &cluster,
        PROPAGATION_BOUND,
        "applied objects listed",
        |ids| wanted.iter().all(|w| ids.contains(w)),
    );
    let objects = stored_objects(node2);
    let document = |wanted: &ObjectId| -> &Value {
        &objects
            .iter()
            .find(|(id, _)| id == wanted)
            .unwrap_or_else(|| panic!("{wanted:?} not listed on node2"))
            .1
    };
    let namespace = document(&wanted[0]);
    assert_eq!(
        namespace
            .pointer("/metadata/labels/team")
            .and_then(Value::as_str),
        Some("shop"),
        "the Namespace's labels on node2: {namespace}"
    );
    let pod = document(&wanted[1]);
    assert_eq!(
        pod.pointer("/metadata/labels/app").and_then(Value::as_str),
        Some("web"),
        "the Pod's labels on node2: {pod}"
    );
    let port = pod
        .pointer("/spec/containers/0/ports/0")
        .unwrap_or_else(|| panic!("the Pod on node2 has no container port: {pod}"));
    assert_eq!(
        (
            port.get("name").and_then(Value::as_str),
            port.get("containerPort").and_then(Value::as_u64)
        ),
        (Some("http"), Some(8080)),
        "the Pod's named port on node2: {pod}"
    );
    let policy = document(&wanted[2]);
    assert_eq!(
        policy
            .pointer("/spec/podSelector/matchLabels/app")
            .and_then(Value::as_str),
        Some("web"),
        "the NetworkPolicy on node2: {policy}"
    );

    apply_or_delete(node1, "delete", OBJECTS);
    wait_objects_everywhere(&cluster, PROPAGATION_BOUND, "deleted objects gone", |ids| {
        !wanted.iter().any(|w| ids.contains(w))
    });

    // An invalid third document: nothing of the file is applied.
    let before_invalid = (stored_ids(node1), stored_ids(node2));
    let done = ctl_with_stdin(node1, &["apply", "-f", "-"], INVALID_THIRD);
    assert!(
        !done.success(),
        "`apply` of a file whose 3rd document has endPort < port succeeded:\n{}{}",
        done.stdout,
        done.stderr
    );
    let said = format!("{}{}", done.stderr, done.stdout);
    assert!(
        said.contains("document 3"),
        "the error does not name `document 3`: {said}"
    );
    // docs/objects.md: `document 3 (NetworkPolicy broken/bad-range):
    // spec.ingress[0].ports[0].endPort: ...`.
    assert!(
        said.contains("spec.ingress[0].ports[0].endPort"),
        "the error does not name the field `spec.ingress[0].ports[0].endPort`: {said}"
    );
    // Give a wrongly applied part the full propagation time to show up anywhere.
    thread::sleep(PROPAGATION_BOUND);
    assert_eq!(
        (stored_ids(node1), stored_ids(node2)),
        before_invalid,
        "a refused file changed the stored objects (node1, node2)"
    );
    eprintln!(
        "objects_applied_on_one_node_are_seen_by_all({store:?}): {:?}",
        started.elapsed()
    );
}

#[test]
fn objects_applied_on_one_node_are_seen_by_all_file() {
    objects_applied_on_one_node_are_seen_by_all(StoreKind::File);
}

#[test]
fn objects_applied_on_one_node_are_seen_by_all_etcd() {
    objects_applied_on_one_node_are_seen_by_all(StoreKind::Etcd);
}
