//! Packet captures with `tshark`, and reading them back through Wireshark's dissectors:
//! an independent decoder of what goes over the wire.
//!
//! A [`Capture`] runs `tshark -w FILE` in a namespace in the background and is stopped
//! (SIGINT, so the file is complete) by [`Capture::stop`] or its guard. [`read_fields`]
//! and [`count`] then run `tshark -r` on the file.
//!
//! Capture on a bridge's *ports* (e.g. the fabric's `n1`), not on the bridge device:
//! frames forwarded between two ports never pass the bridge device itself.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::run_timeout;
use crate::netns::Netns;

/// How long tshark may take to start capturing.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait after tshark says it is capturing.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a packet can sit in the kernel's capture ring before dumpcap gets it: libpcap
/// hands packets over a block at a time, a block being retired when full or after
/// dumpcap's read timeout (250 ms), and a dumpcap stopped by SIGINT does not drain the
/// block still open. Measured here: a packet 100 ms before the SIGINT is lost, one 200 ms
/// before is kept. [`Capture::stop`] waits this long first, so what a test sent before
/// it stopped the capture is in the file.
const HAND_OVER: Duration = Duration::from_millis(600);
/// How long tshark may take to exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading a capture file back may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A capture stops by itself after this long, whatever happens to the test.
const MAX_DURATION_SECS: u32 = 60;

/// Panics unless `tshark` is on `PATH`.
///
/// # Panics
/// When it is not, with how to install it.
pub fn require_tshark() {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("tshark").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `tshark` on PATH (Debian package `tshark`: apt-get install -y tshark)"
    );
}

/// A running `tshark -w`. Dropping it stops it.
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    stderr: Arc<Mutex<String>>,
    what: String,
}

impl Capture {
    /// Starts `tshark -i IFACE... -f FILTER -w FILE` inside `ns` and waits until it says
    /// it is capturing. `filter` is a capture (BPF) filter; empty for everything.
    ///
    /// # Panics
    /// When tshark is missing, cannot start, or does not start capturing within 15 s.
    pub fn start(ns: &Netns, interfaces: &[&str], filter: &str, file: &Path) -> Capture {
        require_tshark();
        let mut cmd = ns.command("tshark");
        // Before any `-i`, a capture filter applies to every interface; after one, only
        // to the interface named last.
        if !filter.is_empty() {
            cmd.args(["-f", filter]);
        }
        for iface in interfaces {
            cmd.args(["-i", iface]);
        }
        cmd.args(["-n", "-a", &format!("duration:{MAX_DURATION_SECS}"), "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let what = format!("tshark on {interfaces:?} in {} ({filter:?})", ns.name());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, started) = mpsc::channel();
        let pipe = child.stderr.take();
        let log = Arc::clone(&stderr);
        thread::spawn(move || {
            let Some(pipe) = pipe else { return };
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = tx.send(());
                }
                if let Ok(mut log) = log.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let mut capture = Capture {
            child: Some(child),
            file: file.to_path_buf(),
            stderr,
            what,
        };
        if started.recv_timeout(START_TIMEOUT).is_err() {
            capture.stop();
            panic!(
                "{} did not start capturing within {START_TIMEOUT:?}:\n{}",
                capture.what,
                capture.stderr_text()
            );
        }
        // "Capturing on" comes a moment before the first packet is really taken.
        thread::sleep(SETTLE);
        capture
    }

    /// The capture file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What tshark printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops it (after [`HAND_OVER`], SIGINT; SIGKILL after 10 s more) and waits for it;
    /// the file then holds every packet that passed before the call. Stopping a stopped
    /// capture does nothing.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if !thread::panicking() {
            thread::sleep(HAND_OVER);
        }
        // `ip netns exec` execs tshark, so the child is tshark itself.
        let _ = crate::sys::send_signal(child.id(), libc::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("e2e: {} ignored SIGINT; killing it", self.what);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One packet as [`read_fields`] returns it: for each requested field, every occurrence
/// in the packet, outermost first (an outer and an inner `ip.src` for a VXLAN datagram
/// carrying IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Vec<String>>);

impl Row {
    /// All occurrences of field `i`.
    pub fn all(&self, i: usize) -> &[String] {
        self.0.get(i).map(Vec::as_slice).unwrap_or_default()
    }

    /// The first (outermost) occurrence of field `i`.
    pub fn first(&self, i: usize) -> Option<&str> {
        self.all(i).first().map(String::as_str)
    }

    /// The last (innermost) occurrence of field `i`.
    pub fn last(&self, i: usize) -> Option<&str> {
        self.all(i).last().map(String::as_str)
    }
}

/// Runs `tshark -r FILE [-Y FILTER] -T fields -e F...` and splits its output: one [`Row`]
/// per packet that passes `display_filter` (empty for all).
///
/// # Panics
/// When tshark fails or hangs.
pub fn read_fields(file: &Path, display_filter: &str, fields: &[&str]) -> Vec<Row> {
    require_tshark();
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).arg("-n");
    if !display_filter.is_empty() {
        cmd.args(["-Y", display_filter]);
    }
    cmd.args(["-T", "fields"]);
    for field in fields {
        cmd.args(["-e", field]);
    }
    cmd.args([
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
    ]);
    let done = run_timeout(&mut cmd, None, READ_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        done.success(),
        "tshark -r {} -Y {display_filter:?} failed ({}): {}",
        file.display(),
        done.status,
        done.stderr
    );
    done.stdout
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            Row(line
                .split('|')
                .map(|field| {
                    field
                        .split(';')
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .collect())
        })
        .collect()
}

/// How many packets of `file` pass `display_filter` (empty for all).
///
/// # Panics
/// As [`read_fields`].
pub fn count(file: &Path, display_filter: &str) -> usize {
    read_fields(file, display_filter, &["frame.number"]).len()
}

/// Whether a boolean field's text means "set" (tshark prints `1` or `True` by version).
pub fn is_set(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "True" | "true"))
}
