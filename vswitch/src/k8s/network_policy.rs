//! `networking.k8s.io/v1` `NetworkPolicy`: the whole `NetworkPolicySpec`, validated as the
//! API server validates it.
//!
//! What the policy engine needs to know of the semantics, kept here with the types:
//! - `spec.podSelector` picks the pods of the policy's namespace it applies to; absent or
//!   `{}` picks them all.
//! - `policyTypes` is kept as written ([`NetworkPolicySpec::policy_types`]); when absent
//!   or empty the effective types are `Ingress`, plus `Egress` when the policy has egress
//!   rules ([`NetworkPolicySpec::effective_policy_types`]).
//! - A rule's peers (`from` / `to`) and ports are each "any" when the list is empty; a
//!   rule allows traffic that matches one of its peers and one of its ports.
//! - A peer is exactly one of [`Peer`]'s four shapes: a `podSelector` alone means pods of
//!   the policy's own namespace, a `namespaceSelector` alone every pod of the selected
//!   namespaces, both together the selected pods of the selected namespaces; an
//!   `ipBlock` stands alone.
//! - A port is a number, a number range (`endPort`), or a name that resolves on the
//!   destination pod; protocol `TCP` when left out.
//!
//! vswitch's pod network is IPv4 only, so `ipBlock` CIDRs must be IPv4.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::str::FromStr;

use serde_json::Value;

use crate::ipnet::Ipv4Net;
use crate::k8s::error::Problem;
use crate::k8s::field::{mapping, Field, Object, Read};
use crate::k8s::meta::{ObjectMeta, Scope};
use crate::k8s::pod::Pod;
use crate::k8s::port::{port_name, Protocol};
use crate::k8s::selector::LabelSelector;

/// A `NetworkPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Name, namespace (the pods it applies to live there) and labels.
    pub metadata: ObjectMeta,
    /// `spec`.
    pub spec: NetworkPolicySpec,
}

/// `spec` of a `NetworkPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicySpec {
    /// `podSelector`: the pods of the namespace the policy applies to (empty: all).
    pub pod_selector: LabelSelector,
    /// `policyTypes` as written; `None` when absent. See
    /// [`NetworkPolicySpec::effective_policy_types`] for what applies.
    pub policy_types: Option<Vec<PolicyType>>,
    /// `ingress`: traffic to the selected pods that the policy allows.
    pub ingress: Vec<PolicyRule>,
    /// `egress`: traffic from the selected pods that the policy allows.
    pub egress: Vec<PolicyRule>,
}

/// A direction a policy restricts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyType {
    /// Traffic into the selected pods.
    Ingress,
    /// Traffic out of the selected pods.
    Egress,
}

/// One `ingress` or `egress` rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    /// `from` (ingress) or `to` (egress): the other ends allowed; empty allows any.
    pub peers: Vec<Peer>,
    /// `ports`: the destination ports allowed; empty allows any.
    pub ports: Vec<PolicyPort>,
}

/// One `from` / `to` entry (`NetworkPolicyPeer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// `podSelector` alone: the matching pods of the policy's own namespace.
    Pods(LabelSelector),
    /// `namespaceSelector` alone: every pod of the matching namespaces.
    Namespaces(LabelSelector),
    /// Both: the matching pods of the matching namespaces.
    PodsInNamespaces {
        /// `podSelector`.
        pods: LabelSelector,
        /// `namespaceSelector`.
        namespaces: LabelSelector,
    },
    /// `ipBlock`.
    IpBlock(IpBlock),
}

/// An `ipBlock`: a CIDR less some blocks inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    /// `cidr`, as written (host bits, if any, kept; they do not matter).
    pub cidr: Ipv4Net,
    /// `except`: each lies inside `cidr` and is strictly smaller.
    pub except: Vec<Ipv4Net>,
}

/// One `ports` entry of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPort {
    /// `protocol` (TCP when left out).
    pub protocol: Protocol,
    /// `port` (with `endPort`); `None` matches every port of the protocol.
    pub port: Option<PortMatch>,
}

