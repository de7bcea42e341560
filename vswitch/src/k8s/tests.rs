//! Fixture tests: the NetworkPolicy examples of the Kubernetes documentation, `kubectl get
//! -o yaml` output, multi-document YAML, JSON, one test per validation rule, store round
//! trips.

use std::net::Ipv4Addr;

use super::*;

/// A valid first document, so the rule tests show that errors name the right document.
const FIRST: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: first\n---\n";

fn parse(text: &str) -> Vec<Object> {
    match parse_documents(text) {
        Ok(objects) => objects,
        Err(error) => panic!("{error}"),
    }
}

fn parse_one(text: &str) -> Object {
    let mut objects = parse(text);
    assert_eq!(objects.len(), 1, "{objects:?}");
    objects.remove(0)
}

fn policy(text: &str) -> NetworkPolicy {
    match parse_one(text) {
        Object::NetworkPolicy(policy) => policy,
        other => panic!("not a policy: {other:?}"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}

fn net(text: &str) -> crate::ipnet::Ipv4Net {
    text.parse().unwrap()
}

fn tcp(port: u16) -> PolicyPort {
    PolicyPort {
        protocol: Protocol::Tcp,
        port: Some(PortMatch::Number {
            port,
            end_port: None,
        }),
    }
}

/// Parses `FIRST` followed by `bad`, expects the error to be about document 2, and
/// returns it.
fn error_in_second(bad: &str) -> DocumentError {
    let text = format!("{FIRST}{bad}");
    let error = parse_documents(&text).expect_err("must be refused");
    assert_eq!(error.origin, Origin::Document(2), "{error}");
    error
}

/// Asserts the whole message.
fn assert_message(error: &DocumentError, expected: &str) {
    assert_eq!(error.to_string(), expected);
}

const POLICY_HEAD: &str =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n";
const POD_HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n";

// ---------------------------------------------------------------------------------------
// The Kubernetes documentation's NetworkPolicy examples
// ---------------------------------------------------------------------------------------

const TEST_NETWORK_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 5978
"#;

#[test]
fn test_network_policy_example() {
    let policy = policy(TEST_NETWORK_POLICY);
    assert_eq!(policy.metadata.name, "test-network-policy");
    assert_eq!(policy.metadata.namespace, "default");
    let spec = &policy.spec;
    assert_eq!(spec.pod_selector, match_labels(&[("role", "db")]));
    assert_eq!(
        spec.policy_types,
        Some(vec![PolicyType::Ingress, PolicyType::Egress])
    );
    assert_eq!(
        spec.ingress,
        vec![PolicyRule {
            peers: vec![
                Peer::IpBlock(IpBlock {
                    cidr: net("172.17.0.0/16"),
                    except: vec![net("172.17.1.0/24")],
                }),
                Peer::Namespaces(match_labels(&[("project", "myproject")])),
                Peer::Pods(match_labels(&[("role", "frontend")])),
            ],
            ports: vec![tcp(6379)],
        }]
    );
    assert_eq!(
        spec.egress,
        vec![PolicyRule {
            peers: vec![Peer::IpBlock(IpBlock {
                cidr: net("10.0.0.0/24"),
                except: Vec::new(),
            })],
            ports: vec![tcp(5978)],
        }]
    );
    let Peer::IpBlock(block) = &spec.ingress[0].peers[0] else {
        panic!("not an ipBlock");
    };
    assert!(block.contains(Ipv4Addr::new(172, 17, 0, 9)));
    assert!(!block.contains(Ipv4Addr::new(172, 17, 1, 9)));
    assert!(!block.contains(Ipv4Addr::new(172, 18, 0, 9)));
}

#[test]
fn pods_and_namespaces_in_one_peer_is_and() {
    let policy = policy(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and-peer, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          user: alice
      podSelector:
        matchLabels:
          role: client
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: In, values: [monitoring]}
"#,
    );
    let peers = &policy.spec.ingress[0].peers;
    assert_eq!(
        peers[0],
        Peer::PodsInNamespaces {
            pods: match_labels(&[("role", "client")]),
            namespaces: match_labels(&[("user", "alice")]),
        }
    );
    let Peer::Namespaces(selector) = &peers[1] else {
        panic!("{:?}", peers[1]);
    };
    assert!(selector.matches(&labels(&[("kubernetes.io/metadata.name", "monitoring")])));
}

#[test]
fn default_policies_and_effective_types() {
    let text = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes:
  - Ingress
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-all-ingress
spec:
  podSelector: {}
  ingress:
  - {}
  policyTypes:
  - Ingress
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-egress
spec:
  podSelector: {}
  policyTypes:
  - Egress
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-all-egress
spec:
  podSelector: {}
  egress:
  - {}
  policyTypes:
  - Egress
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-all
spec:
  podSelector: {}
  policyTypes:
  - Ingress
  - Egress
"#;
    let policies: Vec<NetworkPolicy> = parse(text)
        .into_iter()
        .map(|object| match object {
            Object::NetworkPolicy(policy) => policy,
            other => panic!("{other:?}"),
        })
        .collect();
    let names: Vec<&str> = policies.iter().map(|p| p.metadata.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "default-deny-ingress",
            "allow-all-ingress",
            "default-deny-egress",
            "allow-all-egress",
            "default-deny-all"
        ]
    );
    for policy in &policies {
        assert!(policy.spec.pod_selector.is_empty());
        assert_eq!(policy.metadata.namespace, DEFAULT_NAMESPACE);
    }
    use PolicyType::{Egress, Ingress};
    let effective: Vec<Vec<PolicyType>> = policies
        .iter()
        .map(|p| p.spec.effective_policy_types())
        .collect();
    assert_eq!(
        effective,
        [
            vec![Ingress],
            vec![Ingress],
            vec![Egress],
            vec![Egress],
            vec![Ingress, Egress]
        ]
    );
    assert!(policies[0].spec.ingress.is_empty());
    assert_eq!(policies[1].spec.ingress, vec![PolicyRule::default()]);
    assert!(policies[2].spec.egress.is_empty());
    assert_eq!(policies[3].spec.egress, vec![PolicyRule::default()]);
    assert!(policies[4].spec.restricts_ingress() && policies[4].spec.restricts_egress());
    assert!(!policies[2].spec.restricts_ingress());
}

