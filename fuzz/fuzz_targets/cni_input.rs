//! Fuzz target: what a container runtime hands vswitch-cni, the network config on stdin
//! and the `CNI_*` environment variables.
//!
//! vswitch-cni is a binary crate without a library target, so its self-contained parser
//! modules (`config`, `env`, `error`, `result`: they depend only on each other, vswitch,
//! serde_json and thiserror) are compiled into this target by path, as they are into the
//! binary. `commands` and `daemon`, which talk to the control socket, are left out.
//!
//! The same input is read two ways:
//! - as stdin: [`config::NetConf::parse`], `prev_result`, `valid_attachments`,
//!   [`config::peek_version`], [`config::version_reply`], and the result code ADD and
//!   CHECK run on `prevResult` ([`result::check_lists`], [`result::add_result`],
//!   [`result::check_prev_result`]);
//! - as the environment: NUL-separated values of `CNI_COMMAND`, `CNI_CONTAINERID`,
//!   `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS` (not necessarily UTF-8), through
//!   [`env::command`] and [`env::invocation`].
//!
//! Invariants: nothing panics; what parses satisfies the documented rules (network name
//! and container ID syntax, absolute socket and netns paths, interface name length);
//! `add_result` fails exactly when `check_lists` does, and the result it builds passes
//! vswitch-cni's own CHECK; every error has a CNI code and an error object.
#![no_main]

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vswitch::control::proto::{AttachmentKey, PortCounters, PortInfo};
use vswitch::mac::MacAddr;

#[allow(dead_code, missing_docs)]
#[path = "../../cni-shim/src/config.rs"]
mod config;
#[allow(dead_code, missing_docs)]
#[path = "../../cni-shim/src/env.rs"]
mod env;
#[allow(dead_code, missing_docs)]
#[path = "../../cni-shim/src/error.rs"]
mod error;
#[allow(dead_code, missing_docs)]
#[path = "../../cni-shim/src/result.rs"]
mod result;

use config::{NetConf, Version};
use env::{Command, Invocation};
use error::CniError;

const IFNAME: &str = "eth0";
const NETNS: &str = "/run/netns/vswitch-fuzz";

fn port() -> PortInfo {
    let ip = Ipv4Addr::new(10, 244, 1, 5);
    PortInfo {
        key: AttachmentKey {
            container_id: "c1".into(),
            ifname: IFNAME.into(),
        },
        pod: "default/a".into(),
        netns: NETNS.into(),
        address: "10.244.1.5/16".parse().expect("a prefix"),
        gateway: Ipv4Addr::new(10, 244, 1, 1),
        mac: MacAddr::from_ipv4(ip),
        mtu: 1450,
        attached: true,
        counters: PortCounters::default(),
    }
}

fn is_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_error(err: &CniError, version: Version) {
    let object = err.to_object(version.as_str());
    assert_eq!(object.code, err.code());
    assert!(!object.msg.is_empty() && !object.details.is_empty());
    serde_json::to_string(&object).expect("the error object serializes");
}

