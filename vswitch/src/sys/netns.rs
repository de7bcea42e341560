//! Running a closure inside another network namespace.
//!
//! This module owns no long-lived state. Each call opens the namespace file, starts one
//! short-lived thread that `setns(CLONE_NEWNET)`s into it, runs the closure there, and
//! joins the thread. The calling thread's namespace never changes, so the daemon's own
//! threads stay in the node's namespace whatever happens inside the closure.
//!
//! What the closure opens there (a TAP fd, a socket) stays bound to that namespace after
//! the thread exits, and may be returned to the caller. Paths under `/proc/thread-self`
//! and `/proc/sys/net` opened inside the closure show that namespace; `/proc/self` shows
//! the thread-group leader's and must not be used for this.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;

use super::{check, Result, SysError};

/// Runs `f` on a short-lived thread that has entered the network namespace at `path`,
/// and returns its result. The calling thread's namespace is untouched.
///
/// The namespace file is opened `O_RDONLY | O_CLOEXEC` on the calling thread, then
/// entered with `setns(fd, CLONE_NEWNET)` on the new thread. Threads `f` spawns start in
/// the target namespace too.
///
/// # Errors
/// - [`SysError::NetnsOpen`] when `path` cannot be opened;
/// - [`SysError::Setns`] when it is not a network namespace or cannot be entered;
/// - [`SysError::ThreadSpawn`] when the thread cannot be started;
/// - [`SysError::ThreadPanicked`] when `f` panics (the panic does not propagate).
pub fn run_in_netns<T: Send, F: FnOnce() -> T + Send>(path: &Path, f: F) -> Result<T> {
    let shown = path.display().to_string();
    // std opens files O_RDONLY | O_CLOEXEC.
    let ns = File::open(path).map_err(|source| SysError::NetnsOpen {
        path: shown.clone(),
        source,
    })?;
    thread::scope(|scope| {
        let inner_path = shown.clone();
        let handle = thread::Builder::new()
            .name("vswitch-netns".to_owned())
            .spawn_scoped(scope, move || -> Result<T> {
                // SAFETY: setns(2) takes an fd and a flag, no pointers. `ns` is an open
                // descriptor owned by this closure for the whole call. CLONE_NEWNET only
                // moves this thread, which exits when `f` returns.
                let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                check(ret).map_err(|source| SysError::Setns {
                    path: inner_path,
                    source,
                })?;
                drop(ns);
                Ok(f())
            })
            .map_err(|source| SysError::ThreadSpawn {
                path: shown.clone(),
                source,
            })?;
        handle.join().map_err(|_| SysError::ThreadPanicked)?
    })
}

/// Runs `f` in the network namespace at `path`, as [`run_in_netns`] does; `None` means the
/// current namespace, where `f` runs directly on the calling thread.
///
/// # Errors
/// Those of [`run_in_netns`] when `path` is `Some`; never when it is `None`.
pub fn run_in<T: Send, F: FnOnce() -> T + Send>(path: Option<&Path>, f: F) -> Result<T> {
    match path {
        Some(path) => run_in_netns(path, f),
        None => Ok(f()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::sys::test_support::TestNetns;

    fn current_netns() -> String {
        std::fs::read_link("/proc/thread-self/ns/net")
            .unwrap()
            .display()
            .to_string()
    }

    #[test]
    fn closure_runs_in_target_and_caller_is_untouched() {
        let ns = TestNetns::new();
        let before = current_netns();
        let target = std::fs::metadata(ns.path()).unwrap();
        let inside = run_in_netns(ns.path(), current_netns).unwrap();
        assert_ne!(inside, before);
        // The link reads "net:[INODE]"; the bind-mounted namespace file has that inode.
        assert_eq!(inside, format!("net:[{}]", target.ino()));
        assert_eq!(current_netns(), before);
        assert_eq!(run_in(None, current_netns).unwrap(), before);
        assert_eq!(run_in(Some(ns.path()), current_netns).unwrap(), inside);
    }

    #[test]
    fn missing_path_is_netns_open() {
        let err = run_in_netns(Path::new("/run/netns/vt-sys-does-not-exist"), || ()).unwrap_err();
        assert!(matches!(err, SysError::NetnsOpen { .. }), "{err}");
        assert!(err.to_string().contains("/run/netns/vt-sys-does-not-exist"));
    }

    #[test]
    fn non_namespace_file_is_setns() {
        let err = run_in_netns(Path::new("/proc/self/status"), || ()).unwrap_err();
        assert!(matches!(err, SysError::Setns { .. }), "{err}");
    }

    #[test]
    fn panic_inside_is_thread_panicked() {
        let ns = TestNetns::new();
        let err = run_in_netns(ns.path(), || panic!("deliberate")).unwrap_err();
        assert!(matches!(err, SysError::ThreadPanicked), "{err}");
    }

    #[test]
    fn borrows_from_the_caller() {
        let ns = TestNetns::new();
        let mut seen = Vec::new();
        run_in_netns(ns.path(), || seen.push(1)).unwrap();
        assert_eq!(seen, [1]);
    }
}