#[test]
fn policy_types_default_from_rules() {
    use PolicyType::{Egress, Ingress};
    let only_ingress = policy(&format!("{POLICY_HEAD}spec:\n  ingress: [{{}}]\n"));
    assert_eq!(only_ingress.spec.policy_types, None);
    assert_eq!(only_ingress.spec.effective_policy_types(), [Ingress]);
    let with_egress = policy(&format!("{POLICY_HEAD}spec:\n  egress: [{{}}]\n"));
    assert_eq!(with_egress.spec.effective_policy_types(), [Ingress, Egress]);
    let empty_egress = policy(&format!("{POLICY_HEAD}spec:\n  egress: []\n"));
    assert_eq!(empty_egress.spec.effective_policy_types(), [Ingress]);
    let written_empty = policy(&format!(
        "{POLICY_HEAD}spec:\n  policyTypes: []\n  egress: [{{}}]\n"
    ));
    assert_eq!(written_empty.spec.policy_types, Some(vec![]));
    assert_eq!(
        written_empty.spec.effective_policy_types(),
        [Ingress, Egress]
    );
    let reversed = policy(&format!(
        "{POLICY_HEAD}spec:\n  policyTypes: [Egress, Ingress]\n"
    ));
    assert_eq!(reversed.spec.policy_types, Some(vec![Egress, Ingress]));
    assert_eq!(reversed.spec.effective_policy_types(), [Ingress, Egress]);
    // No podSelector at all: every pod of the namespace, as the API server reads it.
    assert!(only_ingress.spec.pod_selector.is_empty());
}

#[test]
fn end_port_example() {
    let policy = policy(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: multi-port-egress
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Egress
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 32000
          endPort: 32768
"#,
    );
    let port = &policy.spec.egress[0].ports[0];
    assert_eq!(
        port.port,
        Some(PortMatch::Number {
            port: 32000,
            end_port: Some(32768)
        })
    );
    assert!(port.matches(Protocol::Tcp, 32000, None));
    assert!(port.matches(Protocol::Tcp, 32768, None));
    assert!(!port.matches(Protocol::Tcp, 32769, None));
    assert!(!port.matches(Protocol::Udp, 32100, None));
}

#[test]
fn named_ports_resolve_on_the_destination_pod() {
    let policy = policy(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - port: http\n    - protocol: UDP\n"
    ));
    let ports = &policy.spec.ingress[0].ports;
    assert_eq!(
        ports[0],
        PolicyPort {
            protocol: Protocol::Tcp,
            port: Some(PortMatch::Named("http".to_owned()))
        }
    );
    let Object::Pod(pod) = parse_one(&format!(
        "{POD_HEAD}spec:\n  containers:\n  - name: app\n    ports:\n    - {{name: http, containerPort: 8080}}\n  - name: udp\n    ports:\n    - {{name: http, containerPort: 8080, protocol: UDP}}\n"
    )) else {
        panic!("not a pod");
    };
    assert!(ports[0].matches(Protocol::Tcp, 8080, Some(&pod)));
    assert!(!ports[0].matches(Protocol::Tcp, 80, Some(&pod)));
    assert!(!ports[0].matches(Protocol::Tcp, 8080, None));
    assert!(ports[1].matches(Protocol::Udp, 53, None));
    assert!(!ports[1].matches(Protocol::Tcp, 53, None));
    assert_eq!(
        pod.ports_named("http", Protocol::Udp).collect::<Vec<_>>(),
        [8080]
    );
}

// ---------------------------------------------------------------------------------------
// kubectl output, multi-document YAML, JSON
// ---------------------------------------------------------------------------------------

