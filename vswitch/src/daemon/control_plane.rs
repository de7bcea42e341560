//! The control plane of one node: it owns the node's address leases ([`NodeState`]), its
//! record in the cluster store, and the map from attachments to switch ports, and turns
//! control-socket requests into TAP devices, leases and data-path commands.
//!
//! Invariants:
//! - every attachment in [`NodeState`] has an entry in `ports`, attached or not;
//! - an address is leased (on disk) before its TAP exists, and freed only after the TAP
//!   is gone, so no address is ever live on two interfaces;
//! - a failed Add leaves nothing behind: no lease, no device, no port.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::control::proto::{
    AttachmentKey, ControlError, ErrorCode, FdbEntry, HostPortInfo, OverlayInfo, PeerInfo,
    PortCounters, PortInfo, Reply, Request, Response, ShowReply, StoreInfo, TablesInfo,
};
use crate::ipnet::Ipv4Net;
use crate::k8s::{parse_documents, Object};
use crate::mac::MacAddr;
use crate::node_state::{Attachment, NodeState, StateError};
use crate::policy::{PodInfo, PolicyModel, PolicySet};
use crate::store::{
    ClusterStore, NodeRecord, ObjectKey, ObjectRecord, PodRecord, StoreError, StoreHealth,
};
use crate::switch::{Location, PortConfig, PortId, PortKind, PortStats};
use crate::sys::tap::Tap;
use crate::sys::{self, iface, netns, SysError};

use super::config::DaemonConfig;
use super::datapath::{DatapathCmd, DatapathHandle, OVERLAY_PORT};
use super::host_port;
use super::overlay_port::OverlayPort;
use super::underlay::{NodeUnderlay, UnderlayError};

/// The port id of the host port `vsw0`.
pub const HOST_PORT: PortId = 0;

