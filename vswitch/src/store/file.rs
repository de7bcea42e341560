//! The embedded cluster store: one JSON file, shared by every daemon on one machine.
//!
//! The file (`--store file:PATH`) looks like
//!
//! ```json
//! {
//!   "version": 1,
//!   "cluster_cidr": "10.244.0.0/16",
//!   "subnet_len": 24,
//!   "generation": 7,
//!   "nodes": { "node-a": { "vtep": "192.168.0.1", "subnet": "10.244.0.0/24", "static": false } },
//!   "pods": [ { "namespace": "default", "name": "web", "node": "node-a", "ip": "10.244.0.2",
//!               "mac": "0a:58:0a:f4:00:02", "container_id": "c1", "ifname": "eth0" } ]
//! }
//! ```
//!
//! `cluster_cidr` and `subnet_len` are `null` until the first daemon leases a subnet.
//!
//! Invariants:
//! - Every read-modify-write holds an exclusive lock on the sidecar `PATH.lock` for its
//!   whole length, reads the file fresh, and replaces it atomically (write
//!   `PATH.tmp.<pid>`, fsync, rename over `PATH`, fsync the directory). So writers never
//!   lose each other's updates, and readers (which take no lock) see either the old file
//!   or the new one, never a mix.
//! - `generation` goes up by one with every write, and a write happens only when the
//!   contents change.
//! - A missing file is an empty store. A file that does not parse is reported as
//!   [`StoreError::Corrupt`] and never overwritten. A failed write leaves the old file.
//! - The lock file is never removed: removing it would let two writers lock different
//!   files.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    overlaps, ClusterStore, NodeRecord, ObjectKey, ObjectRecord, PodRecord, StoreError,
    MAX_NODE_SUBNET_LEN,
};
use crate::ipnet::Ipv4Net;

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// The embedded store: one JSON file (see the module docs for its format).
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    tmp_path: PathBuf,
}

impl FileStore {
    /// A store kept in the file `path`. Creates the parent directory if it is missing; the
    /// file itself is created by the first write.
    ///
    /// # Errors
    /// [`StoreError::Url`] for an empty path; [`StoreError::Io`] when the parent
    /// directory cannot be created.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let path = path.into();
        if path.as_os_str().is_empty() || path.file_name().is_none() {
            return Err(StoreError::Url(format!(
                "store path `{}` names no file; expected e.g. /var/lib/vswitch/cluster.json",
                path.display()
            )));
        }
        let dir = parent_dir(&path);
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock_path = with_suffix(&path, ".lock".into());
        let tmp_path = with_suffix(&path, format!(".tmp.{}", std::process::id()).into());
        Ok(FileStore {
            path,
            lock_path,
            tmp_path,
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the store file; a missing file is an empty store.
    fn load(&self) -> Result<Document, StoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => Document::parse(&self.path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Document::default()),
            Err(source) => Err(StoreError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// One read-modify-write under the store lock. `change` edits the document; the file
    /// is rewritten (with the generation bumped) only when the document changed.
    fn update<T>(
        &mut self,
        change: impl FnOnce(&mut Document) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .map_err(|source| self.lock_error(source))?;
        lock.lock().map_err(|source| self.lock_error(source))?;

        let before = self.load()?;
        let mut doc = before.clone();
        let out = change(&mut doc)?;
        if doc != before {
            doc.generation = doc.generation.wrapping_add(1);
            let mut text = serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::Io {
                path: self.path.clone(),
                source: io::Error::other(e),
            })?;
            text.push(b'\n');
            write_atomically(&self.path, &self.tmp_path, &text).map_err(|f| StoreError::Io {
                path: f.path,
                source: f.source,
            })?;
        }
        // Closing the lock file releases the lock.
        drop(lock);
        Ok(out)
    }

    fn lock_error(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.lock_path.clone(),
            source,
        }
    }
}

impl ClusterStore for FileStore {
    fn lease_subnet(
        &mut self,
        node: &str,
        vtep: Ipv4Addr,
        cluster: Ipv4Net,
        subnet_len: u8,
    ) -> Result<NodeRecord, StoreError> {
        check_name(node)?;
        let cluster = cluster.network();
        if subnet_len < cluster.prefix_len() || subnet_len > MAX_NODE_SUBNET_LEN {
            return Err(StoreError::Invalid(format!(
                "node subnet length /{subnet_len} does not fit cluster CIDR {cluster}; it must lie between /{} and /{MAX_NODE_SUBNET_LEN}",
                cluster.prefix_len()
            )));
        }
        self.update(|doc| doc.lease(node, vtep, cluster, subnet_len))
    }

