//! The `CNI_*` environment variables: which command runs, and the arguments it needs.
//!
//! Parsing is pure: it reads variables through a lookup function, so tests pass a map.
//! An empty variable counts as unset, as in the reference `skel`. Each command requires
//! exactly the variables the CNI specification's table lists for it, except that
//! `CNI_PATH` is never required (vswitch-cni runs no other plugin). Every problem is
//! collected, so one error names every bad variable.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fmt;

use vswitch::control::proto::AttachmentKey;

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container.
    Del,
    /// Verify an attachment.
    Check,
    /// Is the plugin ready for ADD? (CNI 1.1.0.)
    Status,
    /// Remove attachments the runtime no longer knows. (CNI 1.1.0.)
    Gc,
    /// Which CNI versions does the plugin speak?
    Version,
}

impl Command {
    /// The command named by a `CNI_COMMAND` value (case-sensitive, as in `skel`).
    pub fn from_name(name: &str) -> Option<Command> {
        Some(match name {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// The `CNI_COMMAND` value of this command.
    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Kubernetes pod an ADD attaches, from `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// `K8S_POD_NAMESPACE`, or `default`.
    pub namespace: String,
    /// `K8S_POD_NAME`, or the container ID.
    pub name: String,
}

/// A command with the arguments the environment gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// ADD.
    Add {
        /// `CNI_CONTAINERID` and `CNI_IFNAME`.
        key: AttachmentKey,
        /// `CNI_NETNS`.
        netns: String,
        /// From `CNI_ARGS`.
        pod: PodRef,
    },
    /// DEL.
    Del {
        /// `CNI_CONTAINERID` and `CNI_IFNAME`.
        key: AttachmentKey,
    },
    /// CHECK.
    Check {
        /// `CNI_CONTAINERID` and `CNI_IFNAME`.
        key: AttachmentKey,
        /// `CNI_NETNS`.
        netns: String,
    },
    /// STATUS.
    Status,
    /// GC.
    Gc,
    /// VERSION.
    Version,
}

/// One problem with one environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A variable the command needs is unset or empty.
    #[error("{var} is not set; {command} needs it")]
    Missing {
        /// The variable.
        var: &'static str,
        /// The command.
        command: Command,
    },
    /// A variable has a value that cannot be used.
    #[error("{var}={value:?} {problem}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A variable is not UTF-8.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: &'static str,
    },
    /// `CNI_COMMAND` names no command.
    #[error(
        "CNI_COMMAND={0:?} is not a CNI command; expected ADD, DEL, CHECK, STATUS, GC or VERSION"
    )]
    UnknownCommand(String),
}

/// All the problems found in the environment (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvErrors(pub Vec<EnvError>);

impl fmt::Display for EnvErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

/// Reads `CNI_COMMAND`: `Ok(None)` when it is unset or empty.
///
/// # Errors
/// [`EnvError::UnknownCommand`] or [`EnvError::NotUnicode`].
pub fn command(lookup: &impl Fn(&str) -> Option<OsString>) -> Result<Option<Command>, EnvError> {
    match text(lookup, "CNI_COMMAND")? {
        None => Ok(None),
        Some(name) => Command::from_name(&name)
            .map(Some)
            .ok_or(EnvError::UnknownCommand(name)),
    }
}

/// Reads the variables `command` needs.
///
/// # Errors
/// Every missing or invalid variable, at once.
pub fn invocation(
    command: Command,
    lookup: &impl Fn(&str) -> Option<OsString>,
) -> Result<Invocation, EnvErrors> {
    let mut errors = Vec::new();
    let mut required =
        |var: &'static str, check: fn(&str) -> Result<(), String>| match text(lookup, var) {
            Ok(Some(value)) => match check(&value) {
                Ok(()) => Some(value),
                Err(problem) => {
                    errors.push(EnvError::Invalid {
                        var,
                        value,
                        problem,
                    });
                    None
                }
            },
            Ok(None) => {
                errors.push(EnvError::Missing { var, command });
                None
            }
            Err(err) => {
                errors.push(err);
                None
            }
        };
    let invocation = match command {
        Command::Add | Command::Check => {
            let container_id = required("CNI_CONTAINERID", check_container_id);
            let netns = required("CNI_NETNS", check_netns);
            let ifname = required("CNI_IFNAME", check_ifname);
            let pod = if command == Command::Add {
                match text(lookup, "CNI_ARGS")
                    .and_then(|args| parse_args(args.as_deref().unwrap_or("")))
                {
                    Ok(pairs) => Some(pairs),
                    Err(err) => {
                        errors.push(err);
                        None
                    }
                }
            } else {
                Some(Vec::new())
            };
            match (container_id, netns, ifname, pod) {
                (Some(container_id), Some(netns), Some(ifname), Some(pairs)) => {
                    let pod = pod_ref(&pairs, &container_id);
                    let key = AttachmentKey {
                        container_id,
                        ifname,
                    };
                    if command == Command::Add {
                        Invocation::Add { key, netns, pod }
                    } else {
                        Invocation::Check { key, netns }
                    }
                }
                _ => return Err(EnvErrors(errors)),
            }
        }
        Command::Del => {
            let container_id = required("CNI_CONTAINERID", check_container_id);
            let ifname = required("CNI_IFNAME", check_ifname);
            match (container_id, ifname) {
                (Some(container_id), Some(ifname)) => Invocation::Del {
                    key: AttachmentKey {
                        container_id,
                        ifname,
                    },
                },
                _ => return Err(EnvErrors(errors)),
            }
        }
        Command::Status => Invocation::Status,
        Command::Gc => Invocation::Gc,
        Command::Version => Invocation::Version,
    };
    if errors.is_empty() {
        Ok(invocation)
    } else {
        Err(EnvErrors(errors))
    }
}

/// A variable as text; `None` when unset or empty.
fn text(
    lookup: &impl Fn(&str) -> Option<OsString>,
    var: &'static str,
) -> Result<Option<String>, EnvError> {
    match lookup(var) {
        None => Ok(None),
        Some(value) => {
            let value = value
                .into_string()
                .map_err(|_| EnvError::NotUnicode { var })?;
            Ok(Some(value).filter(|v| !v.is_empty()))
        }
    }
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]*$`.
fn check_container_id(id: &str) -> Result<(), String> {
    let mut bytes = id.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok {
        return Err("is not a valid container ID: it must start with a letter or digit".into());
    }
    if let Some(bad) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "is not a valid container ID: {bad:?} is not allowed (only letters, digits, '_', '.', '-')"
        ));
    }
    Ok(())
}

/// What Linux accepts as an interface name: 1 to 15 bytes, no '/', ':' or whitespace,
/// not `.` or `..`.
fn check_ifname(name: &str) -> Result<(), String> {
    const IFNAMSIZ: usize = 16;
    if name.len() >= IFNAMSIZ {
        return Err(format!(
            "is not a valid interface name: it is {} bytes long, the limit is 15",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("is not a valid interface name".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "is not a valid interface name: it contains {bad:?}"
        ));
    }
    Ok(())
}

/// The daemon resolves the path in its own working directory, so it must be absolute.
fn check_netns(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err("is not an absolute path (e.g. /run/netns/NAME)".into())
    }
}

/// `K1=V1;K2=V2`; empty segments are skipped, every other one needs a `=`.
fn parse_args(args: &str) -> Result<Vec<(String, String)>, EnvError> {
    let mut pairs = Vec::new();
    for part in args.split(';').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                pairs.push((key.to_owned(), value.to_owned()));
            }
            _ => {
                return Err(EnvError::Invalid {
                    var: "CNI_ARGS",
                    value: args.to_owned(),
                    problem: format!("is not a list of KEY=VALUE separated by ';' (at {part:?})"),
                })
            }
        }
    }
    Ok(pairs)
}

