//! Runs the built `vswitch-cni` the way a container runtime does: a clean environment of
//! `CNI_*` variables, the network config on stdin, the result or error object on stdout.
//!
//! The daemon is either absent (a socket path in a fresh temp dir where nothing listens)
//! or a scripted stand-in in this process that records each request and sends a canned
//! response. The real daemon is exercised by the end-to-end tests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use serde_json::{json, Value};
use tempfile::TempDir;
use vswitch::control::proto::{
    AttachmentKey, ControlError, ErrorCode, PortCounters, PortInfo, Reply, Request, Response,
};

/// What one run of the plugin produced.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// Asserts a CNI error with `code` and returns its `msg`.
    fn error(&self, code: u64) -> String {
        assert_eq!(self.status, 1, "exit status; stdout {}", self.stdout);
        let err = self.json();
        assert_eq!(err["code"], json!(code), "{err}");
        for field in ["cniVersion", "msg", "details"] {
            assert!(err[field].is_string(), "{field} missing: {err}");
        }
        err["msg"].as_str().unwrap().to_owned()
    }

    fn success_without_output(&self) {
        assert_eq!(
            self.status, 0,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "");
    }
}

fn run(vars: &[(&str, &str)], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vswitch-cni"))
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        status: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A temp dir holding a stand-in network namespace file and the control socket path.
struct Node {
    dir: TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("netns"), b"").unwrap();
        Node { dir }
    }

    fn netns(&self) -> String {
        self.dir.path().join("netns").to_str().unwrap().to_owned()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("vswitchd.sock")
    }

    fn conf(&self, version: &str) -> Value {
        json!({"cniVersion": version, "name": "podnet", "type": "vswitch-cni",
               "socket": self.socket()})
    }

    fn env<'a>(&'a self, command: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    }
}

/// A stand-in daemon answering each of `responses` in turn, one per connection; joining
/// it returns the requests it got.
fn fake_daemon(socket: &Path, responses: Vec<Response>) -> JoinHandle<Vec<Request>> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let mut requests = Vec::new();
        for response in responses {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            requests.push(serde_json::from_str(&line).unwrap());
            let mut answer = serde_json::to_vec(&response).unwrap();
            answer.push(b'\n');
            (&stream).write_all(&answer).unwrap();
        }
        requests
    })
}

fn key() -> AttachmentKey {
    AttachmentKey {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    }
}

fn port(netns: &str) -> PortInfo {
    PortInfo {
        key: key(),
        pod: "web/front".into(),
        netns: netns.into(),
        address: "10.244.1.5/16".parse().unwrap(),
        gateway: "10.244.1.1".parse().unwrap(),
        mac: "0a:58:0a:f4:01:05".parse().unwrap(),
        mtu: 1450,
        attached: true,
        counters: PortCounters::default(),
    }
}

fn daemon_error(code: ErrorCode, message: &str) -> Response {
    Response::Error(ControlError::new(code, message))
}

// ---- the daemon is absent ----

#[test]
fn garbage_json_is_code_6() {
    let node = Node::new();
    let netns = node.netns();
    let out = run(&node.env("ADD", &netns), "{this is not json");
    out.error(6);
    assert_eq!(out.json()["cniVersion"], "1.1.0");
    assert!(out.stderr.starts_with("vswitch-cni: "), "{}", out.stderr);
}

#[test]
fn missing_container_id_is_code_4() {
    let node = Node::new();
    let netns = node.netns();
    let vars: Vec<_> = node
        .env("ADD", &netns)
        .into_iter()
        .filter(|(k, _)| *k != "CNI_CONTAINERID")
        .collect();
    let msg = run(&vars, &node.conf("1.0.0").to_string()).error(4);
    assert!(msg.contains("CNI_CONTAINERID"), "{msg}");
    // the error object speaks the config's version
    let out = run(&vars, &node.conf("0.4.0").to_string());
    assert_eq!(out.json()["cniVersion"], "0.4.0");
}

#[test]
fn invalid_ifname_is_code_4() {
    let node = Node::new();
    let netns = node.netns();
    let mut vars = node.env("DEL", &netns);
    vars.retain(|(k, _)| *k != "CNI_IFNAME");
    vars.push(("CNI_IFNAME", "a-name-longer-than-15"));
    let msg = run(&vars, &node.conf("1.1.0").to_string()).error(4);
    assert!(msg.contains("CNI_IFNAME"), "{msg}");
}

#[test]
fn unknown_command_is_code_4() {
    let node = Node::new();
    let netns = node.netns();
    let msg = run(&node.env("add", &netns), &node.conf("1.1.0").to_string()).error(4);
    assert!(msg.contains("CNI_COMMAND"), "{msg}");
}

#[test]
fn bad_cni_version_is_code_1() {
    let node = Node::new();
    let netns = node.netns();
    let msg = run(&node.env("ADD", &netns), &node.conf("0.3.1").to_string()).error(1);
    assert!(msg.contains("0.3.1"), "{msg}");
}

