//! Pods as a runtime makes them: a fresh namespace, then a CNI ADD on the node; and the
//! DEL, CHECK and GC calls that go with them.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::cluster::Node;
use crate::cni::{with_prev_result, CniOutput, CniRequest};
use crate::env::next_id;
use crate::net::parse_cidr;
use crate::netns::Netns;

/// What to ADD.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// Kubernetes namespace (`K8S_POD_NAMESPACE`).
    pub namespace: String,
    /// Kubernetes name (`K8S_POD_NAME`).
    pub name: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The config's `cniVersion`.
    pub version: String,
}

impl PodSpec {
    /// `namespace/name`, interface `eth0`, CNI 1.1.0.
    pub fn new(namespace: &str, name: &str) -> PodSpec {
        PodSpec {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ifname: "eth0".to_owned(),
            version: "1.1.0".to_owned(),
        }
    }

    /// With another `cniVersion`.
    pub fn version(mut self, version: &str) -> PodSpec {
        self.version = version.to_owned();
        self
    }

    /// With another `CNI_IFNAME`.
    pub fn ifname(mut self, ifname: &str) -> PodSpec {
        self.ifname = ifname.to_owned();
        self
    }
}

/// An attached pod: its namespace (deleted with the guard) and what ADD returned.
#[derive(Debug)]
pub struct Pod {
    /// The pod's network namespace.
    pub netns: Netns,
    /// What was added.
    pub spec: PodSpec,
    /// `CNI_CONTAINERID` (unique per pod).
    pub container_id: String,
    /// Name of the node it was added on.
    pub node: String,
    /// The ADD result, as printed.
    pub result: Value,
    /// Its address, from the result.
    pub ip: Ipv4Addr,
    /// The address's prefix length, from the result.
    pub prefix_len: u8,
    /// The gateway, from the result.
    pub gateway: Ipv4Addr,
    /// The interface's MAC, from the result (lower case).
    pub mac: String,
}

impl Pod {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.spec.name)
    }

    /// `CNI_IFNAME`.
    pub fn ifname(&self) -> &str {
        &self.spec.ifname
    }

    /// A request for `command` about this pod: container id, netns, ifname, pod args.
    pub fn request(&self, command: &str) -> CniRequest {
        CniRequest::new(command)
            .container_id(&self.container_id)
            .netns(&self.netns.path())
            .ifname(&self.spec.ifname)
            .pod(&self.spec.namespace, &self.spec.name)
    }

    /// The `{containerID, ifname}` a runtime lists for this pod in GC.
    pub fn attachment(&self) -> Value {
        json!({"containerID": self.container_id, "ifname": self.spec.ifname})
    }
}

/// Reads address, gateway and MAC out of an ADD result (any supported version).
fn parse_result(result: &Value, ifname: &str) -> Result<(Ipv4Addr, u8, Ipv4Addr, String), String> {
    let ip = result
        .get("ips")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .ok_or("no `ips[0]`")?;
    let (address, prefix_len) = parse_cidr(
        ip.get("address")
            .and_then(Value::as_str)
            .ok_or("no `ips[0].address`")?,
    );
    let gateway = ip
        .get("gateway")
        .and_then(Value::as_str)
        .and_then(|g| g.parse().ok())
        .ok_or("no `ips[0].gateway`")?;
    let interfaces = result
        .get("interfaces")
        .and_then(Value::as_array)
        .ok_or("no `interfaces`")?;
    let interface = ip
        .get("interface")
        .and_then(Value::as_u64)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| interfaces.get(i))
        .or_else(|| {
            interfaces
                .iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(ifname))
        })
        .ok_or("no interface for `ips[0]`")?;
    let mac = interface
        .get("mac")
        .and_then(Value::as_str)
        .ok_or("no `mac` on the interface")?
        .to_ascii_lowercase();
    Ok((address, prefix_len, gateway, mac))
}

impl Node {
    /// A fresh pod namespace and container id, and the ADD for them.
    ///
    /// # Panics
    /// When the namespace cannot be made or the plugin cannot be run.
    pub fn try_add_pod(&self, spec: &PodSpec) -> (Netns, String, CniOutput) {
        let netns = Netns::new(&format!("p{}", spec.name));
        let container_id = format!("ctr-{}-{}", std::process::id(), next_id());
        let out = self.cni(
            &CniRequest::new("ADD")
                .container_id(&container_id)
                .netns(&netns.path())
                .ifname(&spec.ifname)
                .pod(&spec.namespace, &spec.name)
                .config(&self.netconf(&spec.version)),
        );
        (netns, container_id, out)
    }

    /// Adds pod `namespace/name` on this node (`eth0`, CNI 1.1.0).
    ///
    /// # Panics
    /// When ADD fails or its result lacks an address, gateway or MAC.
    pub fn add_pod(&self, namespace: &str, name: &str) -> Pod {
        self.add_pod_spec(&PodSpec::new(namespace, name))
    }

    /// Adds a pod as `spec` says.
    ///
    /// # Panics
    /// As [`Node::add_pod`].
    pub fn add_pod_spec(&self, spec: &PodSpec) -> Pod {
        let (netns, container_id, out) = self.try_add_pod(spec);
        let result = out
            .expect_success(&format!("ADD {}/{}", spec.namespace, spec.name))
            .unwrap_or_else(|| panic!("ADD printed no JSON result\n{}", out.describe()))
            .clone();
        let (ip, prefix_len, gateway, mac) = parse_result(&result, &spec.ifname)
            .unwrap_or_else(|e| panic!("ADD result: {e}\n{}", out.describe()));
        Pod {
            netns,
            spec: spec.clone(),
            container_id,
            node: self.name().to_owned(),
            result,
            ip,
            prefix_len,
            gateway,
            mac,
        }
    }

    /// CHECK the pod, with its ADD result as `prevResult`.
    pub fn check_pod(&self, pod: &Pod) -> CniOutput {
        let conf = with_prev_result(&self.netconf(&pod.spec.version), &pod.result);
        self.cni(&pod.request("CHECK").config(&conf))
    }

    /// DEL the pod, with its ADD result as `prevResult`.
    pub fn del_pod(&self, pod: &Pod) -> CniOutput {
        let conf = with_prev_result(&self.netconf(&pod.spec.version), &pod.result);
        self.cni(&pod.request("DEL").config(&conf))
    }

    /// GC with `valid` as the attachments the runtime still knows. Like libcni, it sends
    /// the list under both `cni.dev/valid-attachments` and `cni.dev/attachments`.
    pub fn gc(&self, valid: &[&Pod]) -> CniOutput {
        let attachments: Vec<Value> = valid.iter().map(|p| p.attachment()).collect();
        let mut conf = self.netconf("1.1.0");
        if let Some(object) = conf.as_object_mut() {
            object.insert(
                "cni.dev/valid-attachments".to_owned(),
                Value::Array(attachments.clone()),
            );
            object.insert("cni.dev/attachments".to_owned(), Value::Array(attachments));
        }
        self.cni(&CniRequest::new("GC").config(&conf))
    }
}
