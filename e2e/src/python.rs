//! Small Python programs run inside a test's namespaces as servers: started with their
//! standard output read line by line on a thread, and killed when their guard goes, so
//! a failing test leaves no process behind.
#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader};
use std::process::{Child, ChildStderr, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;

use crate::netns::Netns;

/// A process killed (and reaped) when the guard goes.
#[derive(Debug)]
pub(crate) struct Reaped(Child);

impl Reaped {
    /// Kills the process now (it is reaped when the guard goes).
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python program started by [`spawn_python`].
#[derive(Debug)]
pub(crate) struct PythonServer {
    /// Kills the program when dropped.
    pub(crate) process: Reaped,
    /// Its standard input, when asked for with `Stdio::piped()`.
    pub(crate) stdin: Option<ChildStdin>,
    /// Its standard error, when asked for with `Stdio::piped()`.
    pub(crate) stderr: Option<ChildStderr>,
    /// Its standard output, a line at a time.
    pub(crate) lines: Receiver<String>,
}

/// Starts `python3 -c script args…` in `netns` with its standard output piped into
/// [`PythonServer::lines`], and standard input and error as given.
///
/// # Errors
/// When `python3` cannot be started.
pub(crate) fn spawn_python(
    netns: &Netns,
    script: &str,
    args: &[&str],
    stdin: Stdio,
    stderr: Stdio,
) -> io::Result<PythonServer> {
    let mut cmd = netns.command("python3");
    cmd.arg("-c")
        .arg(script)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let stdout = child.stdout.take();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    });
    Ok(PythonServer {
        process: Reaped(child),
        stdin,
        stderr,
        lines,
    })
}