/// The lowest port id a pod gets (0 is `vsw0`, 1 the overlay).
const FIRST_POD_PORT: PortId = 2;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cluster store failed.
    #[error("cluster store {url}: {source}")]
    Store {
        /// The store URL.
        url: String,
        /// Why.
        source: crate::store::StoreError,
    },
    /// The node-local state failed.
    #[error("node state in {dir}: {source}")]
    State {
        /// The state dir.
        dir: String,
        /// Why.
        source: StateError,
    },
    /// The host port could not be made.
    #[error("host port vsw0: {0}")]
    HostPort(#[source] SysError),
    /// The data-path thread could not start.
    #[error("starting the data path: {0}")]
    Datapath(#[source] std::io::Error),
    /// The underlay (UDP socket or AF_XDP) could not be opened.
    #[error(transparent)]
    Underlay(#[from] UnderlayError),
}

struct PodPort {
    id: PortId,
    stats: Arc<PortStats>,
    attached: Arc<AtomicBool>,
}

struct HostPort {
    mac: MacAddr,
    address: Ipv4Net,
    stats: Arc<PortStats>,
}

/// One node's control plane. Requests are handled one at a time (the caller holds it
/// behind a mutex), which is what keeps concurrent CNI calls from colliding.
pub struct ControlPlane {
    config: DaemonConfig,
    node: NodeRecord,
    state: NodeState,
    store: Box<dyn ClusterStore>,
    ports: BTreeMap<AttachmentKey, PodPort>,
    host: HostPort,
    overlay_stats: Arc<PortStats>,
    /// The underlay as `show` names it (`udp`, `afxdp (native, copy, 1 queue)`).
    datapath_mode: String,
    /// The store generation last applied to the data path.
    synced_generation: Option<u64>,
    /// Writes to the store were missed (it was unreachable): reconcile when it is back.
    store_behind: bool,
    datapath: DatapathHandle,
}

impl ControlPlane {
    /// Joins the store, leases the node subnet (the same after a restart), opens the
    /// node state, starts the data path, makes (or takes back) `vsw0`, and re-attaches
    /// every pod the state dir lists.
    ///
    /// # Errors
    /// A [`StartError`] saying which part failed.
    pub fn start(config: DaemonConfig) -> Result<ControlPlane, StartError> {
        // The underlay first: a demanded AF_XDP that cannot run ends the start before
        // anything is joined or created.
        let underlay = NodeUnderlay::open(&config)?;
        let datapath_mode = underlay.describe();
        let store_err = |source| StartError::Store {
            url: config.store.clone(),
            source,
        };
        let mut store =
            crate::store::open_with(&config.store, &config.etcd_tls).map_err(store_err)?;
        let node = match store.lease_subnet(
            &config.node,
            config.underlay_ip,
            config.cluster_cidr,
            config.node_subnet_len,
        ) {
            Ok(node) => node,
            // The store is out of reach: a node that ran before keeps its subnet from its
            // own state dir and serves its pods; the lease is renewed once it is back.
            Err(StoreError::Unavailable(why)) => {
                let recorded = NodeState::recorded_subnet(&config.state_dir)
                    .ok()
                    .flatten()
                    .ok_or_else(|| store_err(StoreError::Unavailable(why.clone())))?;
                eprintln!(
                    "vswitchd: cluster store unavailable ({why}); starting with subnet {recorded} from {}, to be confirmed when it is back",
                    config.state_dir.display()
                );
                NodeRecord {
                    name: config.node.clone(),
                    vtep: config.underlay_ip,
                    subnet: recorded,
                    is_static: false,
                }
            }
            Err(e) => return Err(store_err(e)),
        };
        let state = NodeState::open(&config.state_dir, node.subnet).map_err(|source| {
            StartError::State {
                dir: config.state_dir.display().to_string(),
                source,
            }
        })?;
        let datapath =
            DatapathHandle::start(config.switch, config.mtu).map_err(StartError::Datapath)?;

        let gateway = state.gateway();
        let address = prefixed(gateway, config.cluster_cidr);
        let mac = MacAddr::from_ipv4(gateway);
        let tap = host_port::open(address, mac, config.mtu).map_err(StartError::HostPort)?;
        let stats = Arc::new(PortStats::default());
        let host_config = PortConfig {
            kind: PortKind::Host,
            mac,
            ip: Some(gateway),
            security: false,
        };
        let _ = datapath.send(DatapathCmd::SetAddress(gateway, mac));
        let _ = datapath.send(DatapathCmd::AddPort {
            id: HOST_PORT,
            tap,
            config: host_config,
            stats: Arc::clone(&stats),
            attached: Arc::new(AtomicBool::new(false)),
        });

        let overlay_stats = Arc::new(PortStats::default());
        let overlay =
            OverlayPort::new(underlay, config.vni, config.mtu, Arc::clone(&overlay_stats));
        let _ = datapath.send(DatapathCmd::AttachOverlay(Box::new(overlay)));

        let mut plane = ControlPlane {
            config,
            node,
            state,
            store,
            ports: BTreeMap::new(),
            host: HostPort {
                mac,
                address,
                stats,
            },
            overlay_stats,
            datapath_mode,
            synced_generation: None,
            store_behind: true,
            datapath,
        };
        plane.reattach_all();
        plane.sync_from_store();
        Ok(plane)
    }

    /// This node's record in the store.
    pub fn node(&self) -> &NodeRecord {
        &self.node
    }

    /// True while the data path runs.
    pub fn is_healthy(&self) -> bool {
        self.datapath.is_running()
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Add {
                key,
                netns,
                pod_namespace,
                pod_name,
            } => self
                .add(key, netns, pod_namespace, pod_name)
                .map(Reply::Added),
            Request::Del { key } => self.del(&key).map(|()| Reply::Done),
            Request::Check { key, netns } => self.check(&key, &netns).map(|()| Reply::Done),
            Request::Status => self.status().map(|()| Reply::Done),
            Request::Gc { valid } => self.gc(&valid).map(Reply::Collected),
            Request::Show => Ok(Reply::Show(Box::new(self.show()))),
            Request::Fdb => self.fdb().map(Reply::Fdb),
            Request::NodeAdd {
                name,
                underlay_ip,
                subnet,
            } => self
                .node_add(&name, underlay_ip, subnet)
                .map(|()| Reply::Done),
            Request::Apply { documents } => self.apply(&documents).map(Reply::Objects),
            Request::Delete { documents } => self.delete(&documents).map(Reply::Objects),
            Request::Objects => self
                .store
                .objects()
                .map(Reply::Stored)
                .map_err(|e| ControlError::new(ErrorCode::Io, e.to_string())),
            Request::NodeRemove { name, force } => {
                self.node_remove(&name, force).map(|()| Reply::Done)
            }
        };
        match result {
            Ok(reply) => Response::Ok(reply),
            Err(error) => Response::Error(error),
        }
    }

    fn add(
        &mut self,
        key: AttachmentKey,
        netns_path: String,
        pod_namespace: String,
        pod_name: String,
    ) -> Result<PortInfo, ControlError> {
        if self.state.get(&key).is_some() {
            return Err(ControlError::new(
                ErrorCode::InterfaceExists,
                format!(
                    "container {} already has interface {} on this node (DEL it first)",
                    key.container_id, key.ifname
                ),
            ));
        }
        // Fail on a bad namespace before anything is leased.
        std::fs::File::open(&netns_path).map_err(|e| {
            ControlError::new(
                ErrorCode::InvalidNetns,
                format!("network namespace {netns_path}: {e}"),
            )
        })?;
        let attachment = self
            .state
            .allocate(key.clone(), netns_path.clone(), pod_namespace, pod_name)
            .map_err(state_error)?;
        match self.create_port(&attachment) {
            Ok(info) => Ok(info),
            Err(error) => {
                // Leave nothing behind: the lease goes, the device was never made.
                if let Err(e) = self.state.release(&key) {
                    eprintln!(
                        "vswitchd: releasing the address of a failed ADD ({}): {e}",
                        key.container_id
                    );
                }
                Err(error)
            }
        }
    }

    /// Makes the TAP inside the pod and attaches it; on error nothing of it remains.
    fn create_port(&mut self, attachment: &Attachment) -> Result<PortInfo, ControlError> {
        let address = prefixed(attachment.ip, self.config.cluster_cidr);
        let gateway = self.state.gateway();
        let (ifname, mac, mtu) = (
            attachment.key.ifname.clone(),
            attachment.mac,
            self.config.mtu,
        );
        let tap = netns::run_in_netns(Path::new(&attachment.netns), move || -> sys::Result<Tap> {
            let tap = Tap::create(&ifname, false)?;
            let configured = (|| {
                iface::disable_ipv6(&ifname)?;
                iface::set_mac(&ifname, mac)?;
                iface::set_mtu(&ifname, mtu)?;
                iface::set_ipv4(&ifname, address)?;
                iface::set_up(&ifname)?;
                iface::add_default_route(gateway, &ifname)
            })();
            match configured {
                Ok(()) => Ok(tap),
                Err(e) => {
                    let _ = tap.set_persist(false);
                    Err(e)
                }
            }
        })
        .and_then(|made| made)
        .map_err(sys_error)?;

        let pod = pod_record(&self.config.node, attachment);
        match self.store.put_pod(&pod) {
            Ok(()) => {}
            // The pod works without the store (IPAM is node-local); the record is written
            // by the reconciliation once the store is back.
            Err(StoreError::Unavailable(_)) => self.store_behind = true,
            Err(e) => {
                let _ = tap.set_persist(false);
                return Err(ControlError::new(
                    ErrorCode::Io,
                    format!("recording the pod in the cluster store: {e}"),
                ));
            }
        }
        self.attach(attachment, tap);
        Ok(self.port_info(attachment))
    }

    /// Hands a TAP to the data path as the attachment's port.
    fn attach(&mut self, attachment: &Attachment, tap: Tap) {
        let id = self.port_for(&attachment.key);
        let config = PortConfig {
            kind: PortKind::Pod,
            mac: attachment.mac,
            ip: Some(attachment.ip),
            security: true,
        };
        let Some(port) = self.ports.get(&attachment.key) else {
            return;
        };
        let _ = self
            .datapath
            .send(DatapathCmd::SetAddress(attachment.ip, attachment.mac));
        let _ = self.datapath.send(DatapathCmd::AddPort {
            id,
            tap,
            config,
            stats: Arc::clone(&port.stats),
            attached: Arc::clone(&port.attached),
        });
        // The data path sets `attached` when it has the port; say so now for Add's reply.
        port.attached.store(true, Ordering::Relaxed);
    }

    /// The port entry of an attachment, made on first use with the lowest free id.
    fn port_for(&mut self, key: &AttachmentKey) -> PortId {
        if let Some(port) = self.ports.get(key) {
            return port.id;
        }
        let mut used: Vec<PortId> = self.ports.values().map(|p| p.id).collect();
        used.sort_unstable();
        let mut id: PortId = FIRST_POD_PORT;
        for taken in used {
            if taken == id {
                id = id.saturating_add(1);
            } else if taken > id {
                break;
            }
        }
        self.ports.insert(
            key.clone(),
            PodPort {
                id,
                stats: Arc::new(PortStats::default()),
                attached: Arc::new(AtomicBool::new(false)),
            },
        );
        id
    }

    /// Takes back every port the state dir lists (after a restart).
    fn reattach_all(&mut self) {
        let attachments: Vec<Attachment> = self.state.attachments().cloned().collect();
        for attachment in attachments {
            self.port_for(&attachment.key);
            let ifname = attachment.key.ifname.clone();
            match netns::run_in_netns(Path::new(&attachment.netns), move || {
                Tap::attach(&ifname, false)
            })
            .and_then(|made| made)
            {
                Ok(tap) => {
                    self.attach(&attachment, tap);
                    eprintln!(
                        "vswitchd: re-attached {}/{} ({} in {})",
                        attachment.pod_namespace,
                        attachment.pod_name,
                        attachment.key.ifname,
                        attachment.netns
                    );
                }
                Err(e) => eprintln!(
                    "vswitchd: pod {}/{} keeps its address {} but is not attached: {e}",
                    attachment.pod_namespace, attachment.pod_name, attachment.ip
                ),
            }
        }
    }

    /// Makes the store say what this node knows: its node record and subnet lease, and
    /// exactly its own pods (as the state dir lists them). Run at start and whenever the
    /// store comes back after writes were missed; `store_behind` stays set until it
    /// succeeds.
    pub fn reconcile_store(&mut self) {
        match self.reconcile() {
            Ok(()) => self.store_behind = false,
            Err(e) => {
                if !matches!(e, StoreError::Unavailable(_)) {
                    eprintln!(
                        "vswitchd: reconciling this node's records in the cluster store: {e}"
                    );
                }
                self.store_behind = true;
            }
        }
    }

    fn reconcile(&mut self) -> Result<(), StoreError> {
        let node = self.store.lease_subnet(
            &self.config.node,
            self.config.underlay_ip,
            self.config.cluster_cidr,
            self.config.node_subnet_len,
        )?;
        if node.subnet != self.node.subnet {
            eprintln!(
                "vswitchd: the cluster store now gives this node subnet {}, but its pods hold addresses of {}; keeping {} (restore the store, or drain and restart this node)",
                node.subnet, self.node.subnet, self.node.subnet
            );
        }
        let own = self.config.node.clone();
        let wanted: Vec<PodRecord> = self
            .state
            .attachments()
            .map(|a| pod_record(&own, a))
            .collect();
        // One read serves both passes: a stale record is never one of `wanted`.
        let present = self.store.pods()?;
        for stale in present
            .iter()
            .filter(|p| p.node == own && !wanted.contains(p))
        {
            self.store
                .remove_pod(&own, &stale.container_id, &stale.ifname)?;
        }
        for pod in wanted {
            if !present.contains(&pod) {
                self.store.put_pod(&pod)?;
            }
        }
        Ok(())
    }

    /// Applies the cluster store to the data path when it changed since the last call:
    /// the peer VTEPs, and the stations (pods and `vsw0`s) of the other nodes. Cheap when
    /// nothing changed (one generation read), so the daemon calls it every 250 ms.
    pub fn sync_from_store(&mut self) {
        if self.store_behind && self.store.health() == StoreHealth::Connected {
            self.reconcile_store();
        }
        let generation = match self.store.generation() {
            Ok(generation) => generation,
            Err(e) => {
                eprintln!("vswitchd: reading the cluster store: {e}");
                return;
            }
        };
        if self.synced_generation == Some(generation) {
            return;
        }
        let (nodes, pods) = match (self.store.nodes(), self.store.pods()) {
            (Ok(nodes), Ok(pods)) => (nodes, pods),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("vswitchd: reading the cluster store: {e}");
                return;
            }
        };
        let own = self.config.node.as_str();
        let vteps: HashMap<&str, Ipv4Addr> = nodes
            .iter()
            .filter(|n| n.name != own)
            .map(|n| (n.name.as_str(), n.vtep))
            .collect();
        let peers: HashSet<Ipv4Addr> = vteps
            .values()
            .copied()
            .filter(|&v| v != self.config.underlay_ip)
            .collect();
        let mut stations = HashMap::new();
        for node in nodes.iter().filter(|n| n.name != own && !n.is_static) {
            if let Some(gateway) = node.subnet.nth(1) {
                stations.insert(gateway, (MacAddr::from_ipv4(gateway), node.vtep));
            }
        }
        for pod in pods.iter().filter(|p| p.node != own) {
            if let Some(&vtep) = vteps.get(pod.node.as_str()) {
                stations.insert(pod.ip, (pod.mac, vtep));
            }
        }
        let _ = self.datapath.send(DatapathCmd::SetPeers(peers));
        let _ = self.datapath.send(DatapathCmd::SetRemoteStations(stations));
        match self.store.objects() {
            Ok(objects) => {
                let policy = compile_policy(&objects, &nodes, &pods);
                let _ = self.datapath.send(DatapathCmd::SetPolicy(Arc::new(policy)));
            }
            Err(e) => {
                eprintln!("vswitchd: reading policy objects from the cluster store: {e}");
                return;
            }
        }
        self.synced_generation = Some(generation);
    }

    fn apply(&mut self, documents: &str) -> Result<Vec<ObjectKey>, ControlError> {
        let objects = parse_documents(documents)
            .map_err(|e| ControlError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let records: Vec<_> = objects.iter().map(Object::to_record).collect();
        self.store
            .apply_objects(&records, &[])
            .map_err(|e| ControlError::new(ErrorCode::Io, format!("nothing applied: {e}")))?;
        Ok(objects.iter().map(Object::key).collect())
    }

    fn delete(&mut self, documents: &str) -> Result<Vec<ObjectKey>, ControlError> {
        let objects = parse_documents(documents)
            .map_err(|e| ControlError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let keys: Vec<ObjectKey> = objects.iter().map(Object::key).collect();
        self.store
            .apply_objects(&[], &keys)
            .map_err(|e| ControlError::new(ErrorCode::Io, format!("nothing deleted: {e}")))?;
        Ok(keys)
    }

    fn node_add(
        &mut self,
        name: &str,
        underlay_ip: Ipv4Addr,
        subnet: Ipv4Net,
    ) -> Result<(), ControlError> {
        self.store
            .put_static_node(name, underlay_ip, subnet)
            .map_err(|e| ControlError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        self.sync_from_store();
        Ok(())
    }

    fn node_remove(&mut self, name: &str, force: bool) -> Result<(), ControlError> {
        let nodes = self
            .store
            .nodes()
            .map_err(|e| ControlError::new(ErrorCode::Io, e.to_string()))?;
        let Some(node) = nodes.iter().find(|n| n.name == name) else {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                format!("no node named {name} in the store"),
            ));
        };
        if name == self.config.node {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                format!("{name} is this node; stop its vswitchd instead"),
            ));
        }
        if !node.is_static && !force {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "{name} is run by a vswitchd; remove it only once decommissioned, with --force"
                ),
            ));
        }
        self.store
            .remove_node(name)
            .map_err(|e| ControlError::new(ErrorCode::Io, e.to_string()))?;
        self.sync_from_store();
        Ok(())
    }

    fn del(&mut self, key: &AttachmentKey) -> Result<(), ControlError> {
        let Some(attachment) = self.state.get(key).cloned() else {
            return Ok(());
        };
        // The device goes first, then the lease: the address is never free while in use.
        let tap = match self.ports.get(key) {
            Some(port) => self
                .datapath
                .ask(|reply| DatapathCmd::RemovePort { id: port.id, reply })
                .ok()
                .flatten(),
            None => None,
        };
        match tap {
            Some(tap) => {
                if let Err(e) = tap.set_persist(false) {
                    eprintln!(
                        "vswitchd: DEL {}: clearing persistence of {}: {e}",
                        key.container_id, key.ifname
                    );
                }
            }
            None => remove_detached_tap(&attachment),
        }
        let _ = self
            .datapath
            .send(DatapathCmd::RemoveAddress(attachment.ip));
        self.state.release(key).map_err(state_error)?;
        self.ports.remove(key);
        if let Err(e) = self
            .store
            .remove_pod(&self.config.node, &key.container_id, &key.ifname)
        {
            if !matches!(e, StoreError::Unavailable(_)) {
                eprintln!(
                    "vswitchd: DEL {}: removing the pod from the cluster store: {e}",
                    key.container_id
                );
            }
            self.store_behind = true;
        }
        Ok(())
    }

    fn check(&mut self, key: &AttachmentKey, netns_path: &str) -> Result<(), ControlError> {
        let failed = |what: String| ControlError::new(ErrorCode::CheckFailed, what);
        let attachment = self.state.get(key).cloned().ok_or_else(|| {
            ControlError::new(
                ErrorCode::UnknownAttachment,
                format!(
                    "no attachment {}/{} on this node",
                    key.container_id, key.ifname
                ),
            )
        })?;
        if attachment.netns != netns_path {
            return Err(failed(format!(
                "attachment lives in {}, not in {netns_path}",
                attachment.netns
            )));
        }
        let attached = self
            .ports
            .get(key)
            .is_some_and(|p| p.attached.load(Ordering::Relaxed));
        if !attached {
            return Err(failed(format!(
                "{} is not attached to the switch",
                key.ifname
            )));
        }
        let ifname = key.ifname.clone();
        let info = netns::run_in_netns(Path::new(netns_path), move || iface::inspect(&ifname))
            .and_then(|found| found)
            .map_err(sys_error)?
            .ok_or_else(|| {
                failed(format!(
                    "interface {} is missing from {netns_path}",
                    key.ifname
                ))
            })?;
        let want = prefixed(attachment.ip, self.config.cluster_cidr);
        if info.mac != attachment.mac {
            return Err(failed(format!(
                "{} has MAC {}, expected {}",
                key.ifname, info.mac, attachment.mac
            )));
        }
        if info.ipv4 != Some(want) {
            let have = info
                .ipv4
                .map_or_else(|| "no address".to_owned(), |a| a.to_string());
            return Err(failed(format!(
                "{} has {have}, expected {want}",
                key.ifname
            )));
        }
        if !info.up {
            return Err(failed(format!("{} is down", key.ifname)));
        }
        if info.mtu != self.config.mtu {
            return Err(failed(format!(
                "{} has MTU {}, expected {}",
                key.ifname, info.mtu, self.config.mtu
            )));
        }
        let gateway = self.state.gateway();
        if info.default_gateway != Some(gateway) {
            return Err(failed(format!(
                "the default route of {netns_path} is not via {gateway} on {}",
                key.ifname
            )));
        }
        Ok(())
    }

    fn status(&self) -> Result<(), ControlError> {
        if self.datapath.is_running() {
            Ok(())
        } else {
            Err(ControlError::new(
                ErrorCode::NotReady,
                "the data path has stopped; restart vswitchd",
            ))
        }
    }

    fn gc(&mut self, valid: &[AttachmentKey]) -> Result<Vec<AttachmentKey>, ControlError> {
        let stale: Vec<AttachmentKey> = self
            .state
            .attachments()
            .map(|a| a.key.clone())
            .filter(|key| !valid.contains(key))
            .collect();
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for key in stale {
            match self.del(&key) {
                Ok(()) => removed.push(key),
                Err(e) => errors.push(format!(
                    "{}/{}: {}",
                    key.container_id, key.ifname, e.message
                )),
            }
        }
        if errors.is_empty() {
            Ok(removed)
        } else {
            Err(ControlError::new(
                ErrorCode::Io,
                format!("GC could not remove: {}", errors.join("; ")),
            ))
        }
    }

    fn port_info(&self, attachment: &Attachment) -> PortInfo {
        let port = self.ports.get(&attachment.key);
        PortInfo {
            key: attachment.key.clone(),
            pod: format!("{}/{}", attachment.pod_namespace, attachment.pod_name),
            netns: attachment.netns.clone(),
            address: prefixed(attachment.ip, self.config.cluster_cidr),
            gateway: self.state.gateway(),
            mac: attachment.mac,
            mtu: self.config.mtu,
            attached: port.is_some_and(|p| p.attached.load(Ordering::Relaxed)),
            counters: port.map(|p| counters(&p.stats)).unwrap_or_default(),
        }
    }

    fn show(&mut self) -> ShowReply {
        let peers = match self.store.nodes() {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| n.name != self.config.node)
                .map(|n| PeerInfo {
                    node: n.name,
                    vtep: n.vtep,
                    subnet: n.subnet,
                    is_static: n.is_static,
                })
                .collect(),
            Err(e) => {
                eprintln!("vswitchd: show: reading peers from the cluster store: {e}");
                Vec::new()
            }
        };
        let tables = self.datapath.ask(DatapathCmd::Tables).unwrap_or_else(|e| {
            eprintln!("vswitchd: show: reading the switch's tables: {e}");
            TablesInfo::default()
        });
        ShowReply {
            node: self.config.node.clone(),
            subnet: self.node.subnet,
            vtep: self.config.underlay_ip,
            cluster_cidr: self.config.cluster_cidr,
            mtu: self.config.mtu,
            datapath: self.datapath_mode.clone(),
            host_port: HostPortInfo {
                ifname: host_port::NAME.to_owned(),
                address: self.host.address,
                mac: self.host.mac,
                counters: counters(&self.host.stats),
            },
            store: StoreInfo {
                url: self.config.store.clone(),
                health: self.store.health(),
                behind: self.store_behind,
            },
            tables,
            overlay: OverlayInfo {
                vni: self.config.vni,
                vxlan_port: self.config.vxlan_port,
                counters: counters(&self.overlay_stats),
            },
            ports: self
                .state
                .attachments()
                .map(|a| self.port_info(a))
                .collect(),
            peers,
        }
    }

    fn fdb(&self) -> Result<Vec<FdbEntry>, ControlError> {
        let entries = self
            .datapath
            .ask(DatapathCmd::Fdb)
            .map_err(|e| ControlError::new(ErrorCode::NotReady, e.to_string()))?;
        let names: BTreeMap<PortId, String> = self
            .state
            .attachments()
            .filter_map(|a| {
                let port = self.ports.get(&a.key)?;
                Some((
                    port.id,
                    format!("{}/{}:{}", a.pod_namespace, a.pod_name, a.key.ifname),
                ))
            })
            .collect();
        Ok(entries
            .into_iter()
            .map(|(mac, location, idle)| FdbEntry {
                mac,
                location: match location {
                    Location::Port(HOST_PORT) => host_port::NAME.to_owned(),
                    Location::Port(OVERLAY_PORT) => "overlay".to_owned(),
                    Location::Port(id) => names
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| format!("port:{id}")),
                    Location::Vtep(ip) => format!("vtep:{ip}"),
                },
                age_secs: idle.as_secs(),
            })
            .collect())
    }
}

