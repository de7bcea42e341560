//! What NetworkPolicy is evaluated against: the pods (address, labels, container ports,
//! node), the namespaces (labels) and the policies, in the shape the compiler
//! ([`crate::policy::PolicySet::compile`]) reads.
//!
//! The model is plain data, built either by the daemon (from its attached pods and the
//! stored objects) or by `vswitchctl policy matrix` (from a file of `Namespace` and `Pod`
//! objects). [`PolicyModel::from_objects`] is the common way to build one.
//!
//! Invariants kept by [`PolicyModel::from_objects`] (the compiler does not rely on them:
//! it adds the automatic namespace label itself, see [`PolicyModel::namespace_labels`]):
//! - every namespace in [`PolicyModel::namespaces`] carries the automatic label
//!   `kubernetes.io/metadata.name=<name>` (Kubernetes ≥ 1.21 sets it on every namespace
//!   and overrides any other value a user gives it);
//! - every pod's namespace is in [`PolicyModel::namespaces`].
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::k8s::{self, Labels, Object};

/// The label key Kubernetes sets on every namespace to the namespace's name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// One pod as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The pod's address. Pods are told apart by it: see [`crate::policy::PolicySet`]
    /// for what happens when two pods claim one address.
    pub ip: Ipv4Addr,
    /// `metadata.labels`, which `podSelector`s match.
    pub labels: BTreeMap<String, String>,
    /// The `Pod` object, when there is one: its container ports are what named ports in
    /// policies resolve to. `None`: the pod has no named ports.
    pub pod: Option<k8s::Pod>,
    /// The node the pod runs on, when known: traffic between the pod and that node's
    /// host address ([`PolicyModel::host_addresses`]) is always allowed.
    pub node: Option<String>,
}

impl PodInfo {
    /// The pod a `Pod` object describes, addressed by its `status.podIP`; `None` when the
    /// object has no `podIP` (a pod not yet scheduled or started, which has no traffic).
    /// The node is unknown (`None`).
    pub fn from_pod(pod: &k8s::Pod) -> Option<PodInfo> {
        Some(PodInfo {
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            ip: pod.pod_ip?,
            labels: pod.metadata.labels.clone(),
            pod: Some(pod.clone()),
            node: None,
        })
    }

    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Everything policy is evaluated against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyModel {
    /// Namespace name to its labels, the automatic `kubernetes.io/metadata.name` one
    /// included. A namespace missing here has just the automatic label.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The pods.
    pub pods: Vec<PodInfo>,
    /// The policies.
    pub policies: Vec<k8s::NetworkPolicy>,
    /// Node name to that node's own address on the pod network (its `vsw0` gateway
    /// address). Traffic between it and the node's own pods is always allowed.
    pub host_addresses: BTreeMap<String, Ipv4Addr>,
}

impl PolicyModel {
    /// A model of `pods` and the objects: namespaces from the `Namespace` objects (their
    /// labels plus the automatic label) and from the pods' namespaces (the automatic
    /// label alone when no `Namespace` object names them); policies from the
    /// `NetworkPolicy` objects; and each pod merged with the `Pod` object of the same
    /// namespace and name, if any: the object's labels are added to the pod's (the
    /// object's value wins on a shared key) and the object becomes [`PodInfo::pod`].
    /// `Pod` objects that match no pod are left out (they have no address).
    /// [`PolicyModel::host_addresses`] is left empty for the caller to fill.
    pub fn from_objects(objects: &[Object], mut pods: Vec<PodInfo>) -> PolicyModel {
        let mut namespaces: BTreeMap<String, Labels> = BTreeMap::new();
        let mut pod_objects: BTreeMap<(&str, &str), &k8s::Pod> = BTreeMap::new();
        let mut policies = Vec::new();
        for object in objects {
            match object {
                Object::Namespace(namespace) => {
                    let name = &namespace.metadata.name;
                    let mut labels = namespace.metadata.labels.clone();
                    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                    namespaces.insert(name.clone(), labels);
                }
                Object::Pod(pod) => {
                    pod_objects.insert(
                        (pod.metadata.namespace.as_str(), pod.metadata.name.as_str()),
                        pod,
                    );
                }
                Object::NetworkPolicy(policy) => policies.push(policy.clone()),
            }
        }
        for info in &mut pods {
            if let Some(object) = pod_objects.get(&(info.namespace.as_str(), info.name.as_str())) {
                for (key, value) in &object.metadata.labels {
                    info.labels.insert(key.clone(), value.clone());
                }
                info.pod = Some((*object).clone());
            }
            if !namespaces.contains_key(&info.namespace) {
                namespaces.insert(
                    info.namespace.clone(),
                    automatic_namespace_labels(&info.namespace),
                );
            }
        }
        PolicyModel {
            namespaces,
            pods,
            policies,
            host_addresses: BTreeMap::new(),
        }
    }

    /// The labels `namespaceSelector`s see on `namespace`: those in
    /// [`PolicyModel::namespaces`] with the automatic label set (to the name, whatever
    /// the map says, as Kubernetes does), or the automatic label alone for a namespace
    /// missing from the map.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        let mut labels = self.namespaces.get(namespace).cloned().unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned());
        labels
    }
}

/// The labels of a namespace that has no `Namespace` object: the automatic
/// `kubernetes.io/metadata.name=<name>` alone.
pub fn automatic_namespace_labels(namespace: &str) -> Labels {
    Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())])
}