const KUBECTL_LIST: &str = r#"apiVersion: v1
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    creationTimestamp: "2024-05-01T10:00:00Z"
    labels:
      kubernetes.io/metadata.name: default
    name: default
    resourceVersion: "195"
    uid: 2f3c5b1e-6c1a-4b8e-9d47-1a2b3c4d5e6f
  spec:
    finalizers:
    - kubernetes
  status:
    phase: Active
- apiVersion: v1
  kind: Namespace
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"v1","kind":"Namespace","metadata":{"labels":{"team":"payments"},"name":"prod"}}
    creationTimestamp: "2024-05-01T10:05:00Z"
    labels:
      kubernetes.io/metadata.name: prod
      team: payments
    name: prod
    resourceVersion: "1203"
    uid: 9a8b7c6d-5e4f-3a2b-1c0d-ffeeddccbbaa
  spec:
    finalizers:
    - kubernetes
  status:
    phase: Active
- apiVersion: v1
  kind: Pod
  metadata:
    annotations:
      kubectl.kubernetes.io/restartedAt: "2024-05-02T08:00:00Z"
    creationTimestamp: "2024-05-02T08:00:01Z"
    generateName: web-7d4b9c6f8-
    labels:
      app: web
      pod-template-hash: 7d4b9c6f8
    name: web-7d4b9c6f8-x2k9p
    namespace: prod
    ownerReferences:
    - apiVersion: apps/v1
      blockOwnerDeletion: true
      controller: true
      kind: ReplicaSet
      name: web-7d4b9c6f8
      uid: 0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6
    resourceVersion: "2210"
    uid: 11111111-2222-3333-4444-555555555555
  spec:
    containers:
    - image: nginx:1.25
      imagePullPolicy: IfNotPresent
      name: nginx
      ports:
      - containerPort: 80
        name: http
        protocol: TCP
      - containerPort: 9113
        name: metrics
        protocol: TCP
      resources:
        limits:
          memory: 128Mi
      terminationMessagePath: /dev/termination-log
      terminationMessagePolicy: File
      volumeMounts:
      - mountPath: /var/run/secrets/kubernetes.io/serviceaccount
        name: kube-api-access-abcde
        readOnly: true
    - image: busybox
      name: sidecar
      command: ["sh", "-c", "sleep infinity"]
    dnsPolicy: ClusterFirst
    enableServiceLinks: true
    nodeName: node-1
    preemptionPolicy: PreemptLowerPriority
    priority: 0
    restartPolicy: Always
    schedulerName: default-scheduler
    securityContext: {}
    serviceAccountName: default
    terminationGracePeriodSeconds: 30
    tolerations:
    - effect: NoExecute
      key: node.kubernetes.io/not-ready
      operator: Exists
      tolerationSeconds: 300
    volumes:
    - name: kube-api-access-abcde
      projected:
        defaultMode: 420
  status:
    conditions:
    - lastProbeTime: null
      lastTransitionTime: "2024-05-02T08:00:01Z"
      status: "True"
      type: Ready
    containerStatuses:
    - containerID: containerd://abc
      image: docker.io/library/nginx:1.25
      name: nginx
      ready: true
      restartCount: 0
      started: true
      state:
        running:
          startedAt: "2024-05-02T08:00:03Z"
    hostIP: 192.168.1.10
    hostIPs:
    - ip: 192.168.1.10
    phase: Running
    podIP: 10.244.1.5
    podIPs:
    - ip: 10.244.1.5
    qosClass: Burstable
    startTime: "2024-05-02T08:00:01Z"
- apiVersion: v1
  kind: Pod
  metadata:
    labels:
      app: client
    name: client
    namespace: default
  spec:
    containers:
    - image: curlimages/curl
      name: curl
  status:
    phase: Pending
    qosClass: BestEffort
kind: List
metadata:
  resourceVersion: ""
"#;

#[test]
fn kubectl_get_list_output() {
    let objects = parse(KUBECTL_LIST);
    let keys: Vec<String> = objects.iter().map(Object::to_string).collect();
    assert_eq!(
        keys,
        [
            "Namespace default",
            "Namespace prod",
            "Pod prod/web-7d4b9c6f8-x2k9p",
            "Pod default/client"
        ]
    );
    let Object::Namespace(prod) = &objects[1] else {
        panic!()
    };
    assert_eq!(
        prod.metadata.labels,
        labels(&[
            ("kubernetes.io/metadata.name", "prod"),
            ("team", "payments")
        ])
    );
    assert_eq!(prod.metadata.namespace, "");
    let Object::Pod(web) = &objects[2] else {
        panic!()
    };
    assert_eq!(web.pod_ip, Some(Ipv4Addr::new(10, 244, 1, 5)));
    assert_eq!(
        web.metadata.labels,
        labels(&[("app", "web"), ("pod-template-hash", "7d4b9c6f8")])
    );
    assert_eq!(web.containers.len(), 2);
    assert_eq!(
        web.containers[0].ports,
        vec![
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: 80,
                protocol: Protocol::Tcp
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: 9113,
                protocol: Protocol::Tcp
            },
        ]
    );
    assert_eq!(web.containers[1].name.as_deref(), Some("sidecar"));
    assert!(web.containers[1].ports.is_empty());
    let Object::Pod(client) = &objects[3] else {
        panic!()
    };
    assert_eq!(client.pod_ip, None);
    assert_eq!(
        objects[2].key(),
        ObjectKey {
            kind: ObjectKind::Pod,
            namespace: "prod".to_owned(),
            name: "web-7d4b9c6f8-x2k9p".to_owned()
        }
    );
}

