//! Ports as Kubernetes writes them: the protocol (`TCP`, the default, `UDP` or `SCTP`)
//! and named ports (IANA service names, at most 15 characters).
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::k8s::error::Problem;
use crate::k8s::field::{Object, Read};

/// The longest port name (RFC 6335 service name).
const MAX_PORT_NAME_LEN: usize = 15;

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    /// TCP, the default when a port leaves the protocol out.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol as Kubernetes spells it: `TCP`, `UDP`, `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Reads the member `protocol` of `object`: TCP when absent.
    pub(crate) fn decode_member(object: &Object<'_>) -> Read<Protocol> {
        match object.get("protocol") {
            None => Ok(Protocol::Tcp),
            Some(field) => field.str()?.parse().map_err(|problem| field.error(problem)),
        }
    }

    /// The protocol as JSON.
    pub(crate) fn encode(self) -> Value {
        Value::String(self.as_str().to_owned())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = Problem;

    /// Parses `TCP`, `UDP` or `SCTP`, upper case as Kubernetes requires.
    fn from_str(text: &str) -> Result<Self, Problem> {
        match text {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(Problem::UnknownProtocol {
                protocol: other.to_owned(),
            }),
        }
    }
}

/// Checks a port name (`IANA_SVC_NAME`): 1 to 15 lowercase letters, digits and `-`, at
/// least one letter, no `-` at either end nor two in a row.
pub(crate) fn port_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_PORT_NAME_LEN {
        return Err(format!(
            "it is {} characters long, more than {MAX_PORT_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(format!(
            "it holds {c:?}, but only lowercase letters, digits and '-' are allowed"
        ));
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(
            "it must hold at least one letter (write a port number without quotes)".to_owned(),
        );
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("it must not start or end with '-'".to_owned());
    }
    if name.contains("--") {
        return Err("it must not hold two '-' in a row".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        for good in ["http", "dns-tcp", "h2c", "a", "abcdefghijklmno"] {
            assert_eq!(port_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "80",
            "HTTP",
            "-http",
            "http-",
            "a--b",
            "my_port",
            "abcdefghijklmnop",
        ] {
            assert!(port_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protocols() {
        assert_eq!("UDP".parse::<Protocol>(), Ok(Protocol::Udp));
        assert_eq!(Protocol::default(), Protocol::Tcp);
        assert!("tcp".parse::<Protocol>().is_err());
        assert_eq!(Protocol::Sctp.to_string(), "SCTP");
    }
}