    fn nodes(&mut self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.load()?.node_records())
    }

    fn cluster(&mut self) -> Result<Option<(Ipv4Net, u8)>, StoreError> {
        let doc = self.load()?;
        Ok(doc.cluster_cidr.zip(doc.subnet_len))
    }

    fn put_static_node(
        &mut self,
        name: &str,
        vtep: Ipv4Addr,
        subnet: Ipv4Net,
    ) -> Result<(), StoreError> {
        check_name(name)?;
        if subnet.network() != subnet {
            return Err(StoreError::Invalid(format!(
                "subnet {subnet} has host bits set; did you mean {}?",
                subnet.network()
            )));
        }
        self.update(|doc| doc.put_static_node(name, vtep, subnet))
    }

    fn remove_node(&mut self, name: &str) -> Result<bool, StoreError> {
        self.update(|doc| {
            doc.pods.retain(|p| p.node != name);
            Ok(doc.nodes.remove(name).is_some())
        })
    }

    fn put_pod(&mut self, pod: &PodRecord) -> Result<(), StoreError> {
        self.update(|doc| doc.put_pod(pod))
    }

    fn remove_pod(
        &mut self,
        node: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<bool, StoreError> {
        self.update(|doc| {
            let before = doc.pods.len();
            doc.pods.retain(|p| {
                !(p.node == node && p.container_id == container_id && p.ifname == ifname)
            });
            Ok(doc.pods.len() != before)
        })
    }

    fn pods(&mut self) -> Result<Vec<PodRecord>, StoreError> {
        let mut pods = self.load()?.pods;
        pods.sort_by(|a, b| pod_key(a).cmp(&pod_key(b)));
        Ok(pods)
    }

    fn generation(&mut self) -> Result<u64, StoreError> {
        Ok(self.load()?.generation)
    }

    fn apply_objects(
        &mut self,
        put: &[ObjectRecord],
        delete: &[ObjectKey],
    ) -> Result<(), StoreError> {
        self.update(|doc| {
            for key in delete {
                doc.objects.retain(|o| &o.key != key);
            }
            for record in put {
                match doc.objects.iter_mut().find(|o| o.key == record.key) {
                    Some(existing) => *existing = record.clone(),
                    None => doc.objects.push(record.clone()),
                }
            }
            doc.objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(())
        })
    }

    fn objects(&mut self) -> Result<Vec<ObjectRecord>, StoreError> {
        let mut objects = self.load()?.objects;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

/// The store file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Document {
    version: u64,
    cluster_cidr: Option<Ipv4Net>,
    subnet_len: Option<u8>,
    generation: u64,
    nodes: BTreeMap<String, NodeEntry>,
    pods: Vec<PodRecord>,
    /// Namespaces, pods' labels and ports, NetworkPolicies (`vswitchctl apply`). Absent
    /// in files written before objects existed, which read as none.
    #[serde(default)]
    objects: Vec<ObjectRecord>,
}

/// A node as the file holds it; its name is the key of the `nodes` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NodeEntry {
    vtep: Ipv4Addr,
    subnet: Ipv4Net,
    #[serde(rename = "static")]
    is_static: bool,
}

/// Just the version, read before the rest so that a future format is reported as such
/// rather than as corrupt.
#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

impl Default for Document {
    fn default() -> Self {
        Document {
            version: FORMAT_VERSION,
            cluster_cidr: None,
            subnet_len: None,
            generation: 0,
            nodes: BTreeMap::new(),
            pods: Vec::new(),
            objects: Vec::new(),
        }
    }
}

impl Document {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Document, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(corrupt("the file is empty".into()));
        }
        let probe: VersionProbe = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("no format version: {e}")))?;
        if probe.version != FORMAT_VERSION {
            return Err(StoreError::UnsupportedVersion {
                path: path.to_owned(),
                found: probe.version,
                supported: FORMAT_VERSION,
            });
        }
        let doc: Document = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if doc.cluster_cidr.is_some() != doc.subnet_len.is_some() {
            return Err(corrupt(
                "`cluster_cidr` and `subnet_len` must be both set or both null".into(),
            ));
        }
        Ok(doc)
    }

    fn node_records(&self) -> Vec<NodeRecord> {
        self.nodes
            .iter()
            .map(|(name, entry)| NodeRecord {
                name: name.clone(),
                vtep: entry.vtep,
                subnet: entry.subnet,
                is_static: entry.is_static,
            })
            .collect()
    }

    /// The name of a node other than `except` whose subnet overlaps `subnet`.
    fn overlapping(&self, subnet: Ipv4Net, except: &str) -> Option<(&str, Ipv4Net)> {
        self.nodes
            .iter()
            .find(|(name, entry)| name.as_str() != except && overlaps(entry.subnet, subnet))
            .map(|(name, entry)| (name.as_str(), entry.subnet))
    }

    fn lease(
        &mut self,
        node: &str,
        vtep: Ipv4Addr,
        cluster: Ipv4Net,
        subnet_len: u8,
    ) -> Result<NodeRecord, StoreError> {
        match (self.cluster_cidr, self.subnet_len) {
            (Some(cidr), Some(len)) if cidr != cluster || len != subnet_len => {
                return Err(StoreError::Conflict(format!(
                    "the cluster store was set up for cluster CIDR {cidr} with /{len} node subnets, but this daemon asks for {cluster} with /{subnet_len}; pass the same --cluster-cidr and --node-subnet-len to every daemon, or use a new store"
                )));
            }
            (Some(_), Some(_)) => {}
            _ => {
                if let Some((name, entry)) = self
                    .nodes
                    .iter()
                    .find(|(_, entry)| !cluster.contains_net(entry.subnet))
                {
                    return Err(StoreError::Conflict(format!(
                        "node {name} holds subnet {} outside cluster CIDR {cluster}; remove it (`vswitchctl node remove {name}`) or choose a --cluster-cidr that contains it",
                        entry.subnet
                    )));
                }
                self.cluster_cidr = Some(cluster);
                self.subnet_len = Some(subnet_len);
            }
        }

        if let Some(entry) = self.nodes.get_mut(node) {
            if entry.is_static {
                return Err(StoreError::Conflict(format!(
                    "node name {node} belongs to a static node (added with `vswitchctl node add`); start this daemon with another --node, or remove the static node first"
                )));
            }
            entry.vtep = vtep;
            return Ok(NodeRecord {
                name: node.to_owned(),
                vtep,
                subnet: entry.subnet,
                is_static: false,
            });
        }

        let taken: Vec<Ipv4Net> = self.nodes.values().map(|e| e.subnet).collect();
        let subnet = lowest_free_block(cluster, subnet_len, &taken)
            .ok_or(StoreError::ClusterFull { cidr: cluster })?;
        self.nodes.insert(
            node.to_owned(),
            NodeEntry {
                vtep,
                subnet,
                is_static: false,
            },
        );
        Ok(NodeRecord {
            name: node.to_owned(),
            vtep,
            subnet,
            is_static: false,
        })
    }

    fn put_static_node(
        &mut self,
        name: &str,
        vtep: Ipv4Addr,
        subnet: Ipv4Net,
    ) -> Result<(), StoreError> {
        if let Some(cluster) = self.cluster_cidr {
            if !cluster.contains_net(subnet) {
                return Err(StoreError::Conflict(format!(
                    "subnet {subnet} lies outside the cluster CIDR {cluster}; a static node's subnet must be a block of the cluster CIDR"
                )));
            }
        }
        if self.nodes.get(name).is_some_and(|e| !e.is_static) {
            return Err(StoreError::Conflict(format!(
                "node name {name} belongs to a node run by a vswitchd; pick another name for the static node"
            )));
        }
        if let Some((other, other_subnet)) = self.overlapping(subnet, name) {
            return Err(StoreError::Conflict(format!(
                "subnet {subnet} overlaps subnet {other_subnet} of node {other}; pick a free block of the cluster CIDR (see `vswitchctl show`)"
            )));
        }
        self.nodes.insert(
            name.to_owned(),
            NodeEntry {
                vtep,
                subnet,
                is_static: true,
            },
        );
        Ok(())
    }

    fn put_pod(&mut self, pod: &PodRecord) -> Result<(), StoreError> {
        let Some(node) = self.nodes.get(&pod.node) else {
            return Err(StoreError::Conflict(format!(
                "pod {}/{} is on node {}, which holds no subnet in the cluster store; the node must lease a subnet first",
                pod.namespace, pod.name, pod.node
            )));
        };
        if !node.subnet.contains(pod.ip) {
            return Err(StoreError::Conflict(format!(
                "pod {}/{} has address {}, outside subnet {} of its node {}",
                pod.namespace, pod.name, pod.ip, node.subnet, pod.node
            )));
        }
        let key = pod_key(pod);
        self.pods
            .retain(|p| pod_key(p) != key && !(p.node == pod.node && p.ip == pod.ip));
        self.pods.push(pod.clone());
        Ok(())
    }
}