#[test]
fn multi_document_yaml_counts_every_document() {
    let text = "# leading comment\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n# nothing here\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n---\n";
    let names: Vec<String> = parse(text)
        .iter()
        .map(|o| o.metadata().name.clone())
        .collect();
    assert_eq!(names, ["a", "b"]);
    // The empty document still counts: the bad one is the fourth.
    let bad = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\n# c\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: B\n";
    let error = parse_documents(bad).unwrap_err();
    assert_eq!(error.origin, Origin::Document(4));
}

#[test]
fn empty_texts_give_no_objects() {
    assert!(parse("").is_empty());
    assert!(parse("# just a comment\n").is_empty());
    assert!(parse("---\n---\n").is_empty());
    assert!(parse("  \n").is_empty());
}

#[test]
fn byte_order_mark_is_skipped() {
    let object = parse_one("\u{feff}apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bom\n");
    assert_eq!(object.metadata().name, "bom");
    assert_eq!(parse_one("\u{feff}{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"bom\"}}"), object);
}

#[test]
fn json_single_list_and_stream() {
    let single = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"x","labels":{"app":"a"}},
        "spec":{"containers":[{"name":"c","ports":[{"containerPort":53,"protocol":"UDP","name":"dns"}]}]},
        "status":{"podIP":"10.244.0.7"}}"#;
    let Object::Pod(pod) = parse_one(single) else {
        panic!()
    };
    assert_eq!(pod.metadata.namespace, "x");
    assert_eq!(pod.ports().next().map(|p| p.protocol), Some(Protocol::Udp));
    assert_eq!(pod.pod_ip, Some(Ipv4Addr::new(10, 244, 0, 7)));

    let list = r#"{
        "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "deny", "namespace": "x"},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
        ]
    }"#;
    assert_eq!(parse(list).len(), 2);

    let stream = format!(
        "{single}\n{}",
        single.replace("\"name\":\"a\"", "\"name\":\"b\"")
    );
    assert_eq!(parse(&stream).len(), 2);

    // A typed list, as the API server returns it: items without apiVersion and kind.
    let typed = r#"{"apiVersion":"v1","kind":"PodList","items":[
        {"metadata":{"name":"p1"}}, {"metadata":{"name":"p2","namespace":"y"}}]}"#;
    let keys: Vec<String> = parse(typed).iter().map(Object::to_string).collect();
    assert_eq!(keys, ["Pod default/p1", "Pod y/p2"]);

    // JSON syntax errors say JSON, with the document.
    let error = parse_documents(&format!("{single}\n{{\"kind\": ")).unwrap_err();
    assert_eq!(error.origin, Origin::Document(2));
    assert!(matches!(error.problem, Problem::Json(_)), "{error}");
}

#[test]
fn yaml_flow_mapping_is_not_mistaken_for_json() {
    let object = parse_one("{apiVersion: v1, kind: Namespace, metadata: {name: flow}}");
    assert_eq!(object.metadata().name, "flow");
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let text = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: anchors}
spec:
  podSelector: &web
    matchLabels: {app: web}
  ingress:
  - from:
    - podSelector: *web
    ports:
    - &base {protocol: TCP, port: 80}
    - <<: *base
      port: 443
"#;
    let policy = policy(text);
    assert_eq!(
        policy.spec.ingress[0].peers,
        vec![Peer::Pods(match_labels(&[("app", "web")]))]
    );
    assert_eq!(policy.spec.ingress[0].ports, vec![tcp(80), tcp(443)]);
}

#[test]
fn list_item_errors_name_the_item() {
    let text = KUBECTL_LIST.replace("containerPort: 9113", "containerPort: 0");
    let error = parse_documents(&text).unwrap_err();
    assert_message(
        &error,
        "document 1 (Pod prod/web-7d4b9c6f8-x2k9p): items[2].spec.containers[0].ports[1].containerPort: 0 is not a port number: it must be 1 to 65535",
    );
}

#[test]
fn errors_come_in_document_order() {
    // Document 2 is invalid, document 3 does not parse: document 2 is reported.
    let text = format!(
        "{FIRST}apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Bad\n---\nkey: [unclosed\n"
    );
    let error = parse_documents(&text).unwrap_err();
    assert_eq!(error.origin, Origin::Document(2));
    assert!(matches!(error.problem, Problem::InvalidName { .. }));
}

