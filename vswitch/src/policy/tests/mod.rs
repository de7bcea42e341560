//! Tests of the policy engine: truth tables written by hand from kubernetes.io's
//! NetworkPolicy reference ([`truth_tables`]), and the model and compiler's own rules
//! ([`model`]).

mod model;
mod truth_tables;

use std::net::Ipv4Addr;

use crate::k8s::{parse_documents, Object};
use crate::policy::model::{PodInfo, PolicyModel};
use crate::policy::PolicySet;

/// The nine pods of the standard model, in grid order.
pub(super) const PODS: [&str; 9] = [
    "x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c",
];

/// The host address of node `n1` (pods `a` and `b`) and of node `n2` (pods `c`).
pub(super) const HOST_N1: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
pub(super) const HOST_N2: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 1);

/// The address of pod `ns/name` of the standard model: namespace x, y, z is 1, 2, 3 and
/// pod a, b, c is 1, 2, 3; pods a and b live on node n1 (10.244.1.0/24), pods c on n2
/// (10.244.2.0/24); the last octet is 10 × namespace + pod.
pub(super) fn ip(pod: &str) -> Ipv4Addr {
    let (namespace, name) = pod.split_once('/').unwrap();
    let ns = match namespace {
        "x" => 1,
        "y" => 2,
        "z" => 3,
        other => panic!("namespace {other}"),
    };
    let (node, p) = match name {
        "a" => (1, 1),
        "b" => (1, 2),
        "c" => (2, 3),
        other => panic!("pod {other}"),
    };
    Ipv4Addr::new(10, 244, node, 10 * ns + p)
}

/// The node of pod `ns/name`.
pub(super) fn node(pod: &str) -> &'static str {
    if pod.ends_with("/c") {
        "n2"
    } else {
        "n1"
    }
}

/// The standard model as documents: namespaces x, y, z labelled `ns=<name>` (z also
/// `env=prod`), and in each pods a, b, c labelled `pod=<name>` with the container ports
/// `serve-80-tcp` (80/TCP) and `serve-81-udp` (81/UDP), at [`ip`].
pub(super) fn model_yaml() -> String {
    let mut text = String::new();
    for ns in ["x", "y", "z"] {
        let extra = if ns == "z" { "\n    env: prod" } else { "" };
        text.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    ns: {ns}{extra}\n---\n"
        ));
    }
    for pod in PODS {
        let (ns, name) = pod.split_once('/').unwrap();
        text.push_str(&format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels:
    pod: {name}
spec:
  containers:
  - name: serve
    ports:
    - name: serve-80-tcp
      containerPort: 80
    - name: serve-81-udp
      containerPort: 81
      protocol: UDP
status:
  podIP: {ip}
---
",
            ip = ip(pod)
        ));
    }
    text
}

pub(super) fn parse(text: &str) -> Vec<Object> {
    match parse_documents(text) {
        Ok(objects) => objects,
        Err(error) => panic!("{error}\n{text}"),
    }
}

/// A `NetworkPolicy` document: `spec` is block YAML at column 0, indented here.
pub(super) fn policy(namespace: &str, name: &str, spec: &str) -> String {
    let mut text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
    );
    for line in spec.lines().filter(|line| !line.trim().is_empty()) {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("---\n");
    text
}

/// The model of `model` (documents) with `policies` (documents), its pods at their
/// `podIP`s on their nodes, and the two host addresses.
pub(super) fn compile_with(model: &str, policies: &[String]) -> PolicySet {
    let mut objects = parse(model);
    let pods: Vec<PodInfo> = objects
        .iter()
        .filter_map(|object| match object {
            Object::Pod(pod) => PodInfo::from_pod(pod),
            _ => None,
        })
        .map(|mut info| {
            info.node = Some(node(&info.full_name()).to_owned());
            info
        })
        .collect();
    objects.extend(parse(&policies.concat()));
    let mut model = PolicyModel::from_objects(&objects, pods);
    model.host_addresses.insert("n1".to_owned(), HOST_N1);
    model.host_addresses.insert("n2".to_owned(), HOST_N2);
    PolicySet::compile(&model)
}

/// The standard model with `policies`.
pub(super) fn compile(policies: &[String]) -> PolicySet {
    compile_with(&model_yaml(), policies)
}
