//! `vswitchctl policy matrix`, the real binary on files in a temporary directory: the
//! JSON a script reads, a few verdicts, and the errors an operator sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Two namespaces, three pods (one without an address yet), as `kubectl get
/// namespaces,pods -A -o yaml` prints them (a List, with fields vswitch ignores).
const MODEL: &str = r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
    labels:
      team: shop
    uid: 0b5a3e9c-0000-0000-0000-000000000001
  status:
    phase: Active
- apiVersion: v1
  kind: Namespace
  metadata:
    name: ops
- apiVersion: v1
  kind: Pod
  metadata:
    name: web
    namespace: shop
    labels:
      app: web
  spec:
    containers:
    - name: nginx
      image: nginx
      ports:
      - name: http
        containerPort: 8080
  status:
    phase: Running
    podIP: 10.244.1.10
- apiVersion: v1
  kind: Pod
  metadata:
    name: db
    namespace: shop
    labels:
      app: db
  spec:
    containers:
    - name: postgres
      ports:
      - name: pg
        containerPort: 5432
  status:
    podIP: 10.244.1.11
- apiVersion: v1
  kind: Pod
  metadata:
    name: probe
    namespace: ops
  spec:
    containers:
    - name: curl
  status:
    podIP: 10.244.2.10
- apiVersion: v1
  kind: Pod
  metadata:
    name: pending
    namespace: ops
  spec:
    containers:
    - name: curl
  status:
    phase: Pending
"#;

/// db takes only web, on its named port `pg`.
const POLICIES: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-from-web
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: db
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: web
    ports:
    - port: pg
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the temporary directory is writable");
    path
}

fn matrix(model: &Path, policies: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(["policy", "matrix", "--model"])
        .arg(model)
        .arg("--policies")
        .arg(policies)
        .args(extra)
        .output()
        .expect("vswitchctl runs")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn prints_every_client_to_every_server() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(dir.path(), "model.yaml", MODEL);
    let policies = write(dir.path(), "policies.yaml", POLICIES);

    let on_pg = json(&matrix(&model, &policies, &["--port", "5432"]));
    let pods = ["ops/probe", "shop/db", "shop/web"];
    let clients = on_pg.as_object().unwrap();
    assert_eq!(
        clients.keys().collect::<Vec<_>>(),
        pods,
        "pending has no podIP"
    );
    for client in pods {
        let servers = clients[client].as_object().unwrap();
        assert_eq!(servers.keys().collect::<Vec<_>>(), pods);
        assert!(servers.values().all(Value::is_boolean));
    }
    assert_eq!(on_pg["shop/web"]["shop/db"], true);
    assert_eq!(on_pg["ops/probe"]["shop/db"], false);
    assert_eq!(on_pg["shop/db"]["shop/db"], true, "a pod to itself");
    assert_eq!(on_pg["shop/db"]["shop/web"], true, "web is not isolated");

    // Another port, and another protocol: pg is 5432/TCP.
    let on_80 = json(&matrix(&model, &policies, &["--port", "80"]));
    assert_eq!(on_80["shop/web"]["shop/db"], false);
    let udp = json(&matrix(
        &model,
        &policies,
        &["--port", "5432", "--protocol", "UDP"],
    ));
    assert_eq!(udp["shop/web"]["shop/db"], false);
    assert_eq!(udp["ops/probe"]["shop/web"], true);

    // No policies at all: everything allowed.
    let none = write(dir.path(), "none.yaml", "");
    let open = json(&matrix(
        &model,
        &none,
        &["--port", "1", "--protocol", "SCTP"],
    ));
    for client in pods {
        for server in pods {
            assert_eq!(open[client][server], true);
        }
    }
}

#[test]
fn bad_input_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(dir.path(), "model.yaml", MODEL);
    let bad = write(
        dir.path(),
        "bad.yaml",
        &format!(
            "{POLICIES}---\n{}",
            POLICIES
                .replace("db-from-web", "second")
                .replace("- port: pg", "- port: 70000")
        ),
    );
    let output = matrix(&model, &bad, &["--port", "80"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains("document 2"), "{stderr}");
    assert!(stderr.contains("NetworkPolicy shop/second"), "{stderr}");
    assert!(stderr.contains("spec.ingress[0].ports[0].port"), "{stderr}");
    assert!(output.stdout.is_empty());

    // A policy in the model file.
    let output = matrix(&bad, &model, &["--port", "80"]);
    assert!(!output.status.success());

    // A missing file.
    let output = matrix(&dir.path().join("missing.yaml"), &model, &["--port", "80"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing.yaml"), "{stderr}");

    // Ports out of range, an unknown protocol.
    let policies = write(dir.path(), "policies.yaml", POLICIES);
    for extra in [
        &["--port", "0"][..],
        &["--port", "65536"],
        &["--port", "80", "--protocol", "ICMP"],
    ] {
        let output = matrix(&model, &policies, extra);
        assert!(!output.status.success(), "{extra:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn misplaced_objects_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(dir.path(), "model.yaml", MODEL);
    let policies = write(dir.path(), "policies.yaml", POLICIES);
    let output = matrix(&policies, &policies, &["--port", "80"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NetworkPolicy shop/db-from-web: --model takes only Namespace and Pod"),
        "{stderr}"
    );
    assert!(stderr.contains("policies.yaml"), "{stderr}");
    let output = matrix(&model, &model, &["--port", "80"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--policies takes only NetworkPolicy"),
        "{stderr}"
    );
}
