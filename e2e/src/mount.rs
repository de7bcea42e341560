//! File systems that misbehave on purpose, for the fault tests: a tiny `tmpfs` that can be
//! filled to the last page, and a directory made read-only for one process only.
//!
//! Both are guards: dropping them unmounts what they mounted, also while a test panics.
//!
//! `ip netns exec` (how the harness starts every daemon) gives the daemon its own mount
//! namespace, a copy of the test's at that moment; on a machine whose `/` is a private
//! mount (no propagation) a mount made later by the test is not seen by a running
//! daemon. So a [`Tmpfs`] must be mounted before the daemon starts (see
//! [`crate::ClusterBuilder::state_root`]); filling it works from anywhere, since every
//! copy of the mount is the same file system. A [`ReadOnlyBind`] is made inside the
//! daemon's own mount namespace (`nsenter --mount`), which needs no propagation.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::cmd::run;
use crate::env::require_root;
use crate::tempdir::TempDir;

/// A `tmpfs` of a fixed size mounted on a fresh temporary directory. Dropping it
/// unmounts it (lazily when it is still busy) and removes the directory.
#[derive(Debug)]
pub struct Tmpfs {
    // Unmounted in `drop`, before the directory (a field) is removed.
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_kib` KiB.
    ///
    /// # Panics
    /// When not root or when `mount` fails.
    pub fn new(size_kib: u64) -> Tmpfs {
        require_root();
        let dir = TempDir::new();
        let path = dir.path().display().to_string();
        let options = format!("size={size_kib}k,mode=0755");
        let done = run(&["mount", "-t", "tmpfs", "-o", &options, "tmpfs", &path]);
        assert!(
            done.success(),
            "mount -t tmpfs -o {options} tmpfs {path} failed: {}",
            done.stderr
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte with the file `name`, and returns its path
    /// (remove it to free the space). Writes 4 KiB blocks until the kernel says `ENOSPC`,
    /// then single bytes until it says so again.
    ///
    /// # Panics
    /// When the file cannot be created, or a write fails with anything but `ENOSPC`.
    pub fn fill(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let block = [0x5au8; 4096];
        for chunk in [&block[..], &block[..1]] {
            loop {
                match file.write(chunk) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        drop(file);
        // Prove it: even a new file with one byte does not fit.
        let probe = self.path().join(format!("{name}.probe"));
        let fits = File::create(&probe).and_then(|mut f| {
            f.write_all(b"x")?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        assert!(
            fits.is_err(),
            "{} is not full after filling it",
            self.path().display()
        );
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.dir.path().display().to_string());
    }
}

/// `dir` bind-mounted read-only onto itself inside the mount namespace of process `pid`
/// (a daemon): that process can no longer create, write or rename anything under it,
/// while files it opened before stay open, as after a file system went read-only under
/// a running program. Dropping the guard undoes it while the process lives.
#[derive(Debug)]
pub struct ReadOnlyBind {
    pid: u32,
    dir: String,
    active: bool,
}

impl ReadOnlyBind {
    /// Makes `dir` read-only for process `pid` (and whatever shares its mount namespace).
    ///
    /// # Panics
    /// When `nsenter` or `mount` fails.
    pub fn new(pid: u32, dir: &Path) -> ReadOnlyBind {
        require_root();
        let dir = dir.display().to_string();
        let target = pid.to_string();
        let mut guard = ReadOnlyBind {
            pid,
            dir: dir.clone(),
            active: false,
        };
        let bind = run(&[
            "nsenter", "--target", &target, "--mount", "mount", "--bind", &dir, &dir,
        ]);
        assert!(
            bind.success(),
            "bind-mounting {dir} in the mount namespace of {pid} failed: {}",
            bind.stderr
        );
        guard.active = true;
        let ro = run(&[
            "nsenter",
            "--target",
            &target,
            "--mount",
            "mount",
            "-o",
            "remount,bind,ro",
            &dir,
        ]);
        assert!(
            ro.success(),
            "remounting {dir} read-only in the mount namespace of {pid} failed: {}",
            ro.stderr
        );
        guard
    }

    /// Makes the directory writable again (unmounts the read-only bind).
    ///
    /// # Panics
    /// When the unmount fails while the process still runs.
    pub fn undo(&mut self) {
        if !self.active {
            return;
        }
        self.active = false;
        if !Path::new(&format!("/proc/{}", self.pid)).exists() {
            return;
        }
        let done = run(&[
            "nsenter",
            "--target",
            &self.pid.to_string(),
            "--mount",
            "umount",
            &self.dir,
        ]);
        assert!(
            done.success(),
            "unmounting the read-only bind of {} in the mount namespace of {} failed: {}",
            self.dir,
            self.pid,
            done.stderr
        );
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        self.active = false;
        // Gone with its process when the namespace was the daemon's alone.
        if Path::new(&format!("/proc/{}", self.pid)).exists() {
            let target = self.pid.to_string();
            let _ = run(&[
                "nsenter", "--target", &target, "--mount", "umount", "-l", &self.dir,
            ]);
        }
    }
}

/// `umount`, and `umount -l` when the first fails (a process still has files open);
/// failures are printed, since this runs in guards.
fn unmount(path: &str) {
    if run(&["umount", path]).success() {
        return;
    }
    let done = run(&["umount", "-l", path]);
    if !done.success() {
        eprintln!("e2e: cannot unmount {path}: {}", done.stderr);
    }
}
