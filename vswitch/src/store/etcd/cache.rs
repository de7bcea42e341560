//! The local copy of the store's keys that every read of the etcd backend is served from.
//!
//! The background session fills it with a full range read of the prefix ([`Cache::reset`])
//! and keeps it current from a watch started right after that read ([`Cache::apply`]).
//!
//! Invariants:
//! - `data_revision` is the newest revision the cache holds data of (a full read or watch
//!   events, which etcd delivers in order): the cache is exactly the prefix as of it.
//!   Write guards are planned against it.
//! - `revision` is the etcd revision the cache is complete up to by etcd's word: also
//!   moved by progress notifications. etcd before 3.4.25 can send one ahead of events it
//!   has not delivered, so it serves waits for a write to be visible, never a guard.
//!   Neither goes down.
//! - `generation` changes exactly when what the reads return changes: a put that rewrites
//!   a value with an equal record (a node record re-attached to a new lease, an object
//!   applied again) and every change to a subnet reservation (its last-seen time is
//!   refreshed all the time, and the reads do not show reservations) leave it alone. It
//!   is the etcd revision of the last such change, so it only grows.
//! - Values that do not decode are kept, as errors: a read that covers them reports them
//!   rather than silently showing less.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::keys::{self, ClusterRecord, DecodeError, Record, SubnetRecord, FORMAT_VERSION};
use crate::store::{NodeRecord, ObjectRecord, PodRecord, StoreError};

/// One key as etcd returned it, relative to the prefix.
#[derive(Debug, Clone)]
pub struct RawKv {
    /// The key, relative to the prefix.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The lease the key is attached to (0 for none).
    pub lease: i64,
    /// The revision of its last change.
    pub mod_revision: i64,
}

/// One change from the watch.
#[derive(Debug, Clone)]
pub enum Change {
    /// The key was created or written.
    Put(RawKv),
    /// The key was deleted at `revision`.
    Delete {
        /// The key, relative to the prefix.
        key: String,
        /// The revision of the deletion.
        revision: i64,
    },
}

/// One cached key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The decoded value.
    pub record: Result<Record, DecodeError>,
    /// The lease the key is attached to (0 for none).
    pub lease: i64,
    /// The revision of its last change.
    pub mod_revision: i64,
}

impl Entry {
    /// Whether the reads show this entry (subnet reservations are internal).
    fn visible(&self) -> bool {
        !matches!(self.record, Ok(Record::Subnet(_)))
    }
}

/// A subnet reservation with its key's revision, as the write planners need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The key, relative to the prefix.
    pub key: String,
    /// The record.
    pub record: SubnetRecord,
    /// The key's last change.
    pub mod_revision: i64,
}

/// The cached contents of the store's prefix.
#[derive(Debug)]
pub struct Cache {
    prefix: String,
    entries: BTreeMap<String, Entry>,
    revision: i64,
    /// The newest revision known from data itself (a full read or watch events), not from
    /// a progress notification: etcd 3.4 before 3.4.25 may send a progress notification
    /// ahead of events it has not delivered yet, so a write waits on this one.
    data_revision: i64,
    generation: u64,
    loaded: bool,
}

impl Cache {
    /// An empty cache of the keys under `prefix` (used in error messages), at revision 0.
    pub fn new(prefix: &str) -> Cache {
        Cache {
            prefix: prefix.to_owned(),
            entries: BTreeMap::new(),
            revision: 0,
            data_revision: 0,
            generation: 0,
            loaded: false,
        }
    }

    /// The newest revision the cache holds data of (full reads and watch events only).
    pub fn data_revision(&self) -> i64 {
        self.data_revision
    }

    /// The etcd revision the cache is complete up to.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The token of [`crate::store::ClusterStore::generation`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Replaces the contents with a full read of the prefix made at `revision`. The first
    /// load takes the newest revision among the visible keys as its generation (so idle
    /// handles agree); a later one (a resync) keeps the generation when nothing visible
    /// changed, and takes `revision` otherwise.
    pub fn reset(&mut self, kvs: Vec<RawKv>, revision: i64) {
        let first = !self.loaded;
        self.loaded = true;
        let entries: BTreeMap<String, Entry> = kvs
            .into_iter()
            .filter_map(|kv| Some((kv.key.clone(), entry(&kv)?)))
            .collect();
        if first {
            let newest = entries
                .values()
                .filter(|e| e.visible())
                .map(|e| e.mod_revision)
                .max()
                .unwrap_or(0);
            self.generation = as_generation(newest);
        } else if visible(&self.entries).ne(visible(&entries)) {
            self.generation = as_generation(revision).max(self.generation);
        }
        self.entries = entries;
        self.revision = self.revision.max(revision);
        self.data_revision = self.data_revision.max(revision);
    }