/// A `port` (and `endPort`) of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// A port number, or with `end_port` the range `port..=end_port`
    /// (`end_port >= port`).
    Number {
        /// `port`.
        port: u16,
        /// `endPort`.
        end_port: Option<u16>,
    },
    /// A named port: resolved on the destination pod, among its container ports of the
    /// rule's protocol.
    Named(String),
}

impl NetworkPolicy {
    /// The `apiVersion` of a `NetworkPolicy`.
    pub const API_VERSION: &'static str = "networking.k8s.io/v1";
    /// The `kind`.
    pub const KIND: &'static str = "NetworkPolicy";

    /// Reads a `NetworkPolicy` document (`apiVersion` and `kind` already checked).
    /// Unlike the API server, vswitch requires `spec`: a policy without one would deny
    /// all ingress to its namespace, which is more likely a typo than a wish.
    pub(crate) fn decode(object: &Object<'_>) -> Read<NetworkPolicy> {
        let metadata = ObjectMeta::decode(object, Scope::Namespaced)?;
        let spec = NetworkPolicySpec::decode(&object.require("spec")?)?;
        Ok(NetworkPolicy { metadata, spec })
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
            ("spec", Some(self.spec.encode())),
        ])
    }
}

impl NetworkPolicySpec {
    /// The policy types in force, in the order Ingress, Egress: `policyTypes` when given
    /// and non-empty, else `Ingress` and, when there are egress rules, `Egress`.
    pub fn effective_policy_types(&self) -> Vec<PolicyType> {
        match &self.policy_types {
            Some(written) if !written.is_empty() => [PolicyType::Ingress, PolicyType::Egress]
                .into_iter()
                .filter(|t| written.contains(t))
                .collect(),
            _ if self.egress.is_empty() => vec![PolicyType::Ingress],
            _ => vec![PolicyType::Ingress, PolicyType::Egress],
        }
    }

    /// True when the policy restricts traffic into the pods it selects.
    pub fn restricts_ingress(&self) -> bool {
        self.effective_policy_types().contains(&PolicyType::Ingress)
    }

    /// True when the policy restricts traffic out of the pods it selects.
    pub fn restricts_egress(&self) -> bool {
        self.effective_policy_types().contains(&PolicyType::Egress)
    }

    fn decode(field: &Field<'_>) -> Read<NetworkPolicySpec> {
        let spec = field.object()?;
        let pod_selector = match spec.get("podSelector") {
            Some(selector) => LabelSelector::decode(&selector)?,
            None => LabelSelector::default(),
        };
        let policy_types = match spec.get("policyTypes") {
            Some(types) => {
                let entries = types.list()?;
                if entries.len() > 2 {
                    return Err(types.error(Problem::TooManyPolicyTypes {
                        count: entries.len(),
                    }));
                }
                let parsed = entries
                    .iter()
                    .map(|entry| entry.str()?.parse().map_err(|problem| entry.error(problem)))
                    .collect::<Read<Vec<PolicyType>>>()?;
                Some(parsed)
            }
            None => None,
        };
        let ingress = spec
            .list("ingress")?
            .iter()
            .map(|rule| PolicyRule::decode(rule, "from"))
            .collect::<Read<Vec<_>>>()?;
        let egress = spec
            .list("egress")?
            .iter()
            .map(|rule| PolicyRule::decode(rule, "to"))
            .collect::<Read<Vec<_>>>()?;
        Ok(NetworkPolicySpec {
            pod_selector,
            policy_types,
            ingress,
            egress,
        })
    }

    fn encode(&self) -> Value {
        let rules = |rules: &[PolicyRule], peers_key: &str| {
            (!rules.is_empty())
                .then(|| Value::Array(rules.iter().map(|rule| rule.encode(peers_key)).collect()))
        };
        mapping([
            ("podSelector", Some(self.pod_selector.encode())),
            (
                "policyTypes",
                self.policy_types.as_ref().map(|types| {
                    Value::Array(
                        types
                            .iter()
                            .map(|t| Value::String(t.as_str().to_owned()))
                            .collect(),
                    )
                }),
            ),
            ("ingress", rules(&self.ingress, "from")),
            ("egress", rules(&self.egress, "to")),
        ])
    }
}

