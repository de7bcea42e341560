//! NetworkPolicy compiled for verdicts: [`PolicySet::compile`] turns a [`PolicyModel`]
//! into per-pod rule lists whose selector peers are already resolved to sets of pods, so
//! that a verdict on a new connection ([`PolicySet::allows`]) reads no label and no
//! string and allocates nothing.
//!
//! Semantics (`networking.k8s.io/v1`, as kubernetes.io's NetworkPolicy reference says):
//! - A pod is isolated for ingress (egress) when a policy of its namespace selects it
//!   and has `Ingress` (`Egress`) among its effective `policyTypes`. What an isolated
//!   pod may receive (send) is the union of the ingress (egress) rules of every policy
//!   selecting it; a policy with the type and no rules adds nothing (default deny).
//! - A rule allows a connection when one of its peers matches the remote end and one of
//!   its ports matches the destination port and protocol. No peers: any remote, pod or
//!   not. No ports: any port of any protocol, ICMP and every other IP protocol included.
//! - `podSelector` peers are pods of the policy's namespace; `namespaceSelector` peers
//!   all pods of the matching namespaces (whose labels include the automatic
//!   `kubernetes.io/metadata.name`); both in one peer, the matching pods of the matching
//!   namespaces. An `ipBlock` (less its `except` blocks) matches the remote address,
//!   whatever it is: pod addresses too, as Calico does (Kubernetes leaves this to the
//!   implementation).
//! - A numeric port matches that port (or `port..=endPort`) of its protocol; a named
//!   port matches when the destination pod has a container port of that name and
//!   protocol with that number. The destination is the selected pod for ingress and the
//!   remote pod for egress, so an egress named port never matches a non-pod destination.
//! - A connection is allowed when the source's egress and the destination's ingress
//!   allow it ([`PolicySet::allows`]); a non-pod end has no policy of its own.
//! - Always allowed, whatever the policies: a pod to itself, and traffic between a pod
//!   and its own node's host address ([`PolicyModel::host_addresses`]), as Kubernetes
//!   requires for kubelet probes.
//!
//! Pods are told apart by address: when two pods of the model share one, the first in
//! model order is the pod at that address and the others are left out.
//!
//! Costs: a verdict is one or two hash lookups (the ends' addresses), then for each rule
//! of the isolated end one constant-time peer check (a bit test, or a binary search in a
//! short sorted list; `ipBlock`s are compared one by one) and a scan of the rule's ports.
//! The address hash is not keyed: its keys are the model's pod addresses, which a
//! packet cannot choose.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

use crate::k8s::{
    IpBlock, LabelSelector, NetworkPolicy, Peer, PolicyPort, PolicyRule, PortMatch, Protocol,
};
use crate::policy::conntrack::proto;
use crate::policy::model::PolicyModel;

/// NetworkPolicy compiled for verdicts on new connections. See the module documentation
/// for the semantics. The default is [`PolicySet::empty`].
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Pod address (as `u32`) to its index in `pods`.
    index: HashMap<u32, u32, BuildHasherDefault<AddressHasher>>,
    /// The pods, by index.
    pods: Vec<CompiledPod>,
    /// Every rule of every policy that selects at least one pod; pods refer to them by
    /// index.
    rules: Vec<CompiledRule>,
    /// True when at least one pod is isolated in some direction.
    isolates_any: bool,
}

/// One pod's policy.
#[derive(Debug, Clone)]
struct CompiledPod {
    /// Its node's host address, always allowed both ways.
    host: Option<Ipv4Addr>,
    /// `None`: not isolated for ingress; else the rules (indices into `rules`) that
    /// allow traffic in, none for default deny.
    ingress: Option<Box<[u32]>>,
    /// The same for egress.
    egress: Option<Box<[u32]>>,
    /// The pod's container ports whose (name, protocol) some policy names: (the named
    /// port's id, the port number).
    named_ports: Box<[(u32, u16)]>,
}

/// One ingress or egress rule.
#[derive(Debug, Clone)]
struct CompiledRule {
    /// Which remote ends the rule allows.
    peers: Peers,
    /// Which destination ports; empty allows every port of every protocol.
    ports: Box<[CompiledPort]>,
}