fn pod_key(pod: &PodRecord) -> (&str, &str, &str) {
    (&pod.node, &pod.container_id, &pod.ifname)
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::Invalid("a node name must not be empty".into()));
    }
    Ok(())
}

/// The lowest block of length `len` in `cluster` that overlaps none of `taken`.
pub(crate) fn lowest_free_block(cluster: Ipv4Net, len: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let count = cluster.subnet_count(len);
    let step = 1u64 << (32 - u32::from(len.min(32)));
    let base = u64::from(u32::from(cluster.network().addr()));
    let mut index = 0;
    while index < count {
        let candidate = cluster.subnet(len, index)?;
        match taken.iter().find(|t| overlaps(**t, candidate)) {
            None => return Some(candidate),
            Some(t) => {
                // Jump past the taken prefix: to the first block that starts after its end.
                let end = u64::from(u32::from(t.broadcast())) + 1;
                let next = end.saturating_sub(base).div_ceil(step);
                index = next.max(index + 1);
            }
        }
    }
    None
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn with_suffix(path: &Path, suffix: OsString) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A failed [`write_atomically`]: which file or directory, and what the OS said.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    /// The file or directory the failing call was on.
    pub(crate) path: PathBuf,
    /// What the OS said.
    pub(crate) source: io::Error,
}

