//! Cost of NetworkPolicy: a verdict on a new flow (`PolicySet::allows`, both ends' policy)
//! and compiling the policy, on a cluster of 10,000 pods and 1,000 policies.
//!
//! The cluster: 100 namespaces of 100 pods, namespace `ns-NNN` on node `NNN` (pods at
//! 10.244.NNN.2 and up). Pods are `app` web, api, db, cache or worker, each with a named
//! port (`http`, `grpc`, `pg`, `redis`, `jobs`) and `metrics`. Every namespace has ten
//! policies, the mix a real cluster has: default deny for ingress and for egress, DNS
//! egress to the `ns-000` namespace, web open to everyone on `http`, api from web on
//! `grpc`, db from api of the same team's namespaces on `pg`, metrics from prod
//! namespaces (`matchExpressions`), egress to the internet on 443 (an `ipBlock` with
//! `except`), egress within the namespace, and egress to a port range in the team's
//! namespaces.
//!
//! The flows: 4,096 pseudo-random (fixed seed) client/server pairs: half within a
//! namespace, half across, one in 16 to an address outside the cluster; half to the
//! server's own port, half to other ports and protocols (metrics, DNS, HTTPS, ICMP). The
//! verdicts are a mix of allowed and denied (the bench prints how many are allowed).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vswitch::ipnet::Ipv4Net;
use vswitch::k8s::{
    Container, ContainerPort, IpBlock, LabelSelector, LabelSelectorRequirement, NetworkPolicy,
    NetworkPolicySpec, ObjectMeta, Peer, Pod, PolicyPort, PolicyRule, PolicyType, PortMatch,
    Protocol, SelectorOperator,
};
use vswitch::policy::conntrack::proto;
use vswitch::policy::{PodInfo, PolicyModel, PolicySet};

const NAMESPACES: u8 = 100;
const PODS_PER_NAMESPACE: u8 = 100;
const FLOWS: usize = 4096;

/// (app, named port, its number).
const APPS: [(&str, &str, u16); 5] = [
    ("web", "http", 8080),
    ("api", "grpc", 9090),
    ("db", "pg", 5432),
    ("cache", "redis", 6379),
    ("worker", "jobs", 7000),
];

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn select(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}

fn namespace_name(n: u8) -> String {
    format!("ns-{n:03}")
}

fn team(n: u8) -> String {
    format!("team-{}", n % 10)
}

fn env(n: u8) -> &'static str {
    match n % 3 {
        0 => "prod",
        1 => "staging",
        _ => "dev",
    }
}

fn pod_ip(namespace: u8, pod: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, namespace, pod + 2)
}

fn tcp(port: PortMatch) -> PolicyPort {
    PolicyPort {
        protocol: Protocol::Tcp,
        port: Some(port),
    }
}

fn named(name: &str) -> PolicyPort {
    tcp(PortMatch::Named(name.to_owned()))
}

fn number(port: u16, end_port: Option<u16>) -> PortMatch {
    PortMatch::Number { port, end_port }
}

fn policy(namespace: u8, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: name.to_owned(),
            namespace: namespace_name(namespace),
            labels: BTreeMap::new(),
        },
        spec,
    }
}

fn spec(
    pods: LabelSelector,
    types: &[PolicyType],
    ingress: Vec<PolicyRule>,
    egress: Vec<PolicyRule>,
) -> NetworkPolicySpec {
    NetworkPolicySpec {
        pod_selector: pods,
        policy_types: Some(types.to_vec()),
        ingress,
        egress,
    }
}

fn net(text: &str) -> Ipv4Net {
    text.parse().expect("a valid CIDR")
}