fn check_stdin(data: &[u8]) {
    let reply = config::version_reply(data);
    assert!(reply
        .get("cniVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty()));
    let peeked = config::peek_version(data);

    let conf = match NetConf::parse(data) {
        Ok(conf) => conf,
        Err(err) => {
            check_error(&err, peeked.unwrap_or(Version::LATEST));
            return;
        }
    };
    assert_eq!(
        peeked,
        Some(conf.cni_version),
        "peek_version disagrees with parse"
    );
    assert!(is_name(&conf.name), "network name {:?} accepted", conf.name);
    assert!(!conf.plugin_type.is_empty());
    assert!(
        conf.socket.is_absolute(),
        "relative socket {:?} accepted",
        conf.socket
    );

    match conf.valid_attachments() {
        Ok(valid) => assert!(
            valid.windows(2).all(|w| w[0] < w[1]),
            "not sorted and unique"
        ),
        Err(err) => check_error(&err, conf.cni_version),
    }

    let prev = match conf.prev_result() {
        Ok(prev) => prev,
        Err(err) => return check_error(&err, conf.cni_version),
    };
    let Some(prev) = prev else {
        let added = result::add_result(conf.cni_version, IFNAME, NETNS, &port(), None)
            .expect("a result without prevResult");
        let added = added.as_object().expect("an object");
        result::check_prev_result(added, IFNAME, NETNS).expect("our result passes our CHECK");
        return;
    };
    // CHECK of an arbitrary prevResult: Ok or a clean error.
    if let Err(err) = result::check_prev_result(prev, IFNAME, NETNS) {
        check_error(&err, conf.cni_version);
    }
    let lists_ok = result::check_lists(prev).is_ok();
    match result::add_result(conf.cni_version, IFNAME, NETNS, &port(), Some(prev)) {
        Ok(added) => {
            assert!(lists_ok, "add_result accepted what check_lists refuses");
            let added = added.as_object().expect("an object");
            assert_eq!(
                added.get("cniVersion").and_then(Value::as_str),
                Some(conf.cni_version.as_str())
            );
            // Unless an earlier plugin already listed our interface, the result we print
            // passes our own CHECK.
            let listed_before = prev
                .get("interfaces")
                .and_then(Value::as_array)
                .is_some_and(|list| {
                    list.iter().any(|i| {
                        i.get("name").and_then(Value::as_str) == Some(IFNAME)
                            && i.get("sandbox").and_then(Value::as_str) == Some(NETNS)
                    })
                });
            if !listed_before {
                if let Err(err) = result::check_prev_result(added, IFNAME, NETNS) {
                    panic!("our ADD result fails our CHECK: {err}");
                }
            }
        }
        Err(err) => {
            assert!(
                !lists_ok,
                "add_result refused what check_lists accepts: {err}"
            );
            check_error(&err, conf.cni_version);
        }
    }
}

fn check_env(data: &[u8]) {
    const VARS: [&str; 5] = [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
    ];
    let values: Vec<&[u8]> = data.splitn(VARS.len(), |&b| b == 0).collect();
    let lookup = |name: &str| {
        let at = VARS.iter().position(|v| *v == name)?;
        values.get(at).map(|v| OsString::from_vec(v.to_vec()))
    };
    // Whatever CNI_COMMAND says, also run every command against the other variables.
    if let Err(err) = env::command(&lookup) {
        assert!(!err.to_string().is_empty());
    }
    for command in [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
        Command::Version,
    ] {
        match env::invocation(command, &lookup) {
            Ok(Invocation::Add { key, netns, pod }) => {
                assert_eq!(command, Command::Add);
                check_key(&key);
                assert!(netns.starts_with('/'));
                assert!(!pod.namespace.is_empty() && !pod.name.is_empty());
            }
            Ok(Invocation::Check { key, netns }) => {
                assert_eq!(command, Command::Check);
                check_key(&key);
                assert!(netns.starts_with('/'));
            }
            Ok(Invocation::Del { key }) => {
                assert_eq!(command, Command::Del);
                check_key(&key);
            }
            Ok(Invocation::Status | Invocation::Gc | Invocation::Version) => {
                assert!(matches!(
                    command,
                    Command::Status | Command::Gc | Command::Version
                ));
            }
            Err(errors) => {
                assert!(
                    !errors.0.is_empty(),
                    "{command}: an error that names no variable"
                );
                let err = CniError::Env(errors);
                assert_eq!(err.code(), error::code::INVALID_ENV);
                check_error(&err, Version::LATEST);
            }
        }
    }
}

fn check_key(key: &AttachmentKey) {
    assert!(
        is_name(&key.container_id),
        "container ID {:?} accepted",
        key.container_id
    );
    let ifname = &key.ifname;
    assert!(
        !ifname.is_empty() && ifname.len() < 16,
        "interface name {ifname:?} accepted"
    );
    assert!(ifname != "." && ifname != "..");
    assert!(!ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace()));
}

fuzz_target!(|data: &[u8]| {
    check_stdin(data);
    check_env(data);
});
