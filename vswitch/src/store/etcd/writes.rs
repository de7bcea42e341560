//! What every write of the etcd backend checks, compares and changes: pure functions from
//! the cache to a [`Plan`], which the store runs as one etcd transaction.
//!
//! A plan's guards are the compare half of the transaction: they hold exactly when the keys
//! the plan was computed from are still as the cache saw them. When they fail, the store
//! waits for its cache to catch up and plans again, so concurrent writers (two daemons
//! joining at the same moment) serialize through etcd, and neither acts on a stale view.
//!
//! Invariants the plans keep (with their guards):
//! - A subnet is handed out only when no reservation overlaps it ([`Guard::NoNewReservation`]
//!   makes the transaction fail if any reservation was created after the newest revision
//!   the cache holds data of; never after a revision only a progress notification vouched
//!   for, since etcd before 3.4.25 can send one ahead of events it has not delivered, and
//!   a planner would then hand out a block another node took a moment ago),
//!   except an expired one, which is then reclaimed in the same transaction: its key is
//!   overwritten or deleted ([`Guard::Unchanged`] on it), its owner's node record must still
//!   be gone ([`Guard::Absent`]), and its owner's pods are removed.
//! - A daemon-leased reservation is expired when its owner has no node record (its etcd
//!   lease ran out) and it was last refreshed more than the subnet grace period ago. A
//!   static node's never expires.
//! - The cluster record is created once ([`Guard::Absent`]) and then only compared.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::cache::{Cache, Reservation};
use super::keys::{
    self, check_segment, encode, node_key, node_record, object_key, pod_key, pods_of, subnet_key,
    ClusterRecord, SubnetRecord,
};
use crate::ipnet::Ipv4Net;
use crate::store::file::lowest_free_block;
use crate::store::{overlaps, NodeRecord, ObjectKey, ObjectRecord, PodRecord, StoreError};

/// One compare of a transaction. Keys are relative to the store's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last changed at this revision.
    Unchanged(String, i64),
    /// No key under `subnets/` was created after this revision.
    NoNewReservation(i64),
}

/// One operation of a transaction. Keys are relative to the store's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes the key, attached to `lease` (0: none).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The lease, 0 for none.
        lease: i64,
    },
    /// Deletes the key.
    Delete(String),
    /// Deletes every key under this prefix.
    DeletePrefix(String),
}

/// One transaction: all guards hold, then all ops run; else nothing happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The compares.
    pub guards: Vec<Guard>,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Plan {
    fn put(&mut self, key: String, value: Vec<u8>, lease: i64) {
        self.ops.push(Op::Put { key, value, lease });
    }
}

/// What a write needs to do.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The store already says so: nothing to write.
    Unchanged(T),
    /// Run the plan; on success the result is `T`.
    Write(Plan, T),
}

/// What the lease keeper must do for one of its nodes.
#[derive(Debug)]
pub enum Reattach {
    /// The node record is there, on the current lease.
    Current,
    /// Put the node record back (on the current lease).
    Write(Plan),
    /// The node is no longer this daemon's to keep: the reason.
    Gone(String),
}

/// The state a write is planned against.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The cache, complete up to its revision.
    pub cache: &'a Cache,
    /// Now, in Unix milliseconds.
    pub now_ms: u64,
    /// The subnet grace period, in milliseconds.
    pub grace_ms: u64,
}

impl View<'_> {
    /// Whether a reservation may be reclaimed (see the module docs).
    fn expired(&self, r: &Reservation) -> Result<bool, StoreError> {
        if r.record.is_static || self.cache.node(&r.record.owner)?.is_some() {
            return Ok(false);
        }
        let seen = r.record.last_seen_unix_ms.unwrap_or(0);
        Ok(self.now_ms.saturating_sub(seen) > self.grace_ms)
    }

    fn node_guard(&self, name: &str) -> Result<Guard, StoreError> {
        Ok(match self.cache.node(name)? {
            Some((_, _, rev)) => Guard::Unchanged(node_key(name), rev),
            None => Guard::Absent(node_key(name)),
        })
    }

    /// A daemon-leased reservation of `subnet` by `owner`, seen now.
    fn leased(&self, owner: &str, subnet: Ipv4Net) -> SubnetRecord {
        SubnetRecord {
            subnet,
            owner: owner.to_owned(),
            is_static: false,
            last_seen_unix_ms: Some(self.now_ms),
        }
    }
}

