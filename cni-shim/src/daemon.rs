//! Talking to vswitchd: one request over the control socket, and the one mapping from
//! everything that can go wrong there to a CNI error ([`to_cni_error`]).
#![forbid(unsafe_code)]

use std::path::Path;

use vswitch::control::client::{self, ClientError};
use vswitch::control::proto::{ErrorCode, Reply, Request};

use crate::error::CniError;

/// Sends `request` to the daemon on `socket`.
///
/// # Errors
/// Whatever [`to_cni_error`] makes of the failure.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, CniError> {
    client::call(socket, request).map_err(|err| to_cni_error(err, request))
}

/// The CNI error for a failed `request`. This is the whole mapping (docs/cni.md has the
/// same table):
///
/// | failure | CNI code |
/// |---|---|
/// | any failure of a STATUS request | 50 |
/// | daemon unreachable, connection broken, `not_ready` | 11 |
/// | `invalid_netns` | 4 (names `CNI_NETNS`) |
/// | `interface_exists` | 4 (names `CNI_IFNAME`) |
/// | `unknown_attachment` | 3 |
/// | `check_failed` | 100 |
/// | `addresses_exhausted` | 101 |
/// | `io` | 5 |
/// | `invalid_request` | 7 |
/// | `internal`, a malformed answer | 999 |
///
/// DEL treats `unknown_attachment` and `invalid_netns` as success; that is DEL's policy,
/// in `commands`, not part of the mapping.
pub fn to_cni_error(err: ClientError, request: &Request) -> CniError {
    if matches!(request, Request::Status) {
        return CniError::Unavailable {
            reason: err.to_string(),
        };
    }
    let (key, netns) = match request {
        Request::Add { key, netns, .. } | Request::Check { key, netns } => {
            (Some(key), Some(netns.as_str()))
        }
        Request::Del { key } => (Some(key), None),
        _ => (None, None),
    };
    let container_id = key.map_or_else(String::new, |k| k.container_id.clone());
    let ifname = key.map_or_else(String::new, |k| k.ifname.clone());
    let err = match err {
        ClientError::Unreachable { path, source } => {
            return CniError::DaemonUnreachable {
                socket: path,
                source,
            }
        }
        ClientError::Io { path, source } => {
            return CniError::DaemonConnection {
                socket: path,
                source,
            }
        }
        ClientError::Malformed(message) => {
            return CniError::Internal {
                message: format!("vswitchd sent a malformed response: {message}"),
            }
        }
        ClientError::Daemon(err) => err,
    };
    let message = err.message;
    match err.code {
        ErrorCode::InvalidRequest => CniError::RequestRejected { message },
        ErrorCode::InvalidNetns => CniError::InvalidNetns {
            netns: netns.map(str::to_owned),
            message,
        },
        ErrorCode::InterfaceExists => CniError::InterfaceExists {
            ifname,
            netns: netns.unwrap_or("the pod's network namespace").to_owned(),
            message,
        },
        ErrorCode::UnknownAttachment => CniError::UnknownAttachment {
            container_id,
            ifname,
            message,
        },
        ErrorCode::CheckFailed => CniError::CheckFailed { message },
        ErrorCode::AddressesExhausted => CniError::AddressesExhausted { message },
        ErrorCode::NotReady => CniError::DaemonNotReady { message },
        ErrorCode::Io => CniError::DaemonIo { message },
        ErrorCode::Internal => CniError::Internal { message },
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use vswitch::control::proto::{AttachmentKey, ControlError};

    use super::*;

    fn key() -> AttachmentKey {
        AttachmentKey {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }
    }

    fn add() -> Request {
        Request::Add {
            key: key(),
            netns: "/run/netns/a".into(),
            pod_namespace: "default".into(),
            pod_name: "a".into(),
        }
    }

    fn daemon(code: ErrorCode) -> ClientError {
        ClientError::Daemon(ControlError::new(code, "said so"))
    }

    fn unreachable() -> ClientError {
        ClientError::Unreachable {
            path: "/run/vswitch/vswitchd.sock".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn daemon_codes() {
        let cases = [
            (ErrorCode::InvalidRequest, 7),
            (ErrorCode::InvalidNetns, 4),
            (ErrorCode::InterfaceExists, 4),
            (ErrorCode::UnknownAttachment, 3),
            (ErrorCode::CheckFailed, 100),
            (ErrorCode::AddressesExhausted, 101),
            (ErrorCode::NotReady, 11),
            (ErrorCode::Io, 5),
            (ErrorCode::Internal, 999),
        ];
        for (code, cni) in cases {
            assert_eq!(to_cni_error(daemon(code), &add()).code(), cni, "{code:?}");
            assert_eq!(to_cni_error(daemon(code), &Request::Status).code(), 50);
        }
    }

    #[test]
    fn transport_failures() {
        assert_eq!(to_cni_error(unreachable(), &add()).code(), 11);
        assert_eq!(
            to_cni_error(unreachable(), &Request::Del { key: key() }).code(),
            11
        );
        assert_eq!(to_cni_error(unreachable(), &Request::Status).code(), 50);
        let broken = ClientError::Io {
            path: "/s".into(),
            source: io::Error::from(io::ErrorKind::TimedOut),
        };
        assert_eq!(to_cni_error(broken, &add()).code(), 11);
        assert_eq!(
            to_cni_error(ClientError::Malformed("x".into()), &add()).code(),
            999
        );
    }

    #[test]
    fn messages_name_the_variables() {
        let msg = to_cni_error(daemon(ErrorCode::InterfaceExists), &add()).to_string();
        assert_eq!(
            msg,
            "CNI_IFNAME: interface eth0 already exists in /run/netns/a"
        );
        let msg = to_cni_error(daemon(ErrorCode::InvalidNetns), &add()).to_string();
        assert!(msg.starts_with("CNI_NETNS /run/netns/a"), "{msg}");
        let msg = to_cni_error(unreachable(), &add()).to_string();
        assert!(msg.contains("try again later"), "{msg}");
    }
}
