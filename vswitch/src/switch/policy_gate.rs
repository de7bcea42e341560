//! Where NetworkPolicy meets the switch: for an IPv4 frame from a local pod (egress) or
//! to a local pod (ingress), the connection table is asked first; a packet of a tracked
//! connection, either way, passes with that one lookup. A packet that opens a new flow
//! is put to the policy ([`NewFlowPolicy`]) and, if allowed, opens a table entry; an
//! ICMP error passes when the flow it reports on is tracked.
//!
//! Egress is judged on the source pod's node, ingress on the destination pod's node:
//! a frame from the overlay is judged for ingress only, and a frame to the overlay for
//! egress only. ARP, IPv6 and other non-IPv4 frames are not subject to policy, nor are
//! broadcast and multicast frames. Policy changes apply to new connections; established
//! ones keep their table entry until it times out (docs/policy.md).
#![forbid(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use crate::policy::conntrack::{proto, ConnTrack, ConnTrackConfig};
use crate::policy::packet::{packet_flow, PacketFlow};

/// What the switch asks of NetworkPolicy about a new connection. The port is the
/// destination port (0 for ICMP and other protocols without ports).
pub trait NewFlowPolicy: Send + Sync + fmt::Debug {
    /// Would `src`'s egress policy allow a new connection to `dst`? (`src` is a pod of
    /// this node.)
    fn allows_egress(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool;
    /// Would `dst`'s ingress policy allow a new connection from `src`? (`dst` is a pod of
    /// this node.)
    fn allows_ingress(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool;
    /// False when no pod is isolated at all: the switch then tracks nothing. Asked once,
    /// when the policy is put in force: a policy's answer never changes.
    fn enforces(&self) -> bool;
}

/// No policy: everything is allowed and nothing tracked.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl NewFlowPolicy for AllowAll {
    fn allows_egress(&self, _: Ipv4Addr, _: Ipv4Addr, _: u8, _: u16) -> bool {
        true
    }
    fn allows_ingress(&self, _: Ipv4Addr, _: Ipv4Addr, _: u8, _: u16) -> bool {
        true
    }
    fn enforces(&self) -> bool {
        false
    }
}

/// The policy and the connection table of one switch.
#[derive(Debug)]
pub struct PolicyGate {
    policy: Arc<dyn NewFlowPolicy>,
    /// The policy's [`NewFlowPolicy::enforces`], read once (every packet asks).
    enforces: bool,
    conntrack: ConnTrack,
}

impl Default for PolicyGate {
    fn default() -> Self {
        PolicyGate::new(ConnTrackConfig::default())
    }
}

impl PolicyGate {
    /// Allow-all, with a connection table of `config`.
    pub fn new(config: ConnTrackConfig) -> PolicyGate {
        PolicyGate {
            policy: Arc::new(AllowAll),
            enforces: false,
            conntrack: ConnTrack::new(config),
        }
    }

    /// Puts a new policy in force for new connections.
    pub fn set_policy(&mut self, policy: Arc<dyn NewFlowPolicy>) {
        self.enforces = policy.enforces();
        self.policy = policy;
    }

    /// The connection table.
    pub fn conntrack(&self) -> &ConnTrack {
        &self.conntrack
    }

    /// Removes expired connections; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.conntrack.expire(now)
    }

    /// Decides whether the IPv4 packet `ip` (its header onwards) may pass, judging the
    /// sender's egress when `egress` (it comes from a local pod) and the receiver's
    /// ingress when `ingress` (it goes to a local pod).
    pub fn admits(&mut self, now: Instant, ip: &[u8], egress: bool, ingress: bool) -> bool {
        self.admits_flow(now, || packet_flow(ip), egress, ingress)
    }

    /// [`PolicyGate::admits`] for a packet whose flow the caller has read already:
    /// `packet` gives it (`None`: too short to say, which is denied), asked only when
    /// the packet is subject to policy.
    #[inline]
    pub fn admits_flow(
        &mut self,
        now: Instant,
        packet: impl FnOnce() -> Option<PacketFlow>,
        egress: bool,
        ingress: bool,
    ) -> bool {
        if !(egress || ingress) || !self.enforces {
            return true;
        }
        let Some(packet) = packet() else {
            return false;
        };
        if let Some(about) = packet.error_about {
            return self.conntrack.contains(now, about);
        }
        let flow = packet.flow;
        if self.conntrack.track(now, flow).is_some() {
            return true;
        }
        let port = match flow.protocol {
            proto::TCP | proto::UDP | proto::SCTP => flow.dst_port,
            _ => 0,
        };
        let allowed = (!egress
            || self
                .policy
                .allows_egress(flow.src, flow.dst, flow.protocol, port))
            && (!ingress
                || self
                    .policy
                    .allows_ingress(flow.src, flow.dst, flow.protocol, port));
        if allowed {
            self.conntrack.open(now, flow);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::conntrack::tcp_flags;
    use std::time::Duration;

    /// Pod B (10.244.0.3) admits only TCP port 80, and only from A (10.244.0.2); A's
    /// egress allows only B.
    #[derive(Debug)]
    struct OnlyAToB80;

    const A: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 3);
    const C: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 4);

