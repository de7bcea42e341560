//! The cluster store: what every node of the cluster shares.
//!
//! It holds the cluster CIDR and node subnet length the cluster was set up with, one
//! [`NodeRecord`] per node (its VTEP and pod subnet, leased by its daemon or added by an
//! operator as a static node), and one [`PodRecord`] per attached pod. Daemons read it to
//! learn their peers and the pods behind them; each writes its own node and pods.
//!
//! [`ClusterStore`] is the interface; [`open_with`] picks a backend from the `--store` URL.
//! The embedded backend is [`file::FileStore`], one JSON file that several daemons on one
//! machine may share; [`etcd::EtcdStore`] keeps the store in etcd for a cluster of
//! machines. `docs/store.md` describes both formats.
//!
//! Invariants every backend keeps:
//! - No two nodes' subnets overlap, and once the cluster CIDR is recorded every node's
//!   subnet lies inside it.
//! - The cluster CIDR and node subnet length, once recorded, never change: a daemon that
//!   asks for others gets [`StoreError::Conflict`].
//! - A node name belongs either to a daemon-leased node or to a static node, never both.
//! - Pods are keyed by (node, container id, interface name); a pod's address lies in its
//!   node's subnet, and no two pods of one node share an address.
//! - [`ClusterStore::generation`] changes whenever the contents change, and only then.
#![forbid(unsafe_code)]

pub mod etcd;
pub mod file;

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ipnet::Ipv4Net;
use crate::mac::MacAddr;

/// The longest node subnet prefix the store hands out: a /30 still leaves one pod address
/// beside the network, gateway and broadcast addresses.
pub const MAX_NODE_SUBNET_LEN: u8 = 30;

/// One node of the cluster, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's name (`--node`, or the name given to `vswitchctl node add`).
    pub name: String,
    /// The node's VTEP (underlay) address.
    pub vtep: Ipv4Addr,
    /// The node's pod subnet (network address, no host bits).
    pub subnet: Ipv4Net,
    /// True for a node with no daemon of ours (a kernel or hardware VTEP), added by an
    /// operator.
    #[serde(rename = "static")]
    pub is_static: bool,
}

/// One attached pod interface, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Kubernetes namespace of the pod.
    pub namespace: String,
    /// Kubernetes name of the pod.
    pub name: String,
    /// The node the pod runs on.
    pub node: String,
    /// The pod interface's address.
    pub ip: Ipv4Addr,
    /// The pod interface's MAC (derived from `ip`, see [`MacAddr::from_ipv4`]).
    pub mac: MacAddr,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// The kinds of Kubernetes object the store holds for NetworkPolicy: what
/// `vswitchctl apply` writes and every node reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectKind {
    /// `v1` `Namespace`: its labels.
    Namespace,
    /// `v1` `Pod`: its labels and container ports, matched to attached pods by
    /// namespace/name.
    Pod,
    /// `networking.k8s.io/v1` `NetworkPolicy`.
    NetworkPolicy,
}

/// Which object: its kind, namespace (empty for a `Namespace`) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The kind.
    pub kind: ObjectKind,
    /// The namespace; empty for a `Namespace`.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// One stored object: its key and its validated document, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Which object.
    #[serde(flatten)]
    pub key: ObjectKey,
    /// The validated document (what `apply` parsed, normalized to JSON).
    pub document: serde_json::Value,
}

/// Whether a backend reaches its store right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum StoreHealth {
    /// Reads and writes reach the store.
    Connected,
    /// The store is out of reach: reads are served from the last known state, writes
    /// fail at once with [`StoreError::Unavailable`].
    Disconnected {
        /// Unix time (seconds) when it was lost.
        since_unix: u64,
        /// The last error.
        reason: String,
    },
}

