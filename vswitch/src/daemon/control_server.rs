//! The control socket server: a unix stream socket (mode 0600, in a 0700 directory), one
//! thread per connection, one JSON request line in and one JSON response line out.
//!
//! Reading a request happens outside the control-plane lock, with a timeout and a size
//! bound, so a slow or hostile client can hold up neither the other clients nor the data
//! path. A malformed request gets an `invalid_request` error, never a dropped connection.
#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::proto::{ControlError, ErrorCode, Request, Response};
use crate::control::MAX_REQUEST_BYTES;

use super::control_plane::ControlPlane;

/// Connections served at once; more get a `not_ready` error at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another daemon answers on the path.
    #[error("another vswitchd is already listening on {0}")]
    InUse(String),
    /// Creating or binding failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// Binds the control socket at `path` (creating its directory 0700, replacing a stale
/// socket, refusing a live one) with mode 0600.
///
/// # Errors
/// [`SocketError`].
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err)?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

/// Serves connections until the listener fails. Each connection gets its own thread.
pub fn serve(listener: UnixListener, plane: Arc<Mutex<ControlPlane>>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("vswitchd: control socket: accept failed: {e}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            let busy = ControlError::new(
                ErrorCode::NotReady,
                "too many control connections at once; try again",
            );
            let _ = write_response(&mut stream, &Response::Error(busy));
            continue;
        }
        let plane = Arc::clone(&plane);
        let active_for_thread = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                serve_one(stream, &plane);
                active_for_thread.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            eprintln!("vswitchd: control socket: cannot start a connection thread: {e}");
        }
    }
}

fn serve_one(mut stream: UnixStream, plane: &Mutex<ControlPlane>) {
    let response = match read_request(&stream) {
        Ok(request) => match plane.lock() {
            Ok(mut plane) => plane.handle(request),
            Err(_) => Response::Error(ControlError::new(
                ErrorCode::Internal,
                "the control plane crashed",
            )),
        },
        Err(error) => Response::Error(error),
    };
    if let Err(e) = write_response(&mut stream, &response) {
        eprintln!("vswitchd: control socket: writing a response: {e}");
    }
}

/// Reads one request line, bounded in size and time.
fn read_request(stream: &UnixStream) -> Result<Request, ControlError> {
    let invalid = |m: String| ControlError::new(ErrorCode::InvalidRequest, m);
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| invalid(e.to_string()))?;
    let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX);
    let mut line = Vec::new();
    BufReader::new(stream.take(limit + 1))
        .read_until(b'\n', &mut line)
        .map_err(|e| invalid(format!("reading the request: {e}")))?;
    if line.len() > MAX_REQUEST_BYTES {
        return Err(invalid(format!(
            "request longer than {MAX_REQUEST_BYTES} bytes"
        )));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "empty request: send one JSON object followed by a newline".into(),
        ));
    }
    serde_json::from_slice(&line).map_err(|e| invalid(format!("malformed request: {e}")))
}

fn write_response(stream: &mut UnixStream, response: &Response) -> io::Result<()> {
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}