/// Takes an expired reservation over: guards that it is still as seen and its owner still
/// gone, removes its owner's pods, and deletes its key unless `new_key` overwrites it.
fn reclaim(plan: &mut Plan, r: &Reservation, new_key: &str) {
    plan.guards
        .push(Guard::Unchanged(r.key.clone(), r.mod_revision));
    plan.guards.push(Guard::Absent(node_key(&r.record.owner)));
    if r.key != new_key {
        plan.ops.push(Op::Delete(r.key.clone()));
    }
    plan.ops.push(Op::DeletePrefix(pods_of(&r.record.owner)));
}

/// [`crate::store::ClusterStore::lease_subnet`], with the node record on `lease`.
///
/// # Errors
/// As the trait says ([`StoreError::Invalid`] is checked by the caller).
pub fn lease(
    view: View<'_>,
    node: &str,
    vtep: Ipv4Addr,
    cluster: Ipv4Net,
    subnet_len: u8,
    lease: i64,
) -> Result<Outcome<NodeRecord>, StoreError> {
    let mut plan = Plan::default();
    let reservations = view.cache.reservations()?;
    let recorded = view.cache.cluster()?;
    match recorded {
        Some((c, rev)) => {
            if c.cidr != cluster || c.subnet_len != subnet_len {
                return Err(StoreError::Conflict(format!(
                    "the cluster store was set up for cluster CIDR {} with /{} node subnets, but this daemon asks for {cluster} with /{subnet_len}; pass the same --cluster-cidr and --node-subnet-len to every daemon, or use a new store",
                    c.cidr, c.subnet_len
                )));
            }
            plan.guards
                .push(Guard::Unchanged(keys::CLUSTER.into(), rev));
        }
        None => {
            if let Some(r) = reservations
                .iter()
                .find(|r| !cluster.contains_net(r.record.subnet))
            {
                return Err(StoreError::Conflict(format!(
                    "node {name} holds subnet {} outside cluster CIDR {cluster}; remove it (`vswitchctl node remove {name}`) or choose a --cluster-cidr that contains it",
                    r.record.subnet,
                    name = r.record.owner
                )));
            }
            plan.guards.push(Guard::Absent(keys::CLUSTER.into()));
            let record = ClusterRecord {
                cidr: cluster,
                subnet_len,
            };
            plan.put(keys::CLUSTER.into(), encode(&record)?, 0);
        }
    }

    let current = view.cache.node(node)?;
    let own = reservations.iter().find(|r| r.record.owner == node);
    if current.is_some_and(|(n, _, _)| n.is_static) || own.is_some_and(|r| r.record.is_static) {
        return Err(StoreError::Conflict(format!(
            "node name {node} belongs to a static node (added with `vswitchctl node add`); start this daemon with another --node, or remove the static node first"
        )));
    }
    plan.guards.push(view.node_guard(node)?);

    let record = match own {
        Some(r) => {
            let record = node_record(node, vtep, r.record.subnet, false);
            let same = current.is_some_and(|(n, l, _)| *n == record && l == lease);
            if same && recorded.is_some() {
                return Ok(Outcome::Unchanged(record));
            }
            plan.guards
                .push(Guard::Unchanged(r.key.clone(), r.mod_revision));
            plan.put(
                r.key.clone(),
                encode(&view.leased(node, r.record.subnet))?,
                0,
            );
            record
        }
        None => {
            let mut taken = Vec::new();
            let mut expired = Vec::new();
            for r in &reservations {
                if view.expired(r)? {
                    expired.push(r);
                } else {
                    taken.push(r.record.subnet);
                }
            }
            let subnet = lowest_free_block(cluster, subnet_len, &taken)
                .ok_or(StoreError::ClusterFull { cidr: cluster })?;
            let key = subnet_key(subnet);
            plan.guards
                .push(Guard::NoNewReservation(view.cache.data_revision()));
            for r in expired
                .into_iter()
                .filter(|r| overlaps(r.record.subnet, subnet))
            {
                reclaim(&mut plan, r, &key);
            }
            plan.put(key, encode(&view.leased(node, subnet))?, 0);
            node_record(node, vtep, subnet, false)
        }
    };
    plan.put(node_key(node), encode(&record)?, lease);
    Ok(Outcome::Write(plan, record))
}