// ---------------------------------------------------------------------------------------
// One test per validation rule
// ---------------------------------------------------------------------------------------

#[test]
fn rule_yaml_syntax() {
    let error = error_in_second("kind: [Pod\n");
    assert!(matches!(error.problem, Problem::Yaml(_)));
    assert!(
        error
            .to_string()
            .starts_with("document 2: not valid YAML: "),
        "{error}"
    );
    assert!(error.to_string().contains("line"), "{error}");
}

#[test]
fn rule_yaml_duplicate_key() {
    let error = error_in_second("kind: Pod\nkind: Namespace\n");
    assert!(matches!(error.problem, Problem::Yaml(_)));
    assert!(error.to_string().contains("duplicate"), "{error}");
}

#[test]
fn rule_yaml_tags_refused() {
    let error = error_in_second("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: !custom x\n");
    assert_message(
        &error,
        "document 2: metadata.name: the YAML tag `!custom` is not supported: remove it",
    );
}

#[test]
fn rule_document_must_be_a_mapping() {
    let error = error_in_second("- a\n- b\n");
    assert_message(
        &error,
        "document 2: expected a Kubernetes object (a mapping with apiVersion, kind and metadata), found a list",
    );
}

#[test]
fn rule_kind_required() {
    let error = error_in_second("apiVersion: v1\nmetadata:\n  name: x\n");
    assert_message(&error, "document 2: kind: required, but missing");
}

#[test]
fn rule_unknown_kind() {
    let error = error_in_second("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n");
    assert_eq!(
        error.problem,
        Problem::UnknownKind {
            kind: "Deployment".to_owned()
        }
    );
    assert_message(
        &error,
        "document 2 (Deployment web): kind: unknown kind `Deployment`: vswitch takes Namespace, Pod and NetworkPolicy objects, alone or in a List",
    );
}

#[test]
fn rule_api_version_required() {
    let error = error_in_second("kind: Pod\nmetadata:\n  name: web\n");
    assert_message(
        &error,
        "document 2 (Pod default/web): apiVersion: required, but missing",
    );
}

#[test]
fn rule_api_version_must_match_kind() {
    let error = error_in_second(
        "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec: {}\n",
    );
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): apiVersion: `extensions/v1beta1` is not the apiVersion of NetworkPolicy: write `apiVersion: networking.k8s.io/v1`",
    );
    let error =
        error_in_second("apiVersion: networking.k8s.io/v1\nkind: Pod\nmetadata:\n  name: p\n");
    assert!(matches!(
        error.problem,
        Problem::WrongApiVersion { expected: "v1", .. }
    ));
}

#[test]
fn rule_name_required() {
    let error = error_in_second("apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {app: x}\n");
    assert_message(
        &error,
        "document 2 (Pod): metadata.name: required, but missing",
    );
    let error = error_in_second("apiVersion: v1\nkind: Pod\n");
    assert_message(&error, "document 2 (Pod): metadata: required, but missing");
}

#[test]
fn rule_generate_name_unsupported() {
    let error = error_in_second("apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: web-\n");
    assert_eq!(error.problem, Problem::GenerateName);
    assert_eq!(error.field, "metadata.name");
}

#[test]
fn rule_namespace_name_is_dns_label() {
    let error = error_in_second("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod.eu\n");
    assert_message(
        &error,
        "document 2 (Namespace prod.eu): metadata.name: `prod.eu` is not a valid name: it holds '.', but only lowercase letters, digits and '-' are allowed",
    );
    let long = "a".repeat(64);
    let error = error_in_second(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {long}\n"
    ));
    assert!(
        error
            .to_string()
            .ends_with("it is 64 characters long, more than 63"),
        "{error}"
    );
}

#[test]
fn rule_object_name_is_dns_subdomain() {
    // Dots are fine in a pod name...
    parse_one("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web.v2\n");
    // ...upper case and underscores are not.
    let error = error_in_second("apiVersion: v1\nkind: Pod\nmetadata:\n  name: Web_1\n");
    assert_eq!(error.field, "metadata.name");
    assert!(
        matches!(error.problem, Problem::InvalidName { .. }),
        "{error}"
    );
    let error = error_in_second(&format!("{POLICY_HEAD}  namespace: Prod\nspec: {{}}\n"));
    assert_message(
        &error,
        "document 2 (NetworkPolicy Prod/p): metadata.namespace: `Prod` is not a valid name: it holds 'P', but only lowercase letters, digits and '-' are allowed",
    );
}

#[test]
fn rule_label_key() {
    let error = error_in_second(&format!(
        "{POD_HEAD}  labels:\n    example.com/app/x: web\n"
    ));
    assert_message(
        &error,
        "document 2 (Pod default/web): metadata.labels[\"example.com/app/x\"]: `example.com/app/x` is not a valid label key: it holds more than one '/'",
    );
    let error = error_in_second(&format!("{POD_HEAD}  labels:\n    -app: web\n"));
    assert!(
        matches!(error.problem, Problem::InvalidLabelKey { .. }),
        "{error}"
    );
}

