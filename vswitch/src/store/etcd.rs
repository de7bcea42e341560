//! The etcd backend of the cluster store (`--store etcd://HOST:PORT[,HOST:PORT...]`),
//! through the etcd v3 API. `docs/store.md` describes the keys, records and behaviour.
//!
//! An [`EtcdStore`] is a handle: a background thread (see `etcd/session.rs`) keeps a full cache
//! of the store's prefix current from a watch, and keeps this handle's nodes alive on an
//! etcd lease; the handle's reads are served from that cache and its writes are etcd
//! transactions planned against it (see `etcd/writes.rs`).
//!
//! Invariants:
//! - Reads never wait on etcd. While etcd is out of reach they return the last known
//!   state and [`ClusterStore::health`] says [`StoreHealth::Disconnected`].
//! - A write either fails at once with [`StoreError::Unavailable`] (the store is known
//!   lost) or reaches etcd within [`CALL_TIMEOUT`] per call. Each write is one
//!   transaction whose compares make it act only on what the cache saw; when they fail
//!   the write waits for the cache to catch up and plans again.
//! - Read-your-writes: a write returns once this handle's cache holds its effect (or
//!   after [`CALL_TIMEOUT`] if the watch lags), so a read right after it sees it.
//! - A node record leased through a handle lives on that handle's etcd lease
//!   ([`NODE_LEASE_TTL`]); its subnet stays reserved for [`SUBNET_GRACE`] after the
//!   daemon was last seen; pods and objects have no lease.
#![forbid(unsafe_code)]

mod cache;
pub mod keys;
mod rpc;
mod session;
mod writes;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, TlsOptions, TxnOpResponse, TxnResponse,
};

use self::cache::Cache;
use self::keys::{check_segment, pod_key, Keyspace, DEFAULT_PREFIX};
use self::rpc::{call, CallError};
use self::session::Shared;
use self::writes::{Op, Outcome, Plan, View};
use super::{
    ClusterStore, EtcdTls, NodeRecord, ObjectKey, ObjectRecord, PodRecord, StoreError, StoreHealth,
    MAX_NODE_SUBNET_LEN,
};
use crate::ipnet::Ipv4Net;

pub use self::rpc::CALL_TIMEOUT;
pub use self::session::{RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN, SUBNET_REFRESH_MAX};

/// The TTL of a daemon's etcd lease: its node record vanishes from its peers this long
/// after the daemon stops renewing it (renewals go out every third of it).
pub const NODE_LEASE_TTL: Duration = Duration::from_secs(10);

/// How long a daemon-leased subnet stays reserved for its node after the daemon was last
/// seen, so a node that comes back within it gets the same subnet (and its pods keep their
/// addresses). After it, another node may take the subnet, and the old node's pods are
/// removed then.
pub const SUBNET_GRACE: Duration = Duration::from_secs(3600);

/// The HTTP/2 keep-alive ping interval on the connection to etcd. etcd refuses clients
/// that ping more often than every 5 s (`--grpc-keepalive-min-time`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a keep-alive ping may go unanswered before the connection counts as dead.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a write plans again after its compares failed before giving up.
const MAX_ATTEMPTS: usize = 64;

/// How an [`EtcdStore`] connects and times its leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// The TTL of the handle's etcd lease, in whole seconds (at least 1); etcd may raise it
    /// to its own minimum. Default [`NODE_LEASE_TTL`].
    pub lease_ttl: Duration,
    /// How long a subnet stays reserved after its daemon was last seen. Default
    /// [`SUBNET_GRACE`].
    pub subnet_grace: Duration,
    /// TLS to etcd (`--etcd-cacert`, `--etcd-cert`, `--etcd-key`); none by default.
    pub tls: EtcdTls,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            lease_ttl: NODE_LEASE_TTL,
            subnet_grace: SUBNET_GRACE,
            tls: EtcdTls::default(),
        }
    }
}

