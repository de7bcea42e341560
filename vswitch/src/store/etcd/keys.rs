//! The etcd key layout and the record formats of the cluster store (see `docs/store.md`).
//!
//! Every key lives under one prefix, [`DEFAULT_PREFIX`] unless a test picks another:
//!
//! | key (after the prefix) | value | lease |
//! |---|---|---|
//! | `cluster` | [`ClusterRecord`]: cluster CIDR and node subnet length | none |
//! | `nodes/<name>` | [`NodeRecord`] | the daemon's lease; none for a static node |
//! | `subnets/<a.b.c.d>/<len>` | [`SubnetRecord`]: who holds the block, last seen when | none |
//! | `pods/<node>/<container id>/<ifname>` | [`PodRecord`] | none |
//! | `objects/<kind>/<namespace>/<name>` | [`ObjectRecord`] (namespace empty for a `Namespace`) | none |
//!
//! Invariants:
//! - Every value is one JSON object carrying `"version": 1` ([`FORMAT_VERSION`]) beside the
//!   record's own fields, so a later release can tell old records from new ones and migrate.
//!   A reader ignores fields it does not know, and keys outside this layout.
//! - A key's path names the same record as its value (a node key holds that node, a pod
//!   key that pod); a value that disagrees with its key is reported as corrupt.
//! - No path segment is empty (except the namespace of a `Namespace` object) or holds a
//!   `/`: [`check_segment`] refuses such names before anything is written, so prefixes
//!   such as `pods/<node>/` never match another node's keys.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ipnet::Ipv4Net;
use crate::store::{NodeRecord, ObjectKey, ObjectKind, ObjectRecord, PodRecord, StoreError};

/// The format version of every record this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// The key prefix of the cluster store in etcd.
pub const DEFAULT_PREFIX: &str = "/vswitch/v1/";

/// The value of the `cluster` key: what the first daemon set the cluster up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The cluster CIDR (no host bits).
    pub cidr: Ipv4Net,
    /// The length of every daemon-leased node subnet.
    pub subnet_len: u8,
}

/// The value of a `subnets/<network>/<len>` key: the reservation of a node subnet.
///
/// A daemon-leased reservation outlives its node record (which vanishes with the daemon's
/// etcd lease) by the subnet grace period, counted from `last_seen_unix_ms`, so a daemon
/// that comes back gets its subnet again and its pods' addresses stay valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    /// The block.
    pub subnet: Ipv4Net,
    /// The node holding it.
    pub owner: String,
    /// True for a static node's block: never expires.
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Unix time (milliseconds) when the owner's daemon last refreshed the reservation;
    /// `None` for a static node.
    pub last_seen_unix_ms: Option<u64>,
}

/// A decoded record, of whichever kind its key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The `cluster` key.
    Cluster(ClusterRecord),
    /// A `nodes/` key.
    Node(NodeRecord),
    /// A `subnets/` key.
    Subnet(SubnetRecord),
    /// A `pods/` key.
    Pod(PodRecord),
    /// An `objects/` key.
    Object(ObjectRecord),
}

/// Why a value under the prefix could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The record declares another format version.
    Version(u64),
    /// The value is not a record of the kind its key names.
    Malformed(String),
}

/// The keys of one store: everything lives under `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    prefix: String,
}

impl Keyspace {
    /// The keys under `prefix`, which should end in `/`.
    pub fn new(prefix: &str) -> Keyspace {
        Keyspace {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself: a range over it holds the whole store.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of a key relative to the prefix.
    pub fn full(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }

    /// The key relative to the prefix, or `None` for a key outside it (or not UTF-8).
    pub fn relative<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key.strip_prefix(self.prefix.as_bytes())?).ok()
    }
}

/// `cluster`.
pub const CLUSTER: &str = "cluster";
/// The relative prefix of every node key.
pub const NODES: &str = "nodes/";
/// The relative prefix of every subnet reservation key.
pub const SUBNETS: &str = "subnets/";
/// The relative prefix of every pod key.
pub const PODS: &str = "pods/";
/// The relative prefix of every object key.
pub const OBJECTS: &str = "objects/";

/// `nodes/<name>`.
pub fn node_key(name: &str) -> String {
    format!("{NODES}{name}")
}

/// `subnets/<a.b.c.d>/<len>`.
pub fn subnet_key(subnet: Ipv4Net) -> String {
    format!("{SUBNETS}{}", subnet.network())
}

/// `pods/<node>/`: every pod of one node.
pub fn pods_of(node: &str) -> String {
    format!("{PODS}{node}/")
}

/// `pods/<node>/<container id>/<ifname>`.
pub fn pod_key(node: &str, container_id: &str, ifname: &str) -> String {
    format!("{PODS}{node}/{container_id}/{ifname}")
}

