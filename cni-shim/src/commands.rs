//! What each CNI command does: parse the config, ask vswitchd, shape the answer.
//!
//! vswitch-cni keeps no state of its own; the daemon owns every attachment. Order of
//! checks for every command but VERSION: environment (done by the caller), then the
//! network config, then the command's own checks, then one request to the daemon.
#![forbid(unsafe_code)]

use std::io;

use serde_json::Value;
use vswitch::control::proto::{AttachmentKey, Reply, Request};

use crate::config::{self, NetConf, Version};
use crate::daemon;
use crate::env::{Command, EnvError, EnvErrors, Invocation, PodRef};
use crate::error::CniError;
use crate::result;

/// Runs `invocation` with the network config `stdin`. `Ok(Some(json))` is printed on
/// stdout (ADD's result, VERSION's answer); `Ok(None)` prints nothing.
///
/// # Errors
/// The [`CniError`] to report to the runtime.
pub fn run(invocation: &Invocation, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    match invocation {
        Invocation::Version => Ok(Some(config::version_reply(stdin))),
        Invocation::Add { key, netns, pod } => add(&NetConf::parse(stdin)?, key, netns, pod),
        Invocation::Del { key } => del(&NetConf::parse(stdin)?, key),
        Invocation::Check { key, netns } => check(&NetConf::parse(stdin)?, key, netns),
        Invocation::Status => status(&NetConf::parse(stdin)?),
        Invocation::Gc => gc(&NetConf::parse(stdin)?),
    }
}

/// ADD: the daemon makes the TAP; we print the result (on top of any `prevResult`).
fn add(
    conf: &NetConf,
    key: &AttachmentKey,
    netns: &str,
    pod: &PodRef,
) -> Result<Option<Value>, CniError> {
    ensure_netns_exists(netns)?;
    let prev_result = conf.prev_result()?;
    // Reject a malformed prevResult before the daemon does anything.
    if let Some(prev) = prev_result {
        result::check_lists(prev)?;
    }
    let request = Request::Add {
        key: key.clone(),
        netns: netns.to_owned(),
        pod_namespace: pod.namespace.clone(),
        pod_name: pod.name.clone(),
    };
    match daemon::call(&conf.socket, &request)? {
        Reply::Added(port) => {
            result::add_result(conf.cni_version, &key.ifname, netns, &port, prev_result).map(Some)
        }
        other => Err(unexpected(Command::Add, &other)),
    }
}

/// DEL: best effort and idempotent. An attachment or namespace that is already gone is
/// success; an unreachable daemon is not (its state could not be released), so the
/// runtime gets code 11 and retries.
fn del(conf: &NetConf, key: &AttachmentKey) -> Result<Option<Value>, CniError> {
    let request = Request::Del { key: key.clone() };
    match daemon::call(&conf.socket, &request) {
        Ok(_) => Ok(None),
        Err(err @ (CniError::UnknownAttachment { .. } | CniError::InvalidNetns { .. })) => {
            log!(
                "DEL {}/{}: nothing left to delete ({err})",
                key.container_id,
                key.ifname
            );
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// CHECK: `prevResult` (when given) must list our interface; then the daemon checks
/// the attachment and the interface inside the namespace.
fn check(conf: &NetConf, key: &AttachmentKey, netns: &str) -> Result<Option<Value>, CniError> {
    ensure_netns_exists(netns)?;
    if let Some(prev) = conf.prev_result()? {
        result::check_prev_result(prev, &key.ifname, netns)?;
    }
    let request = Request::Check {
        key: key.clone(),
        netns: netns.to_owned(),
    };
    daemon::call(&conf.socket, &request)?;
    Ok(None)
}

/// STATUS (1.1.0): success when the daemon answers that it is ready.
fn status(conf: &NetConf) -> Result<Option<Value>, CniError> {
    require_1_1(conf, Command::Status)?;
    daemon::call(&conf.socket, &Request::Status)?;
    Ok(None)
}

/// GC (1.1.0): the daemon removes every attachment not in the valid list.
fn gc(conf: &NetConf) -> Result<Option<Value>, CniError> {
    require_1_1(conf, Command::Gc)?;
    let valid = conf.valid_attachments()?;
    match daemon::call(&conf.socket, &Request::Gc { valid })? {
        Reply::Collected(removed) => {
            for key in removed {
                log!("GC removed {}/{}", key.container_id, key.ifname);
            }
            Ok(None)
        }
        other => Err(unexpected(Command::Gc, &other)),
    }
}

fn require_1_1(conf: &NetConf, command: Command) -> Result<(), CniError> {
    if conf.cni_version >= Version::V1_1_0 {
        Ok(())
    } else {
        Err(CniError::CommandNeedsNewerVersion {
            command,
            version: conf.cni_version,
        })
    }
}

/// `CNI_NETNS` must name something that exists (code 4 naming it otherwise).
fn ensure_netns_exists(netns: &str) -> Result<(), CniError> {
    let problem = match std::fs::metadata(netns) {
        Ok(_) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => "does not exist".to_owned(),
        Err(err) => format!("cannot be opened: {err}"),
    };
    Err(CniError::Env(EnvErrors(vec![EnvError::Invalid {
        var: "CNI_NETNS",
        value: netns.to_owned(),
        problem,
    }])))
}

fn unexpected(command: Command, reply: &Reply) -> CniError {
    CniError::Internal {
        message: format!("vswitchd answered {command} with an unexpected reply: {reply:?}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> AttachmentKey {
        AttachmentKey {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }
    }

    fn stdin(version: &str, socket: &str) -> Vec<u8> {
        serde_json::json!({"cniVersion": version, "name": "n", "type": "vswitch-cni",
                           "socket": socket})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn status_and_gc_need_1_1_0() {
        for inv in [Invocation::Status, Invocation::Gc] {
            for version in ["0.4.0", "1.0.0"] {
                let err = run(&inv, &stdin(version, "/nonexistent/s.sock")).unwrap_err();
                assert_eq!(err.code(), 1, "{inv:?} {version}: {err}");
            }
        }
    }

    #[test]
    fn add_checks_netns_before_the_daemon() {
        let inv = Invocation::Add {
            key: key(),
            netns: "/nonexistent/netns/x".into(),
            pod: PodRef {
                namespace: "default".into(),
                name: "c1".into(),
            },
        };
        let err = run(&inv, &stdin("1.1.0", "/nonexistent/s.sock")).unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(err.to_string().contains("CNI_NETNS"), "{err}");
    }

    #[test]
    fn del_with_daemon_absent_is_try_again() {
        let err = run(
            &Invocation::Del { key: key() },
            &stdin("1.0.0", "/nonexistent/s.sock"),
        )
        .unwrap_err();
        assert_eq!(err.code(), 11);
    }
}