/// Replaces `path` with `bytes` atomically: writes `tmp`, fsyncs it, renames it over
/// `path` and fsyncs the directory. On failure before the rename, `path` is untouched and
/// `tmp` is removed (best effort: the error returned is the one that stopped the write).
///
/// The caller must make sure nobody else writes `tmp` at the same time (a lock, or a name
/// only it uses).
pub(crate) fn write_atomically(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), WriteFailure> {
    let written = write_and_sync(tmp, bytes);
    if let Err(source) = written {
        // Best effort: a directory standing where the temporary file goes is not ours to
        // remove, and remove_file refuses it.
        let _ = fs::remove_file(tmp);
        return Err(WriteFailure {
            path: tmp.to_owned(),
            source,
        });
    }
    if let Err(source) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(WriteFailure {
            path: path.to_owned(),
            source,
        });
    }
    let dir = parent_dir(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WriteFailure { path: dir, source })
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    const CLUSTER: &str = "10.244.0.0/16";

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("cluster.json")).unwrap();
        (dir, store)
    }

    fn pod(node: &str, container_id: &str, addr: &str) -> PodRecord {
        PodRecord {
            namespace: "default".into(),
            name: format!("pod-{container_id}"),
            node: node.into(),
            ip: ip(addr),
            mac: crate::mac::MacAddr::from_ipv4(ip(addr)),
            container_id: container_id.into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn two_daemons_on_one_file_get_distinct_subnets() {
        let (dir, mut one) = store();
        let mut two = FileStore::open(dir.path().join("cluster.json")).unwrap();
        let a = one
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap();
        let b = two
            .lease_subnet("b", ip("10.0.0.2"), net(CLUSTER), 24)
            .unwrap();
        assert_ne!(a.subnet, b.subnet);
        assert_eq!(one.nodes().unwrap().len(), 2);
        assert_eq!(two.nodes().unwrap().len(), 2);
    }

    #[test]
    fn concurrent_leases_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/cluster.json");
        const THREADS: usize = 24;
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let path = path.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut store = FileStore::open(path).unwrap();
                    barrier.wait();
                    let node = format!("node-{i}");
                    let rec = store
                        .lease_subnet(&node, Ipv4Addr::new(10, 0, 0, 1), net(CLUSTER), 24)
                        .unwrap();
                    let octet = u8::try_from(i).unwrap() + 2;
                    let addr = rec.subnet.nth(u64::from(octet)).unwrap();
                    store
                        .put_pod(&pod(&node, &format!("c{i}"), &addr.to_string()))
                        .unwrap();
                    rec
                })
            })
            .collect();
        let mut subnets: Vec<Ipv4Net> = handles
            .into_iter()
            .map(|h| h.join().unwrap().subnet)
            .collect();
        subnets.sort();
        subnets.dedup();
        assert_eq!(subnets.len(), THREADS);
        let mut store = FileStore::open(&path).unwrap();
        assert_eq!(store.nodes().unwrap().len(), THREADS);
        assert_eq!(store.pods().unwrap().len(), THREADS, "no update was lost");
        // The lowest blocks were taken, in some order.
        assert_eq!(subnets.last(), Some(&net("10.244.23.0/24")));
        assert_eq!(store.generation().unwrap(), 2 * 24);
    }

    #[test]
    fn static_node_outside_a_later_cluster_cidr() {
        let (_dir, mut store) = store();
        store
            .put_static_node("hw", ip("192.168.0.50"), net("10.9.0.0/24"))
            .unwrap();
        let err = store
            .lease_subnet("a", ip("192.168.0.1"), net(CLUSTER), 24)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("hw")),
            "{err}"
        );
        assert_eq!(store.cluster().unwrap(), None, "nothing recorded");
    }

    #[test]
    fn cluster_full() {
        let (_dir, mut store) = store();
        let small = net("10.244.0.0/22");
        store
            .put_static_node("hw", ip("10.0.0.9"), net("10.244.1.0/24"))
            .unwrap();
        let mut got = Vec::new();
        for name in ["a", "b", "c"] {
            got.push(
                store
                    .lease_subnet(name, ip("10.0.0.1"), small, 24)
                    .unwrap()
                    .subnet,
            );
        }
        assert_eq!(
            got,
            vec![
                net("10.244.0.0/24"),
                net("10.244.2.0/24"),
                net("10.244.3.0/24")
            ]
        );
        let err = store
            .lease_subnet("d", ip("10.0.0.1"), small, 24)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ClusterFull { cidr } if cidr == small),
            "{err}"
        );
        // An existing node still gets its lease back.
        assert_eq!(
            store
                .lease_subnet("b", ip("10.0.0.1"), small, 24)
                .unwrap()
                .subnet,
            net("10.244.2.0/24")
        );
    }

    #[test]
    fn free_block_skips_odd_sized_holders() {
        let cluster = net("10.244.0.0/16");
        let taken = [
            net("10.244.0.0/23"),
            net("10.244.2.128/25"),
            net("10.244.8.0/21"),
        ];
        assert_eq!(
            lowest_free_block(cluster, 24, &taken),
            Some(net("10.244.3.0/24"))
        );
        let taken = [net("10.244.0.0/17")];
        assert_eq!(
            lowest_free_block(cluster, 24, &taken),
            Some(net("10.244.128.0/24"))
        );
        assert_eq!(lowest_free_block(cluster, 24, &[cluster]), None);
        assert_eq!(
            lowest_free_block(net("10.0.0.0/8"), 30, &[net("10.0.0.0/9")]),
            Some(net("10.128.0.0/30"))
        );
    }

    #[test]
    fn cluster_cidr_or_subnet_len_mismatch() {
        let (_dir, mut store) = store();
        store
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap();
        for (cidr, len) in [("10.245.0.0/16", 24), (CLUSTER, 25), ("10.244.0.0/15", 24)] {
            let err = store
                .lease_subnet("b", ip("10.0.0.2"), net(cidr), len)
                .unwrap_err();
            assert!(
                matches!(&err, StoreError::Conflict(m) if m.contains("--cluster-cidr")),
                "{cidr} /{len}: {err}"
            );
            // Not for a known node either.
            let err = store
                .lease_subnet("a", ip("10.0.0.1"), net(cidr), len)
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        }
        assert_eq!(store.nodes().unwrap().len(), 1);
    }

    #[test]
    fn invalid_arguments() {
        let (_dir, mut store) = store();
        for len in [15, 31, 32] {
            let err = store
                .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), len)
                .unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "/{len}: {err}");
        }
        let err = store
            .lease_subnet("", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert!(!store.path().exists(), "nothing written");
    }

    #[test]
    fn corrupt_file_is_reported_and_left_alone() {
        let (_dir, mut store) = store();
        for garbage in [
            &b""[..],
            b"   \n",
            b"{not json",
            b"[]",
            br#"{"version": 1}"#,
            br#"{"version": 1, "cluster_cidr": "10.244.0.0/16", "subnet_len": null, "generation": 0, "nodes": {}, "pods": []}"#,
            br#"{"version": 1, "cluster_cidr": "bogus", "subnet_len": 24, "generation": 0, "nodes": {}, "pods": []}"#,
        ] {
            fs::write(store.path(), garbage).unwrap();
            let err = store.nodes().unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("is not a vswitch store"), "{err}");
            let err = store
                .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
                .unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(store.generation().is_err());
            assert_eq!(fs::read(store.path()).unwrap(), garbage, "file untouched");
        }
    }

    #[test]
    fn future_version_is_reported_as_such() {
        let (_dir, mut store) = store();
        let text = br#"{"version": 2, "whatever": true}"#;
        fs::write(store.path(), text).unwrap();
        let err = store
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnsupportedVersion {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(fs::read(store.path()).unwrap(), text);
    }

    #[test]
    fn failed_write_leaves_the_old_file() {
        let (_dir, mut store) = store();
        store
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap();
        let before = fs::read(store.path()).unwrap();
        // A directory where the temporary file goes makes the write fail, even for root.
        fs::create_dir(&store.tmp_path).unwrap();
        fs::write(store.tmp_path.join("keep"), b"x").unwrap();
        let err = store
            .lease_subnet("b", ip("10.0.0.2"), net(CLUSTER), 24)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { path, .. } if *path == store.tmp_path),
            "{err}"
        );
        assert_eq!(fs::read(store.path()).unwrap(), before);
        assert_eq!(store.nodes().unwrap().len(), 1);
        fs::remove_dir_all(&store.tmp_path).unwrap();
        store
            .lease_subnet("b", ip("10.0.0.2"), net(CLUSTER), 24)
            .unwrap();
        assert_eq!(store.nodes().unwrap().len(), 2);
    }

    #[test]
    fn generation_changes_on_write_only() {
        let (_dir, mut store) = store();
        assert_eq!(store.generation().unwrap(), 0);
        store
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap();
        let g1 = store.generation().unwrap();
        assert_ne!(g1, 0);

        // Reads, and writes that change nothing, leave it alone.
        store.nodes().unwrap();
        store.pods().unwrap();
        store.cluster().unwrap();
        store
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap();
        assert!(!store.remove_pod("a", "nope", "eth0").unwrap());
        assert!(!store.remove_node("nope").unwrap());
        assert_eq!(store.generation().unwrap(), g1);
        let mtime = fs::metadata(store.path()).unwrap().modified().unwrap();

        // Each change moves it.
        store
            .lease_subnet("a", ip("10.0.0.5"), net(CLUSTER), 24)
            .unwrap();
        let g2 = store.generation().unwrap();
        assert_ne!(g2, g1);
        store.put_pod(&pod("a", "c1", "10.244.0.2")).unwrap();
        let g3 = store.generation().unwrap();
        assert_ne!(g3, g2);
        assert!(fs::metadata(store.path()).unwrap().modified().unwrap() >= mtime);
        // Another handle on the file sees the same token.
        let mut other = FileStore::open(store.path()).unwrap();
        assert_eq!(other.generation().unwrap(), g3);
    }

    #[test]
    fn pods_put_remove_list() {
        let (dir, mut store) = store();
        store
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
            .unwrap();
        store
            .lease_subnet("b", ip("10.0.0.2"), net(CLUSTER), 24)
            .unwrap();
        let p1 = pod("a", "c1", "10.244.0.2");
        let p2 = pod("a", "c2", "10.244.0.3");
        let p3 = pod("b", "c1", "10.244.1.2");
        store.put_pod(&p2).unwrap();
        store.put_pod(&p3).unwrap();
        store.put_pod(&p1).unwrap();
        assert_eq!(
            store.pods().unwrap(),
            vec![p1.clone(), p2.clone(), p3.clone()]
        );

        // Same key: replaced.
        let mut p1b = p1.clone();
        p1b.name = "renamed".into();
        store.put_pod(&p1b).unwrap();
        assert_eq!(
            store.pods().unwrap(),
            vec![p1b.clone(), p2.clone(), p3.clone()]
        );

        // Same node and address under a new key: the stale record goes.
        let p4 = pod("a", "c4", "10.244.0.3");
        store.put_pod(&p4).unwrap();
        assert_eq!(
            store.pods().unwrap(),
            vec![p1b.clone(), p4.clone(), p3.clone()]
        );

        // Address outside the node's subnet, or an unknown node.
        let err = store.put_pod(&pod("a", "c5", "10.244.1.9")).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let err = store.put_pod(&pod("zz", "c5", "10.244.1.9")).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");

        assert!(store.remove_pod("a", "c1", "eth0").unwrap());
        assert!(!store.remove_pod("a", "c1", "eth0").unwrap());
        assert!(
            !store.remove_pod("b", "c4", "eth0").unwrap(),
            "key includes the node"
        );

        // Persisted, and readable by another handle.
        let mut other = FileStore::open(dir.path().join("cluster.json")).unwrap();
        assert_eq!(other.pods().unwrap(), vec![p4, p3]);

        // Removing a node removes its pods.
        assert!(other.remove_node("a").unwrap());
        assert_eq!(store.pods().unwrap(), vec![pod("b", "c1", "10.244.1.2")]);
    }

    #[test]
    fn file_shape() {
        let (_dir, mut store) = store();
        store
            .lease_subnet("a", ip("192.168.0.1"), net(CLUSTER), 24)
            .unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "version": 1,
                "cluster_cidr": "10.244.0.0/16",
                "subnet_len": 24,
                "generation": 1,
                "nodes": {"a": {"vtep": "192.168.0.1", "subnet": "10.244.0.0/24", "static": false}},
                "objects": [],
                "pods": []
            })
        );
        assert!(!store.tmp_path.exists());
        assert!(store.lock_path.exists());
    }
}