#[test]
fn bad_name_is_code_7() {
    let node = Node::new();
    let netns = node.netns();
    let mut conf = node.conf("1.1.0");
    conf["name"] = json!("pod net");
    let msg = run(&node.env("ADD", &netns), &conf.to_string()).error(7);
    assert!(msg.contains("name"), "{msg}");
}

#[test]
fn add_with_missing_netns_is_code_4_naming_cni_netns() {
    let node = Node::new();
    let gone = node.dir.path().join("no-such-netns");
    let gone = gone.to_str().unwrap();
    let msg = run(&node.env("ADD", gone), &node.conf("1.1.0").to_string()).error(4);
    assert!(msg.contains("CNI_NETNS") && msg.contains(gone), "{msg}");
}

#[test]
fn add_with_daemon_absent_is_code_11() {
    let node = Node::new();
    let netns = node.netns();
    let out = run(&node.env("ADD", &netns), &node.conf("1.1.0").to_string());
    let msg = out.error(11);
    assert!(msg.contains(node.socket().to_str().unwrap()), "{msg}");
}

#[test]
fn status_with_daemon_absent_is_code_50() {
    let node = Node::new();
    let vars = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")];
    let msg = run(&vars, &node.conf("1.1.0").to_string()).error(50);
    assert!(msg.contains("vswitchd"), "{msg}");
}

#[test]
fn status_and_gc_need_1_1_0() {
    let node = Node::new();
    for command in ["STATUS", "GC"] {
        let msg = run(&[("CNI_COMMAND", command)], &node.conf("1.0.0").to_string()).error(1);
        assert!(msg.contains(command), "{msg}");
    }
}

#[test]
fn del_with_daemon_absent_is_code_11_so_the_runtime_retries() {
    let node = Node::new();
    let gone = node.dir.path().join("no-such-netns");
    // CNI_NETNS pointing nowhere, or missing, is fine for DEL: only the daemon matters.
    let out = run(
        &node.env("DEL", gone.to_str().unwrap()),
        &node.conf("1.1.0").to_string(),
    );
    out.error(11);
    let mut vars = node.env("DEL", "");
    vars.retain(|(k, _)| *k != "CNI_NETNS");
    run(&vars, &node.conf("1.1.0").to_string()).error(11);
}

#[test]
fn version_echoes_the_config_version() {
    let out = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(out.status, 0);
    assert_eq!(
        out.json(),
        json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );
    assert!(out.stdout.ends_with('\n'));
    assert_eq!(out.stderr, "");
}

#[test]
fn version_with_empty_stdin() {
    let out = run(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(out.status, 0);
    assert_eq!(
        out.json(),
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn no_command_prints_about_on_stderr() {
    let out = run(&[], "");
    assert_eq!(out.status, 0);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("vswitch-cni"), "{}", out.stderr);
    assert!(out.stderr.contains("0.4.0, 1.0.0, 1.1.0"), "{}", out.stderr);
}

// ---- a scripted daemon ----

#[test]
fn add_prints_the_result_in_each_version() {
    for (version, expected) in [
        (
            "1.1.0",
            json!({"cniVersion": "1.1.0",
                   "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05", "mtu": 1450,
                                   "sandbox": "NETNS"}],
                   "ips": [{"address": "10.244.1.5/16", "gateway": "10.244.1.1", "interface": 0}],
                   "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]}),
        ),
        (
            "1.0.0",
            json!({"cniVersion": "1.0.0",
                   "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05",
                                   "sandbox": "NETNS"}],
                   "ips": [{"address": "10.244.1.5/16", "gateway": "10.244.1.1", "interface": 0}],
                   "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]}),
        ),
        (
            "0.4.0",
            json!({"cniVersion": "0.4.0",
                   "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05",
                                   "sandbox": "NETNS"}],
                   "ips": [{"version": "4", "address": "10.244.1.5/16",
                            "gateway": "10.244.1.1", "interface": 0}],
                   "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]}),
        ),
    ] {
        let node = Node::new();
        let netns = node.netns();
        let daemon = fake_daemon(
            &node.socket(),
            vec![Response::Ok(Reply::Added(port(&netns)))],
        );
        let mut vars = node.env("ADD", &netns);
        vars.push((
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=front",
        ));
        let out = run(&vars, &node.conf(version).to_string());
        assert_eq!(out.status, 0, "{} {}", out.stdout, out.stderr);
        let expected = expected.to_string().replace("NETNS", &netns);
        assert_eq!(
            out.json(),
            serde_json::from_str::<Value>(&expected).unwrap()
        );
        assert_eq!(
            daemon.join().unwrap(),
            vec![Request::Add {
                key: key(),
                netns: netns.clone(),
                pod_namespace: "web".into(),
                pod_name: "front".into(),
            }]
        );
    }
}

#[test]
fn add_keeps_the_prev_result() {
    let node = Node::new();
    let netns = node.netns();
    let daemon = fake_daemon(
        &node.socket(),
        vec![Response::Ok(Reply::Added(port(&netns)))],
    );
    let mut conf = node.conf("1.1.0");
    conf["prevResult"] = json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "lo", "sandbox": netns}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}],
        "dns": {"nameservers": ["10.96.0.10"]},
    });
    let out = run(&node.env("ADD", &netns), &conf.to_string());
    assert_eq!(out.status, 0, "{}", out.stdout);
    let result = out.json();
    assert_eq!(result["interfaces"].as_array().unwrap().len(), 2);
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(result["ips"][1]["interface"], 1);
    assert_eq!(result["ips"][0]["address"], "127.0.0.1/8");
    assert_eq!(result["dns"]["nameservers"][0], "10.96.0.10");
    daemon.join().unwrap();
}

