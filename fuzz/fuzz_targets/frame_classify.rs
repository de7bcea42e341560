//! Fuzz target: an Ethernet frame from a pod's TAP, the node's `vsw0` or the overlay.
//!
//! Runs [`vswitch::wire::classify`] on the input and checks what it returns against the
//! bytes, then runs the whole forwarding decision of a [`Switch`] with three ports (a pod
//! with port security, the host port, the overlay port) on the same bytes: from each
//! port, from an unknown port, and from a remote VTEP. `decide` must never panic, and
//! every verdict must be one the module docs allow for that ingress.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vswitch::mac::MacAddr;
use vswitch::switch::{
    DropReason, Location, PortConfig, PortKind, PortStats, Switch, SwitchConfig, Verdict,
    ARP_REPLY_LEN,
};
use vswitch::wire::{classify, FrameError, L3Info, ARP_OP_REPLY, ARP_OP_REQUEST};

const POD: u16 = 1;
const HOST: u16 = 2;
const OVERLAY: u16 = 3;
const UNKNOWN: u16 = 9;

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);
const VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 12);

fn check_classify(data: &[u8]) {
    let result = classify(data);
    if data.len() < 14 {
        assert_eq!(result, Err(FrameError::Truncated), "short frame accepted");
        return;
    }
    let Ok(info) = result else { return };
    assert_eq!(data.get(0..6), Some(&info.dst.octets()[..]));
    assert_eq!(data.get(6..12), Some(&info.src.octets()[..]));
    assert_eq!(info.l3_offset, if info.vlan.is_some() { 18 } else { 14 });
    assert!(info.l3_offset <= data.len());
    if let Some(vid) = info.vlan {
        assert_eq!(data.get(12..14), Some(&[0x81, 0x00][..]));
        assert!(vid < 4096, "VLAN id {vid} wider than 12 bits");
    }
    let ethertype = data
        .get(info.l3_offset - 2..info.l3_offset)
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    assert_eq!(ethertype, Some(info.ethertype));
    match info.l3 {
        L3Info::Arp(_) => assert_eq!(info.ethertype, 0x0806),
        L3Info::Ipv4 { protocol, l4, .. } => {
            assert_eq!(info.ethertype, 0x0800);
            if l4.is_some() {
                assert!(
                    matches!(protocol, 6 | 17 | 132),
                    "ports for protocol {protocol}"
                );
            }
        }
        L3Info::Ipv6 { .. } => assert_eq!(info.ethertype, 0x86dd),
        L3Info::Other(other) => {
            assert_eq!(other, info.ethertype);
            assert!(!matches!(other, 0x0806 | 0x0800 | 0x86dd));
        }
    }
}

fn switch() -> Switch {
    let mut switch = Switch::new(SwitchConfig {
        mac_capacity: 64,
        aging: Duration::from_secs(300),
        ..SwitchConfig::default()
    });
    let pod = PortConfig {
        kind: PortKind::Pod,
        mac: MacAddr::from_ipv4(POD_IP),
        ip: Some(POD_IP),
        security: true,
    };
    let host = PortConfig {
        kind: PortKind::Host,
        mac: MacAddr::from_ipv4(HOST_IP),
        ip: Some(HOST_IP),
        security: false,
    };
    let overlay = PortConfig {
        kind: PortKind::Overlay,
        mac: MacAddr::ZERO,
        ip: None,
        security: false,
    };
    switch.add_port(POD, pod, Arc::new(PortStats::new()));
    switch.add_port(HOST, host, Arc::new(PortStats::new()));
    switch.add_port(OVERLAY, overlay, Arc::new(PortStats::new()));
    switch.set_address(POD_IP, MacAddr::from_ipv4(POD_IP));
    switch.set_address(HOST_IP, MacAddr::from_ipv4(HOST_IP));
    switch.set_address(REMOTE_IP, MacAddr::from_ipv4(REMOTE_IP));
    assert!(switch.set_remote_station(MacAddr::from_ipv4(REMOTE_IP), VTEP));
    switch
}