/// The pod named by `K8S_POD_NAMESPACE` and `K8S_POD_NAME` (the last of each wins),
/// defaulting to `default/<container ID>`.
fn pod_ref(pairs: &[(String, String)], container_id: &str) -> PodRef {
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    PodRef {
        namespace: get("K8S_POD_NAMESPACE").unwrap_or_else(|| "default".into()),
        name: get("K8S_POD_NAME").unwrap_or_else(|| container_id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(*v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/a"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    fn with(
        base: &[(&'static str, &'static str)],
        var: &'static str,
        value: Option<&'static str>,
    ) -> Vec<(&'static str, &'static str)> {
        let mut vars: Vec<_> = base.iter().copied().filter(|(k, _)| *k != var).collect();
        if let Some(value) = value {
            vars.push((var, value));
        }
        vars
    }

    fn one_error(vars: &[(&str, &str)], command: Command) -> EnvError {
        let errs = invocation(command, &env(vars)).unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        errs.0.into_iter().next().unwrap()
    }

    #[test]
    fn add_defaults_pod_to_default_namespace_and_container_id() {
        let inv = invocation(Command::Add, &env(ADD)).unwrap();
        assert_eq!(
            inv,
            Invocation::Add {
                key: AttachmentKey {
                    container_id: "c1".into(),
                    ifname: "eth0".into()
                },
                netns: "/run/netns/a".into(),
                pod: PodRef {
                    namespace: "default".into(),
                    name: "c1".into()
                },
            }
        );
    }

    #[test]
    fn add_takes_pod_from_cni_args() {
        let vars = with(
            ADD,
            "CNI_ARGS",
            Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=front-1;K8S_POD_INFRA_CONTAINER_ID=c1;"),
        );
        let Invocation::Add { pod, .. } = invocation(Command::Add, &env(&vars)).unwrap() else {
            panic!("not an add");
        };
        assert_eq!(pod.namespace, "web");
        assert_eq!(pod.name, "front-1");
    }

    #[test]
    fn bad_cni_args_is_named() {
        let vars = with(ADD, "CNI_ARGS", Some("K8S_POD_NAME"));
        let err = one_error(&vars, Command::Add);
        assert!(
            matches!(
                err,
                EnvError::Invalid {
                    var: "CNI_ARGS",
                    ..
                }
            ),
            "{err}"
        );
        let vars = with(ADD, "CNI_ARGS", Some("=x"));
        assert!(matches!(
            one_error(&vars, Command::Add),
            EnvError::Invalid {
                var: "CNI_ARGS",
                ..
            }
        ));
    }

    #[test]
    fn missing_variables_are_all_named() {
        let vars = [("CNI_COMMAND", "ADD")];
        let errs = invocation(Command::Add, &env(&vars)).unwrap_err();
        let text = errs.to_string();
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            assert!(text.contains(var), "{text}");
        }
        assert_eq!(errs.0.len(), 3);
        assert!(!text.contains("CNI_PATH"));
    }

    #[test]
    fn empty_counts_as_missing() {
        let vars = with(ADD, "CNI_CONTAINERID", Some(""));
        assert_eq!(
            one_error(&vars, Command::Add),
            EnvError::Missing {
                var: "CNI_CONTAINERID",
                command: Command::Add
            }
        );
    }

    #[test]
    fn invalid_container_ids() {
        for bad in ["-c1", "_c", ".c", "c 1", "c/1", "c:1", "ç"] {
            let vars = with(ADD, "CNI_CONTAINERID", Some(bad));
            let err = one_error(&vars, Command::Add);
            assert!(
                matches!(
                    err,
                    EnvError::Invalid {
                        var: "CNI_CONTAINERID",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
        for good in ["c", "0", "a.b-c_d", "cnitool-0123abcd"] {
            let vars = with(ADD, "CNI_CONTAINERID", Some(good));
            assert!(invocation(Command::Add, &env(&vars)).is_ok(), "{good}");
        }
    }

    #[test]
    fn invalid_ifnames() {
        for bad in [
            ".",
            "..",
            "eth/0",
            "eth:0",
            "eth 0",
            "eth\t0",
            "sixteen-bytes-xx",
        ] {
            let vars = with(ADD, "CNI_IFNAME", Some(bad));
            let err = one_error(&vars, Command::Add);
            assert!(
                matches!(
                    err,
                    EnvError::Invalid {
                        var: "CNI_IFNAME",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
        let vars = with(ADD, "CNI_IFNAME", Some("fifteen-bytes-x"));
        assert!(invocation(Command::Add, &env(&vars)).is_ok());
    }

    #[test]
    fn relative_netns_is_invalid() {
        let vars = with(ADD, "CNI_NETNS", Some("run/netns/a"));
        let err = one_error(&vars, Command::Check);
        assert!(
            matches!(
                err,
                EnvError::Invalid {
                    var: "CNI_NETNS",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    #[cfg(unix)]
    fn non_utf8_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let lookup = |name: &str| match name {
            "CNI_CONTAINERID" => Some(OsString::from_vec(vec![0xff, 0xfe])),
            other => env(ADD)(other),
        };
        let errs = invocation(Command::Del, &lookup).unwrap_err();
        assert_eq!(
            errs.0,
            vec![EnvError::NotUnicode {
                var: "CNI_CONTAINERID"
            }]
        );
    }

    #[test]
    fn del_needs_no_netns_and_ignores_bad_args() {
        let vars = [
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "garbage"),
        ];
        assert_eq!(
            invocation(Command::Del, &env(&vars)).unwrap(),
            Invocation::Del {
                key: AttachmentKey {
                    container_id: "c1".into(),
                    ifname: "eth0".into()
                }
            }
        );
        let err = one_error(&[("CNI_IFNAME", "eth0")], Command::Del);
        assert_eq!(
            err,
            EnvError::Missing {
                var: "CNI_CONTAINERID",
                command: Command::Del
            }
        );
    }

    #[test]
    fn status_gc_version_need_nothing() {
        for command in [Command::Status, Command::Gc, Command::Version] {
            assert!(invocation(command, &env(&[])).is_ok());
        }
    }

    #[test]
    fn command_names() {
        assert_eq!(command(&env(&[])), Ok(None));
        assert_eq!(command(&env(&[("CNI_COMMAND", "")])), Ok(None));
        assert_eq!(
            command(&env(&[("CNI_COMMAND", "GC")])),
            Ok(Some(Command::Gc))
        );
        assert_eq!(
            command(&env(&[("CNI_COMMAND", "add")])),
            Err(EnvError::UnknownCommand("add".into()))
        );
        for c in [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Status,
            Command::Gc,
            Command::Version,
        ] {
            assert_eq!(Command::from_name(c.name()), Some(c));
        }
    }
}