#[test]
fn add_with_interface_taken_is_code_4_naming_cni_ifname() {
    let node = Node::new();
    let netns = node.netns();
    let daemon = fake_daemon(
        &node.socket(),
        vec![daemon_error(ErrorCode::InterfaceExists, "eth0 exists")],
    );
    let msg = run(&node.env("ADD", &netns), &node.conf("1.1.0").to_string()).error(4);
    assert_eq!(
        msg,
        format!("CNI_IFNAME: interface eth0 already exists in {netns}")
    );
    daemon.join().unwrap();
}

#[test]
fn add_with_subnet_full_is_code_101() {
    let node = Node::new();
    let netns = node.netns();
    let daemon = fake_daemon(
        &node.socket(),
        vec![daemon_error(
            ErrorCode::AddressesExhausted,
            "10.244.1.0/24 is full",
        )],
    );
    run(&node.env("ADD", &netns), &node.conf("1.1.0").to_string()).error(101);
    daemon.join().unwrap();
}

#[test]
fn del_succeeds_when_already_gone_and_repeated() {
    let node = Node::new();
    let daemon = fake_daemon(
        &node.socket(),
        vec![
            Response::Ok(Reply::Done),
            daemon_error(ErrorCode::UnknownAttachment, "no such attachment"),
        ],
    );
    let mut vars = node.env("DEL", "");
    vars.retain(|(k, _)| *k != "CNI_NETNS");
    let mut conf = node.conf("1.0.0");
    conf["prevResult"] = json!("not even a result");
    for _ in 0..2 {
        run(&vars, &conf.to_string()).success_without_output();
    }
    assert_eq!(
        daemon.join().unwrap(),
        vec![Request::Del { key: key() }, Request::Del { key: key() }]
    );
}

#[test]
fn check_verifies_prev_result_then_asks_the_daemon() {
    let node = Node::new();
    let netns = node.netns();
    let daemon = fake_daemon(
        &node.socket(),
        vec![
            Response::Ok(Reply::Done),
            daemon_error(ErrorCode::CheckFailed, "eth0 has lost 10.244.1.5/16"),
            daemon_error(ErrorCode::UnknownAttachment, "no such attachment"),
        ],
    );
    let mut conf = node.conf("1.0.0");
    conf["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": netns}],
        "ips": [{"address": "10.244.1.5/16", "gateway": "10.244.1.1", "interface": 0}],
    });
    let vars = node.env("CHECK", &netns);
    run(&vars, &conf.to_string()).success_without_output();
    let msg = run(&vars, &conf.to_string()).error(100);
    assert!(msg.contains("lost"), "{msg}");
    run(&vars, &conf.to_string()).error(3);
    // a prevResult without our interface fails before the daemon is asked
    conf["prevResult"]["interfaces"][0]["name"] = json!("net1");
    run(&vars, &conf.to_string()).error(100);
    assert_eq!(daemon.join().unwrap().len(), 3);
}

#[test]
fn gc_sends_the_union_of_both_keys() {
    let node = Node::new();
    let daemon = fake_daemon(
        &node.socket(),
        vec![Response::Ok(Reply::Collected(vec![AttachmentKey {
            container_id: "old".into(),
            ifname: "eth0".into(),
        }]))],
    );
    let mut conf = node.conf("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    conf["cni.dev/attachments"] = json!([
        {"containerID": "c1", "ifname": "eth0"},
        {"containerID": "c2", "ifname": "eth0"},
    ]);
    let out = run(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
        &conf.to_string(),
    );
    out.success_without_output();
    assert!(out.stderr.contains("old/eth0"), "{}", out.stderr);
    let valid = vec![
        key(),
        AttachmentKey {
            container_id: "c2".into(),
            ifname: "eth0".into(),
        },
    ];
    assert_eq!(daemon.join().unwrap(), vec![Request::Gc { valid }]);
}

#[test]
fn status_follows_the_daemon() {
    let node = Node::new();
    let daemon = fake_daemon(
        &node.socket(),
        vec![
            Response::Ok(Reply::Done),
            daemon_error(ErrorCode::NotReady, "no node subnet leased yet"),
        ],
    );
    let vars = [("CNI_COMMAND", "STATUS")];
    run(&vars, &node.conf("1.1.0").to_string()).success_without_output();
    let msg = run(&vars, &node.conf("1.1.0").to_string()).error(50);
    assert!(msg.contains("no node subnet"), "{msg}");
    assert_eq!(
        daemon.join().unwrap(),
        vec![Request::Status, Request::Status]
    );
}