/// Checks one verdict; `from_vtep` for frames handed in with `decide_from_vtep`.
fn check_verdict(
    switch: &Switch,
    ingress: u16,
    from_vtep: bool,
    data: &[u8],
    verdict: Verdict,
    reply: &[u8],
) {
    let classified = classify(data);
    match verdict {
        Verdict::Reply { len } => {
            assert!(
                len <= reply.len(),
                "reply of {len} bytes in a {}-byte buffer",
                reply.len()
            );
            assert_eq!(len, ARP_REPLY_LEN);
            let request = match classified {
                Ok(info) => info,
                Err(e) => panic!("replied to a frame that does not classify: {e}"),
            };
            let L3Info::Arp(asked) = request.l3 else {
                panic!("replied to a non-ARP frame: {request:?}");
            };
            assert_eq!(asked.op, ARP_OP_REQUEST);
            let answer = classify(&reply[..len]).expect("the switch's ARP reply classifies");
            let L3Info::Arp(told) = answer.l3 else {
                panic!("the reply is not ARP: {answer:?}");
            };
            assert_eq!(told.op, ARP_OP_REPLY);
            assert_eq!(answer.dst, asked.sender_mac, "reply goes back to the asker");
            assert_eq!(told.target_mac, asked.sender_mac);
            assert_eq!(told.sender_ip, asked.target_ip);
            assert_eq!(told.target_ip, asked.sender_ip);
            assert_eq!(switch.address(asked.target_ip), Some(told.sender_mac));
        }
        Verdict::Unicast(to) => {
            assert!(classified.is_ok());
            match to {
                Location::Port(port) => {
                    assert!(
                        switch.port_config(port).is_some(),
                        "unicast to a detached port"
                    );
                    assert_ne!(port, ingress, "hairpin unicast");
                }
                // Split horizon: a frame from a VTEP never goes back into the overlay.
                // (`decide` on the overlay port itself is not how the daemon feeds it
                // overlay frames, so it is not held to this.)
                Location::Vtep(_) => {
                    assert!(!from_vtep, "overlay frame sent back into the overlay")
                }
            }
        }
        Verdict::Flood => assert!(classified.is_ok()),
        Verdict::Drop(DropReason::Malformed) => assert!(classified.is_err()),
        Verdict::Drop(DropReason::UnknownPort) => assert_eq!(ingress, UNKNOWN),
        Verdict::Drop(_) => assert!(classified.is_ok()),
    }
    if ingress == POD && !matches!(verdict, Verdict::Drop(_)) {
        // Port security: nothing but the pod's own MAC gets through.
        let info = classified.expect("admitted frames classify");
        assert_eq!(
            info.src,
            MacAddr::from_ipv4(POD_IP),
            "port security let a foreign MAC in"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check_classify(data);

    let mut switch = switch();
    let start = Instant::now();
    let mut reply = [0u8; 64];
    for (step, ingress) in [POD, HOST, OVERLAY, UNKNOWN].into_iter().enumerate() {
        let now = start + Duration::from_secs(u64::try_from(step).unwrap_or(0));
        let rx_before = switch.stats(ingress).map(|s| s.snapshot().rx_packets);
        let verdict = switch.decide(now, ingress, data, &mut reply);
        check_verdict(&switch, ingress, false, data, verdict, &reply);
        if let Some(before) = rx_before {
            let after = switch.stats(ingress).map(|s| s.snapshot().rx_packets);
            assert_eq!(after, Some(before + 1), "frame not counted as rx");
        }
    }
    let verdict = switch.decide_from_vtep(
        start + Duration::from_secs(10),
        OVERLAY,
        VTEP,
        data,
        &mut reply,
    );
    check_verdict(&switch, OVERLAY, true, data, verdict, &reply);
    // A reply buffer too short for an ARP reply: the switch floods instead of answering.
    let mut short = [0u8; ARP_REPLY_LEN - 1];
    let verdict = switch.decide(start + Duration::from_secs(11), HOST, data, &mut short);
    assert!(
        !matches!(verdict, Verdict::Reply { .. }),
        "reply into a short buffer"
    );
    check_verdict(&switch, HOST, false, data, verdict, &short);
});
