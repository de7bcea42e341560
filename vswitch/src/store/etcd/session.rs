//! The background half of the etcd backend: one thread running a single-threaded tokio
//! runtime with two tasks, and the state they share with the store handle.
//!
//! - The **sync** task keeps the [`Cache`] current: a watch of the whole prefix started
//!   right after the revision of a full read. When the watch fails (etcd down, connection
//!   cut, a write on the handle timing out) the store is *lost*: it retries with a backoff
//!   ([`RECONNECT_BACKOFF_MIN`] doubling to [`RECONNECT_BACKOFF_MAX`]), each time with a
//!   full read (a resync) and a new watch from that read's revision, so no change is
//!   missed; the resync makes the store *connected* again.
//! - The **keeper** task does what a live daemon owes the store: it renews the handle's
//!   etcd lease every third of its TTL (granting a new one if it expired, e.g. after an
//!   outage longer than the TTL), puts back the node records of the nodes this handle
//!   leased if they vanished, and refreshes their subnet reservations' last-seen time.
//!
//! Invariants:
//! - Exactly one line goes to stderr when the store is lost (`vswitchd: cluster store
//!   lost: …`) and one when a resync brings it back (`vswitchd: cluster store back after
//!   Ns`).
//! - The state lock is never held across an await, nor by a reader for longer than a copy
//!   of what it reads; readers never wait on etcd.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, EventType, LeaseKeepAliveStream, LeaseKeeper, WatchOptions};
use tokio::sync::Notify;

use super::cache::{Cache, Change, RawKv};
use super::keys::Keyspace;
use super::rpc::{self, call, CallError};
use super::writes::{self, Reattach, View};
use crate::store::StoreHealth;

/// How long a write that changed keys waits for its own watch events before it trusts a
/// progress notification instead.
const EVENTS_FIRST: Duration = Duration::from_millis(500);

/// The first wait before reconnecting to a lost etcd.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two reconnection attempts.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The longest interval between two refreshes of a reservation's last-seen time (it is
/// refreshed every tenth of the grace period, at most this long apart).
pub const SUBNET_REFRESH_MAX: Duration = Duration::from_secs(60);

/// What the handle and the background tasks share.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    /// Signalled whenever the cache or the health changes.
    changed: Condvar,
    /// The handle's etcd lease (granted by the first lease, renewed by the keeper).
    pub lease: tokio::sync::Mutex<Option<i64>>,
    /// Wakes the watch to ask etcd for a progress notification.
    pub progress_wanted: Notify,
    /// Tells the watch to start over with a resync (a write found etcd unreachable).
    pub reconnect: Notify,
    /// Tells the keeper a resync just happened.
    resynced: Notify,
    /// Stops the background tasks.
    pub shutdown: Notify,
    /// The lease TTL.
    pub lease_ttl: Duration,
    /// The subnet grace period.
    pub subnet_grace: Duration,
}

#[derive(Debug)]
struct State {
    cache: Cache,
    lost: Option<Lost>,
    /// The nodes this handle leased, and their VTEPs: the keeper keeps them.
    owned: BTreeMap<String, Ipv4Addr>,
    /// Every lease this handle was granted: node records on them are this handle's.
    leases: BTreeSet<i64>,
}

#[derive(Debug)]
struct Lost {
    since: Instant,
    since_unix: u64,
    reason: String,
}

/// A locked view of the shared state.
pub struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    shared: &'a Shared,
}

