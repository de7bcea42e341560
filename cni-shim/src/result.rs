//! CNI results: the one ADD prints, and the `prevResult` CHECK verifies.
//!
//! vswitch-cni makes one interface, inside the pod (a TAP; there is no host-side
//! interface), with one IPv4 address and a default route via the node's `vsw0`. The
//! result lists exactly that, in the format of the config's `cniVersion`:
//!
//! | version | differences |
//! |---|---|
//! | 0.4.0 | each IP carries `"version": "4"` |
//! | 1.0.0 | no `version` in IPs |
//! | 1.1.0 | interfaces carry `mtu` (added to the spec in 1.1) |
//!
//! When a `prevResult` is given (vswitch-cni chained after another plugin), ours is
//! appended to it: every key it has is kept, our interface goes to the end of
//! `interfaces` and our IP points at that index.
#![forbid(unsafe_code)]

use std::path::Path;

use serde_json::{json, Map, Value};
use vswitch::control::proto::PortInfo;

use crate::config::Version;
use crate::error::CniError;

/// The result ADD prints for `port`, made as `ifname` inside `netns`, on top of
/// `prev_result` when there is one.
///
/// # Errors
/// [`CniError::InvalidConfig`] when `prev_result` has `interfaces`, `ips` or `routes`
/// that are not lists.
pub fn add_result(
    version: Version,
    ifname: &str,
    netns: &str,
    port: &PortInfo,
    prev_result: Option<&Map<String, Value>>,
) -> Result<Value, CniError> {
    let mut result = prev_result.cloned().unwrap_or_default();
    let index = {
        let interfaces = list_mut(&mut result, "interfaces")?;
        let mut interface = Map::new();
        interface.insert("name".into(), json!(ifname));
        interface.insert("mac".into(), json!(port.mac.to_string()));
        if version >= Version::V1_1_0 {
            interface.insert("mtu".into(), json!(port.mtu));
        }
        interface.insert("sandbox".into(), json!(netns));
        let index = interfaces.len();
        interfaces.push(Value::Object(interface));
        index
    };
    let mut ip = Map::new();
    if version == Version::V0_4_0 {
        ip.insert("version".into(), json!("4"));
    }
    ip.insert("address".into(), json!(port.address.to_string()));
    ip.insert("gateway".into(), json!(port.gateway.to_string()));
    ip.insert("interface".into(), json!(index));
    list_mut(&mut result, "ips")?.push(Value::Object(ip));
    list_mut(&mut result, "routes")?.push(json!({
        "dst": "0.0.0.0/0",
        "gw": port.gateway.to_string(),
    }));
    result.insert("cniVersion".into(), json!(version.as_str()));
    Ok(Value::Object(result))
}

/// Verifies that `prev_result` lists an interface `ifname` in `netns` with an address.
///
/// # Errors
/// [`CniError::CheckFailed`] when it does not; [`CniError::InvalidConfig`] when its
/// `interfaces` or `ips` are not lists.
pub fn check_prev_result(
    prev_result: &Map<String, Value>,
    ifname: &str,
    netns: &str,
) -> Result<(), CniError> {
    let interfaces = list(prev_result, "interfaces")?;
    let index = interfaces
        .iter()
        .position(|i| {
            i.get("name").and_then(Value::as_str) == Some(ifname)
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|sandbox| same_netns(sandbox, netns))
        })
        .ok_or_else(|| CniError::CheckFailed {
            message: format!("prevResult lists no interface {ifname} in {netns}"),
        })?;
    let has_address = list(prev_result, "ips")?.iter().any(|ip| {
        ip.get("interface").and_then(Value::as_u64) == u64::try_from(index).ok()
            && ip.get("address").and_then(Value::as_str).is_some()
    });
    if has_address {
        Ok(())
    } else {
        Err(CniError::CheckFailed {
            message: format!("prevResult lists no address on interface {ifname}"),
        })
    }
}

/// Checks that `prev_result`'s `interfaces`, `ips` and `routes` are lists (or absent), so
/// that [`add_result`] cannot fail on it.
///
/// # Errors
/// [`CniError::InvalidConfig`] naming the first that is not.
pub fn check_lists(prev_result: &Map<String, Value>) -> Result<(), CniError> {
    for key in ["interfaces", "ips", "routes"] {
        list(prev_result, key)?;
    }
    Ok(())
}

/// The same path, or two paths to the same namespace file (e.g. `/var/run/netns/x` and
/// `/run/netns/x`).
fn same_netns(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    match (Path::new(a).metadata(), Path::new(b).metadata()) {
        (Ok(ma), Ok(mb)) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
        _ => false,
    }
}

fn list<'a>(result: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], CniError> {
    match result.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(not_a_list(key, other)),
    }
}

fn list_mut<'a>(
    result: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Vec<Value>, CniError> {
    let slot = result
        .entry(key)
        .and_modify(|v| {
            if v.is_null() {
                *v = Value::Array(Vec::new());
            }
        })
        .or_insert_with(|| Value::Array(Vec::new()));
    match slot {
        Value::Array(items) => Ok(items),
        other => Err(not_a_list(key, other)),
    }
}