/// [`crate::store::ClusterStore::put_static_node`] (arguments already validated).
///
/// # Errors
/// As the trait says.
pub fn put_static(
    view: View<'_>,
    name: &str,
    vtep: Ipv4Addr,
    subnet: Ipv4Net,
) -> Result<Outcome<()>, StoreError> {
    let mut plan = Plan::default();
    match view.cache.cluster()? {
        Some((c, rev)) => {
            if !c.cidr.contains_net(subnet) {
                return Err(StoreError::Conflict(format!(
                    "subnet {subnet} lies outside the cluster CIDR {}; a static node's subnet must be a block of the cluster CIDR",
                    c.cidr
                )));
            }
            plan.guards
                .push(Guard::Unchanged(keys::CLUSTER.into(), rev));
        }
        None => plan.guards.push(Guard::Absent(keys::CLUSTER.into())),
    }
    let current = view.cache.node(name)?;
    let reservations = view.cache.reservations()?;
    let mut daemon_owned = current.is_some_and(|(n, _, _)| !n.is_static);
    for r in reservations
        .iter()
        .filter(|r| r.record.owner == name && !r.record.is_static)
    {
        daemon_owned |= !view.expired(r)?;
    }
    if daemon_owned {
        return Err(StoreError::Conflict(format!(
            "node name {name} belongs to a node run by a vswitchd; pick another name for the static node"
        )));
    }

    let key = subnet_key(subnet);
    let reservation = SubnetRecord {
        subnet,
        owner: name.to_owned(),
        is_static: true,
        last_seen_unix_ms: None,
    };
    let mut unchanged = true;
    for r in &reservations {
        if r.record.owner == name {
            if r.record.is_static {
                plan.guards
                    .push(Guard::Unchanged(r.key.clone(), r.mod_revision));
                if r.key != key {
                    plan.ops.push(Op::Delete(r.key.clone()));
                    unchanged = false;
                } else {
                    unchanged &= r.record == reservation;
                }
            } else {
                // Expired (a live one was refused above): the name is free again.
                reclaim(&mut plan, r, &key);
                unchanged = false;
            }
            continue;
        }
        if !overlaps(r.record.subnet, subnet) {
            continue;
        }
        if !view.expired(r)? {
            return Err(StoreError::Conflict(format!(
                "subnet {subnet} overlaps subnet {} of node {}; pick a free block of the cluster CIDR (see `vswitchctl show`)",
                r.record.subnet, r.record.owner
            )));
        }
        reclaim(&mut plan, r, &key);
        unchanged = false;
    }
    let record = node_record(name, vtep, subnet, true);
    let has_reservation = reservations.iter().any(|r| r.key == key);
    if unchanged && has_reservation && current.is_some_and(|(n, l, _)| *n == record && l == 0) {
        return Ok(Outcome::Unchanged(()));
    }
    plan.guards
        .push(Guard::NoNewReservation(view.cache.data_revision()));
    plan.guards.push(view.node_guard(name)?);
    plan.put(key, encode(&reservation)?, 0);
    plan.put(node_key(name), encode(&record)?, 0);
    Ok(Outcome::Write(plan, ()))
}

/// [`crate::store::ClusterStore::remove_node`]: the plan, and how many of its first ops
/// delete the node itself (its record and reservations; a deletion there means it existed).
///
/// # Errors
/// An undecodable reservation.
pub fn remove_node(view: View<'_>, name: &str) -> Result<(Plan, usize), StoreError> {
    let mut plan = Plan::default();
    plan.guards
        .push(Guard::NoNewReservation(view.cache.data_revision()));
    plan.ops.push(Op::Delete(node_key(name)));
    for r in view.cache.reservations()? {
        if r.record.owner == name {
            plan.ops.push(Op::Delete(r.key));
        }
    }
    let counted = plan.ops.len();
    plan.ops.push(Op::DeletePrefix(pods_of(name)));
    Ok((plan, counted))
}