impl PolicyType {
    /// The type as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Ingress => "Ingress",
            PolicyType::Egress => "Egress",
        }
    }
}

impl FromStr for PolicyType {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Self, Problem> {
        match text {
            "Ingress" => Ok(PolicyType::Ingress),
            "Egress" => Ok(PolicyType::Egress),
            other => Err(Problem::UnknownPolicyType {
                policy_type: other.to_owned(),
            }),
        }
    }
}

impl PolicyRule {
    /// Reads a rule whose peers are under `peers_key` (`from` or `to`).
    fn decode(field: &Field<'_>, peers_key: &str) -> Read<PolicyRule> {
        let rule = field.object()?;
        let peers = rule
            .list(peers_key)?
            .iter()
            .map(Peer::decode)
            .collect::<Read<Vec<_>>>()?;
        let ports = rule
            .list("ports")?
            .iter()
            .map(PolicyPort::decode)
            .collect::<Read<Vec<_>>>()?;
        Ok(PolicyRule { peers, ports })
    }

    fn encode(&self, peers_key: &str) -> Value {
        mapping([
            (
                peers_key,
                (!self.peers.is_empty())
                    .then(|| Value::Array(self.peers.iter().map(Peer::encode).collect())),
            ),
            (
                "ports",
                (!self.ports.is_empty())
                    .then(|| Value::Array(self.ports.iter().map(PolicyPort::encode).collect())),
            ),
        ])
    }
}

impl Peer {
    fn decode(field: &Field<'_>) -> Read<Peer> {
        let peer = field.object()?;
        let pods = peer.get("podSelector");
        let namespaces = peer.get("namespaceSelector");
        let ip_block = peer.get("ipBlock");
        if let Some(ip_block) = ip_block {
            if pods.is_some() || namespaces.is_some() {
                return Err(field.error(Problem::IpBlockWithSelector));
            }
            return IpBlock::decode(&ip_block).map(Peer::IpBlock);
        }
        let pods = pods.map(|f| LabelSelector::decode(&f)).transpose()?;
        let namespaces = namespaces.map(|f| LabelSelector::decode(&f)).transpose()?;
        match (pods, namespaces) {
            (Some(pods), Some(namespaces)) => Ok(Peer::PodsInNamespaces { pods, namespaces }),
            (Some(pods), None) => Ok(Peer::Pods(pods)),
            (None, Some(namespaces)) => Ok(Peer::Namespaces(namespaces)),
            (None, None) => Err(field.error(Problem::EmptyPeer)),
        }
    }

    fn encode(&self) -> Value {
        match self {
            Peer::Pods(pods) => mapping([("podSelector", Some(pods.encode()))]),
            Peer::Namespaces(namespaces) => {
                mapping([("namespaceSelector", Some(namespaces.encode()))])
            }
            Peer::PodsInNamespaces { pods, namespaces } => mapping([
                ("podSelector", Some(pods.encode())),
                ("namespaceSelector", Some(namespaces.encode())),
            ]),
            Peer::IpBlock(block) => mapping([("ipBlock", Some(block.encode()))]),
        }
    }
}

