//! One `vswitchd` process inside a node's namespace, with its log.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::ctl::Ctl;
use crate::env::bin;
use crate::sys;

/// How long a daemon may take to answer `show` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long a SIGTERM'd daemon may take to exit before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How many lines of log a failing test prints.
const LOG_TAIL_LINES: usize = 400;

/// How to run one daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Name of the namespace it runs in (the node).
    pub netns: String,
    /// Its command line after the program name (`--node`, `--store`, ...), including
    /// `--socket`.
    pub args: Vec<String>,
    /// Its control socket (the same path as in `args`).
    pub socket: PathBuf,
    /// Where its stdout and stderr go; every start appends.
    pub log: PathBuf,
}

/// A running `vswitchd`. Dropping it stops it (SIGTERM, SIGKILL after 3 s); dropping it
/// while the test panics also prints the tail of its log.
///
/// The kernel kills the daemon if the thread that started it exits first, so start and
/// restart daemons from the test's own thread.
#[derive(Debug)]
pub struct Daemon {
    config: DaemonConfig,
    child: Option<Child>,
    starts: u32,
}

impl Daemon {
    /// Starts it and waits until `vswitchctl show --json` answers.
    ///
    /// # Panics
    /// When it cannot be started, exits, or is not ready within 10 s (with its log).
    pub fn start(config: DaemonConfig) -> Daemon {
        let mut daemon = Daemon::spawn(config);
        daemon.wait_ready();
        daemon
    }

    /// Starts it without waiting: several daemons can be spawned one after the other and
    /// then waited for with [`Daemon::wait_ready`], so they join the store at once.
    ///
    /// # Panics
    /// When it cannot be started.
    pub fn spawn(config: DaemonConfig) -> Daemon {
        let mut daemon = Daemon {
            config,
            child: None,
            starts: 0,
        };
        daemon.spawn_process();
        daemon
    }

    /// Its configuration.
    pub fn config(&self) -> &DaemonConfig {
        &self.config
    }

    /// A `vswitchctl` for its socket.
    pub fn ctl(&self) -> Ctl {
        Ctl::new(&self.config.socket)
    }

    /// Its process id while it runs.
    pub fn pid(&mut self) -> Option<u32> {
        self.is_running()
            .then(|| self.child.as_ref().map(Child::id))
            .flatten()
    }

    /// Whether the process is still alive (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    /// Everything it has logged so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read(&self.config.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// `kill -9`: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL when it has not exited after 3 s; waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = sys::send_signal(child.id(), sys::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "e2e: vswitchd in {} ignored SIGTERM for {STOP_GRACE:?}; killing it",
            self.config.netns
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops it if it runs, then starts it again with the same arguments and waits until
    /// it answers.
    ///
    /// # Panics
    /// As [`Daemon::start`].
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines.get(from..).unwrap_or_default().join("\n")
    }

    /// Starts the process and waits until it answers `show`.
    fn spawn_and_wait(&mut self) {
        self.spawn_process();
        self.wait_ready();
    }

    /// Starts the process.
    fn spawn_process(&mut self) {
        self.starts += 1;
        let log = self.open_log();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.config.netns.as_str()])
            .arg(bin("vswitchd"))
            .args(&self.config.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot duplicate the log file"))
            .stderr(log);
        sys::kill_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start vswitchd ({cmd:?}): {e}"));
        self.child = Some(child);
    }

    /// Opens the log for appending and marks the start.
    fn open_log(&self) -> File {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.config.log.display()));
        let _ = writeln!(
            log,
            "=== e2e: start #{} of vswitchd in {}: {} ===",
            self.starts,
            self.config.netns,
            self.config.args.join(" ")
        );
        log
    }

    /// Polls `vswitchctl show --json` until it succeeds (at most 10 s).
    ///
    /// # Panics
    /// When it exits first or does not answer in time (its log is printed as the test
    /// unwinds).
    pub fn wait_ready(&mut self) {
        let ctl = self.ctl();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                panic!(
                    "vswitchd in {} exited before it was ready (its log is printed as the test unwinds)",
                    self.config.netns
                );
            }
            let last_error = match ctl.try_show() {
                Ok(_) => return,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "vswitchd in {} did not answer `vswitchctl show --json` within \
                     {READY_TIMEOUT:?} (its log is printed as the test unwinds); last error: {last_error}",
                    self.config.netns
                );
            }
            thread::sleep(READY_POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "=== e2e: log of vswitchd in {} ({}) ===\n{}\n=== end of log ===",
                self.config.netns,
                self.config.log.display(),
                self.log_tail()
            );
        }
    }
}
