//! vswitch-cni: the CNI plugin of the vswitch pod network.
//!
//! A container runtime executes it with `CNI_*` environment variables and the network
//! config on stdin. It is a thin, stateless client of the node daemon: each command is
//! one request on vswitchd's control socket. Results and CNI error objects go to stdout
//! (exit status 0 and 1); stderr carries logs only. docs/cni.md is the user's guide.
//!
//! Modules: [`env`] (the variables), [`config`] (stdin), [`commands`] (what each command
//! does), [`daemon`] (the socket and the daemon-error → CNI-code mapping), [`result`]
//! (result JSON), [`error`] (error codes and the error object).
#![forbid(unsafe_code)]

/// Writes one line to stderr, prefixed `vswitch-cni: `. A failed write is ignored: stderr
/// is the only place it could be reported.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "vswitch-cni: {}", format_args!($($arg)*));
    }};
}

mod commands;
mod config;
mod daemon;
mod env;
mod error;
mod result;

use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;

use serde::Serialize;

use crate::config::Version;
use crate::env::{Command, EnvErrors};
use crate::error::CniError;

/// The largest network config read from stdin (a `prevResult` included).
const MAX_STDIN_BYTES: u64 = 16 << 20;

fn main() -> ExitCode {
    let lookup = |name: &str| std::env::var_os(name);
    let command = match env::command(&lookup) {
        Ok(None) => {
            // As the reference skel does: a human ran it; say what it is, and succeed.
            let _ = writeln!(io::stderr(), "{}", about());
            return ExitCode::SUCCESS;
        }
        Ok(Some(command)) => Ok(command),
        Err(err) => Err(CniError::Env(EnvErrors(vec![err]))),
    };
    let stdin = read_stdin();
    let version = stdin
        .as_deref()
        .ok()
        .and_then(config::peek_version)
        .unwrap_or(Version::LATEST);
    let command_name = command.as_ref().map_or("the command", |c| c.name());
    let outcome = command.and_then(|command| {
        let invocation = env::invocation(command, &lookup).map_err(CniError::Env)?;
        commands::run(&invocation, &stdin?)
    });
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(json)) => match print(&json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                log!("cannot write the result to stdout: {err}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            log!("{command_name} failed (code {}): {err}", err.code());
            if let Err(write_err) = print(&err.to_object(version.as_str())) {
                log!("{err} (and cannot write the error to stdout: {write_err})");
            }
            ExitCode::FAILURE
        }
    }
}

/// What `vswitch-cni` prints on stderr when run without `CNI_COMMAND`.
fn about() -> String {
    let versions: Vec<&str> = Version::ALL.iter().map(|v| v.as_str()).collect();
    format!(
        "vswitch-cni {}: CNI plugin of the vswitch pod network; a container runtime runs it \
         with CNI_COMMAND={} set.\nCNI protocol versions supported: {}",
        env!("CARGO_PKG_VERSION"),
        [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Status,
            Command::Gc,
            Command::Version
        ]
        .map(Command::name)
        .join("|"),
        versions.join(", ")
    )
}

/// All of stdin, or nothing when it is a terminal (a human at a shell; VERSION needs no
/// input and the others then report an empty config instead of hanging).
fn read_stdin() -> Result<Vec<u8>, CniError> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return Ok(Vec::new());
    }
    let mut bytes = Vec::new();
    stdin
        .lock()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(CniError::ReadStdin)?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_STDIN_BYTES) {
        return Err(CniError::Decode(format!(
            "the network config is larger than {MAX_STDIN_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// Prints `value` as indented JSON and a newline on stdout, as the reference skel does.
fn print(value: &impl Serialize) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut out = io::stdout().lock();
    out.write_all(&text)?;
    out.flush()
}