/// The peers of a rule.
#[derive(Debug, Clone)]
enum Peers {
    /// No `from` / `to`: every remote end, pod or not.
    Any,
    /// The pods the selector peers resolved to, and the `ipBlock`s.
    Listed {
        /// Pods (by index) matched by a selector peer.
        pods: PodSet,
        /// `ipBlock` peers.
        blocks: Box<[IpBlock]>,
    },
}

/// A set of pod indices, in whichever form is smaller.
#[derive(Debug, Clone)]
enum PodSet {
    /// Sorted, without repeats.
    Sparse(Box<[u32]>),
    /// A bit per pod.
    Dense(Box<[u64]>),
}

/// One `ports` entry of a rule.
#[derive(Debug, Clone, Copy)]
struct CompiledPort {
    /// The protocol it matches.
    protocol: Protocol,
    /// The ports of that protocol it matches.
    ports: PortSpan,
}

/// Which ports of its protocol a [`CompiledPort`] matches.
#[derive(Debug, Clone, Copy)]
enum PortSpan {
    /// Every port.
    All,
    /// `first..=last`.
    Range(u16, u16),
    /// A named port, by the id of its (name, protocol): it matches the ports the
    /// destination pod lists in [`CompiledPod::named_ports`] under that id.
    Named(u32),
}

impl PolicySet {
    /// No policy at all: no pod is isolated, every connection is allowed.
    pub fn empty() -> PolicySet {
        PolicySet::default()
    }

    /// Compiles `model`. Never fails: the objects were validated when they were read.
    /// Pods sharing an address: the first one in `model.pods` counts (see the module
    /// documentation).
    pub fn compile(model: &PolicyModel) -> PolicySet {
        let mut set = PolicySet::default();
        // Pods, by namespace, in model order.
        let mut by_namespace: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut labels = Vec::new();
        let mut objects = Vec::new();
        for info in &model.pods {
            let Ok(slot) = u32::try_from(set.pods.len()) else {
                break;
            };
            let address = u32::from(info.ip);
            if set.index.contains_key(&address) {
                continue;
            }
            set.index.insert(address, slot);
            by_namespace
                .entry(info.namespace.as_str())
                .or_default()
                .push(slot);
            labels.push(&info.labels);
            objects.push(info.pod.as_ref());
            set.pods.push(CompiledPod {
                host: info
                    .node
                    .as_ref()
                    .and_then(|node| model.host_addresses.get(node).copied()),
                ingress: None,
                egress: None,
                named_ports: Box::default(),
            });
        }
        let namespace_labels: BTreeMap<&str, _> = by_namespace
            .keys()
            .map(|&namespace| (namespace, model.namespace_labels(namespace)))
            .collect();
        let mut compiler = RuleCompiler {
            pod_count: set.pods.len(),
            labels: &labels,
            by_namespace: &by_namespace,
            namespace_labels: &namespace_labels,
            named: BTreeMap::new(),
        };
        let mut ingress: Vec<Option<Vec<u32>>> = vec![None; set.pods.len()];
        let mut egress: Vec<Option<Vec<u32>>> = vec![None; set.pods.len()];
        for policy in &model.policies {
            let selected = compiler.selected(policy);
            if selected.is_empty() {
                continue;
            }
            let spec = &policy.spec;
            for (restricts, rules, lists) in [
                (spec.restricts_ingress(), &spec.ingress, &mut ingress),
                (spec.restricts_egress(), &spec.egress, &mut egress),
            ] {
                if !restricts {
                    continue;
                }
                let first = set.rules.len();
                for rule in rules {
                    set.rules.push(compiler.rule(policy, rule));
                }
                let ids = (first..set.rules.len()).filter_map(|id| u32::try_from(id).ok());
                for &slot in &selected {
                    if let Some(list) = lists.get_mut(slot as usize) {
                        list.get_or_insert_with(Vec::new).extend(ids.clone());
                    }
                }
            }
        }
        for (slot, pod) in set.pods.iter_mut().enumerate() {
            pod.ingress = ingress
                .get_mut(slot)
                .and_then(Option::take)
                .map(Vec::into_boxed_slice);
            pod.egress = egress
                .get_mut(slot)
                .and_then(Option::take)
                .map(Vec::into_boxed_slice);
            set.isolates_any |= pod.ingress.is_some() || pod.egress.is_some();
        }
        // Named ports, now that every name the policies use has an id.
        if !compiler.named.is_empty() {
            for (compiled, object) in set.pods.iter_mut().zip(&objects) {
                let Some(pod) = object else {
                    continue;
                };
                compiled.named_ports = pod
                    .ports()
                    .filter_map(|port| {
                        let name = port.name.as_deref()?;
                        let id = compiler.named.get(&(name, port.protocol))?;
                        Some((*id, port.container_port))
                    })
                    .collect();
            }
        }
        set
    }

