//! Node-local state: the pod address leases of this node and the attachments they belong
//! to, kept in the state directory (`--state-dir`) so that a restarted daemon finds its
//! pods again.
//!
//! The directory holds two files:
//! - `lock`: empty; a daemon holds an exclusive lock on it for as long as its
//!   [`NodeState`] lives, so two daemons never share one state directory.
//! - `attachments.json`: the leases,
//!
//! ```json
//! {
//!   "version": 1,
//!   "subnet": "10.244.1.0/24",
//!   "last_allocated": "10.244.1.3",
//!   "attachments": [
//!     { "container_id": "c1", "ifname": "eth0", "netns": "/run/netns/a",
//!       "pod_namespace": "default", "pod_name": "a",
//!       "ip": "10.244.1.3", "mac": "0a:58:0a:f4:01:03" }
//!   ]
//! }
//! ```
//!
//! Invariants:
//! - Every leased address lies in the node subnet and is none of its network, gateway
//!   (first) and broadcast addresses; no two attachments share an address or a key.
//! - What is in memory is on disk: a call that changes the leases persists them
//!   atomically (temporary file, fsync, rename, fsync of the directory) before it
//!   returns, and when persisting fails the in-memory state is left exactly as it was.
//!   So no address is handed out that a restart would forget, and none twice.
//! - Addresses are handed out round robin from the last one handed out (`last_allocated`,
//!   persisted too), so a freed address is not reused at once.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::control::proto::AttachmentKey;
use crate::ipnet::Ipv4Net;
use crate::mac::MacAddr;
use crate::store::file::write_atomically;

/// The format version of `attachments.json` this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

const LOCK_FILE: &str = "lock";
const STATE_FILE: &str = "attachments.json";
const TMP_FILE: &str = "attachments.json.tmp";

/// One container interface attached to the network, with its address lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Which attachment: (container id, interface name).
    #[serde(flatten)]
    pub key: AttachmentKey,
    /// Path of the pod's network namespace.
    pub netns: String,
    /// Kubernetes namespace of the pod.
    pub pod_namespace: String,
    /// Kubernetes name of the pod.
    pub pod_name: String,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The interface's MAC, [`MacAddr::from_ipv4`] of `ip`.
    pub mac: MacAddr,
}

/// Why reading or changing the node state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process (most likely another vswitchd) holds the state directory's lock.
    #[error(
        "state directory {} is in use by another vswitchd (it holds {}/lock); stop that daemon or give this one another --state-dir",
        dir.display(),
        dir.display()
    )]
    InUse {
        /// The state directory.
        dir: PathBuf,
    },
    /// Reading or writing a file of the state directory failed (disk full, read-only
    /// file system, missing permission...). A failed change leaves the state as it was.
    #[error("node state {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The state file does not hold vswitch node state. vswitch never overwrites it.
    #[error(
        "{} is not a vswitch node state file: {detail}; repair it, or move it aside (the leases of pods attached before are then forgotten)",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The state file was written by a vswitch with another format version.
    #[error(
        "{} is vswitch node state of format version {found}, but this vswitch reads only version {supported}; run a matching vswitch",
        path.display()
    )]
    UnsupportedVersion {
        /// The state file.
        path: PathBuf,
        /// The version the file declares.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The state directory holds leases from another node subnet than the one the
    /// cluster store gave this node.
    #[error(
        "the state directory holds address leases from node subnet {old}, but the cluster store gave this node {new} (was the store reset, or the node renamed?); remove the pods of this node and delete attachments.json in the state directory, or restore the cluster store"
    )]
    SubnetChanged {
        /// The subnet the state file records.
        old: Ipv4Net,
        /// The subnet asked for now.
        new: Ipv4Net,
    },
    /// The attachment already holds an address.
    #[error(
        "container {} already has interface {} attached; delete it first",
        .0.container_id,
        .0.ifname
    )]
    Exists(AttachmentKey),
    /// Every pod address of the node subnet is leased.
    #[error(
        "node subnet {0} has no free pod address left; delete unused pods, or give nodes larger subnets (--node-subnet-len)"
    )]
    Exhausted(Ipv4Net),
    /// The node subnet leaves no address for a pod.
    #[error("node subnet {0} is too small for pods; it must be a /30 or larger")]
    SubnetTooSmall(Ipv4Net),
}