impl IpBlock {
    /// True when `ip` lies in `cidr` and in none of `except`.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|block| block.contains(ip))
    }

    fn decode(field: &Field<'_>) -> Read<IpBlock> {
        let block = field.object()?;
        let cidr = decode_cidr(&block.require("cidr")?)?;
        let mut except = Vec::new();
        for entry in block.list("except")? {
            let inner = decode_cidr(&entry)?;
            if !cidr.contains(inner.addr()) {
                return Err(entry.error(Problem::ExceptOutsideCidr {
                    except: inner.to_string(),
                    cidr: cidr.to_string(),
                }));
            }
            if inner.prefix_len() <= cidr.prefix_len() {
                return Err(entry.error(Problem::ExceptNotSmaller {
                    except: inner.to_string(),
                    cidr: cidr.to_string(),
                }));
            }
            except.push(inner);
        }
        Ok(IpBlock { cidr, except })
    }

    fn encode(&self) -> Value {
        mapping([
            ("cidr", Some(Value::String(self.cidr.to_string()))),
            (
                "except",
                (!self.except.is_empty()).then(|| {
                    Value::Array(
                        self.except
                            .iter()
                            .map(|block| Value::String(block.to_string()))
                            .collect(),
                    )
                }),
            ),
        ])
    }
}

/// Reads an IPv4 CIDR.
fn decode_cidr(field: &Field<'_>) -> Read<Ipv4Net> {
    let text = field.str()?;
    if text.contains(':') {
        return Err(field.error(Problem::Ipv6NotSupported {
            value: text.to_owned(),
        }));
    }
    text.parse().map_err(|_| {
        field.error(Problem::InvalidCidr {
            value: text.to_owned(),
        })
    })
}

impl PolicyPort {
    /// True when a connection to `port` over `protocol` matches this entry. `server` is
    /// the destination pod, which named ports resolve on; `None` for a destination
    /// outside the pod network, which no named port matches.
    pub fn matches(&self, protocol: Protocol, port: u16, server: Option<&Pod>) -> bool {
        if protocol != self.protocol {
            return false;
        }
        match &self.port {
            None => true,
            Some(PortMatch::Number {
                port: start,
                end_port,
            }) => (*start..=end_port.unwrap_or(*start)).contains(&port),
            Some(PortMatch::Named(name)) => {
                server.is_some_and(|pod| pod.ports_named(name, protocol).any(|p| p == port))
            }
        }
    }

    fn decode(field: &Field<'_>) -> Read<PolicyPort> {
        let entry = field.object()?;
        let protocol = Protocol::decode_member(&entry)?;
        let port = match entry.get("port") {
            None => None,
            Some(port_field) => match port_field.value {
                Value::String(name) => {
                    port_name(name).map_err(|reason| {
                        port_field.error(Problem::InvalidPortName {
                            name: name.clone(),
                            reason,
                        })
                    })?;
                    Some(PortMatch::Named(name.clone()))
                }
                Value::Number(_) => Some(PortMatch::Number {
                    port: port_field.port_number()?,
                    end_port: None,
                }),
                other => {
                    return Err(port_field.error(Problem::WrongType {
                        expected: "a port number or name",
                        found: crate::k8s::field::type_name(other),
                    }))
                }
            },
        };
        let port = match entry.get("endPort") {
            None => port,
            Some(end_field) => {
                let end_port = end_field.port_number()?;
                match port {
                    None => return Err(end_field.error(Problem::EndPortWithoutPort)),
                    Some(PortMatch::Named(name)) => {
                        return Err(end_field.error(Problem::EndPortWithNamedPort { port: name }))
                    }
                    Some(PortMatch::Number { port, .. }) if end_port < port => {
                        return Err(end_field.error(Problem::EndPortBelowPort { end_port, port }))
                    }
                    Some(PortMatch::Number { port, .. }) => Some(PortMatch::Number {
                        port,
                        end_port: Some(end_port),
                    }),
                }
            }
        };
        Ok(PolicyPort { protocol, port })
    }

    fn encode(&self) -> Value {
        let (port, end_port) = match &self.port {
            None => (None, None),
            Some(PortMatch::Number { port, end_port }) => {
                (Some(Value::from(*port)), end_port.map(Value::from))
            }
            Some(PortMatch::Named(name)) => (Some(Value::String(name.clone())), None),
        };
        mapping([
            ("protocol", Some(self.protocol.encode())),
            ("port", port),
            ("endPort", end_port),
        ])
    }
}
