//! NetworkPolicy as a user sees it: objects applied with `vswitchctl apply -f -`, then
//! connections that answer, time out, or keep working. Covers allow and deny on one
//! node with a named port and UDP, replies passing by connection tracking, the
//! `policy_denied` drop counters, enforcement across the overlay (ingress judged on the
//! destination node, egress on the source node), `namespaceSelector`, `ipBlock` with
//! `except` (which matches pod addresses), a label change flipping a verdict within a
//! second while an established connection survives, the node and the pod itself always
//! being allowed, and an invalid policy document refused as a whole.
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`); see the
//! harness, `vswitch_e2e`. Semantics: docs/policy.md; objects: docs/objects.md.

use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_e2e::{
    ping, ping_within, port_by_container, Cluster, Node, Pod, PortServer, Probe, Prober,
};

/// How long a probe that is expected to fail waits before calling it blocked (a TCP SYN
/// is first retransmitted after 1 s; on this local path an allowed answer takes ms).
const PROBE: Duration = Duration::from_millis(1500);
/// How long each attempt of a poll waits.
const TRY: Duration = Duration::from_millis(250);
/// How often a verdict that is about to flip is polled.
const POLL: Duration = Duration::from_millis(100);
/// How long a policy change may take to be in force when the test only needs it to be
/// (the daemons compile within ~250 ms of a store change; the store propagates in 1 s).
const IN_FORCE_WITHIN: Duration = Duration::from_secs(4);
/// The bound test 4 asserts: a label change flips a verdict within 1 s.
const FLIP_WITHIN: Duration = Duration::from_secs(1);
/// How long a healthy data path may take to answer a first ping.
const PING_WITHIN: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// What kind of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// One probe from `prober` to `ip:port`.
fn probe(prober: &mut Prober, proto: Proto, ip: Ipv4Addr, port: u16, timeout: Duration) -> Probe {
    match proto {
        Proto::Tcp => prober.tcp(ip, port, timeout),
        Proto::Udp => prober.udp(ip, port, timeout),
    }
}

/// Asserts that a new connection (TCP) or request (UDP) to `ip:port` is answered by the
/// server with a reply starting with `expect`: the packets and the replies passed.
fn assert_answers(
    prober: &mut Prober,
    proto: Proto,
    ip: Ipv4Addr,
    port: u16,
    expect: &str,
    what: &str,
) {
    let seen = probe(prober, proto, ip, port, PROBE);
    assert!(
        matches!(&seen, Probe::Answered(line) if line.starts_with(expect)),
        "{what}: {proto:?} to {ip}:{port} should be answered with {expect:?}, but it {seen}"
    );
}

/// Asserts that a new connection (TCP) or request (UDP) to `ip:port` gets nothing back:
/// no answer, no reset, no ICMP error, within [`PROBE`].
fn assert_blocked(prober: &mut Prober, proto: Proto, ip: Ipv4Addr, port: u16, what: &str) {
    let seen = probe(prober, proto, ip, port, PROBE);
    assert_eq!(
        seen,
        Probe::TimedOut,
        "{what}: {proto:?} to {ip}:{port} should be dropped silently (time out), but it {seen}"
    );
}

/// Polls `ip:port` every [`POLL`] until it is answered (`answered`) or times out
/// (`!answered`). Returns how long after `since` the first attempt that showed it
/// *started*, or `None` if none did before `since + within`.
///
/// An answer within [`TRY`] proves "answered"; a silence proves "blocked" only when it
/// lasts as long as [`assert_blocked`]'s ([`PROBE`], past the first SYN retransmission):
/// on a loaded machine an allowed connection can take longer than [`TRY`], and a poll
/// that took that for the policy being in force would fail the `assert_blocked` after
/// it. Timing from the attempt's start keeps the measured interval the same.
fn poll_until(
    prober: &mut Prober,
    proto: Proto,
    ip: Ipv4Addr,
    port: u16,
    answered: bool,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    loop {
        let started = since.elapsed();
        if started > within {
            return None;
        }
        let seen = probe(prober, proto, ip, port, if answered { TRY } else { PROBE });
        let done = if answered {
            seen.answered()
        } else {
            seen == Probe::TimedOut
        };
        if done {
            return Some(started);
        }
        if let Probe::Failed(why) = &seen {
            panic!("probing {ip}:{port}: {why}");
        }
        thread::sleep(POLL);
    }
}

/// Waits until a new connection to `ip:port` is blocked (the policy is in force there).
fn wait_blocked(prober: &mut Prober, proto: Proto, ip: Ipv4Addr, port: u16, what: &str) {
    let since = Instant::now();
    assert!(
        poll_until(prober, proto, ip, port, false, since, IN_FORCE_WITHIN).is_some(),
        "{what}: {proto:?} to {ip}:{port} still answered {IN_FORCE_WITHIN:?} after the policy \
         was applied"
    );
}

/// Waits until a new connection to `ip:port` is answered.
fn wait_answered(prober: &mut Prober, proto: Proto, ip: Ipv4Addr, port: u16, what: &str) {
    let since = Instant::now();
    assert!(
        poll_until(prober, proto, ip, port, true, since, IN_FORCE_WITHIN).is_some(),
        "{what}: {proto:?} to {ip}:{port} not answered within {IN_FORCE_WITHIN:?}"
    );
}

/// `counters.drops.policy_denied` of a counters object (absent when zero).
fn denied_in(counters: Option<&Value>) -> u64 {
    counters
        .and_then(|c| c.get("drops"))
        .and_then(|d| d.get("policy_denied"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `policy_denied` drops on `pod`'s port, from `show --json` on its node.
fn port_denied(node: &Node, pod: &Pod) -> u64 {
    let show = node.show();
    let port = port_by_container(&show, &pod.container_id).unwrap_or_else(|| {
        panic!(
            "{} is not listed by `show` on {}: {show}",
            pod.full_name(),
            node.name()
        )
    });
    denied_in(port.get("counters"))
}

/// `policy_denied` drops on `node`'s overlay port.
fn overlay_denied(node: &Node) -> u64 {
    let show = node.show();
    let overlay = show
        .get("overlay")
        .unwrap_or_else(|| panic!("`show --json` on {} has no `overlay`: {show}", node.name()));
    denied_in(overlay.get("counters"))
}

/// A `Pod` object: labels as `k: v` pairs, container ports as `(name, number, protocol)`.
fn pod_object(pod: &Pod, labels: &[(&str, &str)], ports: &[(&str, u16, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let mut doc = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  labels: {{{}}}\n",
        pod.spec.name,
        pod.spec.namespace,
        labels.join(", ")
    );
    if !ports.is_empty() {
        doc.push_str("spec:\n  containers:\n  - name: main\n    ports:\n");
        for (name, number, protocol) in ports {
            doc.push_str(&format!(
                "    - {{name: {name}, containerPort: {number}, protocol: {protocol}}}\n"
            ));
        }
    }
    doc
}

/// A `Namespace` object with labels.
fn namespace_object(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{}}}\n",
        labels.join(", ")
    )
}

/// `show --json`'s `cluster_cidr`.
fn cluster_cidr(node: &Node) -> String {
    let show = node.show();
    show.get("cluster_cidr")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`show --json` has no `cluster_cidr`: {show}"))
        .to_owned()
}

/// `vswitchctl get --json`, as it printed it.
fn stored(node: &Node) -> Value {
    node.ctl()
        .try_json(&["get", "--json"])
        .unwrap_or_else(|e| panic!("`get --json` on {}: {e}", node.name()))
}

// ---------------------------------------------------------------------------------------
// 1. Allow, deny and replies on one node
// ---------------------------------------------------------------------------------------

/// b (app=web, ports http=80/TCP and dns=53/UDP) takes only role=client pods, on its
/// port named `http` and on UDP 53, and may start nothing itself (egress isolated, no
/// rules). a (role=client) reaches b:80 and gets the server's bytes and its echo, and
/// b's UDP echo: the replies pass by connection tracking, as b's egress allows nothing.
/// a→b:81 (not `http`), c→b:80 and c→b UDP 53 time out, and so does b→a; each denial
/// is counted as `policy_denied` on the sender's port.
#[test]
fn deny_allow_and_replies_on_one_node() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let c = node.add_pod("default", "c");
    node.ctl().apply(&format!(
        "{}---\n{}---\n{}",
        pod_object(&a, &[("role", "client")], &[]),
        pod_object(
            &b,
            &[("app", "web")],
            &[("http", 80, "TCP"), ("dns", 53, "UDP")]
        ),
        pod_object(&c, &[], &[]),
    ));
    let _web = PortServer::start(&b.netns, &[80, 81], &[53]);
    let _client_server = PortServer::start(&a.netns, &[80], &[]);
    let mut from_a = Prober::new(&a.netns);
    let mut from_b = Prober::new(&b.netns);
    let mut from_c = Prober::new(&c.netns);

    // No policy: everything connects.
    assert_answers(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "no policy, a→b:80",
    );
    assert_answers(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        81,
        "srv:81",
        "no policy, a→b:81",
    );
    assert_answers(
        &mut from_c,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "no policy, c→b:80",
    );
    assert_answers(
        &mut from_a,
        Proto::Udp,
        b.ip,
        53,
        "echo:53:",
        "no policy, a→b UDP 53",
    );
    assert_answers(
        &mut from_c,
        Proto::Udp,
        b.ip,
        53,
        "echo:53:",
        "no policy, c→b UDP 53",
    );
    assert_answers(
        &mut from_b,
        Proto::Tcp,
        a.ip,
        80,
        "srv:80",
        "no policy, b→a:80",
    );

    node.ctl().apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    ports:
    - port: http
    - {protocol: UDP, port: 53}
",
    );
    wait_blocked(
        &mut from_c,
        Proto::Tcp,
        b.ip,
        80,
        "c→b:80 under web-from-clients",
    );
    let denied_before = (
        port_denied(node, &a),
        port_denied(node, &b),
        port_denied(node, &c),
    );

    // Allowed, with the replies: the banner, then an echo both ways on the connection.
    assert_answers(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "a (role=client)→b:80 (`http`)",
    );
    let conn = from_a
        .open(b.ip, 80, PROBE)
        .unwrap_or_else(|seen| panic!("a→b:80 should connect, but it {seen}"));
    for word in ["hello", "world"] {
        let echoed = from_a.exchange(conn, word, PROBE);
        assert_eq!(
            echoed,
            Probe::Answered(word.to_owned()),
            "a→b:80: the server's echo of {word:?} did not come back"
        );
    }
    from_a.close(conn);
    assert_answers(
        &mut from_a,
        Proto::Udp,
        b.ip,
        53,
        "echo:53:",
        "a (role=client)→b UDP 53",
    );

    // Denied.
    assert_blocked(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        81,
        "a→b:81 (not the port named http)",
    );
    assert_blocked(&mut from_c, Proto::Tcp, b.ip, 80, "c (no labels)→b:80");
    assert_blocked(&mut from_c, Proto::Udp, b.ip, 53, "c (no labels)→b UDP 53");
    assert_blocked(
        &mut from_b,
        Proto::Tcp,
        a.ip,
        80,
        "b→a:80 (b's egress allows nothing)",
    );

    let denied_after = (
        port_denied(node, &a),
        port_denied(node, &b),
        port_denied(node, &c),
    );
    assert!(
        denied_after.0 > denied_before.0
            && denied_after.1 > denied_before.1
            && denied_after.2 > denied_before.2,
        "policy_denied on the senders' ports (a, b, c) should all go up: before \
         {denied_before:?}, after {denied_after:?}"
    );
    eprintln!(
        "deny_allow_and_replies_on_one_node: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 2. Across the overlay
// ---------------------------------------------------------------------------------------

/// Node 1 holds blue/client and red/client; node 2 holds shop/web, infra/dns and
/// infra/other. web takes only namespaces labelled team=blue: blue's client connects,
/// red's is dropped on node 2 (counted on node 2's overlay port, not on red's port).
/// Then red's pods may start nothing (default-deny egress): even infra/dns, which no
/// policy isolates, is unreachable, dropped on node 1 before the overlay. Then an egress
/// rule to node 2's pod subnet except infra/other, UDP 53 only, lets red's DNS-like
/// request to infra/dns through and its answer back, while infra/other (the except) and
/// TCP stay blocked.
#[test]
fn cross_node_enforcement() {
    let started = Instant::now();
    let cluster = Cluster::new(2);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let blue = node1.add_pod("blue", "client");
    let red = node1.add_pod("red", "client");
    let web = node2.add_pod("shop", "web");
    let dns = node2.add_pod("infra", "dns");
    let other = node2.add_pod("infra", "other");
    node1.ctl().apply(&format!(
        "{}---\n{}---\n{}---\n{}---\n{}",
        namespace_object("blue", &[("team", "blue")]),
        namespace_object("red", &[("team", "red")]),
        namespace_object("shop", &[]),
        namespace_object("infra", &[]),
        pod_object(&web, &[("app", "web")], &[("http", 80, "TCP")]),
    ));
    let _web = PortServer::start(&web.netns, &[80], &[]);
    let _dns = PortServer::start(&dns.netns, &[80], &[53]);
    let _other = PortServer::start(&other.netns, &[80], &[53]);
    let mut from_blue = Prober::new(&blue.netns);
    let mut from_red = Prober::new(&red.netns);

    // No policy: everything crosses the overlay.
    for (prober, who) in [(&mut from_blue, "blue"), (&mut from_red, "red")] {
        assert_answers(
            prober,
            Proto::Tcp,
            web.ip,
            80,
            "srv:80",
            &format!("no policy, {who}→web"),
        );
    }
    assert_answers(
        &mut from_red,
        Proto::Tcp,
        dns.ip,
        80,
        "srv:80",
        "no policy, red→dns:80",
    );
    assert_answers(
        &mut from_red,
        Proto::Udp,
        dns.ip,
        53,
        "echo:53:",
        "no policy, red→dns UDP 53",
    );
    assert_answers(
        &mut from_red,
        Proto::Udp,
        other.ip,
        53,
        "echo:53:",
        "no policy, red→other",
    );

    // Ingress on node 2, by namespace label.
    node1.ctl().apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-blue, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
",
    );
    wait_blocked(
        &mut from_red,
        Proto::Tcp,
        web.ip,
        80,
        "red→web under web-from-blue",
    );
    let (red_port_before, overlay_before) = (port_denied(node1, &red), overlay_denied(node2));
    assert_answers(
        &mut from_blue,
        Proto::Tcp,
        web.ip,
        80,
        "srv:80",
        "blue (team=blue)→web",
    );
    assert_blocked(&mut from_red, Proto::Tcp, web.ip, 80, "red (team=red)→web");
    assert_answers(
        &mut from_red,
        Proto::Tcp,
        dns.ip,
        80,
        "srv:80",
        "red→dns (not isolated)",
    );
    let (red_port_after, overlay_after) = (port_denied(node1, &red), overlay_denied(node2));
    assert!(
        overlay_after > overlay_before,
        "red→web was dropped by web's ingress, which node 2 judges: node 2's overlay \
         policy_denied should go up, but stayed {overlay_before}"
    );
    assert_eq!(
        red_port_after, red_port_before,
        "red→web is ingress-denied on node 2; node 1 must not count it on red's port"
    );

    // Default-deny egress for red, judged on node 1.
    node1.ctl().apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress, namespace: red}
spec:
  podSelector: {}
  policyTypes: [Egress]
",
    );
    wait_blocked(
        &mut from_red,
        Proto::Tcp,
        dns.ip,
        80,
        "red→dns under default-deny-egress",
    );
    let (red_port_before, overlay_before) = (port_denied(node1, &red), overlay_denied(node2));
    assert_blocked(
        &mut from_red,
        Proto::Tcp,
        dns.ip,
        80,
        "red→dns:80 (red's egress denies all)",
    );
    assert_blocked(
        &mut from_red,
        Proto::Udp,
        dns.ip,
        53,
        "red→dns UDP 53 (red's egress denies all)",
    );
    assert_blocked(
        &mut from_red,
        Proto::Udp,
        other.ip,
        53,
        "red→other UDP 53 (egress denies all)",
    );
    assert_answers(
        &mut from_blue,
        Proto::Tcp,
        dns.ip,
        80,
        "srv:80",
        "blue→dns (blue not isolated)",
    );
    let (red_port_after, overlay_after) = (port_denied(node1, &red), overlay_denied(node2));
    assert!(
        red_port_after > red_port_before,
        "red's egress is judged on node 1: policy_denied on red's port should go up, but \
         stayed {red_port_before}"
    );
    assert_eq!(
        overlay_after, overlay_before,
        "red's egress-denied packets must not reach node 2's overlay port at all"
    );

    // An egress ipBlock covering dns (a pod address), not other, UDP 53 only.
    let subnet2 = node2.subnet();
    node1.ctl().apply(&format!(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: dns-egress, namespace: red}}
spec:
  podSelector: {{}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {{cidr: {subnet2}, except: [{}/32]}}
    ports:
    - {{protocol: UDP, port: 53}}
",
        other.ip
    ));
    wait_answered(
        &mut from_red,
        Proto::Udp,
        dns.ip,
        53,
        "red→dns UDP 53 under dns-egress",
    );
    assert_answers(
        &mut from_red,
        Proto::Udp,
        dns.ip,
        53,
        "echo:53:",
        "red→dns UDP 53 (ipBlock)",
    );
    assert_blocked(
        &mut from_red,
        Proto::Udp,
        other.ip,
        53,
        &format!("red→other UDP 53 ({}/32 is in the except)", other.ip),
    );
    assert_blocked(
        &mut from_red,
        Proto::Tcp,
        dns.ip,
        80,
        "red→dns TCP 80 (the rule is UDP 53)",
    );
    assert_blocked(
        &mut from_red,
        Proto::Tcp,
        web.ip,
        80,
        "red→web (still denied both ways)",
    );
    eprintln!("cross_node_enforcement: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 3. ipBlock with except
// ---------------------------------------------------------------------------------------

/// A server taking ingress from the whole cluster CIDR as an ipBlock, except one
/// client's /32: that client is blocked (TCP and ping: the rule has no ports, so it
/// covers every protocol), the other client is allowed.
#[test]
fn ipblock_with_except() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let server = node.add_pod("default", "server");
    let barred = node.add_pod("default", "barred");
    let allowed = node.add_pod("default", "allowed");
    node.ctl()
        .apply(&pod_object(&server, &[("app", "server")], &[]));
    let _srv = PortServer::start(&server.netns, &[80], &[]);
    let mut from_barred = Prober::new(&barred.netns);
    let mut from_allowed = Prober::new(&allowed.netns);
    assert_answers(
        &mut from_barred,
        Proto::Tcp,
        server.ip,
        80,
        "srv:80",
        "no policy, barred",
    );
    assert_answers(
        &mut from_allowed,
        Proto::Tcp,
        server.ip,
        80,
        "srv:80",
        "no policy, allowed",
    );

    let cidr = cluster_cidr(node);
    node.ctl().apply(&format!(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: cluster-but-one, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: server}}}}
  ingress:
  - from:
    - ipBlock:
        cidr: {cidr}
        except: [{}/32]
",
        barred.ip
    ));
    wait_blocked(
        &mut from_barred,
        Proto::Tcp,
        server.ip,
        80,
        "barred→server under cluster-but-one",
    );
    assert_blocked(
        &mut from_barred,
        Proto::Tcp,
        server.ip,
        80,
        &format!("barred ({}/32 in except)→server", barred.ip),
    );
    assert_answers(
        &mut from_allowed,
        Proto::Tcp,
        server.ip,
        80,
        "srv:80",
        &format!("allowed ({} in {cidr}, not excepted)→server", allowed.ip),
    );
    assert!(
        ping_within(&allowed.netns, server.ip, PING_WITHIN),
        "allowed→server: ping (a rule without ports covers ICMP) got no answer"
    );
    assert!(
        !ping(&barred.netns, server.ip),
        "barred→server: ping answered although barred's address is excepted"
    );
    eprintln!("ipblock_with_except: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 4. A label change flips a verdict
// ---------------------------------------------------------------------------------------

/// With web admitting only role=client pods, an unlabelled client is blocked. Labelling
/// its Pod object lets a new connection through within 1 s; removing the label blocks
/// new connections again within 1 s, while a TCP connection opened in between keeps
/// carrying bytes both ways (established connections survive a policy change).
#[test]
fn label_change_flips_a_verdict_within_a_second() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let web = node.add_pod("default", "web");
    let client = node.add_pod("default", "client");
    node.ctl().apply(&format!(
        "{}---\n{}---\napiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-from-clients, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from:
    - podSelector: {{matchLabels: {{role: client}}}}
",
        pod_object(&web, &[("app", "web")], &[]),
        pod_object(&client, &[], &[]),
    ));
    let _srv = PortServer::start(&web.netns, &[80], &[]);
    let mut from_client = Prober::new(&client.netns);
    wait_blocked(
        &mut from_client,
        Proto::Tcp,
        web.ip,
        80,
        "unlabelled client→web",
    );
    assert_blocked(
        &mut from_client,
        Proto::Tcp,
        web.ip,
        80,
        "unlabelled client→web",
    );

    // Label it: allowed within 1 s.
    let apply_started = Instant::now();
    node.ctl()
        .apply(&pod_object(&client, &[("role", "client")], &[]));
    let applied = Instant::now();
    let allowed_after = poll_until(
        &mut from_client,
        Proto::Tcp,
        web.ip,
        80,
        true,
        applied,
        FLIP_WITHIN,
    )
    .unwrap_or_else(|| {
        panic!(
            "client labelled role=client: no new connection to web answered within {FLIP_WITHIN:?}"
        )
    });
    eprintln!(
        "label added: apply took {:?}, a new connection answered {allowed_after:?} after it",
        applied - apply_started
    );

    // An established connection, then the label goes.
    let conn = from_client
        .open(web.ip, 80, PROBE)
        .unwrap_or_else(|seen| panic!("labelled client→web should connect, but it {seen}"));
    assert_eq!(
        from_client.exchange(conn, "before", PROBE),
        Probe::Answered("before".to_owned()),
        "the established connection: echo before the label is removed"
    );
    node.ctl().apply(&pod_object(&client, &[], &[]));
    let applied = Instant::now();
    let blocked_after = poll_until(
        &mut from_client,
        Proto::Tcp,
        web.ip,
        80,
        false,
        applied,
        FLIP_WITHIN,
    )
    .unwrap_or_else(|| {
        panic!("label removed: new connections to web still answered after {FLIP_WITHIN:?}")
    });
    eprintln!("label removed: new connections blocked {blocked_after:?} after the apply");
    assert_blocked(
        &mut from_client,
        Proto::Tcp,
        web.ip,
        80,
        "client without the label→web",
    );
    for word in ["after", "still-there"] {
        assert_eq!(
            from_client.exchange(conn, word, PROBE),
            Probe::Answered(word.to_owned()),
            "the connection established before the label was removed must keep working"
        );
    }
    from_client.close(conn);
    assert_blocked(
        &mut from_client,
        Proto::Tcp,
        web.ip,
        80,
        "client without the label→web",
    );
    eprintln!(
        "label_change_flips_a_verdict_within_a_second: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 5. The node and the pod itself
// ---------------------------------------------------------------------------------------

/// b denies all ingress and all egress. Its own node still pings it and connects to it,
/// b still connects to its node, and b reaches its own address; pod a (same node) cannot
/// reach b nor b reach a, and another node's host address has no pass either.
#[test]
fn node_to_pod_and_pod_to_self_always_allowed() {
    let started = Instant::now();
    let cluster = Cluster::new(2);
    let (node1, node2) = (cluster.node(1), cluster.node(2));
    let a = node1.add_pod("default", "a");
    let b = node1.add_pod("default", "b");
    node1.ctl().apply(&pod_object(&b, &[("app", "b")], &[]));
    let gateway = node1.gateway();
    let _b_srv = PortServer::start(&b.netns, &[80], &[]);
    let _a_srv = PortServer::start(&a.netns, &[80], &[]);
    let _node_srv = PortServer::start(node1.netns(), &[8080], &[]);
    let mut from_a = Prober::new(&a.netns);
    let mut from_b = Prober::new(&b.netns);
    let mut from_node1 = Prober::new(node1.netns());
    let mut from_node2 = Prober::new(node2.netns());
    assert_answers(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "no policy, a→b",
    );
    assert_answers(
        &mut from_node2,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "no policy, node2→b",
    );

    node1.ctl().apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress, Egress]
",
    );
    wait_blocked(&mut from_a, Proto::Tcp, b.ip, 80, "a→b under isolate-b");

    // Its own node, both ways.
    assert!(
        ping_within(node1.netns(), b.ip, PING_WITHIN),
        "node1 (vsw0 {gateway})→b: ping must pass whatever the policy"
    );
    assert_answers(
        &mut from_node1,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "node1 (vsw0)→b:80",
    );
    assert_answers(
        &mut from_b,
        Proto::Tcp,
        gateway,
        8080,
        "srv:8080",
        "b→its node's vsw0:8080",
    );
    assert!(
        ping_within(&b.netns, gateway, PING_WITHIN),
        "b→its node's vsw0 {gateway}: ping must pass whatever the policy"
    );
    // Itself.
    assert_answers(
        &mut from_b,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "b→its own address",
    );
    assert!(
        ping_within(&b.netns, b.ip, PING_WITHIN),
        "b→its own address: ping"
    );
    // Everyone else.
    assert_blocked(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        80,
        "a→b (b denies all ingress)",
    );
    assert!(
        !ping(&a.netns, b.ip),
        "a→b: ping answered although b denies all ingress"
    );
    assert_blocked(
        &mut from_b,
        Proto::Tcp,
        a.ip,
        80,
        "b→a (b denies all egress)",
    );
    assert_blocked(
        &mut from_node2,
        Proto::Tcp,
        b.ip,
        80,
        "node2's host address→b (only b's own node has the pass)",
    );
    eprintln!(
        "node_to_pod_and_pod_to_self_always_allowed: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 6. An invalid policy document
// ---------------------------------------------------------------------------------------

/// A file whose third document has `matchExpressions: [{key: x, operator: In}]` (In
/// without values) is refused: a non-zero exit, an error naming the document and the
/// field path, nothing of the file stored (not even its two valid documents) and no
/// policy in force (a default-deny in the same file does not block anything).
#[test]
fn bad_policy_document_names_the_field() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let _srv = PortServer::start(&b.netns, &[80], &[]);
    let mut from_a = Prober::new(&a.netns);
    assert_answers(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "no policy, a→b",
    );
    let before = stored(node);

    let file = "apiVersion: v1
kind: Namespace
metadata: {name: fine, labels: {team: fine}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: default}
spec:
  podSelector: {}
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - {key: x, operator: In}
";
    let done = node.ctl().run_with_stdin(&["apply", "-f", "-"], file);
    assert!(
        !done.success(),
        "`apply` of a policy with `operator: In` and no values succeeded:\n{}{}",
        done.stdout,
        done.stderr
    );
    let field = "spec.ingress[0].from[0].podSelector.matchExpressions[0]";
    for (needle, what) in [
        ("document 3", "the document"),
        ("NetworkPolicy default/bad", "the object"),
        (field, "the field path"),
    ] {
        assert!(
            done.stderr.contains(needle),
            "the error does not name {what} (`{needle}`): stderr {:?}, stdout {:?}",
            done.stderr,
            done.stdout
        );
    }
    eprintln!("apply said: {}", done.stderr.trim_end());

    // Nothing applied: the store is as before, and the deny-all is not in force.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        stored(node),
        before,
        "a refused file changed the stored objects"
    );
    assert_answers(
        &mut from_a,
        Proto::Tcp,
        b.ip,
        80,
        "srv:80",
        "a→b after the refused deny-all",
    );
    eprintln!(
        "bad_policy_document_names_the_field: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 7. An IPv4 unicast packet in an L2 broadcast frame is still judged
// ---------------------------------------------------------------------------------------

/// A pod that b's ingress denies must not reach b whatever destination MAC it writes.
/// Pointing its neighbour entry for b at ff:ff:ff:ff:ff:ff (or a multicast MAC) makes
/// its IPv4 unicast packets L2 broadcasts; b's kernel accepts them (UDP and ICMP). The
/// switch judges such frames by their IP destination (this test found the bypass).
#[test]
fn unicast_ip_in_broadcast_frame_is_still_judged() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    node.ctl().apply(&format!(
        "{}---\napiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-b, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: b}}}}
  policyTypes: [Ingress]
",
        pod_object(&b, &[("app", "b")], &[])
    ));
    let _srv = PortServer::start(&b.netns, &[80], &[53]);
    let mut from_a = Prober::new(&a.netns);
    wait_blocked(&mut from_a, Proto::Tcp, b.ip, 80, "a→b under deny-b");
    assert_blocked(
        &mut from_a,
        Proto::Udp,
        b.ip,
        53,
        "a→b UDP 53, ordinary frames",
    );
    for mac in ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"] {
        a.netns.ip_ok(&[
            "neigh",
            "replace",
            &b.ip.to_string(),
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        assert_blocked(
            &mut from_a,
            Proto::Udp,
            b.ip,
            53,
            &format!("a→b UDP 53 sent to MAC {mac}"),
        );
        assert!(
            !ping(&a.netns, b.ip),
            "a→b: ping sent to MAC {mac} answered although b denies all ingress"
        );
    }
}
