//! The topology: an underlay fabric and N nodes, each a namespace with its own daemon.
//!
//! ```text
//!   fabric ns:  br0 192.168.250.1/24 ── n1 ─┐ ── n2 ─┐ ...
//!                                           │ veth   │ veth
//!   node1 ns:   ul0 192.168.250.11/24 ──────┘        │      vswitchd --node node1
//!   node2 ns:   ul0 192.168.250.12/24 ───────────────┘      vswitchd --node node2
//! ```
//!
//! The fabric stands for the physical network; the product never touches it. Nodes are
//! numbered from 1. All daemons share one cluster store: by default a `file:` store in the
//! cluster's temporary directory; with [`StoreKind::Etcd`] an etcd server running in the
//! fabric namespace on 192.168.250.1:2379 (see [`Etcd`]), which every node reaches through
//! its default route. [`Cluster::builder`] chooses the store, extra daemon flags, and
//! whether the daemons start one after the other (each ready before the next starts) or
//! all at once.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use crate::cmd::Finished;
use crate::cni::{netconf, CniOutput, CniRequest};
use crate::ctl::Ctl;
use crate::daemon::{Daemon, DaemonConfig};
use crate::env::preflight;
use crate::etcd::Etcd;
use crate::net::parse_cidr;
use crate::netns::Netns;
use crate::tempdir::TempDir;

/// The fabric bridge's address; every node's default gateway on the underlay.
pub const FABRIC_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 250, 1);
/// The underlay's prefix length.
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// The most nodes a cluster can have on the /24 underlay.
const MAX_NODES: usize = 200;

/// One node: a namespace joined to the fabric by `ul0`, and its `vswitchd`.
#[derive(Debug)]
pub struct Node {
    // Field order is drop order: the daemon goes before its namespace.
    daemon: Mutex<Daemon>,
    netns: Netns,
    number: usize,
    name: String,
    underlay_ip: Ipv4Addr,
    socket: PathBuf,
    state_dir: PathBuf,
}

impl Node {
    /// Its number, from 1.
    pub fn number(&self) -> usize {
        self.number
    }

    /// Its name in the cluster (`node<number>`, the daemon's `--node`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace: "the host" for the daemon and the CNI plugin.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Its underlay (VTEP) address, 192.168.250.(10+number).
    pub fn underlay_ip(&self) -> Ipv4Addr {
        self.underlay_ip
    }

    /// Its daemon's control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its daemon's `--state-dir` (`attachments.json`, the address leases, lives there).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Its daemon, to kill, stop, restart or read the log of.
    ///
    /// # Panics
    /// When another thread panicked while holding it.
    pub fn daemon(&self) -> MutexGuard<'_, Daemon> {
        self.daemon.lock().expect("daemon lock poisoned")
    }

    /// `kill -9` its daemon.
    pub fn kill9(&self) {
        self.daemon().kill9();
    }

    /// Stops its daemon cleanly (SIGTERM).
    pub fn stop(&self) {
        self.daemon().stop();
    }

    /// Starts its daemon again with the same arguments (stopping it first if it runs) and
    /// waits until it answers.
    pub fn restart(&self) {
        self.daemon().restart();
    }

    /// `vswitchctl` for its daemon.
    pub fn ctl(&self) -> Ctl {
        Ctl::new(&self.socket)
    }

    /// `vswitchctl show --json`.
    pub fn show(&self) -> Value {
        self.ctl().show()
    }

    /// `vswitchctl fdb --json`.
    pub fn fdb(&self) -> Vec<Value> {
        self.ctl().fdb()
    }

    /// Its pod subnet as `show --json` reports it (`"10.244.1.0/24"`).
    ///
    /// # Panics
    /// When `show` fails or has no `subnet`.
    pub fn subnet(&self) -> String {
        let show = self.show();
        show.get("subnet")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("`show --json` has no `subnet`: {show}"))
            .to_owned()
    }

    /// The address of its host port `vsw0` (the pods' gateway), from `show --json`.
    ///
    /// # Panics
    /// When `show` fails or has no `host_port.address`.
    pub fn gateway(&self) -> Ipv4Addr {
        let show = self.show();
        let address = show
            .get("host_port")
            .and_then(|h| h.get("address"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("`show --json` has no `host_port.address`: {show}"));
        parse_cidr(address).0
    }

    /// The network configuration a runtime on this node hands the plugin.
    pub fn netconf(&self, version: &str) -> Value {
        netconf(&self.socket, version)
    }

    /// Runs the CNI plugin on this node (inside its namespace).
    pub fn cni(&self, request: &CniRequest) -> CniOutput {
        request.run_in(&self.netns)
    }

    /// CNI STATUS (cniVersion 1.1.0).
    pub fn cni_status(&self) -> CniOutput {
        self.cni(&CniRequest::new("STATUS").config(&self.netconf("1.1.0")))
    }
}

/// Which cluster store the daemons of a cluster share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `--store file:<cluster dir>/cluster.json` (the default).
    File,
    /// `--store etcd://192.168.250.1:2379`: an [`Etcd`] in the fabric namespace.
    Etcd,
}

