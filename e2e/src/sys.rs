//! The few calls into libc the harness needs: who we are, signals, and tying a daemon's
//! life to the test process. Every other module forbids `unsafe`.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sends `signal` to the process `pid`.
///
/// # Errors
/// The `kill(2)` error, e.g. `ESRCH` when the process is already gone.
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill takes two integers and reads no memory of ours; its result is checked.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGTERM.
pub(crate) const SIGTERM: libc::c_int = libc::SIGTERM;

/// Makes the kernel SIGKILL the spawned process when the thread that spawned it dies, so
/// a test run killed from outside (Ctrl-C, a CI timeout) leaves no daemon behind.
/// The setting survives the `execve` of `ip netns exec` and of the daemon it runs.
pub(crate) fn kill_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed; prctl is a plain system call that allocates
    // nothing and takes no locks. Its result is checked and turned into a spawn error.
    unsafe {
        cmd.pre_exec(|| {
            let sig = libc::c_ulong::try_from(libc::SIGKILL).unwrap_or(9);
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}