/// A handle on the cluster store in etcd (see the module docs).
///
/// Its methods block the calling thread (writes for at most [`CALL_TIMEOUT`] per etcd
/// call); call them from plain threads, not from inside an async runtime. Dropping it
/// stops its background thread and leaves its lease to expire.
pub struct EtcdStore {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    client: Client,
    keys: Keyspace,
    endpoints: Vec<String>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

/// Why a planned write did not happen.
enum WriteError {
    /// Report this.
    Store(StoreError),
    /// The lease the write put a key on has expired.
    LeaseGone,
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`HOST:PORT` each), reads the whole store into the
    /// cache, and starts the background thread that keeps it current.
    ///
    /// Must not be called from inside an async runtime (the store runs its own).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for no endpoints, a lease TTL under a second, or TLS files
    /// given without `cacert` or with only one of `cert` and `key`; [`StoreError::Io`] when
    /// a TLS file cannot be read; [`StoreError::Unavailable`] when etcd does not answer
    /// the first read within [`CALL_TIMEOUT`] (or refuses it).
    pub fn connect(endpoints: &[String], options: &EtcdOptions) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid(
                "no etcd endpoint given; expected etcd://HOST:PORT[,HOST:PORT...]".into(),
            ));
        }
        if options.lease_ttl < Duration::from_secs(1) {
            return Err(StoreError::Invalid(format!(
                "etcd lease TTL {:?} is under the 1 s etcd allows",
                options.lease_ttl
            )));
        }
        let (connect_options, scheme) = connect_options(&options.tls)?;
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let keys = Keyspace::new(DEFAULT_PREFIX);
        let unreachable = |reason: String| {
            StoreError::Unavailable(format!(
                "cannot use etcd at {}: {reason}; check that etcd runs there{}",
                endpoints.join(","),
                if scheme == "https" {
                    " and that --etcd-cacert, --etcd-cert and --etcd-key match its certificates"
                } else {
                    " and whether it expects TLS (--etcd-cacert, --etcd-cert, --etcd-key)"
                }
            ))
        };

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("cannot start the etcd client's runtime: {e}")))?;
        let (client, kvs, revision) = runtime
            .block_on(async {
                let client =
                    call("connecting", Client::connect(&urls, Some(connect_options))).await?;
                let (kvs, revision) = rpc::read_all(&client, &keys).await?;
                Ok::<_, CallError>((client, kvs, revision))
            })
            .map_err(|e| unreachable(e.to_string()))?;

        let mut cache = Cache::new(keys.prefix());
        cache.reset(kvs, revision);
        let shared = Arc::new(Shared::new(cache, options.lease_ttl, options.subnet_grace));
        let handle = runtime.handle().clone();
        let thread = {
            let shared = shared.clone();
            let client = client.clone();
            let keys = keys.clone();
            std::thread::Builder::new()
                .name("vswitch-etcd".into())
                .spawn(move || {
                    runtime.block_on(session::run(&shared, client, &keys, revision));
                })
                .map_err(|e| unreachable(format!("cannot start the etcd client's thread: {e}")))?
        };
        Ok(EtcdStore {
            shared,
            runtime: handle,
            client,
            keys,
            endpoints: endpoints.to_vec(),
            thread: Some(thread),
        })
    }

    /// Fails at once while the store is lost.
    fn ensure_connected(&self) -> Result<(), StoreError> {
        match self.shared.lock().lost() {
            None => Ok(()),
            Some(reason) => Err(StoreError::Unavailable(format!(
                "{reason}; reconnecting in the background"
            ))),
        }
    }

    /// The store error of a failed call; a lost etcd is marked so, and the background
    /// session told to reconnect.
    fn failed(&self, e: CallError) -> WriteError {
        match e {
            CallError::Unreachable(reason) => {
                self.shared.mark_lost(&reason);
                self.shared.reconnect.notify_one();
                WriteError::Store(StoreError::Unavailable(reason))
            }
            CallError::Refused(message) => WriteError::Store(StoreError::Invalid(message)),
            CallError::LeaseNotFound => WriteError::LeaseGone,
        }
    }

    fn store_error(&self, e: WriteError) -> StoreError {
        match e {
            WriteError::Store(e) => e,
            WriteError::LeaseGone => StoreError::Unavailable(
                "etcd dropped this daemon's lease during the write; retry".into(),
            ),
        }
    }

    /// Runs one plan as an etcd transaction.
    fn run(&self, plan: &Plan) -> Result<TxnResponse, WriteError> {
        let txn = rpc::transaction(&self.keys, plan);
        let mut kv = self.client.kv_client();
        self.runtime
            .block_on(call("writing the cluster store", kv.txn(txn)))
            .map_err(|e| self.failed(e))
    }

    /// Plans a write against the cache and runs it, again after each failed compare (once
    /// the cache caught up with what made it fail). Returns the planner's result and, if
    /// something was written, etcd's response.
    fn transact<T>(
        &self,
        what: &str,
        mut plan: impl FnMut(View<'_>) -> Result<Outcome<T>, StoreError>,
    ) -> Result<(T, Option<TxnResponse>), WriteError> {
        for _ in 0..MAX_ATTEMPTS {
            self.ensure_connected()?;
            let (outcome, planned_at) = {
                let locked = self.shared.lock();
                (plan(locked.view())?, locked.cache().data_revision())
            };
            let (plan, value) = match outcome {
                Outcome::Unchanged(value) => return Ok((value, None)),
                Outcome::Write(plan, value) => (plan, value),
            };
            let resp = self.run(&plan)?;
            if resp.succeeded() {
                let revision = resp.header().map_or(0, |h| h.revision());
                let changed_keys = changed_anything(&plan, &resp);
                self.shared.wait_for(revision, CALL_TIMEOUT, changed_keys);
                return Ok((value, Some(resp)));
            }
            // A guard failed: a key under the prefix changed after the data the plan was
            // made from, so its event is on the way. Plan again once it is here (not on
            // a progress notification, which etcd before 3.4.25 can send ahead of it).
            self.shared.wait_for_data_after(planned_at, CALL_TIMEOUT);
        }
        Err(WriteError::Store(StoreError::Unavailable(format!(
            "{what}: the cluster store changed under this write {MAX_ATTEMPTS} times in a row; retry"
        ))))
    }

    /// The handle's lease, granted now if it has none.
    fn lease(&self) -> Result<i64, WriteError> {
        let shared = &self.shared;
        let client = &self.client;
        self.runtime
            .block_on(async {
                let mut lease = shared.lease.lock().await;
                if let Some(id) = *lease {
                    return Ok(id);
                }
                let id = session::grant(shared, client).await?;
                *lease = Some(id);
                Ok(id)
            })
            .map_err(|e| self.failed(e))
    }

    /// Forgets `lease` (expired), so the next write or renewal grants a new one.
    fn forget_lease(&self, lease: i64) {
        self.runtime.block_on(async {
            let mut current = self.shared.lease.lock().await;
            if *current == Some(lease) {
                *current = None;
            }
        });
    }
}

