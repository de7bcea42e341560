//! Ports: what the switch knows of each attachment (a pod's TAP, the node's `vsw0`, the
//! VXLAN overlay) and the port-security rule applied to pods.
//!
//! Port security applies only to a [`PortKind::Pod`] port with `security: true`. On such a
//! port a frame is admitted only when:
//! - its source MAC is the port's `mac`;
//! - if it is ARP, the sender MAC is the port's `mac` and, when the port has an `ip`, the
//!   sender IP is that `ip` or 0.0.0.0 (an RFC 5227 probe);
//! - if it is IPv4 and the port has an `ip`, the source is that `ip` or 0.0.0.0 (DHCP-like
//!   probes before the address is configured);
//! - it is ARP, IPv4 or IPv6 (untagged or behind one 802.1Q tag): a pod has no business
//!   with other ethertypes, and a frame the switch cannot read (a second VLAN tag, say)
//!   is one NetworkPolicy could not judge.
//!
//! IPv6 is checked on the source MAC only. A port without an `ip` is checked on MACs
//! only. Host and Overlay ports are trusted and never checked.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::mac::MacAddr;
use crate::wire::{FrameInfo, L3Info};

use super::stats::PortStats;

/// A port's number, chosen by the caller (the daemon).
pub type PortId = u16;

/// What sits behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// A pod's TAP: one station, untrusted when `security` is on.
    Pod,
    /// The node's own TAP (`vsw0`): trusted.
    Host,
    /// The VXLAN port: remote VTEPs, each with its stations, sit behind it.
    Overlay,
}

/// How a port is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortConfig {
    /// What the port attaches.
    pub kind: PortKind,
    /// The MAC of the station behind the port (for pods, the pod's interface MAC).
    pub mac: MacAddr,
    /// The IPv4 address of that station, when it has one.
    pub ip: Option<Ipv4Addr>,
    /// Enforce port security (see the module docs). Only meaningful for Pod ports.
    pub security: bool,
}

impl PortConfig {
    /// True when frames from this port go through the port-security check.
    pub fn enforces_security(&self) -> bool {
        self.kind == PortKind::Pod && self.security
    }

    /// Applies the port-security rule of the module docs to a classified frame; true when
    /// the frame is admitted. Always true on ports that do not enforce security.
    pub fn admits(&self, frame: &FrameInfo) -> bool {
        if !self.enforces_security() {
            return true;
        }
        if frame.src != self.mac {
            return false;
        }
        let ip_ok = |ip: Ipv4Addr| match self.ip {
            Some(own) => ip == own || ip.is_unspecified(),
            None => true,
        };
        match frame.l3 {
            L3Info::Arp(arp) => arp.sender_mac == self.mac && ip_ok(arp.sender_ip),
            L3Info::Ipv4 { src, .. } => ip_ok(src),
            L3Info::Ipv6 { .. } => true,
            L3Info::Other(_) => false,
        }
    }
}

/// A port as the switch holds it.
#[derive(Debug, Clone)]
pub(super) struct Port {
    pub(super) config: PortConfig,
    pub(super) stats: Arc<PortStats>,
    /// The port's flood rate limiter.
    pub(super) flood: super::flood_limit::FloodBucket,
    /// Where the MAC table held the source MAC of the port's last frame (a hint; see
    /// `MacTable::learn_hinted`), or `usize::MAX` before the first.
    pub(super) mac_slot: usize,
}