/// [`crate::store::ClusterStore::put_pod`] (key segments already validated).
///
/// # Errors
/// As the trait says.
pub fn put_pod(view: View<'_>, pod: &PodRecord) -> Result<Outcome<()>, StoreError> {
    let reservations = view.cache.reservations()?;
    let Some(r) = reservations.iter().find(|r| r.record.owner == pod.node) else {
        return Err(StoreError::Conflict(format!(
            "pod {}/{} is on node {}, which holds no subnet in the cluster store; the node must lease a subnet first",
            pod.namespace, pod.name, pod.node
        )));
    };
    if !r.record.subnet.contains(pod.ip) {
        return Err(StoreError::Conflict(format!(
            "pod {}/{} has address {}, outside subnet {} of its node {}",
            pod.namespace, pod.name, pod.ip, r.record.subnet, pod.node
        )));
    }
    let key = pod_key(&pod.node, &pod.container_id, &pod.ifname);
    let stale: Vec<String> = view
        .cache
        .pods()?
        .into_iter()
        .filter(|p| p.node == pod.node && p.ip == pod.ip)
        .map(|p| pod_key(&p.node, &p.container_id, &p.ifname))
        .filter(|k| *k != key)
        .collect();
    if stale.is_empty() && view.cache.pod(&key) == Some(pod) {
        return Ok(Outcome::Unchanged(()));
    }
    let mut plan = Plan::default();
    plan.guards
        .push(Guard::Unchanged(r.key.clone(), r.mod_revision));
    plan.ops.extend(stale.into_iter().map(Op::Delete));
    plan.put(key, encode(pod)?, 0);
    Ok(Outcome::Write(plan, ()))
}

/// [`crate::store::ClusterStore::apply_objects`]: one transaction, or `None` for an empty
/// request. A key both deleted and put ends up put, as in the file store.
///
/// # Errors
/// [`StoreError::Invalid`] for a name or namespace the store cannot key.
pub fn apply_objects(
    put: &[ObjectRecord],
    delete: &[ObjectKey],
) -> Result<Option<Plan>, StoreError> {
    let mut writes: BTreeMap<String, Option<&ObjectRecord>> = BTreeMap::new();
    for key in delete {
        writes.insert(checked_object_key(key)?, None);
    }
    for record in put {
        writes.insert(checked_object_key(&record.key)?, Some(record));
    }
    if writes.is_empty() {
        return Ok(None);
    }
    let mut plan = Plan::default();
    for (key, record) in writes {
        match record {
            Some(r) => plan.put(key, encode(r)?, 0),
            None => plan.ops.push(Op::Delete(key)),
        }
    }
    Ok(Some(plan))
}

fn checked_object_key(key: &ObjectKey) -> Result<String, StoreError> {
    check_segment("object name", &key.name)?;
    if key.namespace.contains('/') {
        check_segment("namespace", &key.namespace)?;
    }
    Ok(object_key(key))
}