/// `objects/<kind>/<namespace>/<name>`.
pub fn object_key(key: &ObjectKey) -> String {
    format!(
        "{OBJECTS}{}/{}/{}",
        kind_name(key.kind),
        key.namespace,
        key.name
    )
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Namespace => "Namespace",
        ObjectKind::Pod => "Pod",
        ObjectKind::NetworkPolicy => "NetworkPolicy",
    }
}

/// Refuses a name that cannot be one segment of a key: empty, or holding a `/`.
///
/// # Errors
/// [`StoreError::Invalid`], naming `what`.
pub fn check_segment(what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::Invalid(format!("a {what} must not be empty")));
    }
    if value.contains('/') {
        return Err(StoreError::Invalid(format!(
            "{what} `{value}` holds a `/`, which the etcd store cannot key; rename it"
        )));
    }
    Ok(())
}

/// Every record on the wire: the format version beside the record's fields.
#[derive(Serialize)]
struct Versioned<'a, T> {
    version: u64,
    #[serde(flatten)]
    record: &'a T,
}

/// Just the version, read first so that a future format is reported as such.
#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

/// The value of a record: its JSON with `"version": 1`.
///
/// # Errors
/// [`StoreError::Invalid`] if the record cannot be serialized (which none of ours fails).
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&Versioned {
        version: FORMAT_VERSION,
        record,
    })
    .map_err(|e| StoreError::Invalid(format!("cannot encode a store record: {e}")))
}

/// Decodes the value of the key `relative`; `None` for a key outside the layout (ignored).
pub fn decode(relative: &str, value: &[u8]) -> Option<Result<Record, DecodeError>> {
    if relative == CLUSTER {
        return Some(parse::<ClusterRecord>(value).and_then(|c| {
            if c.cidr.network() != c.cidr || c.subnet_len < c.cidr.prefix_len() {
                return Err(DecodeError::Malformed(format!(
                    "cluster CIDR {} with /{} node subnets is not a valid setup",
                    c.cidr, c.subnet_len
                )));
            }
            Ok(Record::Cluster(c))
        }));
    }
    if let Some(name) = relative.strip_prefix(NODES) {
        return Some(parse::<NodeRecord>(value).and_then(|n| {
            if n.name != name {
                return Err(mismatch("node", &n.name));
            }
            Ok(Record::Node(n))
        }));
    }
    if let Some(rest) = relative.strip_prefix(SUBNETS) {
        let keyed: Option<Ipv4Net> = rest.parse().ok();
        return Some(parse::<SubnetRecord>(value).and_then(|s| {
            if keyed != Some(s.subnet) || s.subnet.network() != s.subnet {
                return Err(mismatch("subnet", &s.subnet.to_string()));
            }
            Ok(Record::Subnet(s))
        }));
    }
    if relative.starts_with(PODS) {
        return Some(parse::<PodRecord>(value).and_then(|p| {
            if pod_key(&p.node, &p.container_id, &p.ifname) != relative {
                return Err(mismatch(
                    "pod",
                    &format!("{}/{}/{}", p.node, p.container_id, p.ifname),
                ));
            }
            Ok(Record::Pod(p))
        }));
    }
    if relative.starts_with(OBJECTS) {
        return Some(parse::<ObjectRecord>(value).and_then(|o| {
            if object_key(&o.key) != relative {
                return Err(mismatch(
                    "object",
                    &format!(
                        "{}/{}/{}",
                        kind_name(o.key.kind),
                        o.key.namespace,
                        o.key.name
                    ),
                ));
            }
            Ok(Record::Object(o))
        }));
    }
    None
}

fn mismatch(kind: &str, named: &str) -> DecodeError {
    DecodeError::Malformed(format!(
        "the value is the {kind} {named}, not the one its key names"
    ))
}

