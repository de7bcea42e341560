//! A named network namespace that exists as long as its guard.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;

use crate::cmd::{run, Finished};
use crate::env::{next_id, require_root};

/// Every namespace the harness makes is named `vt-<pid>-<n>-<role>`.
pub(crate) const PREFIX: &str = "vt-";

/// A network namespace made with `ip netns add`, loopback up. Dropping the guard deletes
/// it; one that is already gone is fine.
#[derive(Debug)]
pub struct Netns {
    name: String,
    deleted: bool,
}

impl Netns {
    /// A new namespace named `vt-<pid>-<n>-<role>`; keep `role` short (`fab`, `n1`, `pa`).
    ///
    /// # Panics
    /// When not root or when `ip netns add` fails.
    pub fn new(role: &str) -> Netns {
        require_root();
        let role: String = role
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(12)
            .collect();
        let name = format!("{PREFIX}{}-{}-{role}", std::process::id(), next_id());
        let added = run(&["ip", "netns", "add", &name]);
        assert!(
            added.success(),
            "ip netns add {name} failed: {}",
            added.stderr
        );
        // The guard exists from here on, so a failure below still removes the namespace.
        let netns = Netns {
            name,
            deleted: false,
        };
        netns.ip_ok(&["link", "set", "lo", "up"]);
        netns
    }

    /// Its name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path, what a runtime passes as `CNI_NETNS`: `/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Whether it still exists.
    pub fn exists(&self) -> bool {
        PathBuf::from(self.path()).exists()
    }

    /// `ip -n <name> <args>`.
    ///
    /// # Panics
    /// When `ip` cannot be run or hangs; a non-zero exit is returned, not a panic.
    pub fn ip(&self, args: &[&str]) -> Finished {
        let mut argv = vec!["ip", "-n", self.name.as_str()];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// `ip -n <name> <args>`, which must succeed; returns its stdout.
    ///
    /// # Panics
    /// When it fails, with its stderr.
    pub fn ip_ok(&self, args: &[&str]) -> String {
        let done = self.ip(args);
        assert!(
            done.success(),
            "`ip -n {} {}` failed: {}",
            self.name,
            args.join(" "),
            done.stderr
        );
        done.stdout
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name>`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name.as_str(), program]);
        cmd
    }

    /// Runs `argv` inside the namespace and waits for it (bounded).
    ///
    /// # Panics
    /// When it cannot be started or hangs.
    pub fn exec(&self, argv: &[&str]) -> Finished {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// Deletes the namespace now (what a runtime does when a pod's sandbox goes away).
    /// The guard then does nothing more on drop.
    ///
    /// # Panics
    /// When it exists and `ip netns del` fails.
    pub fn delete(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        if !self.exists() {
            return;
        }
        let done = run(&["ip", "netns", "del", &self.name]);
        assert!(
            done.success() || !self.exists(),
            "ip netns del {} failed: {}",
            self.name,
            done.stderr
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.deleted || !self.exists() {
            return;
        }
        self.deleted = true;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "del", self.name.as_str()]);
        match crate::cmd::run_timeout(&mut cmd, None, crate::cmd::DEFAULT_TIMEOUT) {
            Ok(done) if done.success() || !self.exists() => {}
            Ok(done) => eprintln!("e2e: cannot delete netns {}: {}", self.name, done.stderr),
            Err(e) => eprintln!("e2e: cannot delete netns {}: {e}", self.name),
        }
    }
}
