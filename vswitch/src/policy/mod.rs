//! NetworkPolicy enforcement in the switch. Today: the connection table
//! ([`conntrack`]), which lets the replies of an allowed connection through and makes
//! an established flow cost one lookup per packet.
#![forbid(unsafe_code)]

pub mod conntrack;
pub mod packet;

pub use conntrack::{ConnTrack, ConnTrackConfig, Flow, Tracked};
