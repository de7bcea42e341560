//! Where the binaries are, what the machine must have, unique names, and the clean-up of
//! what a killed earlier run left behind.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use crate::cmd::run;
use crate::sys;

/// The product's binaries every e2e test needs.
const BINARIES: [&str; 3] = ["vswitchd", "vswitchctl", "vswitch-cni"];

/// External tools the harness runs, and the Debian package each comes from.
const TOOLS: [(&str, &str); 3] = [
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("python3", "python3"),
];

/// A number unique within this test process (across threads).
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Panics unless this process runs as root.
///
/// # Panics
/// When the effective uid is not 0: the e2e tests create network namespaces, TAP devices
/// and daemons, and a test that cannot do so must fail, not pass.
pub fn require_root() {
    let uid = sys::effective_uid();
    assert!(
        uid == 0,
        "the vswitch e2e tests need root (they create network namespaces, TAP devices and \
         daemons); running as uid {uid}. Run them as root, e.g. \
         `sudo -E cargo test -p vswitch-e2e`"
    );
}

/// The directory the binaries are taken from: `$VSWITCH_BIN_DIR`, else the profile
/// directory this test binary was built into (when it holds `vswitchd`), else
/// `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VSWITCH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // A test executable lives in <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.parent().and_then(Path::parent) {
            if profile.join("vswitchd").is_file() {
                return profile.to_path_buf();
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("debug")
}

/// The path of one of the product's binaries.
///
/// # Panics
/// When it does not exist, with the command that builds it.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "binary `{name}` not found at {}: run `cargo build --workspace --bins` first \
         (or point VSWITCH_BIN_DIR at the directory holding vswitchd, vswitchctl and \
         vswitch-cni)",
        path.display()
    );
    path
}

/// Is `program` an executable somewhere on `$PATH`?
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Checks, once per process, that the tests can run at all (root, tools, binaries), and
/// removes what killed earlier runs left behind.
///
/// # Panics
/// When something is missing, saying what and how to get it.
pub fn preflight() {
    static ONCE: Once = Once::new();
    require_root();
    ONCE.call_once(|| {
        for (tool, package) in TOOLS {
            assert!(
                on_path(tool),
                "the vswitch e2e tests need `{tool}` on PATH (Debian package `{package}`)"
            );
        }
        for name in BINARIES {
            bin(name);
        }
        remove_leftovers();
        // The first `ip netns add` on a machine sets up /run/netns as a shared mount;
        // doing it once here keeps parallel tests from racing on that.
        let warmup = crate::netns::Netns::new("init");
        drop(warmup);
    });
}

/// The process id in a harness name `<prefix><pid>-...`, if it has that shape.
fn pid_in(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('-').next()?.parse().ok()
}

/// Whether no process with this id exists.
fn is_dead(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes network namespaces and temporary directories of test processes that are gone.
fn remove_leftovers() {
    let listed = run(&["ip", "netns", "list"]);
    for line in listed.stdout.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if pid_in(name, crate::netns::PREFIX).is_some_and(is_dead) {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if pid_in(&name, crate::tempdir::PREFIX).is_some_and(is_dead) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_parsing() {
        assert_eq!(pid_in("vt-123-4-fab", "vt-"), Some(123));
        assert_eq!(pid_in("vt-x-4-fab", "vt-"), None);
        assert_eq!(pid_in("other-123", "vt-"), None);
    }
}