/// The ten policies of namespace `n`.
fn policies_of(n: u8) -> Vec<NetworkPolicy> {
    use PolicyType::{Egress, Ingress};
    let all = LabelSelector::default;
    let same_team = select(&[("team", &team(n))]);
    vec![
        policy(
            n,
            "default-deny-ingress",
            spec(all(), &[Ingress], vec![], vec![]),
        ),
        policy(
            n,
            "default-deny-egress",
            spec(all(), &[Egress], vec![], vec![]),
        ),
        policy(
            n,
            "allow-dns",
            spec(
                all(),
                &[Egress],
                vec![],
                vec![PolicyRule {
                    peers: vec![Peer::PodsInNamespaces {
                        pods: select(&[("app", "worker")]),
                        namespaces: select(&[("kubernetes.io/metadata.name", "ns-000")]),
                    }],
                    ports: vec![
                        PolicyPort {
                            protocol: Protocol::Udp,
                            port: Some(number(53, None)),
                        },
                        tcp(number(53, None)),
                    ],
                }],
            ),
        ),
        policy(
            n,
            "web-open",
            spec(
                select(&[("app", "web")]),
                &[Ingress],
                vec![PolicyRule {
                    peers: vec![],
                    ports: vec![named("http")],
                }],
                vec![],
            ),
        ),
        policy(
            n,
            "api-from-web",
            spec(
                select(&[("app", "api")]),
                &[Ingress],
                vec![PolicyRule {
                    peers: vec![Peer::Pods(select(&[("app", "web")]))],
                    ports: vec![named("grpc")],
                }],
                vec![],
            ),
        ),
        policy(
            n,
            "db-from-team-api",
            spec(
                select(&[("app", "db")]),
                &[Ingress],
                vec![PolicyRule {
                    peers: vec![Peer::PodsInNamespaces {
                        pods: select(&[("app", "api")]),
                        namespaces: same_team.clone(),
                    }],
                    ports: vec![named("pg")],
                }],
                vec![],
            ),
        ),
        policy(
            n,
            "metrics-from-prod",
            spec(
                all(),
                &[Ingress],
                vec![PolicyRule {
                    peers: vec![Peer::Namespaces(LabelSelector {
                        match_labels: BTreeMap::new(),
                        match_expressions: vec![LabelSelectorRequirement {
                            key: "env".to_owned(),
                            operator: SelectorOperator::In,
                            values: vec!["prod".to_owned()],
                        }],
                    })],
                    ports: vec![named("metrics")],
                }],
                vec![],
            ),
        ),
        policy(
            n,
            "internet-https",
            spec(
                LabelSelector {
                    match_labels: BTreeMap::new(),
                    match_expressions: vec![LabelSelectorRequirement {
                        key: "app".to_owned(),
                        operator: SelectorOperator::NotIn,
                        values: vec!["db".to_owned(), "cache".to_owned()],
                    }],
                },
                &[Egress],
                vec![],
                vec![PolicyRule {
                    peers: vec![Peer::IpBlock(IpBlock {
                        cidr: net("0.0.0.0/0"),
                        except: vec![
                            net("10.0.0.0/8"),
                            net("172.16.0.0/12"),
                            net("192.168.0.0/16"),
                        ],
                    })],
                    ports: vec![tcp(number(443, None))],
                }],
            ),
        ),
        policy(
            n,
            "egress-in-namespace",
            spec(
                all(),
                &[Egress],
                vec![],
                vec![PolicyRule {
                    peers: vec![Peer::Pods(all())],
                    ports: vec![],
                }],
            ),
        ),
        policy(
            n,
            "egress-team-range",
            spec(
                select(&[("app", "api")]),
                &[Egress],
                vec![],
                vec![PolicyRule {
                    peers: vec![Peer::Namespaces(same_team)],
                    ports: vec![tcp(number(5000, Some(9999)))],
                }],
            ),
        ),
    ]
}