    /// Applies the changes of one watch response. The cache is then complete up to the
    /// newest of their revisions (etcd delivers a revision's changes together, in order).
    pub fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            let (key, new, at) = match change {
                Change::Put(kv) => match entry(&kv) {
                    Some(e) => (kv.key, Some(e), kv.mod_revision),
                    None => continue,
                },
                Change::Delete { key, revision } => (key, None, revision),
            };
            let old = match &new {
                Some(e) => self.entries.insert(key, e.clone()),
                None => self.entries.remove(&key),
            };
            let shown =
                |e: &Option<Entry>| e.as_ref().filter(|e| e.visible()).map(|e| e.record.clone());
            if shown(&old) != shown(&new) {
                self.generation = as_generation(at).max(self.generation);
            }
            self.revision = self.revision.max(at);
            self.data_revision = self.data_revision.max(at);
        }
    }

    /// Records that etcd guarantees every change up to `revision` was delivered (a
    /// progress notification or an empty watch response).
    pub fn advance(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// The cluster record and its key's revision, or `None` before the first lease.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] or [`StoreError::UnsupportedVersion`] for an undecodable value.
    pub fn cluster(&self) -> Result<Option<(ClusterRecord, i64)>, StoreError> {
        match self.entries.get(keys::CLUSTER) {
            None => Ok(None),
            Some(e) => match &e.record {
                Ok(Record::Cluster(c)) => Ok(Some((*c, e.mod_revision))),
                Ok(_) => Ok(None),
                Err(err) => Err(self.error(keys::CLUSTER, err)),
            },
        }
    }

    /// A node record with its lease and key revision.
    ///
    /// # Errors
    /// As [`Cache::cluster`].
    pub fn node(&self, name: &str) -> Result<Option<(&NodeRecord, i64, i64)>, StoreError> {
        let key = keys::node_key(name);
        match self.entries.get(&key) {
            None => Ok(None),
            Some(e) => match &e.record {
                Ok(Record::Node(n)) => Ok(Some((n, e.lease, e.mod_revision))),
                Ok(_) => Ok(None),
                Err(err) => Err(self.error(&key, err)),
            },
        }
    }

    /// Every node record, sorted by name.
    ///
    /// # Errors
    /// As [`Cache::cluster`].
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let mut nodes = self.collect(keys::NODES, |r| match r {
            Record::Node(n) => Some(n.clone()),
            _ => None,
        })?;
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    /// Every subnet reservation.
    ///
    /// # Errors
    /// As [`Cache::cluster`].
    pub fn reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        let mut out = Vec::new();
        for (key, e) in self.section(keys::SUBNETS) {
            match &e.record {
                Ok(Record::Subnet(s)) => out.push(Reservation {
                    key: key.clone(),
                    record: s.clone(),
                    mod_revision: e.mod_revision,
                }),
                Ok(_) => {}
                Err(err) => return Err(self.error(key, err)),
            }
        }
        Ok(out)
    }

    /// One pod record.
    pub fn pod(&self, key: &str) -> Option<&PodRecord> {
        match self.entries.get(key).map(|e| &e.record) {
            Some(Ok(Record::Pod(p))) => Some(p),
            _ => None,
        }
    }

    /// Every pod, sorted by (node, container id, interface).
    ///
    /// # Errors
    /// As [`Cache::cluster`].
    pub fn pods(&self) -> Result<Vec<PodRecord>, StoreError> {
        let mut pods = self.collect(keys::PODS, |r| match r {
            Record::Pod(p) => Some(p.clone()),
            _ => None,
        })?;
        pods.sort_by(|a, b| {
            (&a.node, &a.container_id, &a.ifname).cmp(&(&b.node, &b.container_id, &b.ifname))
        });
        Ok(pods)
    }

    /// Every object, sorted by key.
    ///
    /// # Errors
    /// As [`Cache::cluster`].
    pub fn objects(&self) -> Result<Vec<ObjectRecord>, StoreError> {
        let mut objects = self.collect(keys::OBJECTS, |r| match r {
            Record::Object(o) => Some(o.clone()),
            _ => None,
        })?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    fn section<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn collect<T>(
        &self,
        prefix: &str,
        pick: impl Fn(&Record) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for (key, e) in self.section(prefix) {
            match &e.record {
                Ok(r) => out.extend(pick(r)),
                Err(err) => return Err(self.error(key, err)),
            }
        }
        Ok(out)
    }

    fn error(&self, key: &str, err: &DecodeError) -> StoreError {
        let path = PathBuf::from(format!("etcd key {}{key}", self.prefix));
        match err {
            DecodeError::Version(found) => StoreError::UnsupportedVersion {
                path,
                found: *found,
                supported: FORMAT_VERSION,
            },
            DecodeError::Malformed(detail) => StoreError::Corrupt {
                path,
                detail: detail.clone(),
            },
        }
    }
}