/// What the lease keeper does for its node `name` (VTEP `vtep`) on `lease`; `ours` are all
/// the leases its handle was ever granted (a record on one of them is still its own, e.g.
/// while the cache has not yet seen an expired lease's record go).
///
/// # Errors
/// An undecodable record.
pub fn reattach(
    view: View<'_>,
    name: &str,
    vtep: Ipv4Addr,
    lease: i64,
    ours: &BTreeSet<i64>,
) -> Result<Reattach, StoreError> {
    let reservations = view.cache.reservations()?;
    let Some(r) = reservations
        .iter()
        .find(|r| r.record.owner == name && !r.record.is_static)
    else {
        return Ok(Reattach::Gone(
            "its subnet reservation was removed (`vswitchctl node remove`?)".into(),
        ));
    };
    let record = node_record(name, vtep, r.record.subnet, false);
    let mut plan = Plan::default();
    plan.guards
        .push(Guard::Unchanged(r.key.clone(), r.mod_revision));
    match view.cache.node(name)? {
        None => plan.guards.push(Guard::Absent(node_key(name))),
        Some((n, l, rev)) if ours.contains(&l) && !n.is_static => {
            if l == lease && *n == record {
                return Ok(Reattach::Current);
            }
            plan.guards.push(Guard::Unchanged(node_key(name), rev));
        }
        Some(_) => {
            return Ok(Reattach::Gone(
                "another vswitchd holds the name now (two daemons with the same --node?)".into(),
            ))
        }
    }
    plan.put(node_key(name), encode(&record)?, lease);
    Ok(Reattach::Write(plan))
}