/// How to build a [`Cluster`]: `Cluster::builder(3).store(StoreKind::Etcd)
/// .start_together().build()`. The defaults are those of [`Cluster::new`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: usize,
    store: StoreKind,
    extra: Vec<String>,
    per_node: Vec<(usize, Vec<String>)>,
    underlay_queues: u32,
    together: bool,
    state_root: Option<PathBuf>,
    store_file: Option<PathBuf>,
}

impl ClusterBuilder {
    /// The store the daemons share (default [`StoreKind::File`]).
    pub fn store(mut self, store: StoreKind) -> ClusterBuilder {
        self.store = store;
        self
    }

    /// Extra flags for every daemon (e.g. `--mtu 1400`), appended to what the harness
    /// passes.
    pub fn daemon_args(mut self, extra: &[&str]) -> ClusterBuilder {
        self.extra.extend(extra.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Extra flags for node `number`'s daemon only (e.g. `--datapath afxdp`), after
    /// those of [`ClusterBuilder::daemon_args`].
    pub fn node_args(mut self, number: usize, extra: &[&str]) -> ClusterBuilder {
        self.per_node
            .push((number, extra.iter().map(|a| (*a).to_owned()).collect()));
        self
    }

    /// Receive and transmit queues of every node's underlay veth, both ends (default 1),
    /// for the AF_XDP underlay's one socket per queue.
    pub fn underlay_queues(mut self, queues: u32) -> ClusterBuilder {
        self.underlay_queues = queues.max(1);
        self
    }

    /// Puts node *i*'s `--state-dir` in `<root>/node<i>` instead of the cluster's
    /// temporary directory: e.g. on a [`crate::Tmpfs`], mounted before the daemons start
    /// so that they see it. `root` must outlive the cluster.
    pub fn state_root(mut self, root: &Path) -> ClusterBuilder {
        self.state_root = Some(root.to_owned());
        self
    }

    /// With [`StoreKind::File`], keeps the store in `path` instead of the cluster's
    /// temporary directory (e.g. on the same [`crate::Tmpfs`] as the state dirs, as
    /// vswitchd's defaults keep both in `/var/lib/vswitch`). `path` must outlive the
    /// cluster.
    pub fn store_file(mut self, path: &Path) -> ClusterBuilder {
        self.store_file = Some(path.to_owned());
        self
    }

    /// Spawns every daemon first and only then waits until each answers, so they all
    /// join the store at the same moment (default: one after the other, each ready
    /// before the next is spawned).
    pub fn start_together(mut self) -> ClusterBuilder {
        self.together = true;
        self
    }

    /// Builds the fabric, the nodes, the store (etcd: started and healthy first) and
    /// the daemons, and waits until every daemon answers.
    ///
    /// # Panics
    /// When not root, a tool or binary is missing, or anything fails to come up.
    pub fn build(self) -> Cluster {
        Cluster::build(&self)
    }
}

/// A fabric and its nodes. Dropping it stops the daemons, then etcd (if any), then
/// deletes the node and fabric namespaces and the temporary directory (store, state,
/// sockets, logs).
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order.
    nodes: Vec<Node>,
    etcd: Option<Mutex<Etcd>>,
    fabric: Netns,
    store_url: String,
    dir: TempDir,
}

impl Cluster {
    /// A fabric and `nodes` nodes, each with a running daemon, sharing a `file:` store.
    ///
    /// # Panics
    /// When not root, a tool or binary is missing, or anything fails to come up.
    pub fn new(nodes: usize) -> Cluster {
        Cluster::builder(nodes).build()
    }

    /// As [`Cluster::new`], with extra flags for every daemon (e.g. `--mtu 1400`).
    ///
    /// # Panics
    /// As [`Cluster::new`].
    pub fn with_daemon_args(nodes: usize, extra: &[&str]) -> Cluster {
        Cluster::builder(nodes).daemon_args(extra).build()
    }

    /// A builder for a cluster of `nodes` nodes, to choose the store and how the
    /// daemons start.
    pub fn builder(nodes: usize) -> ClusterBuilder {
        ClusterBuilder {
            nodes,
            store: StoreKind::File,
            extra: Vec::new(),
            per_node: Vec::new(),
            underlay_queues: 1,
            together: false,
            state_root: None,
            store_file: None,
        }
    }