/// Why a cluster store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a file of the store failed (missing permission, disk full,
    /// read-only file system...). A failed write leaves the store as it was.
    #[error("cluster store file {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The store file exists but does not hold a vswitch store. vswitch never overwrites
    /// such a file.
    #[error(
        "{} is not a vswitch store: {detail}; repair it, or move it aside to start an empty store",
        path.display()
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The store file was written by a vswitch with another format version.
    #[error(
        "{} is a vswitch store of format version {found}, but this vswitch reads only version {supported}; run a matching vswitch",
        path.display()
    )]
    UnsupportedVersion {
        /// The store file.
        path: PathBuf,
        /// The version the file declares.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The `--store` URL is malformed or names a backend this build lacks.
    #[error("{0}")]
    Url(String),
    /// Every node subnet of the cluster CIDR is taken.
    #[error(
        "cluster CIDR {cidr} has no free node subnet left; remove departed nodes (`vswitchctl node remove NAME`) or set the cluster up with a larger --cluster-cidr"
    )]
    ClusterFull {
        /// The cluster CIDR.
        cidr: Ipv4Net,
    },
    /// The request contradicts what the store holds (a name taken by another kind of
    /// node, overlapping subnets, a different cluster CIDR...). The message says which.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed on its own (an empty name, a subnet with host bits, a
    /// node subnet length that does not fit the cluster CIDR). The message says which.
    #[error("{0}")]
    Invalid(String),
    /// The store cannot be reached now (etcd down or partitioned). Reads are served from
    /// the last known state; this write was not made, and the caller may retry or
    /// reconcile once [`ClusterStore::health`] says connected again.
    #[error("cluster store unavailable: {0}")]
    Unavailable(String),
}

/// What all nodes share: nodes, their subnets and VTEPs, and pods.
///
/// Several daemons (and `vswitchctl`) may use one store at once. The file backend reads
/// the file fresh on every call; the etcd backend reads from a cache that a watch keeps
/// current (a change reaches every handle within a second) and that holds a handle's own
/// writes once they return.
pub trait ClusterStore: Send {
    /// Leases this node's subnet: the same one it held before (keyed by node name) or the
    /// lowest free `subnet_len` block of `cluster` (skipping blocks held by any node,
    /// static ones included). Records or updates the node's VTEP. Records the cluster
    /// CIDR and subnet length the first time and refuses a later daemon that passes
    /// different ones.
    ///
    /// `cluster` may carry host bits; they are ignored.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `cluster` or `subnet_len` differ from the store's,
    /// when `node` names a static node, or (first lease only) when a static node lies
    /// outside `cluster`; [`StoreError::ClusterFull`] when no block is free;
    /// [`StoreError::Invalid`] for an empty name or a `subnet_len` outside
    /// `cluster.prefix_len()..=`[`MAX_NODE_SUBNET_LEN`]; I/O and format errors.
    fn lease_subnet(
        &mut self,
        node: &str,
        vtep: Ipv4Addr,
        cluster: Ipv4Net,
        subnet_len: u8,
    ) -> Result<NodeRecord, StoreError>;

    /// Every node, leased and static, sorted by name.
    ///
    /// # Errors
    /// I/O and format errors.
    fn nodes(&mut self) -> Result<Vec<NodeRecord>, StoreError>;

    /// The cluster CIDR and node subnet length the store was set up with, or `None`
    /// before the first daemon leased a subnet.
    ///
    /// # Errors
    /// I/O and format errors.
    fn cluster(&mut self) -> Result<Option<(Ipv4Net, u8)>, StoreError>;

    /// Adds or replaces a static node: one with no daemon of ours (a kernel or hardware
    /// VTEP). Its subnet must lie in the cluster CIDR (once one is recorded) and overlap
    /// no other node's.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `name` belongs to a daemon-leased node, when
    /// `subnet` overlaps another node's or lies outside the cluster CIDR;
    /// [`StoreError::Invalid`] for an empty name or a subnet with host bits set; I/O and
    /// format errors.
    fn put_static_node(
        &mut self,
        name: &str,
        vtep: Ipv4Addr,
        subnet: Ipv4Net,
    ) -> Result<(), StoreError>;

    /// Removes a node, leased or static, and every pod recorded on it. Returns whether
    /// the node existed.
    ///
    /// # Errors
    /// I/O and format errors.
    fn remove_node(&mut self, name: &str) -> Result<bool, StoreError>;

    /// Records a pod, replacing the record with the same (node, container id, interface)
    /// key and any other record of the same node holding the same address (the node's
    /// own address management is the authority on its subnet).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `pod.node` holds no subnet in the store or `pod.ip`
    /// lies outside it; I/O and format errors.
    fn put_pod(&mut self, pod: &PodRecord) -> Result<(), StoreError>;

