//! `v1` `Pod`: vswitch keeps its labels (which NetworkPolicy `podSelector`s match), its
//! containers' ports (which named ports in policies resolve to) and `status.podIP` (which
//! the offline evaluator, `vswitchctl policy matrix`, uses as the pod's address).
//!
//! Validation follows the API server: container names are DNS-1123 labels, unique in the
//! pod; `containerPort` is 1..=65535; port names are IANA service names, unique in their
//! container; the protocol is `TCP` (the default), `UDP` or `SCTP`. Unlike the API
//! server, `spec` and `spec.containers` may be left out (a document that only labels an
//! attached pod), and so may a container's name.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;

use crate::k8s::error::Problem;
use crate::k8s::field::{mapping, Field, Object, Read};
use crate::k8s::meta::{dns1123_label, ObjectMeta, Scope};
use crate::k8s::port::{port_name, Protocol};

/// A `Pod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// `spec.containers`, with only what vswitch needs of each.
    pub containers: Vec<Container>,
    /// `status.podIP`, when the document has one.
    pub pod_ip: Option<Ipv4Addr>,
}

/// One of `spec.containers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// `name`, when given.
    pub name: Option<String>,
    /// `ports`.
    pub ports: Vec<ContainerPort>,
}

/// One of a container's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// `name`: what a NetworkPolicy's named port refers to.
    pub name: Option<String>,
    /// `containerPort`.
    pub container_port: u16,
    /// `protocol`.
    pub protocol: Protocol,
}

impl Pod {
    /// The `apiVersion` of a `Pod`.
    pub const API_VERSION: &'static str = "v1";
    /// The `kind`.
    pub const KIND: &'static str = "Pod";

    /// Every port of every container.
    pub fn ports(&self) -> impl Iterator<Item = &ContainerPort> + '_ {
        self.containers.iter().flat_map(|c| c.ports.iter())
    }

    /// The numbers of the ports named `name` with protocol `protocol` (what a policy's
    /// named port means on this pod); several when containers reuse the name, none when
    /// no port has it.
    pub fn ports_named<'a>(
        &'a self,
        name: &'a str,
        protocol: Protocol,
    ) -> impl Iterator<Item = u16> + 'a {
        self.ports()
            .filter(move |p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    }

    /// Reads a `Pod` document (`apiVersion` and `kind` already checked).
    pub(crate) fn decode(object: &Object<'_>) -> Read<Pod> {
        let metadata = ObjectMeta::decode(object, Scope::Namespaced)?;
        let mut containers = Vec::new();
        if let Some(spec) = object.opt_object("spec")? {
            let mut names = BTreeSet::new();
            for field in spec.list("containers")? {
                let container = Container::decode(&field)?;
                if let Some(name) = &container.name {
                    if !names.insert(name.clone()) {
                        return Err(field.object()?.error_at(
                            "name",
                            Problem::DuplicateContainerName { name: name.clone() },
                        ));
                    }
                }
                containers.push(container);
            }
        }
        let pod_ip = match object.opt_object("status")? {
            Some(status) => match status.get("podIP") {
                Some(field) => decode_ip(&field)?,
                None => None,
            },
            None => None,
        };
        Ok(Pod {
            metadata,
            containers,
            pod_ip,
        })
    }

    /// The document as JSON.
    pub(crate) fn encode(&self) -> Value {
        mapping([
            (
                "apiVersion",
                Some(Value::String(Self::API_VERSION.to_owned())),
            ),
            ("kind", Some(Value::String(Self::KIND.to_owned()))),
            ("metadata", Some(self.metadata.encode())),
            (
                "spec",
                Some(mapping([(
                    "containers",
                    Some(Value::Array(
                        self.containers.iter().map(Container::encode).collect(),
                    )),
                )])),
            ),
            (
                "status",
                self.pod_ip
                    .map(|ip| mapping([("podIP", Some(Value::String(ip.to_string())))])),
            ),
        ])
    }
}

/// Reads `status.podIP`: an IPv4 address, or empty for none.
fn decode_ip(field: &Field<'_>) -> Read<Option<Ipv4Addr>> {
    let text = field.str()?;
    if text.is_empty() {
        return Ok(None);
    }
    if text.contains(':') {
        return Err(field.error(Problem::Ipv6NotSupported {
            value: text.to_owned(),
        }));
    }
    text.parse().map(Some).map_err(|_| {
        field.error(Problem::InvalidIp {
            value: text.to_owned(),
        })
    })
}

impl Container {
    fn decode(field: &Field<'_>) -> Read<Container> {
        let object = field.object()?;
        let name = match object.get("name") {
            Some(name_field) => {
                let name = name_field.str()?;
                dns1123_label(name).map_err(|reason| {
                    name_field.error(Problem::InvalidName {
                        value: name.to_owned(),
                        reason,
                    })
                })?;
                Some(name.to_owned())
            }
            None => None,
        };
        let mut ports = Vec::new();
        let mut port_names = BTreeSet::new();
        for port_field in object.list("ports")? {
            let port = ContainerPort::decode(&port_field)?;
            if let Some(port_name) = &port.name {
                if !port_names.insert(port_name.clone()) {
                    return Err(port_field.object()?.error_at(
                        "name",
                        Problem::DuplicatePortName {
                            name: port_name.clone(),
                        },
                    ));
                }
            }
            ports.push(port);
        }
        Ok(Container { name, ports })
    }

    fn encode(&self) -> Value {
        mapping([
            ("name", self.name.clone().map(Value::String)),
            (
                "ports",
                (!self.ports.is_empty())
                    .then(|| Value::Array(self.ports.iter().map(ContainerPort::encode).collect())),
            ),
        ])
    }
}

impl ContainerPort {
    fn decode(field: &Field<'_>) -> Read<ContainerPort> {
        let object = field.object()?;
        let name = match object.get("name") {
            Some(name_field) => {
                let name = name_field.str()?;
                port_name(name).map_err(|reason| {
                    name_field.error(Problem::InvalidPortName {
                        name: name.to_owned(),
                        reason,
                    })
                })?;
                Some(name.to_owned())
            }
            None => None,
        };
        let container_port = object.require("containerPort")?.port_number()?;
        let protocol = Protocol::decode_member(&object)?;
        Ok(ContainerPort {
            name,
            container_port,
            protocol,
        })
    }

    fn encode(&self) -> Value {
        mapping([
            ("name", self.name.clone().map(Value::String)),
            ("containerPort", Some(Value::from(self.container_port))),
            ("protocol", Some(self.protocol.encode())),
        ])
    }
}
