//! Truth tables, written by hand from kubernetes.io's NetworkPolicy reference (not by
//! running the engine): the standard model (namespaces x, y, z; pods a, b, c in each;
//! see `super::model_yaml`) under one set of policies per case, every pair probed.
//!
//! A grid has the clients (sources) as rows and the servers (destinations) as columns,
//! both in the order xa xb xc ya yb yc za zb zc; `1` is allowed, `.` denied.

use std::net::Ipv4Addr;

use super::{compile, compile_with, ip, model_yaml, policy, HOST_N1, HOST_N2, PODS};
use crate::policy::conntrack::proto::{ICMP, SCTP, TCP, UDP};
use crate::policy::PolicySet;

const HEADER: &str = "xa xb xc ya yb yc za zb zc";

/// Checks every pair against `grid` for new connections to `port` over `protocol`.
#[track_caller]
fn check(set: &PolicySet, protocol: u8, port: u16, grid: &str) {
    let mut lines = grid.lines().map(str::trim).filter(|line| !line.is_empty());
    assert_eq!(lines.next(), Some(HEADER), "grid header");
    let mut expected = Vec::new();
    for (row, client) in PODS.iter().enumerate() {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("grid has no row {row}"));
        let mut cells = line.split_whitespace();
        assert_eq!(
            cells.next(),
            Some(client.replace('/', "").as_str()),
            "row label"
        );
        let cells: Vec<bool> = cells
            .map(|cell| match cell {
                "1" => true,
                "." => false,
                other => panic!("cell {other:?}"),
            })
            .collect();
        assert_eq!(cells.len(), 9, "row {client}");
        expected.push(cells);
    }
    assert_eq!(lines.next(), None, "grid has extra rows");
    let actual: Vec<Vec<bool>> = PODS
        .iter()
        .map(|client| {
            PODS.iter()
                .map(|server| set.allows(ip(client), ip(server), protocol, port))
                .collect()
        })
        .collect();
    if actual != expected {
        panic!(
            "protocol {protocol} port {port}\nexpected:\n{}\nactual:\n{}",
            render(&expected),
            render(&actual)
        );
    }
}

fn render(grid: &[Vec<bool>]) -> String {
    let mut text = format!("    {HEADER}\n");
    for (client, row) in PODS.iter().zip(grid) {
        text.push_str(&format!("{:<4}", client.replace('/', "")));
        for &cell in row {
            text.push_str(if cell { " 1 " } else { " . " });
        }
        text.push('\n');
    }
    text
}

const ALL: &str = "
    xa xb xc ya yb yc za zb zc
xa   1  1  1  1  1  1  1  1  1
xb   1  1  1  1  1  1  1  1  1
xc   1  1  1  1  1  1  1  1  1
ya   1  1  1  1  1  1  1  1  1
yb   1  1  1  1  1  1  1  1  1
yc   1  1  1  1  1  1  1  1  1
za   1  1  1  1  1  1  1  1  1
zb   1  1  1  1  1  1  1  1  1
zc   1  1  1  1  1  1  1  1  1
";

/// Nothing into x, but a pod to itself.
const DENY_INTO_X: &str = "
    xa xb xc ya yb yc za zb zc
xa   1  .  .  1  1  1  1  1  1
xb   .  1  .  1  1  1  1  1  1
xc   .  .  1  1  1  1  1  1  1
ya   .  .  .  1  1  1  1  1  1
yb   .  .  .  1  1  1  1  1  1
yc   .  .  .  1  1  1  1  1  1
za   .  .  .  1  1  1  1  1  1
zb   .  .  .  1  1  1  1  1  1
zc   .  .  .  1  1  1  1  1  1
";

/// Nothing out of x, but a pod to itself.
const DENY_OUT_OF_X: &str = "
    xa xb xc ya yb yc za zb zc