fn model() -> PolicyModel {
    let mut model = PolicyModel::default();
    for n in 0..NAMESPACES {
        let name = namespace_name(n);
        model.namespaces.insert(
            name.clone(),
            labels(&[
                ("kubernetes.io/metadata.name", &name),
                ("team", &team(n)),
                ("env", env(n)),
            ]),
        );
        let node = format!("node-{n:03}");
        model
            .host_addresses
            .insert(node.clone(), Ipv4Addr::new(10, 244, n, 1));
        for p in 0..PODS_PER_NAMESPACE {
            let (app, port_name, port) = APPS
                .get(usize::from(p) % APPS.len())
                .copied()
                .expect("an app for every pod");
            let pod_labels = labels(&[("app", app), ("pod-template-hash", &format!("h{}", p % 7))]);
            let pod = Pod {
                metadata: ObjectMeta {
                    name: format!("{app}-{p}"),
                    namespace: name.clone(),
                    labels: pod_labels.clone(),
                },
                containers: vec![Container {
                    name: Some(app.to_owned()),
                    ports: vec![
                        ContainerPort {
                            name: Some(port_name.to_owned()),
                            container_port: port,
                            protocol: Protocol::Tcp,
                        },
                        ContainerPort {
                            name: Some("metrics".to_owned()),
                            container_port: 9100,
                            protocol: Protocol::Tcp,
                        },
                    ],
                }],
                pod_ip: Some(pod_ip(n, p)),
            };
            model.pods.push(PodInfo {
                namespace: name.clone(),
                name: pod.metadata.name.clone(),
                ip: pod_ip(n, p),
                labels: pod_labels,
                pod: Some(pod),
                node: Some(node.clone()),
            });
        }
        model.policies.extend(policies_of(n));
    }
    model
}

/// xorshift64: the same flows on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn byte_below(&mut self, n: u8) -> u8 {
        u8::try_from(self.below(u64::from(n))).unwrap_or(0)
    }
}

fn flows() -> Vec<(Ipv4Addr, Ipv4Addr, u8, u16)> {
    const OTHER_PORTS: [(u8, u16); 6] = [
        (proto::TCP, 9100),
        (proto::TCP, 443),
        (proto::UDP, 53),
        (proto::TCP, 6000),
        (proto::TCP, 80),
        (proto::ICMP, 0),
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    (0..FLOWS)
        .map(|i| {
            let src_namespace = rng.byte_below(NAMESPACES);
            let src = pod_ip(src_namespace, rng.byte_below(PODS_PER_NAMESPACE));
            let dst_pod = rng.byte_below(PODS_PER_NAMESPACE);
            let dst = if i % 16 == 0 {
                Ipv4Addr::new(93, 184, 216, rng.byte_below(255))
            } else if rng.below(2) == 0 {
                pod_ip(src_namespace, dst_pod)
            } else {
                pod_ip(rng.byte_below(NAMESPACES), dst_pod)
            };
            // Half the flows go to the server's own port, half elsewhere.
            let (protocol, port) = if rng.below(2) == 0 {
                let (_, _, port) = APPS
                    .get(usize::from(dst_pod) % APPS.len())
                    .copied()
                    .expect("an app for every pod");
                (proto::TCP, port)
            } else {
                usize::try_from(rng.below(6))
                    .ok()
                    .and_then(|i| OTHER_PORTS.get(i).copied())
                    .expect("a port for every flow")
            };
            (src, dst, protocol, port)
        })
        .collect()
}

fn verdicts(c: &mut Criterion) {
    let set = PolicySet::compile(&model());
    let flows = flows();
    let allowed = flows
        .iter()
        .filter(|&&(src, dst, protocol, port)| set.allows(src, dst, protocol, port))
        .count();
    eprintln!("policy bench: {allowed} of {} flows allowed", flows.len());
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));
    let mut cycle = flows.iter().cycle();
    group.bench_function("allows_new_flow", |b| {
        b.iter(|| {
            let &(src, dst, protocol, port) = cycle.next().expect("an endless cycle");
            black_box(set.allows(black_box(src), black_box(dst), protocol, port))
        })
    });
    group.finish();
}

fn compile(c: &mut Criterion) {
    let model = model();
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("compile_10k_pods_1k_policies", |b| {
        b.iter_with_large_drop(|| PolicySet::compile(black_box(&model)))
    });
    group.finish();
}

criterion_group!(benches, verdicts, compile);
criterion_main!(benches);