    /// Builds what `spec` describes.
    fn build(spec: &ClusterBuilder) -> Cluster {
        let nodes = spec.nodes;
        preflight();
        assert!(
            (1..=MAX_NODES).contains(&nodes),
            "a cluster has 1 to {MAX_NODES} nodes, not {nodes}"
        );
        let dir = TempDir::new();
        let fabric = Netns::new("fab");
        fabric.ip_ok(&["link", "add", "br0", "type", "bridge"]);
        fabric.ip_ok(&[
            "addr",
            "add",
            &format!("{FABRIC_ADDRESS}/{UNDERLAY_PREFIX_LEN}"),
            "dev",
            "br0",
        ]);
        fabric.ip_ok(&["link", "set", "br0", "up"]);

        let mut wired = Vec::with_capacity(nodes);
        for number in 1..=nodes {
            let underlay_ip = underlay_ip(number);
            let netns = Netns::new(&format!("n{number}"));
            let fabric_end = format!("n{number}");
            let queues = spec.underlay_queues.to_string();
            netns.ip_ok(&[
                "link",
                "add",
                "ul0",
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "type",
                "veth",
                "peer",
                "name",
                &fabric_end,
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "netns",
                fabric.name(),
            ]);
            fabric.ip_ok(&["link", "set", &fabric_end, "master", "br0", "up"]);
            netns.ip_ok(&[
                "addr",
                "add",
                &format!("{underlay_ip}/{UNDERLAY_PREFIX_LEN}"),
                "dev",
                "ul0",
            ]);
            netns.ip_ok(&["link", "set", "ul0", "up"]);
            netns.ip_ok(&[
                "route",
                "add",
                "default",
                "via",
                &FABRIC_ADDRESS.to_string(),
            ]);
            wired.push((number, underlay_ip, netns));
        }

        // Declared after the namespaces, so a panic below drops it before them.
        let etcd = match spec.store {
            StoreKind::File => None,
            StoreKind::Etcd => Some(Etcd::new(fabric.name(), dir.path())),
        };
        let store_url = match &etcd {
            None => format!(
                "file:{}",
                spec.store_file
                    .clone()
                    .unwrap_or_else(|| dir.path().join("cluster.json"))
                    .display()
            ),
            Some(etcd) => etcd.store_url(),
        };
        let mut built = Vec::with_capacity(nodes);
        for (number, underlay_ip, netns) in wired {
            let name = format!("node{number}");
            let socket = dir.path().join(format!("{name}.sock"));
            let state_dir = spec.state_root.as_deref().unwrap_or(dir.path()).join(&name);
            let mut args: Vec<String> = vec![
                "--node".into(),
                name.clone(),
                "--underlay-ip".into(),
                underlay_ip.to_string(),
                "--store".into(),
                store_url.clone(),
                "--state-dir".into(),
                state_dir.display().to_string(),
                "--socket".into(),
                socket.display().to_string(),
            ];
            args.extend(spec.extra.iter().cloned());
            for (_, extra) in spec.per_node.iter().filter(|(n, _)| *n == number) {
                args.extend(extra.iter().cloned());
            }
            let config = DaemonConfig {
                netns: netns.name().to_owned(),
                args,
                socket: socket.clone(),
                log: dir.path().join(format!("{name}.log")),
            };
            let daemon = if spec.together {
                Daemon::spawn(config)
            } else {
                Daemon::start(config)
            };
            built.push(Node {
                daemon: Mutex::new(daemon),
                netns,
                number,
                name,
                underlay_ip,
                socket,
                state_dir,
            });
        }
        if spec.together {
            for node in &built {
                node.daemon().wait_ready();
            }
        }
        Cluster {
            nodes: built,
            etcd: etcd.map(Mutex::new),
            fabric,
            store_url,
            dir,
        }
    }

    /// Node `number`, counted from 1.
    ///
    /// # Panics
    /// When there is no such node.
    pub fn node(&self, number: usize) -> &Node {
        number
            .checked_sub(1)
            .and_then(|i| self.nodes.get(i))
            .unwrap_or_else(|| panic!("no node {number}: nodes are 1..={}", self.nodes.len()))
    }

    /// All nodes, node 1 first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The underlay fabric's namespace.
    pub fn fabric(&self) -> &Netns {
        &self.fabric
    }

    /// Which store the daemons share.
    pub fn store_kind(&self) -> StoreKind {
        if self.etcd.is_some() {
            StoreKind::Etcd
        } else {
            StoreKind::File
        }
    }

    /// The daemons' `--store` URL.
    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    /// The etcd server of a [`StoreKind::Etcd`] cluster, to kill and start again.
    ///
    /// # Panics
    /// When the cluster uses a `file:` store, or another thread panicked holding it.
    pub fn etcd(&self) -> MutexGuard<'_, Etcd> {
        self.etcd
            .as_ref()
            .expect("this cluster has a file: store, no etcd")
            .lock()
            .expect("etcd lock poisoned")
    }

    /// `etcdctl <args>` (v3 API) against the cluster's etcd, from inside the fabric
    /// namespace; the outcome, success or not.
    ///
    /// # Panics
    /// As [`Cluster::etcd`], and when etcdctl cannot be run or hangs.
    pub fn etcdctl(&self, args: &[&str]) -> Finished {
        self.etcd().etcdctl(args)
    }

    /// The cluster's temporary directory (store, state dirs, sockets, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Node `number`'s underlay address: 192.168.250.(10+number).
fn underlay_ip(number: usize) -> Ipv4Addr {
    let host = u8::try_from(10 + number).expect("node number out of range");
    Ipv4Addr::new(192, 168, 250, host)
}
