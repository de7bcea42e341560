//! Requests and responses of the control socket, as serde types. Both ends use these,
//! so the JSON shapes documented in docs/control-socket.md are exactly these.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ipnet::Ipv4Net;
use crate::mac::MacAddr;

/// One attachment of a container to the network: what CNI calls (CONTAINERID, IFNAME).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentKey {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`, the interface name inside the pod.
    pub ifname: String,
}

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Create the pod's TAP inside `netns`, lease it an address, attach it to the switch.
    Add {
        /// Which attachment.
        #[serde(flatten)]
        key: AttachmentKey,
        /// Path of the pod's network namespace (`CNI_NETNS`).
        netns: String,
        /// Kubernetes namespace of the pod.
        pod_namespace: String,
        /// Kubernetes name of the pod.
        pod_name: String,
    },
    /// Undo an Add. Succeeds when the attachment is already gone.
    Del {
        /// Which attachment.
        #[serde(flatten)]
        key: AttachmentKey,
    },
    /// Verify that the attachment exists, is attached, and that its interface inside
    /// `netns` still has its MAC, address and default route.
    Check {
        /// Which attachment.
        #[serde(flatten)]
        key: AttachmentKey,
        /// Path of the pod's network namespace (`CNI_NETNS`).
        netns: String,
    },
    /// Is the daemon ready to take Adds?
    Status,
    /// Remove every attachment not listed in `valid`.
    Gc {
        /// The attachments the runtime still knows.
        valid: Vec<AttachmentKey>,
    },
    /// This node: name, subnet, VTEP, ports and peers.
    Show,
    /// The MAC table.
    Fdb,
    /// Add (or replace) a static peer node: a VTEP with no daemon of ours, such as a
    /// hardware switch or a kernel VXLAN device.
    NodeAdd {
        /// Its name.
        name: String,
        /// Its VTEP address.
        underlay_ip: Ipv4Addr,
        /// The pod subnet behind it.
        subnet: Ipv4Net,
    },
    /// Store Kubernetes objects (Namespace, Pod, NetworkPolicy) from the text of a YAML
    /// or JSON file: every document is validated first, then all are written at once.
    Apply {
        /// The file's text.
        documents: String,
    },
    /// Remove the objects the documents of a file name (kind, namespace, name).
    Delete {
        /// The file's text.
        documents: String,
    },
    /// List the stored objects.
    Objects,
    /// Remove a node from the cluster store. A node run by a daemon needs `force`.
    NodeRemove {
        /// Its name.
        name: String,
        /// Also remove a node that a daemon runs (a decommissioned one).
        #[serde(default)]
        force: bool,
    },
}

/// The daemon's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The request succeeded.
    Ok(Reply),
    /// The request failed.
    Error(ControlError),
}

/// The payload of a successful [`Response`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Add: the interface that was made.
    Added(PortInfo),
    /// Del, Check, Status: nothing more to say.
    Done,
    /// Gc: the attachments that were removed.
    Collected(Vec<AttachmentKey>),
    /// Show (boxed: it is by far the largest reply).
    Show(Box<ShowReply>),
    /// Fdb.
    Fdb(Vec<FdbEntry>),
    /// Apply, Delete: the objects written or removed.
    Objects(Vec<crate::store::ObjectKey>),
    /// Objects: every stored object.
    Stored(Vec<crate::store::ObjectRecord>),
}

/// Why a request failed. The CNI plugin maps these to CNI error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (not JSON, unknown op, missing field).
    InvalidRequest,
    /// The network namespace cannot be entered.
    InvalidNetns,
    /// The interface name is already taken inside the pod.
    InterfaceExists,
    /// The attachment is unknown to the daemon (Check).
    UnknownAttachment,
    /// The interface does not look as Add left it (Check).
    CheckFailed,
    /// The node's subnet has no free address.
    AddressesExhausted,
    /// The daemon is not ready (Status).
    NotReady,
    /// Reading or writing node state failed (disk full, read-only state dir, ...).
    Io,
    /// Anything else; the message says what.
    Internal,
}

/// A failed request: a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// The class of failure.
    pub code: ErrorCode,
    /// What went wrong, in words a user can act on.
    pub message: String,
}

impl ControlError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
        }
    }
}

/// A pod's port, as Add returns it and Show lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Which attachment.
    #[serde(flatten)]
    pub key: AttachmentKey,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Path of the pod's network namespace.
    pub netns: String,
    /// The pod's address with the cluster CIDR's prefix length.
    pub address: Ipv4Net,
    /// The default gateway: the node's `vsw0` address.
    pub gateway: Ipv4Addr,
    /// The interface's MAC.
    pub mac: MacAddr,
    /// The interface's MTU.
    pub mtu: u32,
    /// False while the daemon holds no descriptor for the TAP (its namespace is gone).
    pub attached: bool,
    /// Traffic counters of the port.
    pub counters: PortCounters,
}

