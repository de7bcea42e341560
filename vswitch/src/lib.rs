//! vswitch: a Kubernetes pod network in user space.
//!
//! This crate holds the node's side of it: the sans-IO switch core ([`switch`]) and the
//! wire views it needs that etherparse lacks ([`wire`]); the OS-facing module that makes
//! TAP devices inside pods' network namespaces ([`sys`], the only place with `unsafe`);
//! the cluster store ([`store`]) and the node-local address and port state
//! ([`node_state`]); the control socket ([`control`]); and the daemon that ties them
//! together ([`daemon`]). The binaries `vswitchd` and `vswitchctl` are thin fronts on it.
#![deny(unsafe_code)]

pub mod control;
pub mod daemon;
pub mod ipnet;
pub mod k8s;
pub mod mac;
pub mod node_state;
pub mod policy;
pub mod store;
pub mod switch;
#[allow(unsafe_code)]
pub mod sys;
pub mod wire;