xa   1  .  .  .  .  .  .  .  .
xb   .  1  .  .  .  .  .  .  .
xc   .  .  1  .  .  .  .  .  .
ya   1  1  1  1  1  1  1  1  1
yb   1  1  1  1  1  1  1  1  1
yc   1  1  1  1  1  1  1  1  1
za   1  1  1  1  1  1  1  1  1
zb   1  1  1  1  1  1  1  1  1
zc   1  1  1  1  1  1  1  1  1
";

/// Only pods to themselves.
const SELF_ONLY: &str = "
    xa xb xc ya yb yc za zb zc
xa   1  .  .  .  .  .  .  .  .
xb   .  1  .  .  .  .  .  .  .
xc   .  .  1  .  .  .  .  .  .
ya   .  .  .  1  .  .  .  .  .
yb   .  .  .  .  1  .  .  .  .
yc   .  .  .  .  .  1  .  .  .
za   .  .  .  .  .  .  1  .  .
zb   .  .  .  .  .  .  .  1  .
zc   .  .  .  .  .  .  .  .  1
";

fn deny_ingress(namespace: &str) -> String {
    policy(
        namespace,
        "deny-ingress",
        "podSelector: {}\npolicyTypes: [Ingress]",
    )
}

fn deny_egress(namespace: &str) -> String {
    policy(
        namespace,
        "deny-egress",
        "podSelector: {}\npolicyTypes: [Egress]",
    )
}

/// An ingress policy on x/a with these `ingress` rules (block YAML at column 0).
fn ingress_to_xa(name: &str, rules: &str) -> String {
    policy(
        "x",
        name,
        &format!(
            "podSelector:\n  matchLabels:\n    pod: a\npolicyTypes: [Ingress]\ningress:\n{rules}"
        ),
    )
}

#[test]
fn no_policy_allows_everything() {
    let set = compile(&[]);
    check(&set, TCP, 80, ALL);
    check(&set, UDP, 81, ALL);
    check(&set, ICMP, 0, ALL);
    for pod in PODS {
        assert_eq!(set.is_isolated(ip(pod)), (false, false));
    }
    assert!(!set.isolates_any());
    let empty = PolicySet::empty();
    assert!(!empty.isolates_any());
    check(&empty, TCP, 80, ALL);
    assert!(empty.allows(Ipv4Addr::new(192, 0, 2, 1), ip("x/a"), TCP, 80));
}

#[test]
fn default_deny_ingress() {
    // "podSelector: {}" with policyTypes [Ingress] and no rules: every pod of x is
    // isolated for ingress and nothing is allowed in.
    let set = compile(&[deny_ingress("x")]);
    check(&set, TCP, 80, DENY_INTO_X);
    check(&set, UDP, 81, DENY_INTO_X);
    check(&set, ICMP, 0, DENY_INTO_X);
    assert_eq!(set.is_isolated(ip("x/b")), (true, false));
    assert_eq!(set.is_isolated(ip("y/b")), (false, false));
    assert!(set.isolates_any());
    // Without policyTypes and without rules, the effective type is Ingress alone.
    let implicit = compile(&[policy("x", "deny", "podSelector: {}")]);
    check(&implicit, TCP, 80, DENY_INTO_X);
}

#[test]
fn default_deny_egress() {
    let set = compile(&[deny_egress("x")]);
    check(&set, TCP, 80, DENY_OUT_OF_X);
    check(&set, ICMP, 0, DENY_OUT_OF_X);
    assert_eq!(set.is_isolated(ip("x/c")), (false, true));
}