/// Refreshes the last-seen time of `name`'s reservation, or `None` if it holds none.
///
/// # Errors
/// An undecodable reservation.
pub fn refresh(view: View<'_>, name: &str) -> Result<Option<Plan>, StoreError> {
    let reservations = view.cache.reservations()?;
    let Some(r) = reservations
        .iter()
        .find(|r| r.record.owner == name && !r.record.is_static)
    else {
        return Ok(None);
    };
    let mut plan = Plan::default();
    plan.guards
        .push(Guard::Unchanged(r.key.clone(), r.mod_revision));
    plan.put(
        r.key.clone(),
        encode(&view.leased(name, r.record.subnet))?,
        0,
    );
    Ok(Some(plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::etcd::cache::RawKv;

    const GRACE_MS: u64 = 60_000;
    const NOW_MS: u64 = 10_000_000;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// A cache holding what the plans put (a pretend etcd: each plan one revision).
    struct Pretend {
        cache: Cache,
        kvs: BTreeMap<String, RawKv>,
        created: BTreeMap<String, i64>,
        revision: i64,
    }

    impl Pretend {
        fn new() -> Pretend {
            let mut cache = Cache::new("/t/");
            cache.reset(vec![], 1);
            Pretend {
                cache,
                kvs: BTreeMap::new(),
                created: BTreeMap::new(),
                revision: 1,
            }
        }

        fn view(&self, now_ms: u64) -> View<'_> {
            View {
                cache: &self.cache,
                now_ms,
                grace_ms: GRACE_MS,
            }
        }

        /// Runs a plan as etcd would (guards included); returns whether it ran.
        fn run(&mut self, plan: Plan) -> bool {
            for g in &plan.guards {
                let ok = match g {
                    Guard::Absent(k) => !self.kvs.contains_key(k),
                    Guard::Unchanged(k, rev) => {
                        self.kvs.get(k).is_some_and(|kv| kv.mod_revision == *rev)
                    }
                    Guard::NoNewReservation(rev) => self
                        .created
                        .iter()
                        .all(|(k, c)| !k.starts_with(keys::SUBNETS) || c <= rev),
                };
                if !ok {
                    return false;
                }
            }
            self.revision += 1;
            for op in plan.ops {
                match op {
                    Op::Put { key, value, lease } => {
                        self.created.entry(key.clone()).or_insert(self.revision);
                        self.kvs.insert(
                            key.clone(),
                            RawKv {
                                key,
                                value,
                                lease,
                                mod_revision: self.revision,
                            },
                        );
                    }
                    Op::Delete(k) => {
                        self.kvs.remove(&k);
                        self.created.remove(&k);
                    }
                    Op::DeletePrefix(p) => {
                        self.kvs.retain(|k, _| !k.starts_with(&p));
                        self.created.retain(|k, _| !k.starts_with(&p));
                    }
                }
            }
            self.cache
                .reset(self.kvs.values().cloned().collect(), self.revision);
            true
        }

        /// A node's lease ran out: its record goes.
        fn expire(&mut self, node: &str) {
            self.revision += 1;
            self.kvs.remove(&node_key(node));
            self.created.remove(&node_key(node));
            self.cache
                .reset(self.kvs.values().cloned().collect(), self.revision);
        }

        fn lease(&mut self, node: &str, now_ms: u64) -> Result<NodeRecord, StoreError> {
            match lease(
                self.view(now_ms),
                node,
                ip("10.0.0.1"),
                net("10.244.0.0/16"),
                24,
                7,
            )? {
                Outcome::Unchanged(r) => Ok(r),
                Outcome::Write(plan, r) => {
                    assert!(self.run(plan));
                    Ok(r)
                }
            }
        }
    }

    #[test]
    fn lease_then_unchanged() {
        let mut s = Pretend::new();
        let a = s.lease("a", NOW_MS).unwrap();
        assert_eq!(a.subnet, net("10.244.0.0/24"));
        let rev = s.revision;
        let again = lease(
            s.view(NOW_MS),
            "a",
            ip("10.0.0.1"),
            net("10.244.0.0/16"),
            24,
            7,
        );
        assert!(matches!(again, Ok(Outcome::Unchanged(r)) if r == a));
        // Another lease id: the record is re-attached.
        let other = lease(
            s.view(NOW_MS),
            "a",
            ip("10.0.0.1"),
            net("10.244.0.0/16"),
            24,
            8,
        );
        assert!(matches!(other, Ok(Outcome::Write(..))));
        assert_eq!(s.revision, rev);
    }

    #[test]
    fn expired_reservations_are_reclaimed_with_their_pods() {
        let mut s = Pretend::new();
        let a = s.lease("a", NOW_MS).unwrap();
        let pod = PodRecord {
            namespace: "default".into(),
            name: "p".into(),
            node: "a".into(),
            ip: ip("10.244.0.5"),
            mac: crate::mac::MacAddr::from_ipv4(ip("10.244.0.5")),
            container_id: "c".into(),
            ifname: "eth0".into(),
        };
        let Outcome::Write(plan, ()) = put_pod(s.view(NOW_MS), &pod).unwrap() else {
            panic!("a new pod is a write")
        };
        assert!(s.run(plan));
        s.expire("a");

        // Within the grace period the block stays a's.
        let b = s.lease("b", NOW_MS + GRACE_MS).unwrap();
        assert_eq!(b.subnet, net("10.244.1.0/24"));
        // After it, the lowest block is a's again: reclaimed, with a's pods.
        let c = s.lease("c", NOW_MS + GRACE_MS + 1).unwrap();
        assert_eq!(c.subnet, a.subnet);
        assert!(s.cache.pods().unwrap().is_empty());
        // a comes back: a new block.
        let a2 = s.lease("a", NOW_MS + GRACE_MS + 2).unwrap();
        assert_eq!(a2.subnet, net("10.244.2.0/24"));
    }

    #[test]
    fn a_stale_plan_fails_its_guards() {
        let mut s = Pretend::new();
        s.lease("a", NOW_MS).unwrap();
        s.expire("a");
        let later = NOW_MS + GRACE_MS + 1;
        // Two planners reclaim the same expired block from the same view; the second fails.
        let Outcome::Write(one, _) = lease(
            s.view(later),
            "b",
            ip("10.0.0.2"),
            net("10.244.0.0/16"),
            24,
            7,
        )
        .unwrap() else {
            panic!()
        };
        let Outcome::Write(two, _) = lease(
            s.view(later),
            "c",
            ip("10.0.0.3"),
            net("10.244.0.0/16"),
            24,
            7,
        )
        .unwrap() else {
            panic!()
        };
        assert!(s.run(one));
        assert!(!s.run(two));
    }

    /// etcd before 3.4.25 can send a progress notification ahead of an event it has not
    /// delivered yet. A planner whose cache was advanced by one must not vouch for the
    /// reservation it has not seen: the plan fails instead of taking the same block.
    #[test]
    fn a_progress_notification_does_not_vouch_for_unseen_reservations() {
        let mut s = Pretend::new();
        s.lease("x", NOW_MS).unwrap();
        // b's cache: the store after x joined, then a progress notification that runs
        // ahead of the event of a's join.
        let mut behind = Cache::new("/t/");
        behind.reset(s.kvs.values().cloned().collect(), s.revision);
        s.lease("a", NOW_MS).unwrap();
        behind.advance(s.revision);
        let view = View {
            cache: &behind,
            now_ms: NOW_MS,
            grace_ms: GRACE_MS,
        };
        let Outcome::Write(plan, b) =
            lease(view, "b", ip("10.0.0.2"), net("10.244.0.0/16"), 24, 7).unwrap()
        else {
            panic!()
        };
        assert_eq!(b.subnet, net("10.244.1.0/24"), "b did not see a's block");
        assert!(!s.run(plan), "the guard must catch the block a took");
        assert_eq!(s.lease("b", NOW_MS).unwrap().subnet, net("10.244.2.0/24"));
    }

    #[test]
    fn static_nodes_and_the_keeper() {
        let mut s = Pretend::new();
        s.lease("a", NOW_MS).unwrap();
        let err = put_static(s.view(NOW_MS), "a", ip("10.0.0.9"), net("10.244.9.0/24"));
        assert!(matches!(err, Err(StoreError::Conflict(_))));
        let err = put_static(s.view(NOW_MS), "hw", ip("10.0.0.9"), net("10.244.0.0/23"));
        assert!(matches!(&err, Err(StoreError::Conflict(m)) if m.contains("node a")));
        let Outcome::Write(plan, ()) =
            put_static(s.view(NOW_MS), "hw", ip("10.0.0.9"), net("10.244.9.0/24")).unwrap()
        else {
            panic!()
        };
        assert!(s.run(plan));
        assert!(matches!(
            put_static(s.view(NOW_MS), "hw", ip("10.0.0.9"), net("10.244.9.0/24")),
            Ok(Outcome::Unchanged(()))
        ));

        // The keeper: current, then put back after the record expired, then gone.
        let ours = BTreeSet::from([7, 9]);
        assert!(matches!(
            reattach(s.view(NOW_MS), "a", ip("10.0.0.1"), 7, &ours),
            Ok(Reattach::Current)
        ));
        // A new lease: the record moves to it.
        assert!(matches!(
            reattach(s.view(NOW_MS), "a", ip("10.0.0.1"), 9, &ours),
            Ok(Reattach::Write(_))
        ));
        s.expire("a");
        let Ok(Reattach::Write(plan)) = reattach(s.view(NOW_MS), "a", ip("10.0.0.1"), 9, &ours)
        else {
            panic!()
        };
        assert!(s.run(plan));
        assert_eq!(s.cache.node("a").unwrap().unwrap().1, 9);
        // Someone else's lease: not ours to keep.
        assert!(matches!(
            reattach(
                s.view(NOW_MS),
                "a",
                ip("10.0.0.1"),
                10,
                &BTreeSet::from([10])
            ),
            Ok(Reattach::Gone(_))
        ));
        let (plan, counted) = remove_node(s.view(NOW_MS), "a").unwrap();
        assert_eq!(counted, 2);
        assert!(s.run(plan));
        assert!(matches!(
            reattach(s.view(NOW_MS), "a", ip("10.0.0.1"), 9, &ours),
            Ok(Reattach::Gone(_))
        ));
        assert!(refresh(s.view(NOW_MS), "a").unwrap().is_none());
    }

    #[test]
    fn objects_deduplicate_keys() {
        let key = ObjectKey {
            kind: crate::store::ObjectKind::Pod,
            namespace: "default".into(),
            name: "web".into(),
        };
        let record = ObjectRecord {
            key: key.clone(),
            document: serde_json::json!({}),
        };
        let plan = apply_objects(std::slice::from_ref(&record), std::slice::from_ref(&key))
            .unwrap()
            .unwrap();
        assert_eq!(plan.ops.len(), 1);
        assert!(matches!(&plan.ops[0], Op::Put { .. }));
        assert!(apply_objects(&[], &[]).unwrap().is_none());
        let bad = ObjectKey {
            name: "a/b".into(),
            ..key
        };
        assert!(matches!(
            apply_objects(&[], &[bad]),
            Err(StoreError::Invalid(_))
        ));
    }
}
