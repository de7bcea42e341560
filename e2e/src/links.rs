//! What the kernel says about a namespace's devices, addresses and routes
//! (`ip -j ...`), for assertions about what a user would see.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::netns::Netns;

/// Parses `ip -j` output (a JSON list).
fn json_list(what: &str, text: &str) -> Vec<Value> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        _ => panic!("{what}: not a JSON list:\n{text}"),
    }
}

/// Every device in `ns`, with details (`ip -n ns -d -j link show`).
///
/// # Panics
/// When `ip` fails.
pub fn links(ns: &Netns) -> Vec<Value> {
    let out = ns.ip_ok(&["-d", "-j", "link", "show"]);
    json_list("ip -d -j link show", &out)
}

/// The device `ifname` in `ns`, with details, if it exists.
pub fn link(ns: &Netns, ifname: &str) -> Option<Value> {
    links(ns)
        .into_iter()
        .find(|l| l.get("ifname").and_then(Value::as_str) == Some(ifname))
}

/// The `linkinfo.info_kind` of a device (`tun`, `bridge`, `vxlan`, `veth`, ...).
fn kind_of(link: &Value) -> Option<&str> {
    link.get("linkinfo")?.get("info_kind")?.as_str()
}

/// Names of the devices in `ns` whose kind is `kind` (`bridge`, `vxlan`, `tun`, ...).
pub fn devices_of_kind(ns: &Netns, kind: &str) -> Vec<String> {
    links(ns)
        .iter()
        .filter(|l| kind_of(l) == Some(kind))
        .filter_map(|l| l.get("ifname").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// Whether a device (from [`links`]) is a TAP: kind `tun`, type `tap`.
pub fn is_tap(link: &Value) -> bool {
    kind_of(link) == Some("tun")
        && link
            .get("linkinfo")
            .and_then(|info| info.get("info_data"))
            .and_then(|data| data.get("type"))
            .and_then(Value::as_str)
            == Some("tap")
}

/// The IPv4 addresses (with prefix length) on `ifname` in `ns`; empty when the device
/// does not exist.
pub fn ipv4_addresses(ns: &Netns, ifname: &str) -> Vec<(Ipv4Addr, u8)> {
    let done = ns.ip(&["-j", "-4", "addr", "show", "dev", ifname]);
    if !done.success() {
        return Vec::new();
    }
    json_list("ip -j -4 addr show", &done.stdout)
        .iter()
        .filter_map(|l| l.get("addr_info").and_then(Value::as_array))
        .flatten()
        .filter_map(|a| {
            let local = a.get("local")?.as_str()?.parse().ok()?;
            let len = u8::try_from(a.get("prefixlen")?.as_u64()?).ok()?;
            Some((local, len))
        })
        .collect()
}

/// A namespace's IPv4 default route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Its gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Its device.
    pub dev: String,
}

/// The IPv4 default route of `ns`, if it has one.
///
/// # Panics
/// When `ip` fails.
pub fn default_route(ns: &Netns) -> Option<DefaultRoute> {
    let out = ns.ip_ok(&["-j", "-4", "route", "show", "default"]);
    json_list("ip -j route show default", &out)
        .first()
        .map(|r| DefaultRoute {
            gateway: r
                .get("gateway")
                .and_then(Value::as_str)
                .and_then(|g| g.parse().ok()),
            dev: r
                .get("dev")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
}

/// Creates a device named `name` in `ns` that is not ours, to take the name: a `dummy`,
/// or a veth pair where the kernel has no dummy driver. Returns its kind.
///
/// # Panics
/// When neither can be made.
pub fn add_placeholder_link(ns: &Netns, name: &str) -> String {
    if ns.ip(&["link", "add", name, "type", "dummy"]).success() {
        return "dummy".to_owned();
    }
    let peer = format!("{}p", name.chars().take(14).collect::<String>());
    ns.ip_ok(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
    "veth".to_owned()
}
