//! The client side of the control socket: one request, one response.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::proto::{ControlError, Reply, Request, Response};

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket, or it cannot be reached.
    #[error("cannot reach vswitchd at {path}: {source}")]
    Unreachable {
        /// The socket path.
        path: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The connection broke or timed out mid-request.
    #[error("talking to vswitchd at {path}: {source}")]
    Io {
        /// The socket path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The daemon answered something that is not a response.
    #[error("vswitchd sent a malformed response: {0}")]
    Malformed(String),
    /// The daemon answered with an error.
    #[error(transparent)]
    Daemon(#[from] ControlError),
}

/// How long a request may take before the client gives up (Add enters a namespace and
/// configures a device: milliseconds normally).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` to the daemon listening on `socket` and returns its reply.
///
/// # Errors
/// [`ClientError::Unreachable`] when the daemon is not there, [`ClientError::Daemon`] when
/// it answered with an error, the other variants when the exchange broke.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    let path = socket.display().to_string();
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable {
        path: path.clone(),
        source,
    })?;
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(io)?;
    let mut line =
        serde_json::to_vec(request).map_err(|e| ClientError::Malformed(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Malformed(
            "connection closed without an answer".into(),
        ));
    }
    match serde_json::from_str::<Response>(&answer) {
        Ok(Response::Ok(reply)) => Ok(reply),
        Ok(Response::Error(err)) => Err(ClientError::Daemon(err)),
        Err(e) => Err(ClientError::Malformed(e.to_string())),
    }
}