#[test]
fn rule_label_value() {
    let error = error_in_second(&format!("{POD_HEAD}  labels:\n    app: web server\n"));
    assert_message(
        &error,
        "document 2 (Pod default/web): metadata.labels.app: `web server` is not a valid label value: it holds ' ', but only letters, digits, '-', '_' and '.' are allowed",
    );
}

#[test]
fn rule_label_value_is_a_string() {
    let error = error_in_second(&format!("{POD_HEAD}  labels:\n    version: 2\n"));
    assert_message(
        &error,
        "document 2 (Pod default/web): metadata.labels.version: expected a string, found a number (quote it in YAML, e.g. \"1\" or \"true\")",
    );
}

#[test]
fn rule_field_types() {
    let error = error_in_second(&format!("{POD_HEAD}spec:\n  containers:\n    name: app\n"));
    assert_message(
        &error,
        "document 2 (Pod default/web): spec.containers: expected a list, found a mapping",
    );
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  podSelector: []\n"));
    assert_eq!(error.field, "spec.podSelector");
}

#[test]
fn rule_container_port_required_and_integer() {
    let error = error_in_second(&format!(
        "{POD_HEAD}spec:\n  containers:\n  - name: app\n    ports:\n    - name: http\n"
    ));
    assert_message(
        &error,
        "document 2 (Pod default/web): spec.containers[0].ports[0].containerPort: required, but missing",
    );
    let error = error_in_second(&format!(
        "{POD_HEAD}spec:\n  containers:\n  - ports:\n    - containerPort: \"80\"\n"
    ));
    assert!(
        error
            .to_string()
            .ends_with("containerPort: expected an integer, found a string"),
        "{error}"
    );
    let error = error_in_second(&format!(
        "{POD_HEAD}spec:\n  containers:\n  - ports:\n    - containerPort: 80.5\n"
    ));
    assert!(
        matches!(
            error.problem,
            Problem::WrongType {
                expected: "an integer",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn rule_container_port_range() {
    for bad in ["0", "65536", "-1", "99999999999"] {
        let error = error_in_second(&format!(
            "{POD_HEAD}spec:\n  containers:\n  - ports:\n    - containerPort: {bad}\n"
        ));
        assert_eq!(error.field, "spec.containers[0].ports[0].containerPort");
        assert_eq!(
            error.problem,
            Problem::PortOutOfRange {
                value: bad.to_owned()
            }
        );
    }
}

#[test]
fn rule_container_port_name() {
    let error = error_in_second(&format!(
        "{POD_HEAD}spec:\n  containers:\n  - ports:\n    - {{containerPort: 80, name: web_http}}\n"
    ));
    assert_message(
        &error,
        "document 2 (Pod default/web): spec.containers[0].ports[0].name: `web_http` is not a valid port name: it holds '_', but only lowercase letters, digits and '-' are allowed",
    );
    let error = error_in_second(&format!("{POD_HEAD}spec:\n  containers:\n  - ports:\n    - {{containerPort: 80, name: very-long-port-name}}\n"));
    assert!(
        error
            .to_string()
            .ends_with("it is 19 characters long, more than 15"),
        "{error}"
    );
}

#[test]
fn rule_port_names_unique_in_container() {
    let error = error_in_second(&format!("{POD_HEAD}spec:\n  containers:\n  - ports:\n    - {{containerPort: 80, name: http}}\n    - {{containerPort: 8080, name: http}}\n"));
    assert_message(
        &error,
        "document 2 (Pod default/web): spec.containers[0].ports[1].name: `http` already names another port of this container",
    );
    // Across containers the API server allows it, and so does vswitch.
    parse_one(&format!("{POD_HEAD}spec:\n  containers:\n  - ports:\n    - {{containerPort: 80, name: http}}\n  - ports:\n    - {{containerPort: 8080, name: http}}\n"));
}

#[test]
fn rule_container_names() {
    let error = error_in_second(&format!(
        "{POD_HEAD}spec:\n  containers:\n  - name: app\n  - name: app\n"
    ));
    assert_eq!(error.field, "spec.containers[1].name");
    assert_eq!(
        error.problem,
        Problem::DuplicateContainerName {
            name: "app".to_owned()
        }
    );
    let error = error_in_second(&format!("{POD_HEAD}spec:\n  containers:\n  - name: App\n"));
    assert!(
        matches!(error.problem, Problem::InvalidName { .. }),
        "{error}"
    );
}

#[test]
fn rule_protocol() {
    let error = error_in_second(&format!(
        "{POD_HEAD}spec:\n  containers:\n  - ports:\n    - {{containerPort: 80, protocol: tcp}}\n"
    ));
    assert_message(
        &error,
        "document 2 (Pod default/web): spec.containers[0].ports[0].protocol: unknown protocol `tcp`: use TCP, UDP or SCTP",
    );
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - protocol: ICMP\n"
    ));
    assert_eq!(error.field, "spec.ingress[0].ports[0].protocol");
}

#[test]
fn rule_pod_ip() {
    let error = error_in_second(&format!("{POD_HEAD}status:\n  podIP: 10.244.1\n"));
    assert_message(
        &error,
        "document 2 (Pod default/web): status.podIP: `10.244.1` is not an IPv4 address",
    );
    let error = error_in_second(&format!("{POD_HEAD}status:\n  podIP: fd00::5\n"));
    assert!(
        matches!(error.problem, Problem::Ipv6NotSupported { .. }),
        "{error}"
    );
}

#[test]
fn rule_selector_operator() {
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: app, operator: in, values: [web]}}\n"));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.podSelector.matchExpressions[0].operator: unknown operator `in`: use In, NotIn, Exists or DoesNotExist",
    );
}