impl Locked<'_> {
    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.guard.cache
    }

    /// The state to plan a write against, now.
    pub fn view(&self) -> View<'_> {
        View {
            cache: &self.guard.cache,
            now_ms: now_unix_ms(),
            grace_ms: u64::try_from(self.shared.subnet_grace.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Why the store is lost, if it is.
    pub fn lost(&self) -> Option<&str> {
        self.guard.lost.as_ref().map(|l| l.reason.as_str())
    }
}

impl Shared {
    /// The shared state of a store whose cache was loaded by the first read.
    pub fn new(cache: Cache, lease_ttl: Duration, subnet_grace: Duration) -> Shared {
        Shared {
            state: Mutex::new(State {
                cache,
                lost: None,
                owned: BTreeMap::new(),
                leases: BTreeSet::new(),
            }),
            changed: Condvar::new(),
            lease: tokio::sync::Mutex::new(None),
            progress_wanted: Notify::new(),
            reconnect: Notify::new(),
            resynced: Notify::new(),
            shutdown: Notify::new(),
            lease_ttl,
            subnet_grace,
        }
    }

    /// Locks the state (a panic elsewhere while it was held leaves it usable: every
    /// update is one assignment).
    pub fn lock(&self) -> Locked<'_> {
        Locked {
            guard: self.state.lock().unwrap_or_else(PoisonError::into_inner),
            shared: self,
        }
    }

    /// The health `ClusterStore::health` reports.
    pub fn health(&self) -> StoreHealth {
        match &self.lock().guard.lost {
            None => StoreHealth::Connected,
            Some(l) => StoreHealth::Disconnected {
                since_unix: l.since_unix,
                reason: l.reason.clone(),
            },
        }
    }

    /// Marks the store lost (logging it, once per outage).
    pub fn mark_lost(&self, reason: &str) {
        let mut locked = self.lock();
        if locked.guard.lost.is_none() {
            eprintln!("vswitchd: cluster store lost: {reason}");
            locked.guard.lost = Some(Lost {
                since: Instant::now(),
                since_unix: now_unix_ms() / 1000,
                reason: reason.to_owned(),
            });
        }
        drop(locked);
        self.changed.notify_all();
    }

    /// Records that this handle now keeps `node` (VTEP `vtep`) alive.
    pub fn own(&self, node: &str, vtep: Ipv4Addr) {
        self.lock().guard.owned.insert(node.to_owned(), vtep);
    }

    /// Stops keeping `node`; returns its VTEP if it was kept.
    pub fn disown(&self, node: &str) -> Option<Ipv4Addr> {
        self.lock().guard.owned.remove(node)
    }

    /// Records a lease granted to this handle.
    pub fn granted(&self, lease: i64) {
        self.lock().guard.leases.insert(lease);
    }

    /// Waits until the cache is complete up to `revision` (asking etcd for a progress
    /// notification when no change arrives, as after a write that changed nothing under
    /// the prefix), at most `limit`. Returns whether it got there.
    ///
    /// With `own_changes` (the write changed keys of the prefix, so watch events at
    /// `revision` are on their way) it first waits for those events themselves, and
    /// trusts a progress notification only after [`EVENTS_FIRST`]: etcd before 3.4.25 can
    /// report progress ahead of events it has not delivered yet.
    pub fn wait_for(&self, revision: i64, limit: Duration, own_changes: bool) -> bool {
        let start = Instant::now();
        let deadline = start + limit;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut slice = Duration::from_millis(20);
        loop {
            let by_events = own_changes && start.elapsed() < EVENTS_FIRST;
            let complete = if by_events {
                state.cache.data_revision()
            } else {
                state.cache.revision()
            };
            if complete >= revision {
                return true;
            }
            if state.lost.is_some() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let (next, timeout) = self
                .changed
                .wait_timeout(state, slice.min(deadline - now))
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if timeout.timed_out() && !(own_changes && start.elapsed() < EVENTS_FIRST) {
                self.progress_wanted.notify_one();
                slice = Duration::from_millis(100);
            }
        }
    }

    /// Waits until the cache holds data newer than `revision` (a watch event or a full
    /// read after it), at most `limit`, or until the store is lost. Returns whether it got
    /// there.
    pub fn wait_for_data_after(&self, revision: i64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if state.cache.data_revision() > revision {
                return true;
            }
            let now = Instant::now();
            if state.lost.is_some() || now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock().guard);
        self.changed.notify_all();
    }

    /// Replaces the cache with a full read and marks the store connected (logging the
    /// return if it was lost).
    fn resync(&self, kvs: Vec<RawKv>, revision: i64) {
        self.update(|state| {
            state.cache.reset(kvs, revision);
            if let Some(lost) = state.lost.take() {
                eprintln!(
                    "vswitchd: cluster store back after {}s",
                    lost.since.elapsed().as_secs()
                );
            }
        });
        self.resynced.notify_one();
    }

    fn connected(&self) -> bool {
        self.lock().guard.lost.is_none()
    }
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs both tasks until [`Shared::shutdown`] is notified. `revision` is the revision of
/// the read that loaded the cache: the first watch starts after it.
pub async fn run(shared: &Shared, client: Client, keys: &Keyspace, revision: i64) {
    tokio::select! {
        () = sync(shared, client.clone(), keys, revision) => {}
        () = keep(shared, client, keys) => {}
        () = shared.shutdown.notified() => {}
    }
}

