//! The network configuration the runtime writes to stdin.
//!
//! vswitch-cni reads `cniVersion`, `name`, `type` and `socket`; for ADD and CHECK the
//! `prevResult`; for GC the valid attachments. Every other key (`runtimeConfig`, `args`,
//! `ipam`, `dns`, unknown ones) is accepted and ignored. `prevResult` and the GC lists are
//! checked only by the commands that use them, so a DEL never fails on them.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};
use vswitch::control::proto::AttachmentKey;
use vswitch::control::DEFAULT_SOCKET;

use crate::error::CniError;

/// A CNI specification version vswitch-cni speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 0.4.0: results carry `"version": "4"` in each IP.
    V0_4_0,
    /// 1.0.0.
    V1_0_0,
    /// 1.1.0: STATUS, GC, and `mtu` on interfaces.
    V1_1_0,
}

impl Version {
    /// Every supported version, oldest first.
    pub const ALL: [Version; 3] = [Version::V0_4_0, Version::V1_0_0, Version::V1_1_0];

    /// The newest supported version.
    pub const LATEST: Version = Version::V1_1_0;

    /// The version written as `text`, if supported.
    pub fn parse(text: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The version as the specification writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// GC's list of attachments the runtime still knows, as the specification names it.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";

/// The same list as the `spec-v1.1.0` tag misnames it; libcni sends both keys.
pub const ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// The parsed network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: Version,
    /// `name`.
    pub name: String,
    /// `type` (the plugin binary's name).
    pub plugin_type: String,
    /// `socket`, or [`DEFAULT_SOCKET`].
    pub socket: PathBuf,
    /// The whole object, for the keys only some commands read.
    raw: Map<String, Value>,
}

impl NetConf {
    /// Parses the bytes the runtime wrote to stdin.
    ///
    /// # Errors
    /// [`CniError::Decode`] (code 6) when they are not a JSON object; code 1 for a missing
    /// or unsupported `cniVersion`; [`CniError::InvalidConfig`] (7) for a missing or
    /// malformed `name`, `type` or `socket`; [`CniError::UnsupportedField`] (2) for a
    /// relative `socket`.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw = decode(stdin)?;
        let cni_version = match raw.get("cniVersion") {
            None | Some(Value::Null) => return Err(CniError::MissingVersion),
            Some(Value::String(text)) => {
                Version::parse(text).ok_or_else(|| CniError::UnsupportedVersion {
                    version: text.clone(),
                })?
            }
            Some(other) => {
                return Err(invalid(
                    "cniVersion",
                    format!("must be a string, not {other}"),
                ))
            }
        };
        let name = string_key(&raw, "name")?;
        check_network_name(&name)?;
        let plugin_type = string_key(&raw, "type")?;
        let socket = match raw.get("socket") {
            None | Some(Value::Null) => PathBuf::from(DEFAULT_SOCKET),
            Some(Value::String(path)) if path.is_empty() => {
                return Err(invalid("socket", "must not be empty".into()))
            }
            Some(Value::String(path)) if !path.starts_with('/') => {
                return Err(CniError::UnsupportedField {
                    key: "socket",
                    value: Value::String(path.clone()).to_string(),
                    reason: "the control socket must be an absolute path",
                })
            }
            Some(Value::String(path)) => PathBuf::from(path),
            Some(other) => {
                return Err(invalid(
                    "socket",
                    format!("must be a string (the control socket's path), not {other}"),
                ))
            }
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            socket,
            raw,
        })
    }

    /// `prevResult`, when present and not null.
    ///
    /// # Errors
    /// [`CniError::InvalidConfig`] when it is not an object.
    pub fn prev_result(&self) -> Result<Option<&Map<String, Value>>, CniError> {
        match self.raw.get("prevResult") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(invalid(
                "prevResult",
                format!("must be a CNI result object, not {other}"),
            )),
        }
    }

    /// GC's valid attachments: the union of [`VALID_ATTACHMENTS_KEY`] and
    /// [`ATTACHMENTS_KEY`], sorted and without duplicates. Neither key means none is valid.
    ///
    /// # Errors
    /// [`CniError::InvalidConfig`] when a key is not a list of `{containerID, ifname}`.
    pub fn valid_attachments(&self) -> Result<Vec<AttachmentKey>, CniError> {
        let mut valid = BTreeSet::new();
        for key in [VALID_ATTACHMENTS_KEY, ATTACHMENTS_KEY] {
            let list = match self.raw.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(list)) => list,
                Some(other) => {
                    return Err(invalid(
                        key,
                        format!("must be a list of {{\"containerID\", \"ifname\"}}, not {other}"),
                    ))
                }
            };
            for (i, entry) in list.iter().enumerate() {
                let field = |name: &str| {
                    entry
                        .get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            invalid(
                                &format!("{key}[{i}].{name}"),
                                format!("must be a string, in {entry}"),
                            )
                        })
                };
                valid.insert(AttachmentKey {
                    container_id: field("containerID")?,
                    ifname: field("ifname")?,
                });
            }
        }
        Ok(valid.into_iter().collect())
    }
}