#[test]
fn rule_selector_in_needs_values() {
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: app, operator: NotIn}}\n"));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.podSelector.matchExpressions[0].values: operator NotIn needs at least one value",
    );
}

#[test]
fn rule_selector_exists_takes_no_values() {
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions:\n        - {{key: team, operator: Exists, values: [a]}}\n"));
    assert_eq!(
        error.field,
        "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values"
    );
    assert_eq!(
        error.problem,
        Problem::ValuesForbidden { operator: "Exists" }
    );
}

#[test]
fn rule_selector_keys_and_values() {
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: 'a b', operator: Exists}}\n"));
    assert_eq!(error.field, "spec.podSelector.matchExpressions[0].key");
    assert!(matches!(error.problem, Problem::InvalidLabelKey { .. }));
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: app, operator: In, values: [ok, 'not ok']}}\n"));
    assert_eq!(
        error.field,
        "spec.podSelector.matchExpressions[0].values[1]"
    );
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  podSelector:\n    matchLabels:\n      app: -web\n"
    ));
    assert_eq!(error.field, "spec.podSelector.matchLabels.app");
    assert!(matches!(error.problem, Problem::InvalidLabelValue { .. }));
}

#[test]
fn rule_policy_types() {
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  policyTypes: [Ingress, egress]\n"
    ));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.policyTypes[1]: unknown policy type `egress`: use Ingress or Egress",
    );
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  policyTypes: [Ingress, Egress, Ingress]\n"
    ));
    assert_eq!(error.field, "spec.policyTypes");
    assert_eq!(error.problem, Problem::TooManyPolicyTypes { count: 3 });
}

#[test]
fn rule_spec_required() {
    let error = error_in_second(POLICY_HEAD);
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec: required, but missing",
    );
}

#[test]
fn rule_peer_not_empty() {
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  egress:\n  - to:\n    - {{}}\n"
    ));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.egress[0].to[0]: a peer needs podSelector, namespaceSelector or ipBlock",
    );
}

#[test]
fn rule_ip_block_stands_alone() {
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.0.0.0/8}}\n      podSelector: {{}}\n"));
    assert_eq!(error.field, "spec.ingress[0].from[0]");
    assert_eq!(error.problem, Problem::IpBlockWithSelector);
}

#[test]
fn rule_ip_block_cidr() {
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.0.0.0/33}}\n"
    ));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.ingress[0].from[0].ipBlock.cidr: `10.0.0.0/33` is not an IPv4 CIDR (expected A.B.C.D/N)",
    );
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - from:\n    - ipBlock: {{except: [10.0.0.0/9]}}\n"
    ));
    assert_eq!(error.field, "spec.ingress[0].from[0].ipBlock.cidr");
    assert_eq!(error.problem, Problem::Missing);
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 'fd00::/8'}}\n"
    ));
    assert!(
        matches!(error.problem, Problem::Ipv6NotSupported { .. }),
        "{error}"
    );
}

#[test]
fn rule_except_inside_cidr() {
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 172.17.0.0/16, except: [172.17.1.0/24, 172.18.0.0/24]}}\n"));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.ingress[0].from[0].ipBlock.except[1]: 172.18.0.0/24 is not inside cidr 172.17.0.0/16",
    );
}

#[test]
fn rule_except_strictly_smaller() {
    let error = error_in_second(&format!("{POLICY_HEAD}spec:\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 172.17.0.0/16, except: [172.17.0.0/16]}}\n"));
    assert_eq!(error.field, "spec.ingress[0].from[0].ipBlock.except[0]");
    assert!(
        matches!(error.problem, Problem::ExceptNotSmaller { .. }),
        "{error}"
    );
}

#[test]
fn rule_policy_port_number_range() {
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - port: 70000\n"
    ));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.ingress[0].ports[0].port: 70000 is not a port number: it must be 1 to 65535",
    );
}

