//! The switch core: a MAC-learning Ethernet switch with port security and an ARP
//! responder, as a state machine without I/O.
//!
//! The daemon's workers (and later the VXLAN overlay) hand it frames with the time and
//! get back a [`Verdict`]; the in-memory tests and the criterion benches drive exactly
//! the same code. Nothing here makes a syscall, reads a clock, or allocates per packet.
//!
//! - [`forwarding`]: [`Switch`], [`SwitchConfig`] and [`Verdict`]: the decision steps.
//! - [`mac_table`]: [`MacTable`], bounded (in all and per port), with aging and
//!   least-recently-seen eviction.
//! - [`flood_limit`]: [`FloodBucket`], the per-port flood rate limit.
//! - [`port`]: [`PortConfig`], [`PortKind`] and the port-security rule.
//! - [`stats`]: [`PortStats`], lock-free per-port counters, and [`DropReason`].
//! - [`arp`]: the ARP reply the switch writes for addresses it knows.
#![forbid(unsafe_code)]

pub mod arp;
pub mod flood_limit;
pub mod forwarding;
pub mod mac_table;
pub mod policy_gate;
pub mod port;
mod port_table;
pub mod stats;

#[cfg(test)]
mod tests;

pub use arp::{write_arp_reply, ReplyBufferTooShort, ARP_REPLY_LEN};
pub use flood_limit::{FloodBucket, FloodRate};
pub use forwarding::{Switch, SwitchConfig, Verdict};
pub use mac_table::{Learned, Location, MacEntry, MacTable};
pub use policy_gate::{AllowAll, NewFlowPolicy, PolicyGate};
pub use port::{PortConfig, PortId, PortKind};
pub use stats::{DropReason, PortStats, PortStatsSnapshot};
