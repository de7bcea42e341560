//! Runs the built `vswitch-cni` the way a container runtime does: a clean environment of
//! `CNI_*` variables, the network config on stdin, the result or error object on stdout.
//!
//! The daemon is absent here (a socket path in a fresh temp dir where nothing listens):
//! these tests cover what the plugin decides on its own. Every path that needs the daemon
//! runs against the real one in the end-to-end tests (e2e/tests/).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use tempfile::TempDir;

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