#[test]
fn allow_all_ingress() {
    // An empty rule allows everything; the union with default deny is everything.
    let allow_all = policy("x", "allow-all", "podSelector: {}\ningress:\n- {}");
    let set = compile(&[deny_ingress("x"), allow_all]);
    check(&set, TCP, 80, ALL);
    check(&set, ICMP, 0, ALL);
    assert!(set.allows(Ipv4Addr::new(192, 0, 2, 1), ip("x/a"), TCP, 80));
    // An empty podSelector peer: every pod of the policy's namespace, no others.
    let same_namespace = policy(
        "x",
        "allow-same-namespace",
        "podSelector: {}\ningress:\n- from:\n  - podSelector: {}",
    );
    let set = compile(&[same_namespace]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   1  1  1  1  1  1  1  1  1
    ya   .  .  .  1  1  1  1  1  1
    yb   .  .  .  1  1  1  1  1  1
    yc   .  .  .  1  1  1  1  1  1
    za   .  .  .  1  1  1  1  1  1
    zb   .  .  .  1  1  1  1  1  1
    zc   .  .  .  1  1  1  1  1  1
    ",
    );
    // An empty namespaceSelector peer: every pod of every namespace (but no other IP).
    let all_pods = policy(
        "x",
        "allow-all-pods",
        "podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {}",
    );
    let set = compile(&[all_pods]);
    check(&set, TCP, 80, ALL);
    assert!(!set.allows(Ipv4Addr::new(192, 0, 2, 1), ip("x/a"), TCP, 80));
}