#[test]
fn rule_policy_port_name() {
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - port: \"8080\"\n"
    ));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.ingress[0].ports[0].port: `8080` is not a valid port name: it must hold at least one letter (write a port number without quotes)",
    );
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - port: true\n"
    ));
    assert_eq!(
        error.problem,
        Problem::WrongType {
            expected: "a port number or name",
            found: "a boolean"
        }
    );
}

#[test]
fn rule_end_port_not_below_port() {
    let text = format!(
        "{FIRST}{FIRST}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny-all\nspec:\n  ingress:\n  - ports:\n    - port: 22\n    - port: 8080\n      endPort: 80\n"
    )
    .replacen("name: first", "name: second", 1);
    let error = parse_documents(&text).unwrap_err();
    assert_message(
        &error,
        "document 3 (NetworkPolicy default/deny-all): spec.ingress[0].ports[1].endPort: 80 is below port 8080",
    );
    assert_eq!(
        error.problem,
        Problem::EndPortBelowPort {
            end_port: 80,
            port: 8080
        }
    );
}

#[test]
fn rule_end_port_needs_numeric_port() {
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - endPort: 90\n"
    ));
    assert_eq!(error.field, "spec.ingress[0].ports[0].endPort");
    assert_eq!(error.problem, Problem::EndPortWithoutPort);
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - {{port: http, endPort: 90}}\n"
    ));
    assert_message(
        &error,
        "document 2 (NetworkPolicy default/p): spec.ingress[0].ports[0].endPort: endPort cannot go with the named port `http`: give port as a number",
    );
    let error = error_in_second(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - {{port: 80, endPort: 65536}}\n"
    ));
    assert!(
        matches!(error.problem, Problem::PortOutOfRange { .. }),
        "{error}"
    );
}

#[test]
fn rule_no_duplicate_objects() {
    let error = error_in_second(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: first\n  labels: {a: b}\n",
    );
    assert_message(
        &error,
        "document 2 (Namespace first): the same object is already defined by document 1",
    );
    // Same name, other kind or namespace: distinct objects.
    parse(&format!("{FIRST}apiVersion: v1\nkind: Pod\nmetadata:\n  name: first\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: first\n  namespace: other\n"));
}

#[test]
fn rule_list_shape() {
    let error = error_in_second("apiVersion: v2\nkind: List\nitems: []\n");
    assert_message(
        &error,
        "document 2 (List): apiVersion: `v2` is not the apiVersion of List: write `apiVersion: v1`",
    );
    let error = error_in_second("apiVersion: v1\nkind: List\n");
    assert_message(&error, "document 2 (List): items: required, but missing");
    let error = error_in_second("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n");
    assert_eq!(error.field, "items[0].kind");
    assert!(matches!(error.problem, Problem::UnknownKind { .. }));
    // An empty list is fine.
    assert!(parse("apiVersion: v1\nkind: List\nitems: []\n").is_empty());
}

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

#[test]
fn records_round_trip() {
    let fixtures = [
        TEST_NETWORK_POLICY.to_owned(),
        KUBECTL_LIST.to_owned(),
        format!("{POLICY_HEAD}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: app, operator: NotIn, values: [a, b]}}\n    - {{key: x, operator: DoesNotExist}}\n  policyTypes: []\n  ingress:\n  - ports:\n    - {{port: http}}\n    - {{protocol: SCTP, port: 1, endPort: 65535}}\n    - {{protocol: UDP}}\n    from:\n    - namespaceSelector: {{}}\n    - {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{a: b}}}}}}\n"),
    ];
    for text in fixtures {
        for object in parse(&text) {
            let record = object.to_record();
            assert_eq!(record.key, object.key());
            assert_eq!(Object::from_record(&record).unwrap(), object);
            // Through the store's JSON, and as a document of its own.
            let json = serde_json::to_string(&record).unwrap();
            let back: ObjectRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(Object::from_record(&back).unwrap(), object);
            let document = serde_json::to_string_pretty(&object.to_document()).unwrap();
            assert_eq!(parse_one(&document), object);
        }
    }
}

#[test]
fn record_document_defaults_are_written_out() {
    let object = parse_one(&format!(
        "{POLICY_HEAD}spec:\n  ingress:\n  - ports:\n    - port: 80\n"
    ));
    assert_eq!(
        object.to_document(),
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "TCP", "port": 80}]}]}
        })
    );
}

#[test]
fn record_key_must_match_document() {
    let object = parse_one(FIRST.trim_end_matches("---\n"));
    let mut record = object.to_record();
    record.key.name = "second".to_owned();
    let error = Object::from_record(&record).unwrap_err();
    assert_eq!(error.origin, Origin::Record);
    assert_message(
        &error,
        "stored object (Namespace first): the record is stored under Namespace second, but its document describes another object",
    );
    record.document = serde_json::json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {}});
    let error = Object::from_record(&record).unwrap_err();
    assert_message(
        &error,
        "stored object (Namespace): metadata.name: required, but missing",
    );
}