/// Compiles the policy every node enforces from what the store holds: the objects
/// (`apply`), every pod of every node with its address, and every daemon node's `vsw0`
/// address (traffic between a pod and its own node is always allowed). An object that
/// no longer decodes (written by another version) is left out with a log line.
fn compile_policy(objects: &[ObjectRecord], nodes: &[NodeRecord], pods: &[PodRecord]) -> PolicySet {
    let objects: Vec<Object> = objects
        .iter()
        .filter_map(|record| match Object::from_record(record) {
            Ok(object) => Some(object),
            Err(e) => {
                eprintln!("vswitchd: ignoring a stored object: {e}");
                None
            }
        })
        .collect();
    let pods = pods
        .iter()
        .map(|pod| PodInfo {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            ip: pod.ip,
            labels: BTreeMap::new(),
            pod: None,
            node: Some(pod.node.clone()),
        })
        .collect();
    let mut model = PolicyModel::from_objects(&objects, pods);
    model.host_addresses = nodes
        .iter()
        .filter(|node| !node.is_static)
        .filter_map(|node| Some((node.name.clone(), node.subnet.nth(1)?)))
        .collect();
    PolicySet::compile(&model)
}

/// The store record of one of this node's attachments.
fn pod_record(node: &str, attachment: &Attachment) -> PodRecord {
    PodRecord {
        namespace: attachment.pod_namespace.clone(),
        name: attachment.pod_name.clone(),
        node: node.to_owned(),
        ip: attachment.ip,
        mac: attachment.mac,
        container_id: attachment.key.container_id.clone(),
        ifname: attachment.key.ifname.clone(),
    }
}

