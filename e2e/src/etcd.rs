//! One etcd server (Debian's `etcd-server`, `/usr/bin/etcd`) inside a cluster's fabric
//! namespace, for the daemons' `--store etcd://...`.
//!
//! It listens for clients on the fabric bridge's address, [`ETCD_CLIENT`]
//! (192.168.250.1:2379), which every node reaches through its default route, and for
//! peers on 127.0.0.1:2380 inside the fabric namespace. Every test has its own fabric
//! namespace, so all tests use the same addresses without colliding. Its data directory
//! and log live in the cluster's temporary directory; [`Etcd::kill9`] then
//! [`Etcd::start`] restarts it on the same data, as after a crash.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::FABRIC_ADDRESS;
use crate::cmd::{run_timeout, Finished};
use crate::sys;

/// The etcd server binary (Debian package `etcd-server`).
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// The etcd v3 client (Debian package `etcd-client`).
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
/// Where etcd serves clients: the fabric bridge's address, port 2379.
pub const ETCD_CLIENT: SocketAddrV4 = SocketAddrV4::new(FABRIC_ADDRESS, 2379);
/// Where etcd listens for peers, inside the fabric namespace only.
const ETCD_PEER: &str = "http://127.0.0.1:2380";
/// The member's name.
const MEMBER: &str = "e2e";
/// How long etcd may take to answer `endpoint health` after a start.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often health is polled.
const HEALTH_POLL: Duration = Duration::from_millis(100);
/// How long one `etcdctl` call may take.
const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(15);
/// How many lines of log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

/// A running (or killed) etcd server in a fabric namespace. Dropping it kills it (also
/// while the test panics, printing the tail of its log then); the kernel kills it, too,
/// when the thread that started it dies, so start it from the test's own thread.
#[derive(Debug)]
pub struct Etcd {
    netns: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Etcd {
    /// Starts etcd in the namespace `netns` (a cluster's fabric, holding 192.168.250.1)
    /// with its data and log under `dir`, and waits until it is healthy.
    ///
    /// # Panics
    /// When `/usr/bin/etcd` or `/usr/bin/etcdctl` is missing, or etcd does not become
    /// healthy within 20 s (with its log).
    pub fn new(netns: &str, dir: &Path) -> Etcd {
        for (path, package) in [(ETCD_BIN, "etcd-server"), (ETCDCTL_BIN, "etcd-client")] {
            assert!(
                Path::new(path).is_file(),
                "the etcd store tests need {path} (Debian package `{package}`)"
            );
        }
        let mut etcd = Etcd {
            netns: netns.to_owned(),
            data_dir: dir.join("etcd-data"),
            log: dir.join("etcd.log"),
            child: None,
            starts: 0,
        };
        etcd.start();
        etcd
    }

    /// The daemons' `--store` value: `etcd://192.168.250.1:2379`.
    pub fn store_url(&self) -> String {
        format!("etcd://{ETCD_CLIENT}")
    }

    /// The client endpoint as etcdctl takes it: `http://192.168.250.1:2379`.
    pub fn endpoint(&self) -> String {
        format!("http://{ETCD_CLIENT}")
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything it has logged so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Whether the process is alive (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    /// `kill -9`, as in a crash or a power loss; waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again, on the same data directory) unless it runs, and waits until
    /// `etcdctl endpoint health` succeeds.
    ///
    /// # Panics
    /// When it cannot be started, exits, or is not healthy within 20 s.
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        self.starts += 1;
        let log = self.open_log();
        let peer = ETCD_PEER;
        let client = self.endpoint();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.netns.as_str(), ETCD_BIN])
            .args(["--name", MEMBER])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--initial-cluster", &format!("{MEMBER}={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "vswitch-e2e"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--logger", "zap"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot duplicate the etcd log file"))
            .stderr(log);
        sys::kill_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd ({cmd:?}): {e}"));
        self.child = Some(child);
        self.wait_healthy();
    }

    /// `etcdctl --endpoints http://192.168.250.1:2379 <args>` (v3 API) inside the fabric
    /// namespace, bounded; the outcome, success or not. Works while etcd is down, too
    /// (then it fails).
    ///
    /// # Panics
    /// When etcdctl cannot be started or hangs past its own timeouts.
    pub fn etcdctl(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.netns.as_str(), ETCDCTL_BIN])
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.endpoint(),
                "--dial-timeout=2s",
                "--command-timeout=5s",
            ])
            .args(args);
        run_timeout(&mut cmd, None, ETCDCTL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Etcd::etcdctl`], which must succeed; its stdout.
    ///
    /// # Panics
    /// When it fails, with its output.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let done = self.etcdctl(args);
        assert!(
            done.success(),
            "`etcdctl {}` failed ({}):\n{}{}",
            args.join(" "),
            done.status,
            done.stdout,
            done.stderr
        );
        done.stdout
    }

    /// Every key under `prefix` with its value (`etcdctl get --prefix`), in key order.
    ///
    /// # Panics
    /// When etcdctl fails.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.etcdctl_ok(&["get", "--prefix", prefix]);
        let mut lines = out.lines();
        let mut pairs = Vec::new();
        // etcdctl prints a key line, then a value line (values never contain newlines
        // here: the product writes one-line JSON).
        while let Some(key) = lines.next() {
            let value = lines.next().unwrap_or_default();
            pairs.push((key.to_owned(), value.to_owned()));
        }
        pairs
    }

    /// Polls `etcdctl endpoint health` until it succeeds.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            assert!(
                self.is_running(),
                "etcd in {} exited before it was healthy; its log ({}):\n{}",
                self.netns,
                self.log.display(),
                self.log_tail()
            );
            let done = self.etcdctl(&["endpoint", "health"]);
            if done.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd in {} was not healthy within {HEALTHY_TIMEOUT:?}: {}{}\nits log ({}):\n{}",
                self.netns,
                done.stdout,
                done.stderr,
                self.log.display(),
                self.log_tail()
            );
            thread::sleep(HEALTH_POLL);
        }
    }

    /// Opens the log for appending and marks the start.
    fn open_log(&self) -> File {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let _ = writeln!(
            log,
            "=== e2e: start #{} of etcd in {} ===",
            self.starts, self.netns
        );
        log
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines.get(from..).unwrap_or_default().join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "=== e2e: log of etcd in {} ({}) ===\n{}\n=== end of log ===",
                self.netns,
                self.log.display(),
                self.log_tail()
            );
        }
    }
}
