//! The model and the compiler's own rules: how objects merge into a model, the
//! automatic namespace label, pods sharing an address, and the offline matrix's checks.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{ip, model_yaml, parse, policy, PODS};
use crate::k8s::Protocol;
use crate::policy::conntrack::proto::TCP;
use crate::policy::matrix::{evaluate, Input, ModelError};
use crate::policy::model::{PodInfo, PolicyModel, NAMESPACE_NAME_LABEL};
use crate::policy::PolicySet;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn info(namespace: &str, name: &str, address: [u8; 4], pairs: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ip: Ipv4Addr::from(address),
        labels: labels(pairs),
        pod: None,
        node: None,
    }
}

#[test]
fn from_objects_merges_pods_and_namespaces() {
    let objects = parse(
        "apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels:
    team: blue
    kubernetes.io/metadata.name: wrong
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
  labels:
    app: web
spec:
  containers:
  - ports:
    - name: http
      containerPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: unattached
  namespace: prod
",
    );
    let pods = vec![
        info(
            "prod",
            "web",
            [10, 0, 0, 1],
            &[("app", "old"), ("tier", "front")],
        ),
        info("other", "lonely", [10, 0, 0, 2], &[]),
    ];
    let model = PolicyModel::from_objects(&objects, pods);
    // The Namespace object's labels, the automatic label forced to the name.
    assert_eq!(
        model.namespaces.get("prod"),
        Some(&labels(&[("team", "blue"), (NAMESPACE_NAME_LABEL, "prod")]))
    );
    // A namespace with pods but no object: the automatic label alone.
    assert_eq!(
        model.namespaces.get("other"),
        Some(&labels(&[(NAMESPACE_NAME_LABEL, "other")]))
    );
    assert_eq!(
        model.namespace_labels("nowhere"),
        labels(&[(NAMESPACE_NAME_LABEL, "nowhere")])
    );
    // The Pod object's labels win on a shared key; its ports come along.
    let web = &model.pods[0];
    assert_eq!(web.labels, labels(&[("app", "web"), ("tier", "front")]));
    assert_eq!(
        web.pod
            .as_ref()
            .map(|pod| pod.ports_named("http", Protocol::Tcp).collect::<Vec<_>>()),
        Some(vec![8080])
    );
    // A Pod object that matches no pod is not a pod of the model.
    assert_eq!(model.pods.len(), 2);
    assert!(model.pods[1].pod.is_none());
}

#[test]
fn namespace_without_object_is_selected_by_its_name() {
    let pods = vec![
        info("w", "a", [10, 0, 0, 1], &[]),
        info("v", "b", [10, 0, 0, 2], &[]),
        info("v", "c", [10, 0, 0, 3], &[]),
    ];
    let objects = parse(&policy(
        "v",
        "from-w",
        "podSelector: {}
ingress:
- from:
  - namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: w",
    ));
    let set = PolicySet::compile(&PolicyModel::from_objects(&objects, pods));
    let (a, b, c) = (
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 0, 3),
    );
    assert!(set.allows(a, b, TCP, 80));
    assert!(!set.allows(c, b, TCP, 80));
    assert!(set.allows(b, a, TCP, 80));
}

#[test]
fn the_first_pod_at_an_address_counts() {
    let pods = vec![
        info("x", "first", [10, 0, 0, 1], &[("app", "web")]),
        info("x", "second", [10, 0, 0, 1], &[("app", "db")]),
        info("x", "client", [10, 0, 0, 2], &[]),
    ];
    let objects = parse(&policy(
        "x",
        "db",
        "podSelector:\n  matchLabels:\n    app: db\npolicyTypes: [Ingress]",
    ));
    let set = PolicySet::compile(&PolicyModel::from_objects(&objects, pods));
    assert_eq!(set.is_isolated(Ipv4Addr::new(10, 0, 0, 1)), (false, false));
    assert!(set.allows(
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 0, 1),
        TCP,
        80
    ));
}

#[test]
fn non_pod_ends_have_no_policy() {
    let objects = parse(&format!(
        "{}{}",
        model_yaml(),
        policy(
            "x",
            "deny",
            "podSelector: {}\npolicyTypes: [Ingress, Egress]"
        )
    ));
    let pods: Vec<PodInfo> = objects
        .iter()
        .filter_map(|object| match object {
            crate::k8s::Object::Pod(pod) => PodInfo::from_pod(pod),
            _ => None,
        })
        .collect();
    let set = PolicySet::compile(&PolicyModel::from_objects(&objects, pods));
    let outside = Ipv4Addr::new(192, 0, 2, 1);
    assert!(set.allows_egress(outside, ip("x/a"), TCP, 80));
    assert!(!set.allows_ingress(outside, ip("x/a"), TCP, 80));
    assert!(set.allows_ingress(ip("x/a"), outside, TCP, 80));
    assert!(!set.allows_egress(ip("x/a"), outside, TCP, 80));
    assert!(set.allows(outside, Ipv4Addr::new(192, 0, 2, 2), TCP, 80));
    // Without nodes, no host address is allowed.
    assert_eq!(set.is_isolated(outside), (false, false));
}

#[test]
fn matrix_evaluates_every_pair() {
    let model = parse(&format!(
        "{}apiVersion: v1\nkind: Pod\nmetadata:\n  name: pending\n  namespace: x\n",
        model_yaml()
    ));
    let policies = parse(&policy("x", "deny", "podSelector: {}"));
    let matrix = evaluate(&model, &policies, Protocol::Tcp, 80).unwrap();
    // The pod without podIP is left out.
    assert_eq!(matrix.len(), 9);
    for client in PODS {
        let row = &matrix[client];
        assert_eq!(row.len(), 9);
        for server in PODS {
            let expected = client == server || !server.starts_with("x/");
            assert_eq!(row[server], expected, "{client} to {server}");
        }
    }
}

#[test]
fn matrix_refuses_misplaced_objects_and_shared_addresses() {
    let model = parse(&model_yaml());
    let policies = parse(&policy("x", "deny", "podSelector: {}"));
    let error = evaluate(&policies, &policies, Protocol::Tcp, 80).unwrap_err();
    assert_eq!(error.input(), Input::Model);
    assert_eq!(
        error.to_string(),
        "NetworkPolicy x/deny: --model takes only Namespace and Pod objects"
    );
    let error = evaluate(&model, &model, Protocol::Tcp, 80).unwrap_err();
    assert_eq!(error.input(), Input::Policies);
    assert!(
        error
            .to_string()
            .contains("--policies takes only NetworkPolicy"),
        "{error}"
    );
    let twin = parse(&format!(
        "{}apiVersion: v1\nkind: Pod\nmetadata:\n  name: twin\n  namespace: y\nstatus:\n  podIP: {}\n",
        model_yaml(),
        ip("x/b")
    ));
    let error = evaluate(&twin, &policies, Protocol::Tcp, 80).unwrap_err();
    assert!(matches!(error, ModelError::DuplicateAddress { .. }));
    assert_eq!(
        error.to_string(),
        "Pod y/twin has status.podIP 10.244.1.12, which Pod x/b already has"
    );
}
