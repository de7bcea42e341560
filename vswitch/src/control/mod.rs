//! The daemon's control socket: the request and response types ([`proto`]) and the
//! client that `vswitchctl` and `vswitch-cni` use ([`client`]).
//!
//! The wire format is one JSON object per line: a client connects, writes one
//! [`proto::Request`] followed by `\n`, reads one [`proto::Response`] line, and closes.
//! docs/control-socket.md is the user-facing description of the same thing.
#![forbid(unsafe_code)]

pub mod client;
pub mod proto;

/// The default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// The largest request line the daemon reads; a longer one is answered with an error.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