/// The node's address leases and attachments, backed by the state directory.
///
/// Holds the directory's lock for as long as it lives.
#[derive(Debug)]
pub struct NodeState {
    path: PathBuf,
    tmp_path: PathBuf,
    /// Held, never read: closing it releases the lock.
    _lock: File,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    attachments: BTreeMap<AttachmentKey, Attachment>,
    /// The addresses of `attachments`.
    leased: BTreeSet<Ipv4Addr>,
    last_allocated: Option<Ipv4Addr>,
}

/// `attachments.json` as read (its version is checked first, by [`VersionProbe`]).
#[derive(Deserialize)]
struct StateFile {
    subnet: Ipv4Net,
    last_allocated: Option<Ipv4Addr>,
    attachments: Vec<Attachment>,
}

/// `attachments.json` as written.
#[derive(Serialize)]
struct StateFileOut<'a> {
    version: u64,
    subnet: Ipv4Net,
    last_allocated: Option<Ipv4Addr>,
    attachments: Vec<&'a Attachment>,
}

/// Just the version, read before the rest so that a future format is reported as such.
#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

impl NodeState {
    /// Opens (creating) `dir`, takes an exclusive lock on `dir/lock` held for the life of
    /// the value, and loads `dir/attachments.json` (none yet: no leases).
    ///
    /// `subnet` is the node's pod subnet (host bits are ignored); its first address, the
    /// gateway, is never handed out.
    ///
    /// # Errors
    /// [`StateError::InUse`] when another process holds the lock;
    /// [`StateError::SubnetChanged`] when the file records another subnet;
    /// [`StateError::SubnetTooSmall`] for a /31 or /32; [`StateError::Corrupt`],
    /// [`StateError::UnsupportedVersion`], [`StateError::Io`].
    pub fn open(dir: &Path, subnet: Ipv4Net) -> Result<NodeState, StateError> {
        let subnet = subnet.network();
        if subnet.prefix_len() > 30 {
            return Err(StateError::SubnetTooSmall(subnet));
        }
        let gateway = subnet.nth(1).ok_or(StateError::SubnetTooSmall(subnet))?;

        fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| StateError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateError::InUse {
                    dir: dir.to_owned(),
                })
            }
            Err(TryLockError::Error(source)) => {
                return Err(StateError::Io {
                    path: lock_path,
                    source,
                })
            }
        }

        let mut state = NodeState {
            path: dir.join(STATE_FILE),
            tmp_path: dir.join(TMP_FILE),
            _lock: lock,
            subnet,
            gateway,
            attachments: BTreeMap::new(),
            leased: BTreeSet::new(),
            last_allocated: None,
        };
        state.load()?;
        Ok(state)
    }

    /// The node subnet that `dir/attachments.json` records, without locking or loading
    /// the rest: what a restarting daemon falls back on when the cluster store is out of
    /// reach. `Ok(None)` when there is no state file yet.
    ///
    /// # Errors
    /// [`StateError::Io`], [`StateError::Corrupt`], [`StateError::UnsupportedVersion`].
    pub fn recorded_subnet(dir: &Path) -> Result<Option<Ipv4Net>, StateError> {
        let path = dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let probe: VersionProbe =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        if probe.version != FORMAT_VERSION {
            return Err(StateError::UnsupportedVersion {
                path,
                found: probe.version,
                supported: FORMAT_VERSION,
            });
        }
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(Some(file.subnet))
    }

    /// The node's pod subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The gateway: the subnet's first address, held by the host port `vsw0`.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Leases the next free address after the last one handed out (round robin, so a
    /// freed address is not reused at once), skipping the network, gateway and broadcast
    /// addresses, and persists the lease before returning it.
    ///
    /// # Errors
    /// [`StateError::Exists`] when `key` already holds an address;
    /// [`StateError::Exhausted`] when no address is free; [`StateError::Io`] when the
    /// lease cannot be persisted (nothing changes then).
    pub fn allocate(
        &mut self,
        key: AttachmentKey,
        netns: String,
        pod_namespace: String,
        pod_name: String,
    ) -> Result<Attachment, StateError> {
        if self.attachments.contains_key(&key) {
            return Err(StateError::Exists(key));
        }
        let ip = self.next_free().ok_or(StateError::Exhausted(self.subnet))?;
        let attachment = Attachment {
            key: key.clone(),
            netns,
            pod_namespace,
            pod_name,
            ip,
            mac: MacAddr::from_ipv4(ip),
        };
        let previous_cursor = self.last_allocated.replace(ip);
        self.attachments.insert(key.clone(), attachment.clone());
        self.leased.insert(ip);
        if let Err(e) = self.persist() {
            self.attachments.remove(&key);
            self.leased.remove(&ip);
            self.last_allocated = previous_cursor;
            return Err(e);
        }
        Ok(attachment)
    }

    /// Frees the key's address and persists that. `Ok(None)` when the key held none (a
    /// CNI DEL is idempotent).
    ///
    /// # Errors
    /// [`StateError::Io`] when the change cannot be persisted (nothing changes then).
    pub fn release(&mut self, key: &AttachmentKey) -> Result<Option<Attachment>, StateError> {
        let Some(attachment) = self.attachments.remove(key) else {
            return Ok(None);
        };
        self.leased.remove(&attachment.ip);
        if let Err(e) = self.persist() {
            self.leased.insert(attachment.ip);
            self.attachments.insert(key.clone(), attachment);
            return Err(e);
        }
        Ok(Some(attachment))
    }

    /// The attachment with this key.
    pub fn get(&self, key: &AttachmentKey) -> Option<&Attachment> {
        self.attachments.get(key)
    }

    /// Every attachment, ordered by key.
    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.attachments.values()
    }

    /// The offset of `ip` from the network address (`ip` must lie in the subnet).
    fn index_of(&self, ip: Ipv4Addr) -> u64 {
        u64::from(u32::from(ip).wrapping_sub(u32::from(self.subnet.addr())))
    }

    /// True for an address a pod may hold: in the subnet, and neither the network,
    /// gateway nor broadcast address.
    fn is_pod_address(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip) && (2..self.subnet.size() - 1).contains(&self.index_of(ip))
    }

    /// The first free pod address after `last_allocated`, wrapping around.
    fn next_free(&self) -> Option<Ipv4Addr> {
        // Pod addresses are offsets first..=last; the subnet is a /30 or larger.
        let first = 2u64;
        let count = self.subnet.size() - 3;
        let start = self
            .last_allocated
            .filter(|ip| self.subnet.contains(*ip))
            .map_or(first, |ip| self.index_of(ip) + 1);
        let start = start.saturating_sub(first) % count;
        (0..count)
            .map(|step| first + (start + step) % count)
            .filter_map(|offset| self.subnet.nth(offset))
            .find(|ip| !self.leased.contains(ip))
    }

    fn load(&mut self) -> Result<(), StateError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let corrupt = |detail: String| StateError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(corrupt("the file is empty".into()));
        }
        let probe: VersionProbe = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("no format version: {e}")))?;
        if probe.version != FORMAT_VERSION {
            return Err(StateError::UnsupportedVersion {
                path: self.path.clone(),
                found: probe.version,
                supported: FORMAT_VERSION,
            });
        }
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.subnet != self.subnet {
            return Err(StateError::SubnetChanged {
                old: file.subnet,
                new: self.subnet,
            });
        }
        if let Some(ip) = file.last_allocated {
            if !self.subnet.contains(ip) {
                return Err(corrupt(format!(
                    "last_allocated {ip} lies outside subnet {}",
                    self.subnet
                )));
            }
        }
        let mut attachments = BTreeMap::new();
        let mut leased = BTreeSet::new();
        for a in file.attachments {
            if !self.is_pod_address(a.ip) {
                return Err(corrupt(format!(
                    "container {} interface {} holds {}, which is not a pod address of {}",
                    a.key.container_id, a.key.ifname, a.ip, self.subnet
                )));
            }
            if !leased.insert(a.ip) {
                return Err(corrupt(format!("address {} is leased twice", a.ip)));
            }
            let key = a.key.clone();
            if attachments.insert(key, a).is_some() {
                return Err(corrupt("an attachment is listed twice".into()));
            }
        }
        self.attachments = attachments;
        self.leased = leased;
        self.last_allocated = file.last_allocated;
        Ok(())
    }

    fn persist(&self) -> Result<(), StateError> {
        let out = StateFileOut {
            version: FORMAT_VERSION,
            subnet: self.subnet,
            last_allocated: self.last_allocated,
            attachments: self.attachments.values().collect(),
        };
        let mut text = serde_json::to_vec_pretty(&out).map_err(|e| StateError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        text.push(b'\n');
        write_atomically(&self.path, &self.tmp_path, &text).map_err(|f| StateError::Io {
            path: f.path,
            source: f.source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn key(id: &str) -> AttachmentKey {
        AttachmentKey {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn add(state: &mut NodeState, id: &str) -> Result<Attachment, StateError> {
        state.allocate(
            key(id),
            format!("/run/netns/{id}"),
            "default".into(),
            format!("pod-{id}"),
        )
    }

    #[test]
    fn allocate_release_round_robin() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = NodeState::open(dir.path(), net("10.244.1.0/24")).unwrap();
        assert_eq!(state.gateway(), ip("10.244.1.1"));
        assert_eq!(state.subnet(), net("10.244.1.0/24"));

        let a = add(&mut state, "a").unwrap();
        assert_eq!(a.ip, ip("10.244.1.2"));
        assert_eq!(a.mac, MacAddr::from_ipv4(a.ip));
        assert_eq!(a.netns, "/run/netns/a");
        let b = add(&mut state, "b").unwrap();
        assert_eq!(b.ip, ip("10.244.1.3"));
        assert!(matches!(add(&mut state, "a"), Err(StateError::Exists(k)) if k == key("a")));

        assert_eq!(state.release(&key("a")).unwrap(), Some(a.clone()));
        assert_eq!(state.release(&key("a")).unwrap(), None, "DEL is idempotent");
        assert_eq!(state.get(&key("a")), None);
        // The freed address is not the next one handed out.
        let c = add(&mut state, "c").unwrap();
        assert_eq!(c.ip, ip("10.244.1.4"));
        assert_eq!(state.get(&key("c")), Some(&c));
        let keys: Vec<_> = state
            .attachments()
            .map(|a| a.key.container_id.clone())
            .collect();
        assert_eq!(keys, ["b", "c"]);
        // Another interface of the same container is another attachment.
        let other_if = state
            .allocate(
                AttachmentKey {
                    container_id: "b".into(),
                    ifname: "net1".into(),
                },
                "/run/netns/b".into(),
                "default".into(),
                "pod-b".into(),
            )
            .unwrap();
        assert_eq!(other_if.ip, ip("10.244.1.5"));
    }

    #[test]
    fn wraps_around_and_skips_reserved_addresses() {
        let dir = tempfile::tempdir().unwrap();
        // A /29: .0 network, .1 gateway, .2-.6 pods, .7 broadcast.
        let mut state = NodeState::open(dir.path(), net("10.244.1.0/29")).unwrap();
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(add(&mut state, &format!("c{i}")).unwrap().ip);
        }
        let expect: Vec<Ipv4Addr> = (2..=6).map(|d| Ipv4Addr::new(10, 244, 1, d)).collect();
        assert_eq!(got, expect);
        let err = add(&mut state, "c5").unwrap_err();
        assert!(
            matches!(err, StateError::Exhausted(n) if n == net("10.244.1.0/29")),
            "{err}"
        );
        assert!(err.to_string().contains("no free pod address"));

        // Free two; round robin starts after .6, wraps, and skips .0 and .1.
        state.release(&key("c3")).unwrap(); // .5
        state.release(&key("c1")).unwrap(); // .3
        assert_eq!(add(&mut state, "d1").unwrap().ip, ip("10.244.1.3"));
        assert_eq!(add(&mut state, "d2").unwrap().ip, ip("10.244.1.5"));
        assert!(matches!(
            add(&mut state, "d3"),
            Err(StateError::Exhausted(_))
        ));
        for a in state.attachments() {
            assert!(![0, 1, 7].contains(&a.ip.octets()[3]), "{}", a.ip);
        }
    }

    #[test]
    fn smallest_subnet_and_too_small() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = NodeState::open(dir.path(), net("10.244.1.4/30")).unwrap();
        assert_eq!(add(&mut state, "a").unwrap().ip, ip("10.244.1.6"));
        assert!(matches!(
            add(&mut state, "b"),
            Err(StateError::Exhausted(_))
        ));
        state.release(&key("a")).unwrap();
        assert_eq!(add(&mut state, "b").unwrap().ip, ip("10.244.1.6"));
        drop(state);
        for small in ["10.244.1.4/31", "10.244.1.4/32"] {
            let other = tempfile::tempdir().unwrap();
            assert!(matches!(
                NodeState::open(other.path(), net(small)),
                Err(StateError::SubnetTooSmall(_))
            ));
        }
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = net("10.244.1.0/24");
        let (a, b) = {
            let mut state = NodeState::open(dir.path(), subnet).unwrap();
            let a = add(&mut state, "a").unwrap();
            let b = add(&mut state, "b").unwrap();
            state.release(&key("a")).unwrap();
            (a, b)
        };
        // Host bits in the subnet are ignored.
        let mut state = NodeState::open(dir.path(), net("10.244.1.9/24")).unwrap();
        assert_eq!(
            state.attachments().cloned().collect::<Vec<_>>(),
            vec![b.clone()]
        );
        assert_eq!(state.get(&key("a")), None);
        // The cursor survived: neither the freed .2 nor the held .3.
        assert_eq!(add(&mut state, "c").unwrap().ip, ip("10.244.1.4"));
        assert_ne!(a.ip, ip("10.244.1.4"));
        assert!(!dir.path().join(TMP_FILE).exists());
    }

    #[test]
    fn file_shape() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = NodeState::open(dir.path(), net("10.244.1.0/24")).unwrap();
        add(&mut state, "a").unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "version": 1,
                "subnet": "10.244.1.0/24",
                "last_allocated": "10.244.1.2",
                "attachments": [{
                    "container_id": "a", "ifname": "eth0", "netns": "/run/netns/a",
                    "pod_namespace": "default", "pod_name": "pod-a",
                    "ip": "10.244.1.2", "mac": "0a:58:0a:f4:01:02"
                }]
            })
        );
    }

    #[test]
    fn second_open_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = net("10.244.1.0/24");
        let state = NodeState::open(dir.path(), subnet).unwrap();
        let err = NodeState::open(dir.path(), subnet).unwrap_err();
        assert!(
            matches!(&err, StateError::InUse { dir: d } if d == dir.path()),
            "{err}"
        );
        assert!(err.to_string().contains("--state-dir"));
        drop(state);
        NodeState::open(dir.path(), subnet).unwrap();
    }

    #[test]
    fn subnet_changed() {
        let dir = tempfile::tempdir().unwrap();
        // Opening writes nothing, so before the first lease any subnet is fine.
        drop(NodeState::open(dir.path(), net("10.244.1.0/24")).unwrap());
        assert!(!dir.path().join(STATE_FILE).exists());
        drop(NodeState::open(dir.path(), net("10.244.2.0/24")).unwrap());

        let mut state = NodeState::open(dir.path(), net("10.244.1.0/24")).unwrap();
        add(&mut state, "a").unwrap();
        drop(state);
        let before = fs::read(dir.path().join(STATE_FILE)).unwrap();
        let err = NodeState::open(dir.path(), net("10.244.2.0/24")).unwrap_err();
        assert!(
            matches!(err, StateError::SubnetChanged { old, new }
                if old == net("10.244.1.0/24") && new == net("10.244.2.0/24")),
            "{err}"
        );
        assert_eq!(fs::read(dir.path().join(STATE_FILE)).unwrap(), before);
    }

    #[test]
    fn failed_persist_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let tmp = dir.path().join(TMP_FILE);
        let mut state = NodeState::open(dir.path(), net("10.244.1.0/24")).unwrap();
        add(&mut state, "a").unwrap();
        add(&mut state, "b").unwrap();
        let on_disk = fs::read(&path).unwrap();
        let in_memory: Vec<Attachment> = state.attachments().cloned().collect();

        // A directory where the temporary file goes: the write fails, even for root.
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("keep"), b"x").unwrap();

        let err = add(&mut state, "c").unwrap_err();
        assert!(
            matches!(&err, StateError::Io { path: p, .. } if *p == tmp),
            "{err}"
        );
        let err = state.release(&key("a")).unwrap_err();
        assert!(matches!(err, StateError::Io { .. }), "{err}");
        assert_eq!(state.attachments().cloned().collect::<Vec<_>>(), in_memory);
        assert_eq!(fs::read(&path).unwrap(), on_disk);

        // Once the disk works again, the address the failed call would have taken is the
        // next one: the cursor did not move.
        fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(add(&mut state, "c").unwrap().ip, ip("10.244.1.4"));
        drop(state);
        let state = NodeState::open(dir.path(), net("10.244.1.0/24")).unwrap();
        assert_eq!(state.attachments().count(), 3);
    }

    #[test]
    fn state_dir_that_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("state");
        fs::write(&not_a_dir, b"").unwrap();
        let err = NodeState::open(&not_a_dir, net("10.244.1.0/24")).unwrap_err();
        assert!(matches!(err, StateError::Io { .. }), "{err}");
    }

    #[test]
    fn corrupt_file_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let subnet = net("10.244.1.0/24");
        let att = |ip: &str, id: &str| {
            format!(
                r#"{{"container_id":"{id}","ifname":"eth0","netns":"n","pod_namespace":"d","pod_name":"p","ip":"{ip}","mac":"0a:58:0a:f4:01:02"}}"#
            )
        };
        let file = |last: &str, atts: &[String]| {
            format!(
                r#"{{"version":1,"subnet":"10.244.1.0/24","last_allocated":{last},"attachments":[{}]}}"#,
                atts.join(",")
            )
        };
        for garbage in [
            String::new(),
            "{".into(),
            r#"{"version":1}"#.into(),
            r#"{"subnet":"10.244.1.0/24"}"#.into(),
            file(r#""10.244.9.9""#, &[]),
            file("null", &[att("10.244.1.1", "gw")]),
            file("null", &[att("10.244.1.255", "bc")]),
            file("null", &[att("10.244.2.5", "out")]),
            file("null", &[att("10.244.1.5", "x"), att("10.244.1.5", "y")]),
            file("null", &[att("10.244.1.5", "x"), att("10.244.1.6", "x")]),
        ] {
            fs::write(&path, &garbage).unwrap();
            let err = NodeState::open(dir.path(), subnet).unwrap_err();
            assert!(
                matches!(err, StateError::Corrupt { .. }),
                "{garbage}: {err}"
            );
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                garbage,
                "file untouched"
            );
        }
        // The well-formed version of the same file loads.
        fs::write(&path, file(r#""10.244.1.5""#, &[att("10.244.1.5", "x")])).unwrap();
        let state = NodeState::open(dir.path(), subnet).unwrap();
        assert_eq!(state.attachments().count(), 1);
        drop(state);
        fs::write(&path, r#"{"version":7}"#).unwrap();
        assert!(matches!(
            NodeState::open(dir.path(), subnet),
            Err(StateError::UnsupportedVersion { found: 7, .. })
        ));
    }
}