/// How a watch ended.
enum WatchEnd {
    /// etcd is out of reach: the reason.
    Lost(String),
    /// Start over with a resync, health unchanged (compaction, or a write asked for it
    /// and already reported the loss).
    Restart,
}

async fn sync(shared: &Shared, client: Client, keys: &Keyspace, revision: i64) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut from = Some(revision);
    loop {
        let revision = match from.take() {
            Some(revision) => revision,
            None => match rpc::read_all(&client, keys).await {
                Ok((kvs, revision)) => {
                    shared.resync(kvs, revision);
                    revision
                }
                Err(e) => {
                    shared.mark_lost(&e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        if let WatchEnd::Lost(reason) = watch(shared, &client, keys, revision, &mut backoff).await {
            shared.mark_lost(&reason);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// Watches the prefix from just after `revision` into the cache until the watch fails.
async fn watch(
    shared: &Shared,
    client: &Client,
    keys: &Keyspace,
    revision: i64,
    backoff: &mut Duration,
) -> WatchEnd {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision.saturating_add(1));
    let mut watch_client = client.watch_client();
    let mut stream = match call(
        "watching the cluster store",
        watch_client.watch(keys.prefix(), Some(options)),
    )
    .await
    {
        Ok(stream) => stream,
        Err(e) => return WatchEnd::Lost(e.to_string()),
    };
    loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            return WatchEnd::Restart;
                        }
                        return WatchEnd::Lost(format!(
                            "etcd canceled the watch of the cluster store: {}",
                            resp.cancel_reason()
                        ));
                    }
                    if resp.created() {
                        *backoff = RECONNECT_BACKOFF_MIN;
                        continue;
                    }
                    let changes: Vec<Change> = resp
                        .events()
                        .iter()
                        .filter_map(|event| {
                            let kv = event.kv()?;
                            let raw = rpc::raw(keys, kv)?;
                            Some(match event.event_type() {
                                EventType::Put => Change::Put(raw),
                                EventType::Delete => Change::Delete {
                                    key: raw.key,
                                    revision: raw.mod_revision,
                                },
                            })
                        })
                        .collect();
                    let progress = resp.events().is_empty();
                    let header = resp.header().map_or(0, |h| h.revision());
                    // Only a progress notification promises that everything up to its
                    // header revision was delivered; an event response's header may
                    // run ahead while the watch catches up.
                    shared.update(|state| {
                        state.cache.apply(changes);
                        if progress {
                            state.cache.advance(header);
                        }
                    });
                }
                Ok(None) => return WatchEnd::Lost("etcd closed the watch stream".into()),
                Err(e) => {
                    return WatchEnd::Lost(format!("watching the cluster store: {}", rpc::explain(&e)))
                }
            },
            () = shared.progress_wanted.notified() => {
                if let Err(e) = stream.request_progress().await {
                    return WatchEnd::Lost(format!("watching the cluster store: {}", rpc::explain(&e)));
                }
            }
            () = shared.reconnect.notified() => return WatchEnd::Restart,
        }
    }
}