fn entry(kv: &RawKv) -> Option<Entry> {
    Some(Entry {
        record: keys::decode(&kv.key, &kv.value)?,
        lease: kv.lease,
        mod_revision: kv.mod_revision,
    })
}

fn visible(
    entries: &BTreeMap<String, Entry>,
) -> impl Iterator<Item = (&String, &Result<Record, DecodeError>)> {
    entries
        .iter()
        .filter(|(_, e)| e.visible())
        .map(|(k, e)| (k, &e.record))
}

/// etcd revisions are positive; a negative one (never sent) reads as 0.
fn as_generation(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::store::etcd::keys::{encode, node_record, subnet_key};

    fn kv(key: &str, value: Vec<u8>, lease: i64, rev: i64) -> RawKv {
        RawKv {
            key: key.into(),
            value,
            lease,
            mod_revision: rev,
        }
    }

    fn node(name: &str, last: u8) -> Vec<u8> {
        let subnet = format!("10.244.{last}.0/24").parse().unwrap();
        encode(&node_record(
            name,
            Ipv4Addr::new(192, 168, 0, last),
            subnet,
            false,
        ))
        .unwrap()
    }

    fn reservation(owner: &str, last: u8, seen: u64) -> (String, Vec<u8>) {
        let subnet = format!("10.244.{last}.0/24").parse().unwrap();
        let rec = SubnetRecord {
            subnet,
            owner: owner.into(),
            is_static: false,
            last_seen_unix_ms: Some(seen),
        };
        (subnet_key(subnet), encode(&rec).unwrap())
    }

    #[test]
    fn generation_follows_visible_changes_only() {
        let mut cache = Cache::new("/p/");
        let (skey, sval) = reservation("a", 1, 1);
        cache.reset(
            vec![
                kv("nodes/a", node("a", 1), 7, 5),
                kv(&skey, sval, 0, 9),
                kv("unknown/key", b"x".to_vec(), 0, 11),
            ],
            12,
        );
        assert_eq!(cache.generation(), 5, "newest visible key");
        assert_eq!(cache.revision(), 12);
        assert_eq!(cache.nodes().unwrap().len(), 1);

        // A refreshed reservation and a node re-attached to another lease: invisible.
        let (skey, sval) = reservation("a", 1, 2);
        cache.apply(vec![
            Change::Put(kv(&skey, sval, 0, 13)),
            Change::Put(kv("nodes/a", node("a", 1), 8, 14)),
        ]);
        assert_eq!(cache.generation(), 5);
        assert_eq!(cache.revision(), 14);
        assert_eq!(cache.node("a").unwrap().unwrap().1, 8, "new lease recorded");

        // A new node: visible.
        cache.apply(vec![Change::Put(kv("nodes/b", node("b", 2), 8, 15))]);
        assert_eq!(cache.generation(), 15);
        // Deleting an absent key: nothing.
        cache.apply(vec![Change::Delete {
            key: "nodes/zz".into(),
            revision: 16,
        }]);
        assert_eq!(cache.generation(), 15);
        cache.apply(vec![Change::Delete {
            key: "nodes/b".into(),
            revision: 17,
        }]);
        assert_eq!(cache.generation(), 17);
        cache.advance(30);
        assert_eq!(cache.revision(), 30);
        assert_eq!(cache.generation(), 17);

        // A resync with the same visible contents keeps the generation; one with other
        // contents takes the read's revision.
        let (skey, sval) = reservation("a", 1, 3);
        cache.reset(
            vec![kv("nodes/a", node("a", 1), 9, 14), kv(&skey, sval, 0, 31)],
            40,
        );
        assert_eq!(cache.generation(), 17);
        cache.reset(vec![], 41);
        assert_eq!(cache.generation(), 41);
        assert!(cache.nodes().unwrap().is_empty());
    }

    #[test]
    fn undecodable_values_are_reported() {
        let mut cache = Cache::new("/p/");
        cache.reset(
            vec![
                kv("nodes/a", b"{oops".to_vec(), 0, 2),
                kv("pods/a/c/eth0", br#"{"version": 3}"#.to_vec(), 0, 3),
            ],
            3,
        );
        let err = cache.nodes().unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { path, .. } if path.to_string_lossy().contains("/p/nodes/a")),
            "{err}"
        );
        assert!(matches!(
            cache.pods().unwrap_err(),
            StoreError::UnsupportedVersion { found: 3, .. }
        ));
        assert!(cache.objects().unwrap().is_empty());
    }
}
