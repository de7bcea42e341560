//! NetworkPolicy enforcement in the switch: the model policy is evaluated against
//! ([`model`]), its compiled form that answers "may this new connection pass?"
//! ([`compile`]), the offline matrix of `vswitchctl policy matrix` ([`matrix`]), and the
//! connection table ([`conntrack`]), which lets the replies of an allowed connection
//! through and makes an established flow cost one lookup per packet, with the flow of a
//! packet as it reads it ([`packet`]).
//!
//! The semantics, as implemented, are in [`compile`]'s documentation and in
//! `docs/policy.md`.
#![forbid(unsafe_code)]

pub mod compile;
pub mod conntrack;
pub mod matrix;
pub mod model;
pub mod packet;

#[cfg(test)]
mod tests;

pub use compile::{protocol_number, PolicySet};
pub use conntrack::{ConnTrack, ConnTrackConfig, Flow, Tracked};
pub use matrix::{Matrix, MatrixError, ModelError};
pub use model::{PodInfo, PolicyModel, NAMESPACE_NAME_LABEL};