/// Deletes an attachment's TAP that the daemon holds no descriptor for (best effort:
/// DEL must succeed when the namespace or the device is already gone).
fn remove_detached_tap(attachment: &Attachment) {
    let ifname = attachment.key.ifname.clone();
    let outcome = netns::run_in_netns(Path::new(&attachment.netns), move || {
        Tap::attach(&ifname, false).and_then(|tap| tap.set_persist(false))
    });
    if let Ok(Err(e)) | Err(e) = outcome {
        eprintln!(
            "vswitchd: DEL {}: no device to remove ({e})",
            attachment.key.container_id
        );
    }
}

/// `ip` with the cluster CIDR's prefix length.
fn prefixed(ip: Ipv4Addr, cluster: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new_const(ip, cluster.prefix_len())
}

fn counters(stats: &PortStats) -> PortCounters {
    let snapshot = stats.snapshot();
    PortCounters {
        rx_packets: snapshot.rx_packets,
        rx_bytes: snapshot.rx_bytes,
        tx_packets: snapshot.tx_packets,
        tx_bytes: snapshot.tx_bytes,
        mac_evictions: snapshot.mac_evictions,
        drops: snapshot
            .drops
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(reason, n)| (reason.to_owned(), n))
            .collect(),
    }
}

fn state_error(error: StateError) -> ControlError {
    let code = match error {
        StateError::Exhausted(_) => ErrorCode::AddressesExhausted,
        StateError::Exists(_) => ErrorCode::InterfaceExists,
        StateError::Io { .. } => ErrorCode::Io,
        _ => ErrorCode::Internal,
    };
    ControlError::new(code, error.to_string())
}

fn sys_error(error: SysError) -> ControlError {
    let code = match error {
        SysError::NetnsOpen { .. } | SysError::Setns { .. } => ErrorCode::InvalidNetns,
        SysError::InterfaceExists(_) => ErrorCode::InterfaceExists,
        SysError::InvalidName(_) => ErrorCode::InvalidRequest,
        _ => ErrorCode::Internal,
    };
    ControlError::new(code, error.to_string())
}
