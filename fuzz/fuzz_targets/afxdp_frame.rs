//! Fuzz target: a whole frame from the underlay device, as the AF_XDP underlay receives
//! it (Ethernet, IPv4, UDP, VXLAN).
//!
//! [`frame::parse`] must return the UDP payload's range inside the frame and the
//! sender, or a clean error. What parses must rebuild ([`frame::build`]) into a frame
//! that parses to the same payload and sender.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use overlay::underlay::afxdp::frame;
use overlay::OuterHeaders;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 250, 11);
const PORT: u16 = 4789;

fuzz_target!(|data: &[u8]| {
    let Ok((range, src)) = frame::parse(data, LOCAL, PORT) else {
        return;
    };
    assert!(range.start >= 42 && range.end <= data.len(), "{range:?}");
    let payload = &data[range];
    if payload.len() < 8 {
        // Too short for a VXLAN header: build refuses it, decapsulation would too.
        return;
    }
    let headers = OuterHeaders {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: src,
        dst_ip: LOCAL,
        src_port: 49152,
        dst_port: PORT,
        ttl: 64,
        vni: 0,
    };
    let mut out = vec![0u8; 42 + payload.len()];
    let len = frame::build(&headers, payload, &mut out).expect("a parsed payload rebuilds");
    let (again, again_src) = frame::parse(&out[..len], LOCAL, PORT).expect("rebuilt frame parses");
    assert_eq!(&out[again], payload);
    assert_eq!(again_src, src);
});