    impl NewFlowPolicy for OnlyAToB80 {
        fn allows_egress(&self, src: Ipv4Addr, dst: Ipv4Addr, _: u8, _: u16) -> bool {
            src != A || dst == B
        }
        fn allows_ingress(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, port: u16) -> bool {
            dst != B || (src == A && protocol == proto::TCP && port == 80)
        }
        fn enforces(&self) -> bool {
            true
        }
    }

    fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, proto::TCP, 0, 0];
        packet.extend_from_slice(&src.octets());
        packet.extend_from_slice(&dst.octets());
        let mut header = [0u8; 20];
        header[..2].copy_from_slice(&sport.to_be_bytes());
        header[2..4].copy_from_slice(&dport.to_be_bytes());
        header[12] = 0x50;
        header[13] = flags;
        packet.extend_from_slice(&header);
        packet
    }

    fn gate() -> PolicyGate {
        let mut gate = PolicyGate::default();
        gate.set_policy(Arc::new(OnlyAToB80));
        gate
    }

    #[test]
    fn allowed_connection_and_its_replies_pass() {
        let mut gate = gate();
        let now = Instant::now();
        assert!(gate.admits(now, &tcp(A, 40000, B, 80, tcp_flags::SYN), true, true));
        // The reply is not allowed by B's egress-free, A-ingress-free policy alone; it
        // passes because the connection is tracked.
        assert!(gate.admits(
            now,
            &tcp(B, 80, A, 40000, tcp_flags::SYN | tcp_flags::ACK),
            true,
            true
        ));
        assert_eq!(gate.conntrack().len(), 1);
    }

    #[test]
    fn denied_connections_open_nothing() {
        let mut gate = gate();
        let now = Instant::now();
        assert!(
            !gate.admits(now, &tcp(A, 40000, B, 81, tcp_flags::SYN), true, true),
            "port"
        );
        assert!(
            !gate.admits(now, &tcp(C, 40000, B, 80, tcp_flags::SYN), false, true),
            "peer"
        );
        assert!(
            !gate.admits(now, &tcp(A, 40000, C, 80, tcp_flags::SYN), true, false),
            "A's egress"
        );
        // A packet that merely looks like a reply is a new flow, judged as such: B's
        // egress is open and C is not isolated, so it passes and opens its own entry.
        assert!(gate.conntrack().is_empty());
        // Judged on the other node only: ingress from the overlay is B's business here.
        assert!(gate.admits(now, &tcp(C, 1, A, 2, tcp_flags::SYN), false, false));
    }

    #[test]
    fn a_new_policy_applies_to_new_connections_only() {
        let mut gate = gate();
        let now = Instant::now();
        assert!(gate.admits(now, &tcp(A, 40000, B, 80, tcp_flags::SYN), true, true));
        #[derive(Debug)]
        struct DenyAll;
        impl NewFlowPolicy for DenyAll {
            fn allows_egress(&self, _: Ipv4Addr, _: Ipv4Addr, _: u8, _: u16) -> bool {
                false
            }
            fn allows_ingress(&self, _: Ipv4Addr, _: Ipv4Addr, _: u8, _: u16) -> bool {
                false
            }
            fn enforces(&self) -> bool {
                true
            }
        }
        gate.set_policy(Arc::new(DenyAll));
        let later = now + Duration::from_secs(1);
        assert!(
            gate.admits(later, &tcp(A, 40000, B, 80, tcp_flags::ACK), true, true),
            "established"
        );
        assert!(
            !gate.admits(later, &tcp(A, 40001, B, 80, tcp_flags::SYN), true, true),
            "new"
        );
    }

    #[test]
    fn allow_all_tracks_nothing_and_truncated_packets_are_denied_under_policy() {
        let mut open = PolicyGate::default();
        let now = Instant::now();
        assert!(open.admits(now, &tcp(A, 1, B, 2, tcp_flags::SYN), true, true));
        assert!(open.conntrack().is_empty());
        let mut gate = gate();
        assert!(!gate.admits(now, &tcp(A, 1, B, 80, tcp_flags::SYN)[..30], true, true));
    }
}
