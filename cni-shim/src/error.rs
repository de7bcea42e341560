//! Every way vswitch-cni can fail, and the CNI error object each failure becomes.
//!
//! A failure is one [`CniError`] variant. Its `Display` text is the object's `msg`, a
//! sentence a user can act on; [`CniError::details`] adds a hint (what to check or run);
//! [`CniError::code`] is the only place a variant gets its CNI error code. docs/cni.md
//! lists the same table. The object goes to **stdout** with exit status 1, as the
//! reference `skel` does and libcni expects; stderr carries logs only.
#![forbid(unsafe_code)]

use std::io;

use serde::Serialize;

use crate::config::Version;
use crate::env::{Command, EnvErrors};

/// CNI error codes vswitch-cni returns (0-99 are the specification's, 100 and up ours).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist; the runtime need not clean up.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available to take ADDs.
    pub const UNAVAILABLE: u32 = 50;
    /// vswitch-cni: CHECK found the attachment different from what ADD left.
    pub const CHECK_FAILED: u32 = 100;
    /// vswitch-cni: the node's pod subnet has no free address.
    pub const ADDRESSES_EXHAUSTED: u32 = 101;
    /// Internal error (libcni's code for it).
    pub const INTERNAL: u32 = 999;
}

/// Why a CNI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The network config names a CNI version vswitch-cni does not speak.
    #[error(
        "cniVersion {version:?} is not supported; vswitch-cni supports 0.4.0, 1.0.0 and 1.1.0"
    )]
    UnsupportedVersion {
        /// The version the config asked for.
        version: String,
    },
    /// The network config has no `cniVersion`.
    #[error("the network config has no cniVersion; vswitch-cni supports 0.4.0, 1.0.0 and 1.1.0")]
    MissingVersion,
    /// STATUS and GC exist only from CNI 1.1.0 on.
    #[error("{command} needs cniVersion 1.1.0, but the network config says {version}")]
    CommandNeedsNewerVersion {
        /// The command that was asked for.
        command: Command,
        /// The config's version.
        version: Version,
    },
    /// A config key has a well-formed value that vswitch-cni cannot use.
    #[error("unsupported value {value} of config key `{key}`: {reason}")]
    UnsupportedField {
        /// The key.
        key: &'static str,
        /// Its value, as JSON.
        value: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The daemon has no such attachment (CHECK).
    #[error(
        "vswitchd has no attachment for container {container_id} interface {ifname}: {message}"
    )]
    UnknownAttachment {
        /// `CNI_CONTAINERID`.
        container_id: String,
        /// `CNI_IFNAME`.
        ifname: String,
        /// The daemon's words.
        message: String,
    },
    /// Environment variables are missing or invalid.
    #[error("{0}")]
    Env(EnvErrors),
    /// The daemon cannot enter the network namespace.
    #[error("CNI_NETNS {}: vswitchd cannot use it: {message}", .netns.as_deref().unwrap_or("(not given)"))]
    InvalidNetns {
        /// `CNI_NETNS`, when the request carried one.
        netns: Option<String>,
        /// The daemon's words.
        message: String,
    },
    /// `CNI_IFNAME` is already taken inside the pod.
    #[error("CNI_IFNAME: interface {ifname} already exists in {netns}")]
    InterfaceExists {
        /// `CNI_IFNAME`.
        ifname: String,
        /// `CNI_NETNS`.
        netns: String,
        /// The daemon's words.
        message: String,
    },
    /// stdin could not be read.
    #[error("cannot read the network config from stdin: {0}")]
    ReadStdin(#[source] io::Error),
    /// The daemon could not read or write its state: the node state in `--state-dir` or
    /// the cluster store (the daemon's words name the file or the store).
    #[error("vswitchd could not read or write its state: {message}")]
    DaemonIo {
        /// The daemon's words.
        message: String,
    },
    /// stdin is not a JSON object.
    #[error("cannot decode the network config on stdin: {0}")]
    Decode(String),
    /// A config key is missing or has the wrong type or shape.
    #[error("invalid network config: `{key}` {problem}")]
    InvalidConfig {
        /// The key (a path such as `prevResult.ips` for nested ones).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The daemon found the request malformed.
    #[error("vswitchd rejected the request: {message}")]
    RequestRejected {
        /// The daemon's words.
        message: String,
    },
    /// Nothing answers on the control socket.
    #[error("cannot reach vswitchd at {socket}: {source}; try again later")]
    DaemonUnreachable {
        /// The socket path.
        socket: String,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// The connection to the daemon broke or timed out mid-request.
    #[error("the connection to vswitchd at {socket} broke: {source}; try again later")]
    DaemonConnection {
        /// The socket path.
        socket: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The daemon is up but not ready for this request.
    #[error("vswitchd is not ready: {message}; try again later")]
    DaemonNotReady {
        /// The daemon's words.
        message: String,
    },
    /// STATUS: the daemon cannot take ADDs.
    #[error("vswitchd is not available for ADD: {reason}")]
    Unavailable {
        /// Why not.
        reason: String,
    },
    /// CHECK: the attachment differs from what ADD left.
    #[error("CHECK failed: {message}")]
    CheckFailed {
        /// What differs.
        message: String,
    },
    /// The node's subnet has no free address.
    #[error("no free pod address on this node: {message}")]
    AddressesExhausted {
        /// The daemon's words.
        message: String,
    },
    /// Anything else: a daemon-side failure or a reply that makes no sense.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

impl CniError {
    /// The CNI error code of this failure (the table in docs/cni.md).
    pub fn code(&self) -> u32 {
        match self {
            CniError::UnsupportedVersion { .. }
            | CniError::MissingVersion
            | CniError::CommandNeedsNewerVersion { .. } => code::INCOMPATIBLE_VERSION,
            CniError::UnsupportedField { .. } => code::UNSUPPORTED_FIELD,
            CniError::UnknownAttachment { .. } => code::UNKNOWN_CONTAINER,
            CniError::Env(_) | CniError::InvalidNetns { .. } | CniError::InterfaceExists { .. } => {
                code::INVALID_ENV
            }
            CniError::ReadStdin(_) | CniError::DaemonIo { .. } => code::IO,
            CniError::Decode(_) => code::DECODE,
            CniError::InvalidConfig { .. } | CniError::RequestRejected { .. } => {
                code::INVALID_CONFIG
            }
            CniError::DaemonUnreachable { .. }
            | CniError::DaemonConnection { .. }
            | CniError::DaemonNotReady { .. } => code::TRY_AGAIN_LATER,
            CniError::Unavailable { .. } => code::UNAVAILABLE,
            CniError::CheckFailed { .. } => code::CHECK_FAILED,
            CniError::AddressesExhausted { .. } => code::ADDRESSES_EXHAUSTED,
            CniError::Internal { .. } => code::INTERNAL,
        }
    }

    /// A longer hint for the error object's `details`: what to check or do next.
    pub fn details(&self) -> String {
        match self {
            CniError::UnsupportedVersion { .. } | CniError::MissingVersion => {
                "set \"cniVersion\" to \"0.4.0\", \"1.0.0\" or \"1.1.0\" in the network config".into()
            }
            CniError::CommandNeedsNewerVersion { .. } => {
                "set \"cniVersion\": \"1.1.0\" in the network config to use STATUS and GC".into()
            }
            CniError::UnsupportedField { .. } | CniError::InvalidConfig { .. } => {
                "fix the network config (see docs/cni.md for its keys)".into()
            }
            CniError::UnknownAttachment { .. } => {
                "the attachment was never added or was already deleted; nothing to clean up".into()
            }
            CniError::Env(_) => {
                "the container runtime sets CNI_* variables; see docs/cni.md for which each command needs".into()
            }
            CniError::InvalidNetns { .. } => {
                "CNI_NETNS must name an existing network namespace, e.g. /run/netns/NAME".into()
            }
            CniError::InterfaceExists { message, .. } => {
                format!("choose another CNI_IFNAME or delete the interface; vswitchd said: {message}")
            }
            CniError::ReadStdin(_) | CniError::Decode(_) => {
                "the container runtime must write the network config as a JSON object to stdin".into()
            }
            CniError::DaemonIo { .. } => {
                "check free space and permissions of vswitchd's --state-dir, and that its --store is \
                 writable"
                    .into()
            }
            CniError::RequestRejected { .. } | CniError::Internal { .. } => {
                "see vswitchd's log; vswitch-cni and vswitchd should come from the same release".into()
            }
            CniError::DaemonUnreachable { socket, .. } => format!(
                "start vswitchd, or set \"socket\" in the network config to the path vswitchd \
                 listens on (vswitchd --socket); tried {socket}"
            ),
            CniError::DaemonConnection { .. } | CniError::DaemonNotReady { .. } => {
                "vswitchd is starting or restarting; the runtime retries".into()
            }
            CniError::Unavailable { .. } => {
                "start vswitchd and wait until `vswitchctl show` answers".into()
            }
            CniError::CheckFailed { .. } => {
                "the pod's interface no longer looks as ADD left it; recreate the pod".into()
            }
            CniError::AddressesExhausted { .. } => {
                "delete pods on this node or give nodes larger subnets (vswitchd --node-subnet-len)".into()
            }
        }
    }

    /// The CNI error object for this failure, in `version`'s format (the same in all
    /// versions vswitch-cni supports).
    pub fn to_object(&self, version: &str) -> ErrorObject {
        ErrorObject {
            cni_version: version.to_owned(),
            code: self.code(),
            msg: self.to_string(),
            details: self.details(),
        }
    }
}

/// The CNI error object printed on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorObject {
    /// The config's version when it is one we speak, else the newest we speak.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The CNI error code.
    pub code: u32,
    /// What failed.
    pub msg: String,
    /// What to do about it.
    pub details: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn object_shape() {
        let err = CniError::Decode("expected value at line 1 column 1".into());
        let json = serde_json::to_value(err.to_object("1.1.0")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cniVersion": "1.1.0",
                "code": 6,
                "msg": "cannot decode the network config on stdin: expected value at line 1 column 1",
                "details": "the container runtime must write the network config as a JSON object to stdin",
            })
        );
    }

    #[test]
    fn interface_exists_names_the_variable() {
        let err = CniError::InterfaceExists {
            ifname: "eth0".into(),
            netns: "/run/netns/a".into(),
            message: "exists".into(),
        };
        assert_eq!(err.code(), 4);
        assert_eq!(
            err.to_string(),
            "CNI_IFNAME: interface eth0 already exists in /run/netns/a"
        );
    }
}