/// The keeper task (see the module docs).
async fn keep(shared: &Shared, client: Client, keys: &Keyspace) {
    let tick = (shared.lease_ttl / 3).max(Duration::from_millis(100));
    let refresh_every = (shared.subnet_grace / 10).min(SUBNET_REFRESH_MAX);
    let mut renewal: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut refreshed = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = shared.resynced.notified() => {}
        }
        if !shared.connected() {
            renewal = None;
            continue;
        }
        let owned = shared.lock().guard.owned.clone();
        if owned.is_empty() {
            continue;
        }
        let lease = match renew(shared, &client, &mut renewal).await {
            Ok(lease) => lease,
            Err(e) => {
                renewal = None;
                if let CallError::Unreachable(reason) = e {
                    shared.mark_lost(&reason);
                    shared.reconnect.notify_one();
                }
                continue;
            }
        };
        for (name, vtep) in &owned {
            let plan = {
                let locked = shared.lock();
                let ours = &locked.guard.leases;
                writes::reattach(locked.view(), name, *vtep, lease, ours)
            };
            match plan {
                Ok(Reattach::Current) => {}
                Ok(Reattach::Write(plan)) => {
                    // A failed compare is retried on the next tick, against a newer cache.
                    let mut kv = client.kv_client();
                    let txn = rpc::transaction(keys, &plan);
                    if let Err(CallError::Unreachable(reason)) =
                        call("putting the node record back", kv.txn(txn)).await
                    {
                        shared.mark_lost(&reason);
                    }
                }
                Ok(Reattach::Gone(reason)) => {
                    shared.disown(name);
                    eprintln!(
                        "vswitchd: node {name} is no longer kept in the cluster store: {reason}"
                    );
                }
                // An undecodable record: the reads report it; nothing to keep here.
                Err(_) => {}
            }
        }
        if refreshed.elapsed() >= refresh_every {
            refreshed = Instant::now();
            for name in owned.keys() {
                let plan = writes::refresh(shared.lock().view(), name);
                if let Ok(Some(plan)) = plan {
                    let mut kv = client.kv_client();
                    let txn = rpc::transaction(keys, &plan);
                    if let Err(CallError::Unreachable(reason)) =
                        call("refreshing the subnet reservation", kv.txn(txn)).await
                    {
                        shared.mark_lost(&reason);
                    }
                }
            }
        }
    }
}

/// Renews the handle's lease, or grants a new one if it expired (or was never granted);
/// returns the live lease.
async fn renew(
    shared: &Shared,
    client: &Client,
    renewal: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Result<i64, CallError> {
    let mut lease = shared.lease.lock().await;
    let mut leases = client.lease_client();
    loop {
        let Some(id) = *lease else {
            let id = grant(shared, client).await?;
            *lease = Some(id);
            *renewal = None;
            return Ok(id);
        };
        if renewal.as_ref().is_none_or(|(k, _)| k.id() != id) {
            // Opening the stream renews once and fails if the lease is gone.
            match call("renewing the node lease", leases.keep_alive(id)).await {
                Ok(pair) => {
                    *renewal = Some(pair);
                    return Ok(id);
                }
                Err(CallError::LeaseNotFound) => {
                    *lease = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let Some((keeper, stream)) = renewal.as_mut() else {
            continue;
        };
        let answer = call("renewing the node lease", async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match answer {
            Ok(Some(resp)) if resp.ttl() > 0 => return Ok(id),
            Ok(Some(_)) => {
                *lease = None;
                *renewal = None;
            }
            Ok(None) => {
                return Err(CallError::Unreachable(
                    "etcd closed the lease renewal stream".into(),
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Grants a new lease of the store's TTL and records it as this handle's.
///
/// # Errors
/// The grant's failure.
pub async fn grant(shared: &Shared, client: &Client) -> Result<i64, CallError> {
    let ttl = i64::try_from(shared.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let mut leases = client.lease_client();
    let resp = call("granting the node lease", leases.grant(ttl, None)).await?;
    shared.granted(resp.id());
    Ok(resp.id())
}