impl Drop for EtcdStore {
    /// Stops the background thread. The lease is left to expire (a daemon that restarts
    /// within the TTL keeps its node record without a gap).
    fn drop(&mut self) {
        self.shared.shutdown.notify_one();
        if let Some(thread) = self.thread.take() {
            // A panic on the thread has been printed already; nothing more to do here.
            let _ = thread.join();
        }
    }
}

/// The client options for `tls`, and the URL scheme that goes with them.
fn connect_options(tls: &EtcdTls) -> Result<(ConnectOptions, &'static str), StoreError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CALL_TIMEOUT)
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT);
    if tls.cacert.is_none() && tls.cert.is_none() && tls.key.is_none() {
        return Ok((options, "http"));
    }
    let Some(cacert) = &tls.cacert else {
        return Err(StoreError::Invalid(
            "--etcd-cert and --etcd-key need --etcd-cacert, the CA that signed etcd's certificate"
                .into(),
        ));
    };
    let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(read(cacert)?));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Invalid(
                "--etcd-cert and --etcd-key go together: give both (a client certificate and its key) or neither".into(),
            ))
        }
    }
    Ok((options.with_tls(config), "https"))
}

fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The number of keys the first `count` operations of a transaction deleted.
/// True when a successful transaction changed a key: it put one, or deleted one that
/// existed. (Deleting absent keys makes no new revision and no watch event.)
fn changed_anything(plan: &Plan, resp: &TxnResponse) -> bool {
    plan.ops.iter().any(|op| matches!(op, Op::Put { .. }))
        || resp
            .op_responses()
            .iter()
            .any(|op| matches!(op, TxnOpResponse::Delete(d) if d.deleted() > 0))
}

fn deleted(resp: Option<&TxnResponse>, count: usize) -> i64 {
    resp.map_or(0, |resp| {
        resp.op_responses()
            .iter()
            .take(count)
            .map(|op| match op {
                TxnOpResponse::Delete(d) => d.deleted(),
                _ => 0,
            })
            .sum()
    })
}