    /// Removes the pod with this key. Returns whether it existed.
    ///
    /// # Errors
    /// I/O and format errors.
    fn remove_pod(
        &mut self,
        node: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<bool, StoreError>;

    /// Every pod, sorted by (node, container id, interface).
    ///
    /// # Errors
    /// I/O and format errors.
    fn pods(&mut self) -> Result<Vec<PodRecord>, StoreError>;

    /// A cheap token that changes whenever the store's contents change and only then, so
    /// a daemon can poll it every few hundred milliseconds and reload only on change.
    ///
    /// # Errors
    /// I/O and format errors.
    fn generation(&mut self) -> Result<u64, StoreError>;

    /// Writes every record of `put` (replacing objects with the same key) and removes
    /// every key of `delete` (absent ones are fine), all or nothing.
    ///
    /// # Errors
    /// I/O and format errors, [`StoreError::Unavailable`]; on error nothing was written.
    fn apply_objects(
        &mut self,
        put: &[ObjectRecord],
        delete: &[ObjectKey],
    ) -> Result<(), StoreError>;

    /// Every stored object, sorted by key.
    ///
    /// # Errors
    /// I/O and format errors.
    fn objects(&mut self) -> Result<Vec<ObjectRecord>, StoreError>;

    /// Whether the backend reaches its store now. The file backend always does.
    fn health(&self) -> StoreHealth {
        StoreHealth::Connected
    }
}

/// TLS to etcd: `--etcd-cacert`, `--etcd-cert`, `--etcd-key` (PEM files). All `None`
/// (the default) is plain HTTP; with any of them set the store speaks HTTPS, verifying
/// etcd's certificate against `cacert` (required then), and presents `cert` with `key` as
/// its client certificate when both are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate that signed etcd's server certificate.
    pub cacert: Option<PathBuf>,
    /// This client's certificate (etcd's `--client-cert-auth`).
    pub cert: Option<PathBuf>,
    /// The key of `cert`.
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// True when no TLS file is given.
    pub fn is_empty(&self) -> bool {
        self.cacert.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// Opens a store from its URL with no etcd TLS: [`open_with`] with [`EtcdTls::default`].
///
/// # Errors
/// As [`open_with`].
pub fn open(url: &str) -> Result<Box<dyn ClusterStore>, StoreError> {
    open_with(url, &EtcdTls::default())
}

/// Opens a store from its URL: `file:PATH` or `file://PATH` (the embedded store, see
/// [`file::FileStore`]), or `etcd://HOST:PORT[,HOST:PORT...]` (see [`etcd::EtcdStore`],
/// connected with `tls` and the default [`etcd::EtcdOptions`]).
///
/// # Errors
/// [`StoreError::Url`] for an unknown scheme, an empty path, a malformed etcd endpoint,
/// or TLS files given with a `file:` store; the errors of [`file::FileStore::open`] and
/// [`etcd::EtcdStore::connect`] (notably [`StoreError::Unavailable`] when etcd does not
/// answer).
pub fn open_with(url: &str, tls: &EtcdTls) -> Result<Box<dyn ClusterStore>, StoreError> {
    if let Some(rest) = url.strip_prefix("file:") {
        // `file:///var/lib/x` and `file:/var/lib/x` both name /var/lib/x.
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(StoreError::Url(format!(
                "store URL `{url}` names no file; expected file:PATH, e.g. file:/var/lib/vswitch/cluster.json"
            )));
        }
        if !tls.is_empty() {
            return Err(StoreError::Url(format!(
                "--etcd-cacert, --etcd-cert and --etcd-key apply to an etcd:// store only, not to `{url}`"
            )));
        }
        return Ok(Box::new(file::FileStore::open(PathBuf::from(path))?));
    }
    if let Some(rest) = url.strip_prefix("etcd://") {
        let endpoints = etcd_endpoints(url, rest)?;
        let options = etcd::EtcdOptions {
            tls: tls.clone(),
            ..etcd::EtcdOptions::default()
        };
        return Ok(Box::new(etcd::EtcdStore::connect(&endpoints, &options)?));
    }
    Err(StoreError::Url(format!(
        "store URL `{url}` has an unknown scheme; expected file:PATH or etcd://HOST:PORT[,HOST:PORT...]"
    )))
}

/// The `HOST:PORT` endpoints of an `etcd://` URL (`rest` is what follows the scheme).
fn etcd_endpoints(url: &str, rest: &str) -> Result<Vec<String>, StoreError> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let bad = |why: &str| {
        StoreError::Url(format!(
            "store URL `{url}`: {why}; expected etcd://HOST:PORT[,HOST:PORT...], e.g. etcd://10.0.0.1:2379,10.0.0.2:2379"
        ))
    };
    if rest.is_empty() {
        return Err(bad("no endpoint"));
    }
    rest.split(',')
        .map(|endpoint| {
            let (host, port) = endpoint
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("endpoint `{endpoint}` has no port")))?;
            let host_ok = !host.is_empty()
                && !host.contains(['/', '@', '?', '#', ' '])
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
            if !host_ok {
                return Err(bad(&format!("endpoint `{endpoint}` has no valid host")));
            }
            match port.parse::<u16>() {
                Ok(p) if p != 0 => Ok(endpoint.to_owned()),
                _ => Err(bad(&format!("endpoint `{endpoint}` has no valid port"))),
            }
        })
        .collect()
}