/// Traffic counters of one switch port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_packets: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// MACs learned on the port (on the overlay: behind one of its VTEPs) evicted because
    /// the port had reached its bound of learned MACs (`--mac-table-per-port`).
    #[serde(default)]
    pub mac_evictions: u64,
    /// Frames dropped, by reason (only reasons with a non-zero count).
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// The switch's bounded tables, as `show` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablesInfo {
    /// The MAC table.
    pub mac: MacTableInfo,
    /// The connection table of NetworkPolicy.
    pub connections: ConnTableInfo,
}

/// The MAC table's size and bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacTableInfo {
    /// Entries now (pinned and learned).
    pub entries: u64,
    /// The most entries (`--mac-table-size`).
    pub capacity: u64,
    /// The most learned entries behind one port or VTEP (`--mac-table-per-port`).
    pub per_port: u64,
    /// Entries evicted because the whole table was full.
    pub evictions: u64,
    /// Entries evicted because their port had reached its bound (the sum of the ports'
    /// `mac_evictions`).
    pub port_evictions: u64,
}

/// The connection table's size and bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnTableInfo {
    /// Connections tracked now.
    pub entries: u64,
    /// The most connections tracked.
    pub capacity: u64,
    /// Connections evicted because the table was full.
    pub evictions: u64,
}

/// What `show` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowReply {
    /// This node's name.
    pub node: String,
    /// This node's pod subnet.
    pub subnet: Ipv4Net,
    /// This node's VTEP (underlay) address.
    pub vtep: Ipv4Addr,
    /// The cluster CIDR.
    pub cluster_cidr: Ipv4Net,
    /// The pod MTU.
    pub mtu: u32,
    /// The underlay I/O: `udp`, or `afxdp (native|generic, zero-copy|copy, N queues)`.
    /// Empty from a daemon that predates the field.
    #[serde(default)]
    pub datapath: String,
    /// The host port `vsw0`.
    pub host_port: HostPortInfo,
    /// The overlay port: VXLAN to the peers.
    pub overlay: OverlayInfo,
    /// The cluster store and whether it is reachable.
    pub store: StoreInfo,
    /// The switch's bounded tables (zeros while the data path does not answer).
    #[serde(default)]
    pub tables: TablesInfo,
    /// One entry per attached pod.
    pub ports: Vec<PortInfo>,
    /// The other nodes of the cluster.
    pub peers: Vec<PeerInfo>,
}

/// The node's own port `vsw0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPortInfo {
    /// Interface name (`vsw0`).
    pub ifname: String,
    /// Its address, the gateway of the node's pods.
    pub address: Ipv4Net,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its counters.
    pub counters: PortCounters,
}

/// The cluster store as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// The `--store` URL.
    pub url: String,
    /// `connected`, or `disconnected` with since when and why (the data path keeps
    /// forwarding with the last known state meanwhile).
    pub health: crate::store::StoreHealth,
    /// True while writes this node missed are waiting for the store to come back.
    pub behind: bool,
}

/// The overlay port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayInfo {
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The VXLAN UDP port.
    pub vxlan_port: u16,
    /// Datagrams sent and received, and drops by reason (unknown_vtep, wrong_vni, ...).
    pub counters: PortCounters,
}

/// Another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its name.
    pub node: String,
    /// Its VTEP address.
    pub vtep: Ipv4Addr,
    /// Its pod subnet.
    pub subnet: Ipv4Net,
    /// True for a node added with `vswitchctl node add` (no daemon of ours).
    #[serde(rename = "static")]
    pub is_static: bool,
}

/// One entry of the MAC table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// The learned MAC.
    pub mac: MacAddr,
    /// Where it lives: an interface name (`vsw0`, or `pod-ns/pod-name:eth0`) or `vtep:A.B.C.D`.
    pub location: String,
    /// Seconds since the entry was last refreshed.
    pub age_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let req = Request::Add {
            key: AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            },
            netns: "/run/netns/a".into(),
            pod_namespace: "default".into(),
            pod_name: "a".into(),
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"op":"add","container_id":"c1","ifname":"eth0","netns":"/run/netns/a","pod_namespace":"default","pod_name":"a"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"op":"status"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"nope"}"#).is_err());
    }

    #[test]
    fn response_shape() {
        let err = Response::Error(ControlError::new(ErrorCode::InvalidNetns, "gone"));
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"error":{"code":"invalid_netns","message":"gone"}}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Ok(Reply::Done)).unwrap(),
            r#"{"ok":"done"}"#
        );
    }
}