#[test]
fn pod_selector_peer() {
    // Pods labelled pod=b of the policy's own namespace: x/b, not y/b or z/b.
    let set = compile(&[ingress_to_xa(
        "from-b",
        "- from:\n  - podSelector:\n      matchLabels:\n        pod: b",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   .  1  1  1  1  1  1  1  1
    yb   .  1  1  1  1  1  1  1  1
    yc   .  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
    assert_eq!(set.is_isolated(ip("x/a")), (true, false));
    assert_eq!(set.is_isolated(ip("x/b")), (false, false));
}

#[test]
fn namespace_selector_peer() {
    let set = compile(&[ingress_to_xa(
        "from-y",
        "- from:\n  - namespaceSelector:\n      matchLabels:\n        ns: y",
    )]);
    let from_y = "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   .  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ";
    check(&set, TCP, 80, from_y);
    // The automatic label kubernetes.io/metadata.name selects the same namespace.
    let set = compile(&[ingress_to_xa(
        "from-y",
        "- from:\n  - namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: y",
    )]);
    check(&set, TCP, 80, from_y);
}

#[test]
fn both_selectors_in_one_peer_is_and_two_peers_is_or() {
    let and = compile(&[ingress_to_xa(
        "and",
        "- from:
  - namespaceSelector:
      matchLabels:
        ns: y
    podSelector:
      matchLabels:
        pod: b",
    )]);
    check(
        &and,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   .  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   .  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   .  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
    let or = compile(&[ingress_to_xa(
        "or",
        "- from:
  - namespaceSelector:
      matchLabels:
        ns: y
  - podSelector:
      matchLabels:
        pod: b",
    )]);
    check(
        &or,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
}

#[test]
fn match_expressions() {
    // In: every pod of x, from namespaces with ns in [y].
    let set = compile(&[policy(
        "x",
        "in",
        "podSelector: {}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns, operator: In, values: [y]}",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  .  .  1  1  1  1  1  1
    xb   .  1  .  1  1  1  1  1  1
    xc   .  .  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   .  .  .  1  1  1  1  1  1
    zb   .  .  .  1  1  1  1  1  1
    zc   .  .  .  1  1  1  1  1  1
    ",
    );
    // NotIn: to x/a from every pod (any namespace) whose pod label is not b.
    let set = compile(&[ingress_to_xa(
        "not-in",
        "- from:
  - namespaceSelector: {}
    podSelector:
      matchExpressions:
      - {key: pod, operator: NotIn, values: [b]}",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   .  1  1  1  1  1  1  1  1
    xc   1  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   .  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    // Exists: only namespace z has an env label.
    let set = compile(&[ingress_to_xa(
        "exists",
        "- from:
  - namespaceSelector:
      matchExpressions:
      - {key: env, operator: Exists}",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   .  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   .  1  1  1  1  1  1  1  1
    yb   .  1  1  1  1  1  1  1  1
    yc   .  1  1  1  1  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    // DoesNotExist: namespaces x and y.
    let set = compile(&[ingress_to_xa(
        "does-not-exist",
        "- from:
  - namespaceSelector:
      matchExpressions:
      - {key: env, operator: DoesNotExist}",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   1  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
}

#[test]
fn ip_block_with_except_matches_pod_addresses() {
    // 10.244.1.0/24 holds the a and b pods (node n1); the except block 10.244.1.16/28
    // (.16 to .31) holds y/a (.21), y/b (.22) and z/a (.31).
    let set = compile(&[ingress_to_xa(
        "ip-block",
        "- from:
  - ipBlock:
      cidr: 10.244.1.0/24
      except: [10.244.1.16/28]",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   .  1  1  1  1  1  1  1  1
    yb   .  1  1  1  1  1  1  1  1
    yc   .  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
    // An address outside the pod network, inside and outside the block.
    assert!(set.allows_ingress(Ipv4Addr::new(10, 244, 1, 200), ip("x/a"), TCP, 80));
    assert!(!set.allows_ingress(Ipv4Addr::new(10, 244, 1, 20), ip("x/a"), TCP, 80));
    assert!(!set.allows_ingress(Ipv4Addr::new(192, 0, 2, 1), ip("x/a"), TCP, 80));

    // Egress from x/a to 10.244.2.0/24: the c pods of node n2.
    let set = compile(&[policy(
        "x",
        "to-n2",
        "podSelector:
  matchLabels:
    pod: a
policyTypes: [Egress]
egress:
- to:
  - ipBlock:
      cidr: 10.244.2.0/24",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  .  1  .  .  1  .  .  1
    xb   1  1  1  1  1  1  1  1  1
    xc   1  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    assert!(set.allows_egress(ip("x/a"), Ipv4Addr::new(10, 244, 2, 99), TCP, 80));
    assert!(!set.allows_egress(ip("x/a"), Ipv4Addr::new(8, 8, 8, 8), TCP, 80));
}

#[test]
fn numeric_ports_and_protocols() {
    let into_x = |ports: &str| {
        compile(&[policy(
            "x",
            "ports",
            &format!("podSelector: {{}}\ningress:\n- ports:\n{ports}"),
        )])
    };
    // port 80, protocol TCP by default.
    let set = into_x("  - port: 80");
    check(&set, TCP, 80, ALL);
    check(&set, TCP, 81, DENY_INTO_X);
    check(&set, UDP, 80, DENY_INTO_X);
    check(&set, SCTP, 80, DENY_INTO_X);
    // A rule with ports never matches ICMP (it has no ports).
    check(&set, ICMP, 0, DENY_INTO_X);
    // A rule without peers matches any source, pod or not.
    assert!(set.allows(Ipv4Addr::new(192, 0, 2, 1), ip("x/a"), TCP, 80));

    // endPort: the range 79..=81.
    let set = into_x("  - port: 79\n    endPort: 81");
    check(&set, TCP, 78, DENY_INTO_X);
    check(&set, TCP, 79, ALL);
    check(&set, TCP, 80, ALL);
    check(&set, TCP, 81, ALL);
    check(&set, TCP, 82, DENY_INTO_X);

    // UDP 81 allows UDP, not TCP.
    let set = into_x("  - protocol: UDP\n    port: 81");
    check(&set, UDP, 81, ALL);
    check(&set, TCP, 81, DENY_INTO_X);
    check(&set, UDP, 80, DENY_INTO_X);

    // SCTP without a port: every SCTP port, nothing else.
    let set = into_x("  - protocol: SCTP");
    check(&set, SCTP, 80, ALL);
    check(&set, SCTP, 65535, ALL);
    check(&set, TCP, 80, DENY_INTO_X);
    check(&set, UDP, 81, DENY_INTO_X);

    // A rule without ports allows every protocol, ICMP included.
    let set = compile(&[policy(
        "x",
        "from-x",
        "podSelector: {}\ningress:\n- from:\n  - podSelector: {}",
    )]);
    let from_x_only = "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   1  1  1  1  1  1  1  1  1
    ya   .  .  .  1  1  1  1  1  1
    yb   .  .  .  1  1  1  1  1  1
    yc   .  .  .  1  1  1  1  1  1
    za   .  .  .  1  1  1  1  1  1
    zb   .  .  .  1  1  1  1  1  1
    zc   .  .  .  1  1  1  1  1  1
    ";
    check(&set, ICMP, 0, from_x_only);
    check(&set, SCTP, 7, from_x_only);
    check(&set, 47, 0, from_x_only);
}

#[test]
fn named_ports_ingress() {
    let into_x = |ports: &str| {
        compile(&[policy(
            "x",
            "named",
            &format!("podSelector: {{}}\ningress:\n- ports:\n{ports}"),
        )])
    };
    let set = into_x("  - port: serve-80-tcp");
    check(&set, TCP, 80, ALL);
    check(&set, TCP, 81, DENY_INTO_X);
    check(&set, UDP, 80, DENY_INTO_X);
    let set = into_x("  - port: serve-81-udp\n    protocol: UDP");
    check(&set, UDP, 81, ALL);
    check(&set, UDP, 80, DENY_INTO_X);
    check(&set, TCP, 81, DENY_INTO_X);
    // The name with the wrong protocol (TCP, the default) resolves to nothing.
    let set = into_x("  - port: serve-81-udp");
    check(&set, TCP, 81, DENY_INTO_X);
    check(&set, UDP, 81, DENY_INTO_X);
    // A name no container has.
    let set = into_x("  - port: nothing");
    check(&set, TCP, 80, DENY_INTO_X);
}

#[test]
fn named_ports_egress() {
    let set = compile(&[policy(
        "x",
        "named-out",
        "podSelector: {}\npolicyTypes: [Egress]\negress:\n- ports:\n  - port: serve-80-tcp",
    )]);
    check(&set, TCP, 80, ALL);
    check(&set, TCP, 81, DENY_OUT_OF_X);
    check(&set, UDP, 80, DENY_OUT_OF_X);
    // A named port never matches a destination that is not a pod.
    assert!(!set.allows_egress(ip("x/a"), Ipv4Addr::new(192, 0, 2, 1), TCP, 80));
    // A numeric one does.
    let set = compile(&[policy(
        "x",
        "numeric-out",
        "podSelector: {}\npolicyTypes: [Egress]\negress:\n- ports:\n  - port: 80",
    )]);
    check(&set, TCP, 80, ALL);
    assert!(set.allows_egress(ip("x/a"), Ipv4Addr::new(192, 0, 2, 1), TCP, 80));
}

#[test]
fn named_ports_resolve_on_the_destination_pod() {
    // z/c's serve-80-tcp is 8080; every other pod's is 80.
    let model = model_yaml();
    let z_c = model.find(&format!("podIP: {}", ip("z/c"))).unwrap();
    let start = model[..z_c].rfind("kind: Pod").unwrap();
    let pod = model[start..z_c].replace("containerPort: 80\n", "containerPort: 8080\n");
    let model = format!("{}{pod}{}", &model[..start], &model[z_c..]);
    // Ingress: into z, on serve-80-tcp.
    let set = compile_with(
        &model,
        &[policy(
            "z",
            "named",
            "podSelector: {}\ningress:\n- ports:\n  - port: serve-80-tcp",
        )],
    );
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  .
    xb   1  1  1  1  1  1  1  1  .
    xc   1  1  1  1  1  1  1  1  .
    ya   1  1  1  1  1  1  1  1  .
    yb   1  1  1  1  1  1  1  1  .
    yc   1  1  1  1  1  1  1  1  .
    za   1  1  1  1  1  1  1  1  .
    zb   1  1  1  1  1  1  1  1  .
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    check(
        &set,
        TCP,
        8080,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  .  .  1
    xb   1  1  1  1  1  1  .  .  1
    xc   1  1  1  1  1  1  .  .  1
    ya   1  1  1  1  1  1  .  .  1
    yb   1  1  1  1  1  1  .  .  1
    yc   1  1  1  1  1  1  .  .  1
    za   1  1  1  1  1  1  1  .  1
    zb   1  1  1  1  1  1  .  1  1
    zc   1  1  1  1  1  1  .  .  1
    ",
    );
    // Egress: out of x/a, on serve-80-tcp of the remote pod.
    let set = compile_with(
        &model,
        &[policy(
            "x",
            "named-out",
            "podSelector:\n  matchLabels:\n    pod: a\npolicyTypes: [Egress]\negress:\n- ports:\n  - port: serve-80-tcp",
        )],
    );
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  .
    xb   1  1  1  1  1  1  1  1  1
    xc   1  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    check(
        &set,
        TCP,
        8080,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  .  .  .  .  .  .  .  1
    xb   1  1  1  1  1  1  1  1  1
    xc   1  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
}

#[test]
fn policy_types_egress_only() {
    // policyTypes [Egress]: the ingress rules are not in force, and the pods are not
    // isolated for ingress.
    let set = compile(&[policy(
        "x",
        "egress-only",
        "podSelector: {}
policyTypes: [Egress]
ingress:
- from:
  - podSelector:
      matchLabels:
        pod: a
egress:
- to:
  - namespaceSelector:
      matchLabels:
        ns: y",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  .  .  1  1  1  .  .  .
    xb   .  1  .  1  1  1  .  .  .
    xc   .  .  1  1  1  1  .  .  .
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    assert_eq!(set.is_isolated(ip("x/a")), (false, true));

    // No policyTypes but egress rules: Ingress and Egress are both in force, so x/a,
    // with no ingress rules, takes nothing in.
    let set = compile(&[policy(
        "x",
        "implicit",
        "podSelector:
  matchLabels:
    pod: a
egress:
- to:
  - podSelector:
      matchLabels:
        pod: b",
    )]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  .  .  .  .  .  .  .
    xb   .  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   .  1  1  1  1  1  1  1  1
    yb   .  1  1  1  1  1  1  1  1
    yc   .  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
    assert_eq!(set.is_isolated(ip("x/a")), (true, true));
}

#[test]
fn multiple_policies_union() {
    let from_b = ingress_to_xa(
        "from-b",
        "- from:\n  - podSelector:\n      matchLabels:\n        pod: b",
    );
    let from_z = ingress_to_xa(
        "from-z",
        "- from:\n  - namespaceSelector:\n      matchLabels:\n        ns: z",
    );
    let set = compile(&[from_b, from_z]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   .  1  1  1  1  1  1  1  1
    yb   .  1  1  1  1  1  1  1  1
    yc   .  1  1  1  1  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    // Each policy's peers go with its own ports: x/b on 80, namespace y on 81.
    let b_on_80 = ingress_to_xa(
        "b-on-80",
        "- from:\n  - podSelector:\n      matchLabels:\n        pod: b\n  ports:\n  - port: 80",
    );
    let y_on_81 = ingress_to_xa(
        "y-on-81",
        "- from:\n  - namespaceSelector:\n      matchLabels:\n        ns: y\n  ports:\n  - port: 81",
    );
    let set = compile(&[b_on_80, y_on_81]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   1  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   .  1  1  1  1  1  1  1  1
    yb   .  1  1  1  1  1  1  1  1
    yc   .  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
    check(
        &set,
        TCP,
        81,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  1  1  1  1  1  1  1  1
    xb   .  1  1  1  1  1  1  1  1
    xc   .  1  1  1  1  1  1  1  1
    ya   1  1  1  1  1  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  1  1  1  1  1
    za   .  1  1  1  1  1  1  1  1
    zb   .  1  1  1  1  1  1  1  1
    zc   .  1  1  1  1  1  1  1  1
    ",
    );
}

#[test]
fn egress_and_ingress_both_needed() {
    // x/a may send only to namespace y; y/b takes only from namespace z.
    let out_of_xa = policy(
        "x",
        "xa-to-y",
        "podSelector:
  matchLabels:
    pod: a
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector:
      matchLabels:
        ns: y",
    );
    let into_yb = policy(
        "y",
        "yb-from-z",
        "podSelector:
  matchLabels:
    pod: b
ingress:
- from:
  - namespaceSelector:
      matchLabels:
        ns: z",
    );
    let set = compile(&[out_of_xa, into_yb]);
    check(
        &set,
        TCP,
        80,
        "
        xa xb xc ya yb yc za zb zc
    xa   1  .  .  1  .  1  .  .  .
    xb   1  1  1  1  .  1  1  1  1
    xc   1  1  1  1  .  1  1  1  1
    ya   1  1  1  1  .  1  1  1  1
    yb   1  1  1  1  1  1  1  1  1
    yc   1  1  1  1  .  1  1  1  1
    za   1  1  1  1  1  1  1  1  1
    zb   1  1  1  1  1  1  1  1  1
    zc   1  1  1  1  1  1  1  1  1
    ",
    );
    // Each half on its own.
    assert!(set.allows_egress(ip("x/a"), ip("y/b"), TCP, 80));
    assert!(!set.allows_ingress(ip("x/a"), ip("y/b"), TCP, 80));
    assert!(!set.allows_egress(ip("x/a"), ip("z/b"), TCP, 80));
    assert!(set.allows_ingress(ip("x/a"), ip("z/b"), TCP, 80));
}

#[test]
fn a_pod_to_itself() {
    let mut policies = Vec::new();
    for ns in ["x", "y", "z"] {
        policies.push(policy(
            ns,
            "deny-all",
            "podSelector: {}\npolicyTypes: [Ingress, Egress]",
        ));
    }
    let set = compile(&policies);
    check(&set, TCP, 80, SELF_ONLY);
    check(&set, UDP, 81, SELF_ONLY);
    check(&set, ICMP, 0, SELF_ONLY);
    for pod in PODS {
        assert!(set.allows_egress(ip(pod), ip(pod), TCP, 1));
        assert!(set.allows_ingress(ip(pod), ip(pod), TCP, 1));
        assert_eq!(set.is_isolated(ip(pod)), (true, true));
    }
}

#[test]
fn host_address_always_reaches_its_own_nodes_pods() {
    let mut policies = Vec::new();
    for ns in ["x", "y", "z"] {
        policies.push(policy(
            ns,
            "deny-all",
            "podSelector: {}\npolicyTypes: [Ingress, Egress]",
        ));
    }
    let set = compile(&policies);
    // Rows: the host addresses of n1 and n2 and an outside address; columns: the pods
    // (a and b on n1, c on n2). Both directions must agree.
    let outside = Ipv4Addr::new(192, 0, 2, 1);
    let table: [(Ipv4Addr, &str); 3] = [
        //        xa xb xc ya yb yc za zb zc
        (HOST_N1, "1  1  .  1  1  .  1  1  ."),
        (HOST_N2, ".  .  1  .  .  1  .  .  1"),
        (outside, ".  .  .  .  .  .  .  .  ."),
    ];
    for (address, row) in table {
        let expected: Vec<bool> = row.split_whitespace().map(|cell| cell == "1").collect();
        for (pod, expected) in PODS.iter().zip(expected) {
            assert_eq!(
                set.allows(address, ip(pod), TCP, 10250),
                expected,
                "{address} to {pod}"
            );
            assert_eq!(
                set.allows_ingress(address, ip(pod), ICMP, 0),
                expected,
                "{address} to {pod} (ICMP)"
            );
            assert_eq!(
                set.allows(ip(pod), address, UDP, 53),
                expected,
                "{pod} to {address}"
            );
        }
    }
    // A pod's node's host address is not a pod: it has no policy of its own.
    assert_eq!(set.is_isolated(HOST_N1), (false, false));
    assert!(set.allows_egress(HOST_N1, ip("x/c"), TCP, 80));
    assert!(set.allows_ingress(ip("x/c"), HOST_N1, TCP, 80));
}