/// True when the two prefixes share at least one address.
pub(crate) fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains_net(b) || b.contains_net(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_rejects_bad_urls() {
        for (url, needle) in [
            ("etcd://", "no endpoint"),
            ("etcd://10.0.0.1", "has no port"),
            ("etcd://10.0.0.1:2379,", "no port"),
            ("etcd://10.0.0.1:0", "no valid port"),
            ("etcd://10.0.0.1:x", "no valid port"),
            ("etcd://:2379", "no valid host"),
            ("etcd://user@h:2379", "no valid host"),
            ("etcd://h:2379/path", "no valid port"),
            ("file:", "names no file"),
            ("file://", "names no file"),
            ("http://x", "unknown scheme"),
            ("/var/lib/vswitch/cluster.json", "unknown scheme"),
        ] {
            match open(url) {
                Err(StoreError::Url(msg)) => assert!(msg.contains(needle), "{url}: {msg}"),
                Err(other) => panic!("{url}: unexpected error {other}"),
                Ok(_) => panic!("{url}: opened"),
            }
        }
    }

    #[test]
    fn etcd_urls() {
        assert_eq!(
            etcd_endpoints("u", "10.0.0.1:2379,etcd-b:2379,[fd00::1]:2379/").unwrap(),
            vec!["10.0.0.1:2379", "etcd-b:2379", "[fd00::1]:2379"]
        );
        let tls = EtcdTls {
            cacert: Some("/ca.pem".into()),
            ..EtcdTls::default()
        };
        assert!(matches!(
            open_with("file:/tmp/x.json", &tls),
            Err(StoreError::Url(m)) if m.contains("etcd:// store only")
        ));
    }

    #[test]
    fn open_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cluster.json");
        for url in [
            format!("file:{}", path.display()),
            format!("file://{}", path.display()),
        ] {
            let mut store = open(&url).unwrap();
            assert!(store.nodes().unwrap().is_empty(), "{url}");
            assert_eq!(store.generation().unwrap(), 0);
        }
        // The parent directory is created.
        assert!(path.parent().unwrap().is_dir());
    }

    #[test]
    fn record_shapes() {
        let node = NodeRecord {
            name: "n1".into(),
            vtep: Ipv4Addr::new(192, 168, 0, 1),
            subnet: "10.244.1.0/24".parse().unwrap(),
            is_static: true,
        };
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            r#"{"name":"n1","vtep":"192.168.0.1","subnet":"10.244.1.0/24","static":true}"#
        );
    }

    #[test]
    fn overlap() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(overlaps(net("10.244.0.0/16"), net("10.244.3.0/24")));
        assert!(overlaps(net("10.244.3.0/24"), net("10.244.0.0/16")));
        assert!(overlaps(net("10.244.3.0/24"), net("10.244.3.0/24")));
        assert!(!overlaps(net("10.244.3.0/24"), net("10.244.4.0/24")));
        assert!(!overlaps(net("10.244.3.0/25"), net("10.244.3.128/25")));
    }
}
