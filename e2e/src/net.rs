//! Small address helpers for assertions: CIDR text, subnet membership, derived MACs.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

/// `"10.244.1.5/16"` → (10.244.1.5, 16).
///
/// # Panics
/// When the text is not `A.B.C.D/N` with N ≤ 32.
pub fn parse_cidr(text: &str) -> (Ipv4Addr, u8) {
    let parsed = text.split_once('/').and_then(|(addr, len)| {
        let addr: Ipv4Addr = addr.parse().ok()?;
        let len: u8 = len.parse().ok()?;
        (len <= 32).then_some((addr, len))
    });
    parsed.unwrap_or_else(|| panic!("not an IPv4 CIDR: {text:?}"))
}

/// Whether `ip` lies in `cidr` (`"10.244.1.0/24"`).
///
/// # Panics
/// When `cidr` is not a CIDR.
pub fn subnet_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let (net, len) = parse_cidr(cidr);
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}

/// The MAC the design derives from a pod's IPv4 address: `0a:58:` + its four bytes.
pub fn mac_for_ip(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_macs() {
        assert_eq!(
            parse_cidr("10.244.1.5/16"),
            (Ipv4Addr::new(10, 244, 1, 5), 16)
        );
        assert!(subnet_contains(
            "10.244.1.0/24",
            Ipv4Addr::new(10, 244, 1, 77)
        ));
        assert!(!subnet_contains(
            "10.244.1.0/24",
            Ipv4Addr::new(10, 244, 2, 1)
        ));
        assert!(subnet_contains("0.0.0.0/0", Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(
            mac_for_ip(Ipv4Addr::new(10, 244, 1, 5)),
            "0a:58:0a:f4:01:05"
        );
    }
}