/// The `cniVersion` of stdin when it is one we speak: the version error objects use.
pub fn peek_version(stdin: &[u8]) -> Option<Version> {
    serde_json::from_slice::<Value>(stdin)
        .ok()?
        .get("cniVersion")?
        .as_str()
        .and_then(Version::parse)
}

/// VERSION's answer: `cniVersion` echoes stdin's (any string; 1.1.0 when stdin is empty or
/// has none), `supportedVersions` lists ours. VERSION is discovery, so it never fails.
pub fn version_reply(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| Version::LATEST.as_str().to_owned());
    let supported: Vec<&str> = Version::ALL.iter().map(|v| v.as_str()).collect();
    serde_json::json!({ "cniVersion": asked, "supportedVersions": supported })
}

fn decode(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::Decode("stdin is empty".into()));
    }
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CniError::Decode(format!(
            "expected a JSON object, found {}",
            kind(&other)
        ))),
        Err(err) => Err(CniError::Decode(err.to_string())),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string_key(raw: &Map<String, Value>, key: &str) -> Result<String, CniError> {
    match raw.get(key) {
        None | Some(Value::Null) => Err(invalid(key, "is missing".into())),
        Some(Value::String(text)) if text.is_empty() => Err(invalid(key, "is empty".into())),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(invalid(key, format!("must be a string, not {other}"))),
    }
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]*$`, as the specification requires of network names.
fn check_network_name(name: &str) -> Result<(), CniError> {
    let starts_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if starts_ok && rest_ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "{name:?} is not a valid network name: it must start with a letter or digit \
                 and contain only letters, digits, '_', '.' and '-'"
            ),
        ))
    }
}

fn invalid(key: &str, problem: String) -> CniError {
    CniError::InvalidConfig {
        key: key.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<NetConf, CniError> {
        NetConf::parse(value.to_string().as_bytes())
    }

    fn conf(version: &str) -> Value {
        json!({"cniVersion": version, "name": "podnet", "type": "vswitch-cni"})
    }

    #[test]
    fn each_supported_version() {
        for (text, version) in [
            ("0.4.0", Version::V0_4_0),
            ("1.0.0", Version::V1_0_0),
            ("1.1.0", Version::V1_1_0),
        ] {
            let conf = parse(conf(text)).unwrap();
            assert_eq!(conf.cni_version, version);
            assert_eq!(conf.name, "podnet");
            assert_eq!(conf.plugin_type, "vswitch-cni");
            assert_eq!(conf.socket, PathBuf::from(DEFAULT_SOCKET));
        }
    }

    #[test]
    fn bad_version_is_code_1() {
        for version in ["0.3.1", "1.2.0", "", "v1.0.0"] {
            let err = parse(conf(version)).unwrap_err();
            assert_eq!(err.code(), 1, "{version}: {err}");
        }
        let err = parse(json!({"name": "podnet", "type": "vswitch-cni"})).unwrap_err();
        assert_eq!(err.code(), 1);
        let err = parse(json!({"cniVersion": 1, "name": "podnet", "type": "x"})).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("cniVersion"), "{err}");
    }

    #[test]
    fn bad_name_is_code_7() {
        for name in [
            json!("-net"),
            json!("pod net"),
            json!(""),
            json!(7),
            json!("net/1"),
        ] {
            let mut value = conf("1.1.0");
            value["name"] = name.clone();
            let err = parse(value).unwrap_err();
            assert_eq!(err.code(), 7, "{name}: {err}");
            assert!(err.to_string().contains("`name`"), "{err}");
        }
        let mut value = conf("1.1.0");
        value.as_object_mut().unwrap().remove("name");
        assert_eq!(parse(value).unwrap_err().code(), 7);
    }

    #[test]
    fn missing_type_is_code_7() {
        let mut value = conf("1.0.0");
        value.as_object_mut().unwrap().remove("type");
        let err = parse(value).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("`type`"), "{err}");
    }

    #[test]
    fn garbage_is_code_6() {
        for stdin in [
            &b"{not json"[..],
            b"",
            b"  \n",
            b"[1,2]",
            b"\"podnet\"",
            b"null",
        ] {
            let err = NetConf::parse(stdin).unwrap_err();
            assert_eq!(err.code(), 6, "{stdin:?}: {err}");
        }
    }

    #[test]
    fn socket_key() {
        let mut value = conf("1.1.0");
        value["socket"] = json!("/tmp/x.sock");
        assert_eq!(
            parse(value.clone()).unwrap().socket,
            PathBuf::from("/tmp/x.sock")
        );
        value["socket"] = json!(42);
        let err = parse(value.clone()).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("`socket`"), "{err}");
        value["socket"] = json!("x.sock");
        let err = parse(value).unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(err.to_string().contains("socket") && err.to_string().contains("x.sock"));
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut value = conf("1.1.0");
        value["ipam"] = json!({"type": "host-local"});
        value["runtimeConfig"] = json!({"portMappings": []});
        value["somethingElse"] = json!([1, 2, 3]);
        assert!(parse(value).is_ok());
    }

    #[test]
    fn prev_result_must_be_an_object() {
        let mut value = conf("1.0.0");
        assert_eq!(parse(value.clone()).unwrap().prev_result().unwrap(), None);
        value["prevResult"] = json!(null);
        assert_eq!(parse(value.clone()).unwrap().prev_result().unwrap(), None);
        value["prevResult"] = json!("x");
        let conf = parse(value).unwrap();
        let err = conf.prev_result().unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("prevResult"), "{err}");
    }

    fn key(id: &str, ifname: &str) -> AttachmentKey {
        AttachmentKey {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn gc_lists_from_both_keys_are_merged() {
        let mut value = conf("1.1.0");
        value[VALID_ATTACHMENTS_KEY] = json!([
            {"containerID": "c2", "ifname": "eth0"},
            {"containerID": "c1", "ifname": "eth0"},
        ]);
        value[ATTACHMENTS_KEY] = json!([
            {"containerID": "c1", "ifname": "eth0"},
            {"containerID": "c3", "ifname": "net1", "extra": true},
        ]);
        let valid = parse(value).unwrap().valid_attachments().unwrap();
        assert_eq!(
            valid,
            vec![key("c1", "eth0"), key("c2", "eth0"), key("c3", "net1")]
        );
    }

    #[test]
    fn gc_list_from_either_key_alone() {
        for k in [VALID_ATTACHMENTS_KEY, ATTACHMENTS_KEY] {
            let mut value = conf("1.1.0");
            value[k] = json!([{"containerID": "c1", "ifname": "eth0"}]);
            assert_eq!(
                parse(value).unwrap().valid_attachments().unwrap(),
                vec![key("c1", "eth0")]
            );
        }
        assert!(parse(conf("1.1.0"))
            .unwrap()
            .valid_attachments()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_gc_list_is_code_7() {
        for bad in [
            json!({"containerID": "c1"}),
            json!([{"containerID": "c1"}]),
            json!([{"containerID": 1, "ifname": "eth0"}]),
        ] {
            let mut value = conf("1.1.0");
            value[VALID_ATTACHMENTS_KEY] = bad.clone();
            let err = parse(value).unwrap().valid_attachments().unwrap_err();
            assert_eq!(err.code(), 7, "{bad}");
            assert!(err.to_string().contains(VALID_ATTACHMENTS_KEY), "{err}");
        }
    }

    #[test]
    fn version_reply_echoes_or_defaults() {
        let supported = json!(["0.4.0", "1.0.0", "1.1.0"]);
        assert_eq!(
            version_reply(br#"{"cniVersion":"1.0.0"}"#),
            json!({"cniVersion": "1.0.0", "supportedVersions": supported})
        );
        for stdin in [&b""[..], b"garbage", b"{}"] {
            assert_eq!(
                version_reply(stdin),
                json!({"cniVersion": "1.1.0", "supportedVersions": supported})
            );
        }
    }

    #[test]
    fn peek_version_only_for_supported() {
        assert_eq!(
            peek_version(br#"{"cniVersion":"0.4.0"}"#),
            Some(Version::V0_4_0)
        );
        assert_eq!(peek_version(br#"{"cniVersion":"0.3.1"}"#), None);
        assert_eq!(peek_version(b"{"), None);
    }
}
