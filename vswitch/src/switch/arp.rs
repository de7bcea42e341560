//! The ARP responder: writing the reply the switch sends on behalf of an address it
//! knows, so that ARP for cluster addresses is never flooded.
//!
//! The reply to a request from (`sha`, `spa`) for `tpa`, which `owner` holds, is
//! (RFC 826, as Linux's `arp_send` builds it):
//!
//! ```text
//! Ethernet: dst = sha, src = owner, type 0x0806
//! ARP:      htype 1, ptype 0x0800, hlen 6, plen 4, op 2 (reply),
//!           sha' = owner, spa' = tpa, tha' = sha, tpa' = spa
//! ```
//!
//! The frame is 42 bytes, unpadded: a TAP takes short frames, and a NIC pads on the way out.
//! Writing never panics; a buffer shorter than [`ARP_REPLY_LEN`] is an error.
#![forbid(unsafe_code)]

use etherparse::{ArpEthIpv4Packet, ArpOperation, EtherType, Ethernet2Header};

use crate::mac::MacAddr;
use crate::wire::ArpInfo;

/// Length of the Ethernet + ARP reply frame the switch writes.
pub const ARP_REPLY_LEN: usize = Ethernet2Header::LEN + ArpEthIpv4Packet::LEN;

/// The reply buffer cannot hold an ARP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reply buffer of {len} bytes is shorter than the {ARP_REPLY_LEN}-byte ARP reply")]
pub struct ReplyBufferTooShort {
    /// Length of the buffer that was given.
    pub len: usize,
}

/// Writes into the front of `buf` the Ethernet frame answering ARP `request` with `owner`
/// as the MAC of `request.target_ip`. Returns the frame length, [`ARP_REPLY_LEN`].
///
/// # Errors
/// [`ReplyBufferTooShort`] when `buf` is shorter than [`ARP_REPLY_LEN`]; `buf` is then
/// untouched.
pub fn write_arp_reply(
    request: &ArpInfo,
    owner: MacAddr,
    buf: &mut [u8],
) -> Result<usize, ReplyBufferTooShort> {
    let len = buf.len();
    let out = buf
        .get_mut(..ARP_REPLY_LEN)
        .ok_or(ReplyBufferTooShort { len })?;
    let ethernet = Ethernet2Header {
        destination: request.sender_mac.octets(),
        source: owner.octets(),
        ether_type: EtherType::ARP,
    }
    .to_bytes();
    let arp = ArpEthIpv4Packet {
        operation: ArpOperation::REPLY,
        sender_mac: owner.octets(),
        sender_ipv4: request.target_ip.octets(),
        target_mac: request.sender_mac.octets(),
        target_ipv4: request.sender_ip.octets(),
    }
    .to_bytes();
    for (byte, value) in out.iter_mut().zip(ethernet.iter().chain(arp.iter())) {
        *byte = *value;
    }
    Ok(ARP_REPLY_LEN)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::wire::{classify, L3Info, ARP_OP_REPLY, ARP_OP_REQUEST};

    #[test]
    fn test_construct_reply() {
        let request = ArpInfo {
            op: ARP_OP_REQUEST,
            sender_mac: MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05]),
            sender_ip: Ipv4Addr::new(10, 244, 1, 5),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 244, 2, 7),
        };
        let owner = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x07]);
        let mut buf = [0xeeu8; 64];
        assert_eq!(write_arp_reply(&request, owner, &mut buf), Ok(42));
        let expected: [u8; 42] = [
            0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, // dst: the requester
            0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x07, // src: the owner
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // Ethernet/IPv4, reply
            0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x07, 10, 244, 2, 7, // sender: owner, target ip
            0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, 10, 244, 1, 5, // target: requester
        ];
        assert_eq!(buf[..42], expected);
        assert!(buf[42..].iter().all(|&b| b == 0xee));
        let L3Info::Arp(reply) = classify(&buf[..42]).unwrap().l3 else {
            panic!("not ARP");
        };
        assert_eq!(reply.op, ARP_OP_REPLY);
        assert_eq!(
            (reply.sender_mac, reply.sender_ip),
            (owner, request.target_ip)
        );
    }

    #[test]
    fn short_buffer_is_an_error() {
        let request = ArpInfo {
            op: ARP_OP_REQUEST,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 2),
        };
        let mut buf = [0u8; 41];
        assert_eq!(
            write_arp_reply(&request, MacAddr([2, 0, 0, 0, 0, 2]), &mut buf),
            Err(ReplyBufferTooShort { len: 41 })
        );
        assert_eq!(buf, [0u8; 41]);
    }
}