fn not_a_list(key: &str, value: &Value) -> CniError {
    CniError::InvalidConfig {
        key: format!("prevResult.{key}"),
        problem: format!("must be a list, not {value}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use vswitch::control::proto::{AttachmentKey, PortCounters};

    use super::*;

    fn port() -> PortInfo {
        PortInfo {
            key: AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            },
            pod: "default/a".into(),
            netns: "/run/netns/pod-a".into(),
            address: "10.244.1.5/16".parse().unwrap(),
            gateway: "10.244.1.1".parse().unwrap(),
            mac: "0a:58:0a:f4:01:05".parse().unwrap(),
            mtu: 1450,
            attached: true,
            counters: PortCounters::default(),
        }
    }

    fn add(version: Version, prev: Option<Value>) -> Result<Value, CniError> {
        let prev = prev.map(|v| v.as_object().unwrap().clone());
        add_result(version, "eth0", "/run/netns/pod-a", &port(), prev.as_ref())
    }

    #[test]
    fn result_1_1_0() {
        assert_eq!(
            add(Version::V1_1_0, None).unwrap(),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05", "mtu": 1450,
                                "sandbox": "/run/netns/pod-a"}],
                "ips": [{"address": "10.244.1.5/16", "gateway": "10.244.1.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            })
        );
    }

    #[test]
    fn result_1_0_0() {
        assert_eq!(
            add(Version::V1_0_0, None).unwrap(),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05",
                                "sandbox": "/run/netns/pod-a"}],
                "ips": [{"address": "10.244.1.5/16", "gateway": "10.244.1.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            })
        );
    }

    #[test]
    fn result_0_4_0() {
        assert_eq!(
            add(Version::V0_4_0, None).unwrap(),
            json!({
                "cniVersion": "0.4.0",
                "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05",
                                "sandbox": "/run/netns/pod-a"}],
                "ips": [{"version": "4", "address": "10.244.1.5/16", "gateway": "10.244.1.1",
                         "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            })
        );
    }

    #[test]
    fn prev_result_is_extended_not_dropped() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "00:11:22:33:44:55"},
                {"name": "veth1", "mac": "00:11:22:33:44:66"},
            ],
            "ips": [{"address": "192.168.0.5/24", "interface": 1}],
            "routes": [{"dst": "192.168.0.0/16"}],
            "dns": {"nameservers": ["10.96.0.10"]},
            "custom": {"kept": true},
        });
        assert_eq!(
            add(Version::V1_0_0, Some(prev)).unwrap(),
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cni0", "mac": "00:11:22:33:44:55"},
                    {"name": "veth1", "mac": "00:11:22:33:44:66"},
                    {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/run/netns/pod-a"},
                ],
                "ips": [
                    {"address": "192.168.0.5/24", "interface": 1},
                    {"address": "10.244.1.5/16", "gateway": "10.244.1.1", "interface": 2},
                ],
                "routes": [
                    {"dst": "192.168.0.0/16"},
                    {"dst": "0.0.0.0/0", "gw": "10.244.1.1"},
                ],
                "dns": {"nameservers": ["10.96.0.10"]},
                "custom": {"kept": true},
            })
        );
    }

    #[test]
    fn prev_result_without_lists_or_with_nulls() {
        let got = add(
            Version::V1_1_0,
            Some(json!({"cniVersion": "1.1.0", "ips": null})),
        )
        .unwrap();
        assert_eq!(got, add(Version::V1_1_0, None).unwrap());
    }

    #[test]
    fn prev_result_with_non_list_is_code_7() {
        let err = add(Version::V1_1_0, Some(json!({"interfaces": {}}))).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("prevResult.interfaces"), "{err}");
    }

    #[test]
    fn check_accepts_our_own_result() {
        for version in Version::ALL {
            let result = add(version, None).unwrap();
            check_prev_result(result.as_object().unwrap(), "eth0", "/run/netns/pod-a").unwrap();
        }
    }

    #[test]
    fn check_rejects_missing_interface_or_address() {
        let result = add(Version::V1_1_0, None).unwrap();
        let map = result.as_object().unwrap();
        let err = check_prev_result(map, "eth1", "/run/netns/pod-a").unwrap_err();
        assert_eq!(err.code(), 100);
        let err = check_prev_result(map, "eth0", "/run/netns/pod-b").unwrap_err();
        assert_eq!(err.code(), 100);
        let mut no_ip = map.clone();
        no_ip.insert("ips".into(), json!([]));
        let err = check_prev_result(&no_ip, "eth0", "/run/netns/pod-a").unwrap_err();
        assert_eq!(err.code(), 100);
        assert!(err.to_string().contains("no address"), "{err}");
    }

    #[test]
    fn check_accepts_another_path_to_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("ns");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (real, link) = (real.to_str().unwrap(), link.to_str().unwrap());
        let prev = add_result(Version::V1_1_0, "eth0", real, &port(), None).unwrap();
        check_prev_result(prev.as_object().unwrap(), "eth0", link).unwrap();
    }
}
