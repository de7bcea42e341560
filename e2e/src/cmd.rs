//! Running external commands with a deadline, so a broken data path or a hung daemon
//! fails a test instead of hanging it.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long [`run`] lets a command take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A command that ran to its end.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Finished {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; -1 when a signal ended it.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Reads all of `source` on its own thread.
fn drain(source: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut source) = source {
            let _ = source.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Runs `cmd` with `stdin` (or none), collecting stdout and stderr, and kills it when it
/// is not done after `timeout`.
///
/// # Errors
/// A message when it cannot be started or did not finish in time (with what it had
/// printed so far).
pub fn run_timeout(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Finished, String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let writer = stdin.map(<[u8]>::to_vec).and_then(|input| {
        let mut pipe = child.stdin.take()?;
        Some(thread::spawn(move || {
            // A child that exits without reading its input is not our error here.
            let _ = pipe.write_all(&input);
        }))
    });
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{shown} did not finish within {timeout:?} and was killed\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )),
    }
}

/// Runs `argv` (program and arguments) within [`DEFAULT_TIMEOUT`].
///
/// # Panics
/// When it cannot be started or does not finish in time. A non-zero exit is not a panic:
/// look at [`Finished::status`].
pub fn run(argv: &[&str]) -> Finished {
    let (program, args) = argv.split_first().expect("run: empty command line");
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_timeout(&mut cmd, None, DEFAULT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `argv` and returns its stdout.
///
/// # Panics
/// When it fails in any way, with its stderr.
pub fn run_ok(argv: &[&str]) -> String {
    let done = run(argv);
    assert!(
        done.success(),
        "`{}` failed ({}):\n{}{}",
        argv.join(" "),
        done.status,
        done.stdout,
        done.stderr
    );
    done.stdout
}
