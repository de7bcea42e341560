//! `vswitchctl` against one daemon's socket, and readers for what `show --json` prints.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::cmd::{run_timeout, Finished};
use crate::env::bin;

/// How long one `vswitchctl` call may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(15);

/// `vswitchctl --socket <socket> ...`.
#[derive(Debug, Clone)]
pub struct Ctl {
    socket: PathBuf,
}

impl Ctl {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: &Path) -> Ctl {
        Ctl {
            socket: socket.to_path_buf(),
        }
    }

    /// Runs `vswitchctl --socket S <args>` (bounded); the outcome, success or not.
    ///
    /// # Errors
    /// When it cannot be started or hangs.
    pub fn try_run(&self, args: &[&str]) -> Result<Finished, String> {
        let mut cmd = Command::new(bin("vswitchctl"));
        cmd.arg("--socket").arg(&self.socket).args(args);
        run_timeout(&mut cmd, None, CTL_TIMEOUT)
    }

    /// Runs `vswitchctl --socket S <args>` with `stdin` (bounded); the outcome, success
    /// or not.
    ///
    /// # Panics
    /// When it cannot be started or hangs.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Finished {
        let mut cmd = Command::new(bin("vswitchctl"));
        cmd.arg("--socket").arg(&self.socket).args(args);
        run_timeout(&mut cmd, Some(stdin.as_bytes()), CTL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `vswitchctl apply -f -` with `documents` on stdin, which must succeed.
    ///
    /// # Panics
    /// When it fails, with its output and the input.
    pub fn apply(&self, documents: &str) {
        let done = self.run_with_stdin(&["apply", "-f", "-"], documents);
        assert!(
            done.success(),
            "`vswitchctl apply -f -` failed ({}):\n{}{}\ninput:\n{documents}",
            done.status,
            done.stdout,
            done.stderr
        );
    }

    /// `vswitchctl delete -f -` with `documents` on stdin, which must succeed.
    ///
    /// # Panics
    /// When it fails, with its output and the input.
    pub fn delete(&self, documents: &str) {
        let done = self.run_with_stdin(&["delete", "-f", "-"], documents);
        assert!(
            done.success(),
            "`vswitchctl delete -f -` failed ({}):\n{}{}\ninput:\n{documents}",
            done.status,
            done.stdout,
            done.stderr
        );
    }

    /// Runs `vswitchctl --socket S <args>`; the outcome, success or not.
    ///
    /// # Panics
    /// When it cannot be started or hangs.
    pub fn run(&self, args: &[&str]) -> Finished {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a `--json` listing and parses it.
    ///
    /// # Errors
    /// A message when the command fails or prints something that is not JSON.
    pub fn try_json(&self, args: &[&str]) -> Result<Value, String> {
        let done = self.try_run(args)?;
        if !done.success() {
            return Err(format!(
                "`vswitchctl {}` failed ({}): {}{}",
                args.join(" "),
                done.status,
                done.stdout,
                done.stderr
            ));
        }
        serde_json::from_str(&done.stdout).map_err(|e| {
            format!(
                "`vswitchctl {}` printed no JSON ({e}):\n{}",
                args.join(" "),
                done.stdout
            )
        })
    }

    /// `show --json`, or why it failed.
    ///
    /// # Errors
    /// See [`Ctl::try_json`].
    pub fn try_show(&self) -> Result<Value, String> {
        self.try_json(&["show", "--json"])
    }

    /// `show --json`: the `ShowReply` object.
    ///
    /// # Panics
    /// When it fails or its output is not a JSON object.
    pub fn show(&self) -> Value {
        let show = self.try_show().unwrap_or_else(|e| panic!("{e}"));
        assert!(show.is_object(), "`show --json` is not an object: {show}");
        show
    }

    /// `fdb --json`: the list of `FdbEntry` objects.
    ///
    /// # Panics
    /// When it fails or its output is not a JSON list.
    pub fn fdb(&self) -> Vec<Value> {
        match self
            .try_json(&["fdb", "--json"])
            .unwrap_or_else(|e| panic!("{e}"))
        {
            Value::Array(entries) => entries,
            other => panic!("`fdb --json` is not a list: {other}"),
        }
    }
}

/// The `ports` of a `show --json` object.
///
/// # Panics
/// When `ports` is missing or not a list.
pub fn ports(show: &Value) -> &Vec<Value> {
    show.get("ports")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("`show --json` has no `ports` list: {show}"))
}

/// The port of `show --json` attached for `container_id`, if listed.
pub fn port_by_container<'a>(show: &'a Value, container_id: &str) -> Option<&'a Value> {
    ports(show)
        .iter()
        .find(|port| port.get("container_id").and_then(Value::as_str) == Some(container_id))
}

/// The container ids of all ports `show --json` lists.
pub fn port_container_ids(show: &Value) -> Vec<String> {
    ports(show)
        .iter()
        .filter_map(|port| port.get("container_id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// A string field of a JSON object, such as one of `show --json`.
///
/// # Panics
/// When `value` has no string field `key`.
pub fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string `{key}` in {value}"))
}