fn parse<T: DeserializeOwned>(value: &[u8]) -> Result<T, DecodeError> {
    let probe: VersionProbe = serde_json::from_slice(value)
        .map_err(|e| DecodeError::Malformed(format!("no format version: {e}")))?;
    if probe.version != FORMAT_VERSION {
        return Err(DecodeError::Version(probe.version));
    }
    serde_json::from_slice(value).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// A node record, as the store holds it.
pub fn node_record(name: &str, vtep: Ipv4Addr, subnet: Ipv4Net, is_static: bool) -> NodeRecord {
    NodeRecord {
        name: name.to_owned(),
        vtep,
        subnet,
        is_static,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::MacAddr;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn record_formats() {
        let node = node_record(
            "a",
            Ipv4Addr::new(192, 168, 0, 1),
            net("10.244.1.0/24"),
            false,
        );
        let value = encode(&node).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&value).unwrap(),
            serde_json::json!({"version": 1, "name": "a", "vtep": "192.168.0.1",
                               "subnet": "10.244.1.0/24", "static": false})
        );
        assert_eq!(decode("nodes/a", &value), Some(Ok(Record::Node(node))));
        assert!(matches!(
            decode("nodes/b", &value),
            Some(Err(DecodeError::Malformed(_)))
        ));

        let subnet = SubnetRecord {
            subnet: net("10.244.1.0/24"),
            owner: "a".into(),
            is_static: false,
            last_seen_unix_ms: Some(1_700_000_000_000),
        };
        let value = encode(&subnet).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&value).unwrap(),
            serde_json::json!({"version": 1, "subnet": "10.244.1.0/24", "owner": "a",
                               "static": false, "last_seen_unix_ms": 1_700_000_000_000u64})
        );
        assert_eq!(subnet_key(subnet.subnet), "subnets/10.244.1.0/24");
        assert_eq!(
            decode("subnets/10.244.1.0/24", &value),
            Some(Ok(Record::Subnet(subnet)))
        );
        assert!(decode("subnets/10.244.2.0/24", &value).unwrap().is_err());

        let cluster = ClusterRecord {
            cidr: net("10.244.0.0/16"),
            subnet_len: 24,
        };
        let value = encode(&cluster).unwrap();
        assert_eq!(
            String::from_utf8(value.clone()).unwrap(),
            r#"{"version":1,"cidr":"10.244.0.0/16","subnet_len":24}"#
        );
        assert_eq!(decode(CLUSTER, &value), Some(Ok(Record::Cluster(cluster))));

        let ip = Ipv4Addr::new(10, 244, 1, 2);
        let pod = PodRecord {
            namespace: "default".into(),
            name: "web".into(),
            node: "a".into(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        let value = encode(&pod).unwrap();
        assert_eq!(
            decode(&pod_key("a", "c1", "eth0"), &value),
            Some(Ok(Record::Pod(pod)))
        );

        let object = ObjectRecord {
            key: ObjectKey {
                kind: ObjectKind::Namespace,
                namespace: String::new(),
                name: "prod".into(),
            },
            document: serde_json::json!({"labels": {"team": "a"}}),
        };
        assert_eq!(object_key(&object.key), "objects/Namespace//prod");
        let value = encode(&object).unwrap();
        assert_eq!(
            decode("objects/Namespace//prod", &value),
            Some(Ok(Record::Object(object)))
        );
    }

    /// A number in a stored document survives a store round trip bit for bit (found by
    /// the `etcd_records` fuzz target: without serde_json's `float_roundtrip`, parsing
    /// 4.444444444444445e+69 gave a float one ULP off, so a re-encoded record changed).
    #[test]
    fn numbers_in_documents_round_trip_exactly() {
        let value = br#"{"version":1,"kind":"Pod","namespace":"ops","name":"probe","document":{"spec":{"x":[4.444444444444445e+69, 0.1, 1e-300, 123456789.12345678]}}}"#;
        let Some(Ok(record)) = decode("objects/Pod/ops/probe", value) else {
            panic!("decodes")
        };
        let Record::Object(object) = &record else {
            panic!("an object")
        };
        let encoded = encode(object).unwrap();
        assert_eq!(decode("objects/Pod/ops/probe", &encoded), Some(Ok(record)));
        let text = String::from_utf8(encoded).unwrap();
        assert!(text.contains("4.444444444444445e+69"), "{text}");
    }

    #[test]
    fn foreign_and_future_values() {
        assert_eq!(decode("something/else", b"whatever"), None);
        assert_eq!(
            decode("nodes/a", br#"{"version": 2, "name": "a"}"#),
            Some(Err(DecodeError::Version(2)))
        );
        for garbage in [&b""[..], b"{", b"[]", br#"{"version": 1}"#] {
            assert!(
                matches!(
                    decode("nodes/a", garbage),
                    Some(Err(DecodeError::Malformed(_)))
                ),
                "{garbage:?}"
            );
        }
        assert!(decode(
            CLUSTER,
            br#"{"version":1,"cidr":"10.244.0.0/16","subnet_len":8}"#
        )
        .unwrap()
        .is_err());
    }

    #[test]
    fn segments() {
        assert!(check_segment("node name", "a").is_ok());
        assert!(matches!(
            check_segment("node name", ""),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            check_segment("node name", "a/b"),
            Err(StoreError::Invalid(_))
        ));
        let keys = Keyspace::new(DEFAULT_PREFIX);
        assert_eq!(keys.full("nodes/a"), "/vswitch/v1/nodes/a");
        assert_eq!(keys.relative(b"/vswitch/v1/nodes/a"), Some("nodes/a"));
        assert_eq!(keys.relative(b"/other/nodes/a"), None);
    }
}
