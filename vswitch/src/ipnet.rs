//! IPv4 prefixes (`10.244.0.0/16`): the cluster CIDR, node subnets, pod addresses.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address with a prefix length. `addr` keeps host bits (a pod's
/// `10.244.1.5/16`); [`Ipv4Net::network`] clears them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

/// The error of parsing or building an [`Ipv4Net`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4NetError {
    /// The text is not `A.B.C.D/N`.
    #[error("`{0}` is not an IPv4 prefix (expected A.B.C.D/N)")]
    Syntax(String),
    /// The prefix length is above 32.
    #[error("prefix length {0} is above 32")]
    PrefixLen(u8),
}

impl Ipv4Net {
    /// `addr/prefix`.
    ///
    /// # Errors
    /// [`Ipv4NetError::PrefixLen`] when `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, Ipv4NetError> {
        if prefix > 32 {
            return Err(Ipv4NetError::PrefixLen(prefix));
        }
        Ok(Ipv4Net { addr, prefix })
    }

    /// `addr/prefix` for constants: a `prefix` above 32 fails the build when the constant
    /// is evaluated.
    pub const fn new_const(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        assert!(prefix <= 32, "IPv4 prefix length above 32");
        Ipv4Net { addr, prefix }
    }

    /// The address as given, host bits included.
    pub fn addr(self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        self.prefix
    }

    /// The netmask, e.g. 255.255.0.0 for /16.
    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    fn mask_bits(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The network address (host bits cleared), with the same prefix length.
    pub fn network(self) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask_bits()),
            prefix: self.prefix,
        }
    }

    /// The broadcast address (all host bits set).
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    /// True when `ip` lies inside this prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.addr) & self.mask_bits()
    }

    /// True when all of `other` lies inside this prefix.
    pub fn contains_net(self, other: Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The number of addresses in the prefix (2^(32-len)).
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`th address of the prefix (0 is the network address), or `None` past the end.
    pub fn nth(self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        let base = u64::from(u32::from(self.network().addr));
        u32::try_from(base + n).ok().map(Ipv4Addr::from)
    }

    /// The `index`th sub-prefix of length `len` inside this one, or `None` past the end or
    /// when `len` is shorter than this prefix.
    pub fn subnet(self, len: u8, index: u64) -> Option<Ipv4Net> {
        if len < self.prefix || len > 32 {
            return None;
        }
        let count = 1u64 << (u32::from(len) - u32::from(self.prefix));
        if index >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(len));
        let base = u64::from(u32::from(self.network().addr));
        let addr = u32::try_from(base + index * step).ok()?;
        Some(Ipv4Net {
            addr: Ipv4Addr::from(addr),
            prefix: len,
        })
    }

    /// The number of sub-prefixes of length `len` inside this one (0 when `len` is shorter).
    pub fn subnet_count(self, len: u8) -> u64 {
        if len < self.prefix || len > 32 {
            0
        } else {
            1u64 << (u32::from(len) - u32::from(self.prefix))
        }
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Ipv4Net {
    type Err = Ipv4NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || Ipv4NetError::Syntax(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix: u8 = len.parse().map_err(|_| syntax())?;
        Ipv4Net::new(addr, prefix)
    }
}

impl serde::Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_arithmetic() {
        let net: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(net.subnet_count(24), 256);
        let third = net.subnet(24, 3).unwrap();
        assert_eq!(third.to_string(), "10.244.3.0/24");
        assert_eq!(third.nth(1), Some(Ipv4Addr::new(10, 244, 3, 1)));
        assert_eq!(third.broadcast(), Ipv4Addr::new(10, 244, 3, 255));
        assert!(net.contains_net(third));
        assert!(!third.contains_net(net));
        assert_eq!(net.subnet(24, 256), None);
        assert_eq!(third.nth(256), None);
        let host: Ipv4Net = "10.244.1.5/16".parse().unwrap();
        assert_eq!(host.network().to_string(), "10.244.0.0/16");
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/008",
        ] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
    }
}
