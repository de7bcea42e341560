//! Ethernet MAC addresses, and the rule that derives a pod's MAC from its IPv4 address.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl std::hash::Hash for MacAddr {
    /// One 64-bit write (the derived hash writes a length and then six bytes: two rounds
    /// of the hasher, on every frame's MAC learning and lookup).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c, d, e, f] = self.0;
        state.write_u64(u64::from_le_bytes([a, b, c, d, e, f, 0, 0]));
    }
}

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The MAC vswitch gives the interface holding `ip`: `0a:58:` followed by the four
    /// bytes of the address. Locally administered, unicast, and stable for the life of
    /// the address, so the switch can answer ARP for any address the cluster knows.
    pub fn from_ipv4(ip: Ipv4Addr) -> MacAddr {
        let [a, b, c, d] = ip.octets();
        MacAddr([0x0a, 0x58, a, b, c, d])
    }

    /// The address as bytes.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// True for group addresses (broadcast included): the I/G bit of the first byte.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// True for an address a station may use as its own source: not a group address and
    /// not all zeros.
    pub fn is_unicast(self) -> bool {
        !self.is_multicast() && self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The error of parsing a MAC address from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (expected six hex bytes separated by ':')")]
pub struct ParseMacError;

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(ParseMacError)?;
            if part.len() != 2 {
                return Err(ParseMacError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_ip() {
        let mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 244, 1, 5));
        assert_eq!(mac.to_string(), "0a:58:0a:f4:01:05");
        assert!(mac.is_unicast());
    }

    #[test]
    fn parse_round_trip_and_rejects() {
        let mac: MacAddr = "0a:58:0a:f4:01:05".parse().unwrap();
        assert_eq!(mac, MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05]));
        for bad in [
            "",
            "0a:58",
            "0a:58:0a:f4:01:05:00",
            "0a:58:0a:f4:01:g5",
            "a:58:0a:f4:01:05",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(!MacAddr::ZERO.is_unicast());
    }
}
