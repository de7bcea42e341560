//! Running `vswitch-cni` exactly as a container runtime does: `CNI_*` environment, the
//! network configuration on stdin, the result or error object on stdout.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cmd::run_timeout;
use crate::env::{bin, bin_dir};
use crate::netns::Netns;

/// How long one plugin call may take.
const CNI_TIMEOUT: Duration = Duration::from_secs(30);

/// The network configuration a runtime hands the plugin for the daemon on `socket`.
pub fn netconf(socket: &Path, version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "podnet",
        "type": "vswitch-cni",
        "socket": socket.to_string_lossy(),
    })
}

/// `conf` with `prevResult` set, as a runtime sends it for CHECK and DEL.
pub fn with_prev_result(conf: &Value, result: &Value) -> Value {
    let mut conf = conf.clone();
    if let Some(object) = conf.as_object_mut() {
        object.insert("prevResult".to_owned(), result.clone());
    }
    conf
}

/// One invocation of the plugin: its environment and stdin.
#[derive(Debug, Clone)]
pub struct CniRequest {
    env: BTreeMap<String, String>,
    stdin: Vec<u8>,
}

impl CniRequest {
    /// A request for `command` (ADD, DEL, CHECK, GC, STATUS, VERSION) with `CNI_PATH` set
    /// to the binaries' directory and nothing else.
    pub fn new(command: &str) -> CniRequest {
        let mut env = BTreeMap::new();
        env.insert("CNI_COMMAND".to_owned(), command.to_owned());
        env.insert(
            "CNI_PATH".to_owned(),
            bin_dir().to_string_lossy().into_owned(),
        );
        CniRequest {
            env,
            stdin: Vec::new(),
        }
    }

    /// `CNI_CONTAINERID`.
    pub fn container_id(self, id: &str) -> CniRequest {
        self.env("CNI_CONTAINERID", id)
    }

    /// `CNI_NETNS`.
    pub fn netns(self, path: &str) -> CniRequest {
        self.env("CNI_NETNS", path)
    }

    /// `CNI_IFNAME`.
    pub fn ifname(self, name: &str) -> CniRequest {
        self.env("CNI_IFNAME", name)
    }

    /// `CNI_ARGS` naming the pod, as the kubelet sets it.
    pub fn pod(self, namespace: &str, name: &str) -> CniRequest {
        self.env(
            "CNI_ARGS",
            &format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}"),
        )
    }

    /// Sets any environment variable.
    pub fn env(mut self, key: &str, value: &str) -> CniRequest {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Removes an environment variable set before.
    pub fn unset(mut self, key: &str) -> CniRequest {
        self.env.remove(key);
        self
    }

    /// The network configuration (JSON) on stdin.
    pub fn config(mut self, conf: &Value) -> CniRequest {
        self.stdin = conf.to_string().into_bytes();
        self
    }

    /// Raw bytes on stdin (for malformed input).
    pub fn stdin(mut self, bytes: &[u8]) -> CniRequest {
        self.stdin = bytes.to_vec();
        self
    }

    /// Runs the plugin inside `host` (the node's namespace, where a runtime runs it).
    ///
    /// # Panics
    /// When the plugin cannot be started or takes longer than 30 s.
    pub fn run_in(&self, host: &Netns) -> CniOutput {
        let mut cmd = host.command(&bin("vswitch-cni").to_string_lossy());
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(&self.env);
        let done = run_timeout(&mut cmd, Some(&self.stdin), CNI_TIMEOUT)
            .unwrap_or_else(|e| panic!("vswitch-cni {:?}: {e}", self.env.get("CNI_COMMAND")));
        let json = serde_json::from_str(done.stdout.trim()).ok();
        CniOutput {
            request: self.clone(),
            code: done.code(),
            stdout: done.stdout,
            stderr: done.stderr,
            json,
        }
    }
}

/// What the plugin answered.
#[derive(Debug, Clone)]
pub struct CniOutput {
    /// The request, for messages.
    pub request: CniRequest,
    /// Its exit code (-1 when killed by a signal).
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (logs).
    pub stderr: String,
    /// Its stdout as JSON, when it is JSON.
    pub json: Option<Value>,
}

impl CniOutput {
    /// Exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Everything about the call, for an assertion message.
    pub fn describe(&self) -> String {
        format!(
            "vswitch-cni with {:?}\nstdin: {}\nexit code: {}\nstdout: {}\nstderr: {}",
            self.request.env,
            String::from_utf8_lossy(&self.request.stdin),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts success; returns the JSON it printed, if any (ADD prints a result, DEL
    /// and CHECK print nothing).
    ///
    /// # Panics
    /// When it failed, with everything about the call.
    pub fn expect_success(&self, what: &str) -> Option<&Value> {
        assert!(
            self.success(),
            "{what}: expected success\n{}",
            self.describe()
        );
        self.json.as_ref()
    }

    /// Asserts a failure reported as a CNI error object on stdout: a non-zero exit, an
    /// object with a numeric `code` and a non-empty `msg`. Returns the object.
    ///
    /// # Panics
    /// When it succeeded or the error object is malformed.
    pub fn expect_failure(&self, what: &str) -> &Value {
        assert!(
            !self.success(),
            "{what}: expected failure\n{}",
            self.describe()
        );
        let error = self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "{what}: the error is not a JSON object on stdout\n{}",
                self.describe()
            )
        });
        assert!(
            error.get("code").and_then(Value::as_u64).is_some(),
            "{what}: the error object has no numeric `code`\n{}",
            self.describe()
        );
        assert!(
            error
                .get("msg")
                .and_then(Value::as_str)
                .is_some_and(|msg| !msg.is_empty()),
            "{what}: the error object has no `msg`\n{}",
            self.describe()
        );
        error
    }

    /// As [`CniOutput::expect_failure`], and the object's `code` is `code`.
    ///
    /// # Panics
    /// When it succeeded, or failed otherwise.
    pub fn expect_error(&self, what: &str, code: u64) -> &Value {
        let error = self.expect_failure(what);
        assert_eq!(
            error.get("code").and_then(Value::as_u64),
            Some(code),
            "{what}: wrong CNI error code\n{}",
            self.describe()
        );
        error
    }

    /// The `msg` of an error object ("" when there is none).
    pub fn msg(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|error| error.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}