impl ClusterStore for EtcdStore {
    fn lease_subnet(
        &mut self,
        node: &str,
        vtep: Ipv4Addr,
        cluster: Ipv4Net,
        subnet_len: u8,
    ) -> Result<NodeRecord, StoreError> {
        check_segment("node name", node)?;
        let cluster = cluster.network();
        if subnet_len < cluster.prefix_len() || subnet_len > MAX_NODE_SUBNET_LEN {
            return Err(StoreError::Invalid(format!(
                "node subnet length /{subnet_len} does not fit cluster CIDR {cluster}; it must lie between /{} and /{MAX_NODE_SUBNET_LEN}",
                cluster.prefix_len()
            )));
        }
        self.ensure_connected()?;
        for _ in 0..2 {
            let lease = self.lease().map_err(|e| self.store_error(e))?;
            let result = self.transact("leasing a node subnet", |view| {
                writes::lease(view, node, vtep, cluster, subnet_len, lease)
            });
            match result {
                Ok((record, _)) => {
                    self.shared.own(node, vtep);
                    return Ok(record);
                }
                Err(WriteError::LeaseGone) => self.forget_lease(lease),
                Err(WriteError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(
            "etcd dropped this daemon's lease twice while leasing its subnet; retry".into(),
        ))
    }

    fn nodes(&mut self) -> Result<Vec<NodeRecord>, StoreError> {
        self.shared.lock().cache().nodes()
    }

    fn cluster(&mut self) -> Result<Option<(Ipv4Net, u8)>, StoreError> {
        Ok(self
            .shared
            .lock()
            .cache()
            .cluster()?
            .map(|(c, _)| (c.cidr, c.subnet_len)))
    }

    fn put_static_node(
        &mut self,
        name: &str,
        vtep: Ipv4Addr,
        subnet: Ipv4Net,
    ) -> Result<(), StoreError> {
        check_segment("node name", name)?;
        if subnet.network() != subnet {
            return Err(StoreError::Invalid(format!(
                "subnet {subnet} has host bits set; did you mean {}?",
                subnet.network()
            )));
        }
        self.transact("adding a static node", |view| {
            writes::put_static(view, name, vtep, subnet)
        })
        .map(|_| ())
        .map_err(|e| self.store_error(e))
    }

    fn remove_node(&mut self, name: &str) -> Result<bool, StoreError> {
        if check_segment("node name", name).is_err() {
            return Ok(false);
        }
        self.ensure_connected()?;
        let kept = self.shared.disown(name);
        let result = self.transact("removing a node", |view| {
            let (plan, counted) = writes::remove_node(view, name)?;
            Ok(Outcome::Write(plan, counted))
        });
        match result {
            Ok((counted, resp)) => Ok(deleted(resp.as_ref(), counted) > 0),
            Err(e) => {
                if let Some(vtep) = kept {
                    self.shared.own(name, vtep);
                }
                Err(self.store_error(e))
            }
        }
    }

    fn put_pod(&mut self, pod: &PodRecord) -> Result<(), StoreError> {
        check_segment("node name", &pod.node)?;
        check_segment("container id", &pod.container_id)?;
        check_segment("interface name", &pod.ifname)?;
        self.transact("recording a pod", |view| writes::put_pod(view, pod))
            .map(|_| ())
            .map_err(|e| self.store_error(e))
    }

    fn remove_pod(
        &mut self,
        node: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<bool, StoreError> {
        let keyable = [node, container_id, ifname]
            .iter()
            .all(|s| check_segment("key", s).is_ok());
        if !keyable {
            return Ok(false);
        }
        let key = pod_key(node, container_id, ifname);
        self.transact("removing a pod", |_| {
            let mut plan = Plan::default();
            plan.ops.push(writes::Op::Delete(key.clone()));
            Ok(Outcome::Write(plan, ()))
        })
        .map(|(_, resp)| deleted(resp.as_ref(), 1) > 0)
        .map_err(|e| self.store_error(e))
    }

    fn pods(&mut self) -> Result<Vec<PodRecord>, StoreError> {
        self.shared.lock().cache().pods()
    }

    fn generation(&mut self) -> Result<u64, StoreError> {
        Ok(self.shared.lock().cache().generation())
    }

    fn apply_objects(
        &mut self,
        put: &[ObjectRecord],
        delete: &[ObjectKey],
    ) -> Result<(), StoreError> {
        let Some(plan) = writes::apply_objects(put, delete)? else {
            return Ok(());
        };
        self.transact("applying objects", |_| Ok(Outcome::Write(plan.clone(), ())))
            .map(|_| ())
            .map_err(|e| self.store_error(e))
    }

    fn objects(&mut self) -> Result<Vec<ObjectRecord>, StoreError> {
        self.shared.lock().cache().objects()
    }

    fn health(&self) -> StoreHealth {
        self.shared.health()
    }
}