    /// True when `src`'s egress policy allows a new connection from `src` to `dst`:
    /// IP protocol `protocol` (6 TCP, 17 UDP, 132 SCTP; any other number matches only
    /// rules without ports), destination port `port` (0 for protocols without ports,
    /// ICMP included). True when `src` is not a pod (egress is a pod's policy).
    pub fn allows_egress(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool {
        match self.slot(src) {
            Some(src_slot) => self.egress_allows(src_slot, dst, self.slot(dst), protocol, port),
            None => true,
        }
    }

    /// True when `dst`'s ingress policy allows a new connection from `src` to `dst`
    /// (arguments as for [`PolicySet::allows_egress`]). True when `dst` is not a pod.
    pub fn allows_ingress(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool {
        match self.slot(dst) {
            Some(dst_slot) => self.ingress_allows(src, self.slot(src), dst_slot, protocol, port),
            None => true,
        }
    }

    /// True when both `src`'s egress and `dst`'s ingress allow a new connection (what
    /// the offline matrix reports, and what traffic between two pods of one node needs).
    pub fn allows(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool {
        let src_slot = self.slot(src);
        let dst_slot = self.slot(dst);
        let egress = match src_slot {
            Some(slot) => self.egress_allows(slot, dst, dst_slot, protocol, port),
            None => true,
        };
        egress
            && match dst_slot {
                Some(slot) => self.ingress_allows(src, src_slot, slot, protocol, port),
                None => true,
            }
    }

    /// Whether the pod at `pod` is isolated for (ingress, egress); `(false, false)` for
    /// an address that is no pod's.
    pub fn is_isolated(&self, pod: Ipv4Addr) -> (bool, bool) {
        match self.slot(pod).and_then(|slot| self.pods.get(slot as usize)) {
            Some(compiled) => (compiled.ingress.is_some(), compiled.egress.is_some()),
            None => (false, false),
        }
    }

    /// True when at least one pod is isolated for ingress or egress; false means every
    /// connection is allowed (as with [`PolicySet::empty`]), so a caller may skip
    /// evaluation and connection tracking altogether.
    pub fn isolates_any(&self) -> bool {
        self.isolates_any
    }

    /// The index of the pod at `address`.
    fn slot(&self, address: Ipv4Addr) -> Option<u32> {
        self.index.get(&u32::from(address)).copied()
    }

    /// The egress verdict of the pod `src_slot` for a connection to `dst` (the pod
    /// `dst_slot`, if a pod).
    fn egress_allows(
        &self,
        src_slot: u32,
        dst: Ipv4Addr,
        dst_slot: Option<u32>,
        protocol: u8,
        port: u16,
    ) -> bool {
        let Some(pod) = self.pods.get(src_slot as usize) else {
            return true;
        };
        let Some(rules) = &pod.egress else {
            return true;
        };
        dst_slot == Some(src_slot)
            || pod.host == Some(dst)
            || self.any_rule(rules, dst, dst_slot, dst_slot, protocol, port)
    }

    /// The ingress verdict of the pod `dst_slot` for a connection from `src` (the pod
    /// `src_slot`, if a pod).
    fn ingress_allows(
        &self,
        src: Ipv4Addr,
        src_slot: Option<u32>,
        dst_slot: u32,
        protocol: u8,
        port: u16,
    ) -> bool {
        let Some(pod) = self.pods.get(dst_slot as usize) else {
            return true;
        };
        let Some(rules) = &pod.ingress else {
            return true;
        };
        src_slot == Some(dst_slot)
            || pod.host == Some(src)
            || self.any_rule(rules, src, src_slot, Some(dst_slot), protocol, port)
    }

    /// True when one of `rules` matches the remote end `remote` (the pod `remote_slot`,
    /// if a pod) and the destination port, named ports resolving on the pod
    /// `server_slot`.
    fn any_rule(
        &self,
        rules: &[u32],
        remote: Ipv4Addr,
        remote_slot: Option<u32>,
        server_slot: Option<u32>,
        protocol: u8,
        port: u16,
    ) -> bool {
        let protocol = transport(protocol);
        let server = server_slot.and_then(|slot| self.pods.get(slot as usize));
        rules.iter().any(|&id| {
            self.rules.get(id as usize).is_some_and(|rule| {
                rule.peers.matches(remote, remote_slot) && rule.ports_match(protocol, port, server)
            })
        })
    }
}

impl CompiledRule {
    /// True when the rule's ports allow `port` over `protocol` (`None`: not TCP, UDP or
    /// SCTP) on `server` (the destination pod, `None` when not a pod).
    fn ports_match(
        &self,
        protocol: Option<Protocol>,
        port: u16,
        server: Option<&CompiledPod>,
    ) -> bool {
        if self.ports.is_empty() {
            return true;
        }
        let Some(protocol) = protocol else {
            return false;
        };
        self.ports.iter().any(|entry| {
            entry.protocol == protocol
                && match entry.ports {
                    PortSpan::All => true,
                    PortSpan::Range(first, last) => (first..=last).contains(&port),
                    PortSpan::Named(id) => server.is_some_and(|pod| {
                        pod.named_ports
                            .iter()
                            .any(|&(named, number)| named == id && number == port)
                    }),
                }
        })
    }
}

impl Peers {
    /// True when the remote end `remote` (the pod `slot`, if a pod) is one of the peers.
    fn matches(&self, remote: Ipv4Addr, slot: Option<u32>) -> bool {
        match self {
            Peers::Any => true,
            Peers::Listed { pods, blocks } => {
                slot.is_some_and(|slot| pods.contains(slot))
                    || blocks.iter().any(|block| block.contains(remote))
            }
        }
    }
}

impl PodSet {
    /// The set of `members` (sorted, without repeats) among `pod_count` pods.
    fn new(members: Vec<u32>, pod_count: usize) -> PodSet {
        let words = pod_count.div_ceil(64);
        // A u32 per member against a u64 per 64 pods.
        if members.len() <= 2 * words {
            return PodSet::Sparse(members.into_boxed_slice());
        }
        let mut bits = vec![0_u64; words];
        for member in members {
            if let Some(word) = bits.get_mut(member as usize / 64) {
                *word |= 1 << (member % 64);
            }
        }
        PodSet::Dense(bits.into_boxed_slice())
    }

    fn contains(&self, slot: u32) -> bool {
        match self {
            PodSet::Sparse(members) => members.binary_search(&slot).is_ok(),
            PodSet::Dense(bits) => bits
                .get(slot as usize / 64)
                .is_some_and(|word| word >> (slot % 64) & 1 == 1),
        }
    }
}

/// What [`PolicySet::compile`] needs to know of the pods while compiling rules.
struct RuleCompiler<'a> {
    /// How many pods.
    pod_count: usize,
    /// Each pod's labels, by index.
    labels: &'a [&'a BTreeMap<String, String>],
    /// Pod indices by namespace.
    by_namespace: &'a BTreeMap<&'a str, Vec<u32>>,
    /// The labels of each namespace that has pods.
    namespace_labels: &'a BTreeMap<&'a str, BTreeMap<String, String>>,
    /// The (name, protocol) of every named port in a compiled rule, with its id.
    named: BTreeMap<(&'a str, Protocol), u32>,
}

impl<'a> RuleCompiler<'a> {
    /// The pods `policy` applies to.
    fn selected(&self, policy: &NetworkPolicy) -> Vec<u32> {
        self.pods_of(&policy.metadata.namespace)
            .iter()
            .copied()
            .filter(|&slot| self.pod_matches(slot, &policy.spec.pod_selector))
            .collect()
    }

    /// The pods of `namespace`, in model order.
    fn pods_of(&self, namespace: &str) -> &'a [u32] {
        self.by_namespace
            .get(namespace)
            .map_or(&[][..], Vec::as_slice)
    }

    fn pod_matches(&self, slot: u32, selector: &LabelSelector) -> bool {
        self.labels
            .get(slot as usize)
            .is_some_and(|labels| selector.matches(labels))
    }

    /// `rule` of `policy`, its selector peers resolved.
    fn rule(&mut self, policy: &'a NetworkPolicy, rule: &'a PolicyRule) -> CompiledRule {
        let peers = if rule.peers.is_empty() {
            Peers::Any
        } else {
            let mut pods = Vec::new();
            let mut blocks = Vec::new();
            for peer in &rule.peers {
                match peer {
                    Peer::Pods(selector) => pods.extend(
                        self.pods_of(&policy.metadata.namespace)
                            .iter()
                            .filter(|&&slot| self.pod_matches(slot, selector)),
                    ),
                    Peer::Namespaces(namespaces) => {
                        for namespace in self.namespaces_matching(namespaces) {
                            pods.extend_from_slice(self.pods_of(namespace));
                        }
                    }
                    Peer::PodsInNamespaces {
                        pods: selector,
                        namespaces,
                    } => {
                        for namespace in self.namespaces_matching(namespaces) {
                            pods.extend(
                                self.pods_of(namespace)
                                    .iter()
                                    .filter(|&&slot| self.pod_matches(slot, selector)),
                            );
                        }
                    }
                    Peer::IpBlock(block) => blocks.push(block.clone()),
                }
            }
            pods.sort_unstable();
            pods.dedup();
            Peers::Listed {
                pods: PodSet::new(pods, self.pod_count),
                blocks: blocks.into_boxed_slice(),
            }
        };
        let ports = rule.ports.iter().map(|port| self.port(port)).collect();
        CompiledRule { peers, ports }
    }

    /// The namespaces (with pods) whose labels `selector` matches.
    fn namespaces_matching(
        &self,
        selector: &'a LabelSelector,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.namespace_labels
            .iter()
            .filter(move |(_, labels)| selector.matches(labels))
            .map(|(&namespace, _)| namespace)
    }

    fn port(&mut self, port: &'a PolicyPort) -> CompiledPort {
        let ports = match &port.port {
            None => PortSpan::All,
            Some(PortMatch::Number { port, end_port }) => {
                PortSpan::Range(*port, end_port.unwrap_or(*port))
            }
            Some(PortMatch::Named(name)) => {
                let next = u32::try_from(self.named.len()).unwrap_or(u32::MAX);
                PortSpan::Named(*self.named.entry((name, port.protocol)).or_insert(next))
            }
        };
        CompiledPort {
            protocol: port.protocol,
            ports,
        }
    }
}

/// The port-carrying protocol an IP protocol number is, if any.
fn transport(protocol: u8) -> Option<Protocol> {
    match protocol {
        proto::TCP => Some(Protocol::Tcp),
        proto::UDP => Some(Protocol::Udp),
        proto::SCTP => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The IP protocol number of `protocol`.
pub fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => proto::TCP,
        Protocol::Udp => proto::UDP,
        Protocol::Sctp => proto::SCTP,
    }
}

/// Hashes an IPv4 address (as `u32`) with one multiplication, folding the high half of
/// the product into the low one so that both the bucket index (low bits) and the tag
/// (high bits) depend on every address bit.
#[derive(Debug, Clone, Copy, Default)]
struct AddressHasher(u64);

/// 2^64 / φ, odd.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(GOLDEN);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// The switch asks a compiled policy set about new connections.
impl crate::switch::NewFlowPolicy for PolicySet {
    fn allows_egress(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool {
        PolicySet::allows_egress(self, src, dst, protocol, port)
    }

    fn allows_ingress(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool {
        PolicySet::allows_ingress(self, src, dst, protocol, port)
    }

    fn enforces(&self) -> bool {
        self.isolates_any()
    }
}
