//! In-memory behaviour tests of the switch: four ports, frames built by hand, simulated
//! time. Each test asserts what a station on a port would observe (where its frames go,
//! what reply it gets) and what an operator would read in the counters.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::mac::MacAddr;

const POD_A: u16 = 1;
const POD_B: u16 = 2;
const POD_C: u16 = 3;
const HOST: u16 = 4;

const A: MacAddr = MacAddr([0x0a, 0x58, 10, 244, 1, 5]);
const B: MacAddr = MacAddr([0x0a, 0x58, 10, 244, 1, 6]);
const C: MacAddr = MacAddr([0x0a, 0x58, 10, 244, 1, 7]);
const H: MacAddr = MacAddr([0x0a, 0x58, 10, 244, 1, 1]);
/// A station behind port C (port C has no port security: think of a nested bridge).
const M: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x4d]);
const STRANGER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);

const IP_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);
const IP_C: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
const IP_H: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const IP_M: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 77);
const VTEP_1: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 11);
const VTEP_2: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 12);

fn frame(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(60);
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().max(60), 0);
    out
}

/// IPv4/UDP 4000 -> 53 with 4 payload bytes, padded to 60.
fn udp(dst: MacAddr, src: MacAddr, src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    ip.extend_from_slice(&[0x0f, 0xa0, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
    frame(dst, src, 0x0800, &ip)
}

fn arp(op: u16, dst: MacAddr, src: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut packet = vec![0, 1, 8, 0, 6, 4];
    packet.extend_from_slice(&op.to_be_bytes());
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&spa.octets());
    packet.extend_from_slice(&[0; 6]);
    packet.extend_from_slice(&tpa.octets());
    frame(dst, src, 0x0806, &packet)
}

fn arp_request(src: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    arp(1, MacAddr::BROADCAST, src, spa, tpa)
}

fn pod(mac: MacAddr, ip: Ipv4Addr, security: bool) -> PortConfig {
    PortConfig {
        kind: PortKind::Pod,
        mac,
        ip: Some(ip),
        security,
    }
}

/// Ports 1 and 2: pods with port security; 3: a pod without; 4: the host port.
fn four_ports() -> Switch {
    let mut switch = Switch::new(SwitchConfig::default());
    switch.add_port(POD_A, pod(A, IP_A, true), Arc::default());
    switch.add_port(POD_B, pod(B, IP_B, true), Arc::default());
    switch.add_port(POD_C, pod(C, IP_C, false), Arc::default());
    let host = PortConfig {
        kind: PortKind::Host,
        mac: H,
        ip: Some(IP_H),
        security: false,
    };
    switch.add_port(HOST, host, Arc::default());
    switch
}

fn decide(switch: &mut Switch, now: Instant, ingress: PortId, frame: &[u8]) -> Verdict {
    let mut reply = [0u8; 64];
    switch.decide(now, ingress, frame, &mut reply)
}

fn stats(switch: &Switch, port: PortId) -> PortStatsSnapshot {
    switch.stats(port).map(|s| s.snapshot()).unwrap_or_default()
}

#[test]
fn learning_then_unicast() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    // The host speaks to M, whom nobody has heard yet: flooded.
    let to_m = udp(M, H, IP_H, IP_M);
    assert_eq!(decide(&mut switch, t0, HOST, &to_m), Verdict::Flood);
    // M answers from port C: the host was learned, so it goes straight there.
    let to_h = udp(H, M, IP_M, IP_H);
    assert_eq!(
        decide(&mut switch, t0, POD_C, &to_h),
        Verdict::Unicast(Location::Port(HOST))
    );
    // And now M is known too.
    assert_eq!(
        decide(&mut switch, t0, HOST, &to_m),
        Verdict::Unicast(Location::Port(POD_C))
    );
    assert_eq!(stats(&switch, HOST).rx_packets, 2);
    assert_eq!(stats(&switch, HOST).rx_bytes, 120);
    assert_eq!(stats(&switch, POD_C).total_drops(), 0);
}

#[test]
fn pinned_pod_is_reachable_before_it_speaks() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let to_b = udp(B, A, IP_A, IP_B);
    assert_eq!(
        decide(&mut switch, t0, POD_A, &to_b),
        Verdict::Unicast(Location::Port(POD_B))
    );
    // Pinned entries do not age.
    let much_later = t0 + Duration::from_secs(86_400);
    assert_eq!(switch.age(much_later), 0);
    assert_eq!(
        decide(&mut switch, much_later, POD_A, &to_b),
        Verdict::Unicast(Location::Port(POD_B))
    );
}

#[test]
fn unknown_unicast_floods_to_all_but_ingress() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let to_stranger = udp(STRANGER, A, IP_A, Ipv4Addr::new(10, 244, 9, 9));
    assert_eq!(decide(&mut switch, t0, POD_A, &to_stranger), Verdict::Flood);
    assert_eq!(
        switch.flood_ports(POD_A).collect::<Vec<_>>(),
        vec![POD_B, POD_C, HOST]
    );
}

#[test]
fn broadcast_and_multicast_never_go_back_out_the_ingress_port() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let broadcast = udp(MacAddr::BROADCAST, C, IP_C, Ipv4Addr::BROADCAST);
    assert_eq!(decide(&mut switch, t0, POD_C, &broadcast), Verdict::Flood);
    let multicast = udp(
        MacAddr([0x01, 0x00, 0x5e, 0, 0, 0xfb]),
        C,
        IP_C,
        Ipv4Addr::new(224, 0, 0, 251),
    );
    assert_eq!(decide(&mut switch, t0, POD_C, &multicast), Verdict::Flood);
    let out: Vec<_> = switch.flood_ports(POD_C).collect();
    assert_eq!(out, vec![POD_A, POD_B, HOST]);
    assert!(!out.contains(&POD_C));
}

#[test]
fn arp_for_a_known_address_is_answered() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let remote_ip = Ipv4Addr::new(10, 244, 2, 9);
    let remote_mac = MacAddr::from_ipv4(remote_ip);
    switch.set_address(IP_B, B);
    switch.set_address(remote_ip, remote_mac);

    for (target_ip, owner) in [(IP_B, B), (remote_ip, remote_mac)] {
        let mut reply = [0xeeu8; 64];
        let request = arp_request(A, IP_A, target_ip);
        let verdict = switch.decide(t0, POD_A, &request, &mut reply);
        assert_eq!(verdict, Verdict::Reply { len: 42 });
        let mut expected = Vec::new();
        expected.extend_from_slice(&A.octets()); // to the requester
        expected.extend_from_slice(&owner.octets()); // from the owner
        expected.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
        expected.extend_from_slice(&owner.octets());
        expected.extend_from_slice(&target_ip.octets());
        expected.extend_from_slice(&A.octets());
        expected.extend_from_slice(&IP_A.octets());
        assert_eq!(reply[..42], expected[..]);
    }
    let a = stats(&switch, POD_A);
    assert_eq!((a.rx_packets, a.arp_replies, a.total_drops()), (2, 2, 0));

    // Forgotten addresses are flooded again.
    switch.remove_address(remote_ip);
    let request = arp_request(A, IP_A, remote_ip);
    assert_eq!(decide(&mut switch, t0, POD_A, &request), Verdict::Flood);
}

#[test]
fn arp_the_switch_must_not_answer_is_flooded() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    for (ip, mac) in [(IP_A, A), (IP_B, B), (IP_M, M)] {
        switch.set_address(ip, mac);
    }
    // Gratuitous ARP: A announces its own address.
    let gratuitous = arp_request(A, IP_A, IP_A);
    assert_eq!(decide(&mut switch, t0, POD_A, &gratuitous), Verdict::Flood);
    // RFC 5227 probe: A checks nobody else holds its address.
    let probe = arp_request(A, Ipv4Addr::UNSPECIFIED, IP_A);
    assert_eq!(decide(&mut switch, t0, POD_A, &probe), Verdict::Flood);
    // M lives behind port C; C asks for M: the switch does not speak for M to its own port.
    let from_m = udp(H, M, IP_M, IP_H);
    decide(&mut switch, t0, POD_C, &from_m);
    let ask_m = arp_request(C, IP_C, IP_M);
    assert_eq!(decide(&mut switch, t0, POD_C, &ask_m), Verdict::Flood);
    // ARP replies and unknown targets are forwarded as usual.
    let unknown = arp_request(A, IP_A, Ipv4Addr::new(10, 244, 7, 7));
    assert_eq!(decide(&mut switch, t0, POD_A, &unknown), Verdict::Flood);
    let answer = arp(2, C, A, IP_A, IP_C);
    assert_eq!(
        decide(&mut switch, t0, POD_A, &answer),
        Verdict::Unicast(Location::Port(POD_C))
    );
    // A reply buffer too short to answer: flooded, so the owner answers.
    let mut tiny = [0u8; 16];
    let ask_b = arp_request(A, IP_A, IP_B);
    assert_eq!(switch.decide(t0, POD_A, &ask_b, &mut tiny), Verdict::Flood);
    // A VLAN-tagged request is not answered (the switch speaks untagged only).
    let mut tagged = ask_b[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&ask_b[12..]);
    assert_eq!(decide(&mut switch, t0, POD_A, &tagged), Verdict::Flood);
    assert_eq!(stats(&switch, POD_A).arp_replies, 0);
}

#[test]
fn spoofed_frames_from_a_secured_pod_are_dropped_and_counted() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let spoofs = [
        // Someone else's source MAC.
        udp(C, B, IP_B, IP_C),
        // Own MAC, someone else's IPv4 source.
        udp(C, A, IP_B, IP_C),
        // ARP claiming someone else's IP.
        arp_request(A, IP_B, IP_C),
        // ARP with a sender MAC that is not the frame's.
        {
            let mut f = arp_request(A, IP_A, IP_C);
            f[22..28].copy_from_slice(&M.octets());
            f
        },
        // Own MAC, but an ethertype a pod has no business with (LLDP).
        frame(MacAddr::BROADCAST, A, 0x88cc, &[0; 46]),
        // Own MAC and address, behind two VLAN tags policy could not see through.
        {
            let inner = udp(C, A, IP_A, IP_C);
            let mut f = inner[..12].to_vec();
            f.extend_from_slice(&[0x88, 0xa8, 0, 5, 0x81, 0x00, 0, 6]);
            f.extend_from_slice(&inner[12..]);
            f
        },
    ];
    for spoof in &spoofs {
        assert_eq!(
            decide(&mut switch, t0, POD_A, spoof),
            Verdict::Drop(DropReason::PortSecurity)
        );
    }
    let a = stats(&switch, POD_A);
    assert_eq!(a.drops(DropReason::PortSecurity), 6);
    assert_eq!(a.rx_packets, 6);
    // The spoofed MAC was not learned on A's port: B's frames still reach B.
    assert_eq!(
        switch.mac_table().lookup(B, t0),
        Some(Location::Port(POD_B))
    );
    assert_eq!(switch.mac_table().lookup(M, t0), None);
    // Unspecified source (DHCP-like) and own address pass.
    let dhcp = udp(
        MacAddr::BROADCAST,
        A,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
    );
    assert_eq!(decide(&mut switch, t0, POD_A, &dhcp), Verdict::Flood);
    let own = udp(B, A, IP_A, IP_B);
    assert_eq!(
        decide(&mut switch, t0, POD_A, &own),
        Verdict::Unicast(Location::Port(POD_B))
    );
    assert_eq!(stats(&switch, POD_A).total_drops(), 6);
}

#[test]
fn a_secured_pods_mac_cannot_be_taken_from_another_port() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    // Port C has no port security, the host is trusted: neither may use A's MAC.
    for port in [POD_C, HOST] {
        let stolen = udp(B, A, IP_A, IP_B);
        assert_eq!(
            decide(&mut switch, t0, port, &stolen),
            Verdict::Drop(DropReason::MacConflict)
        );
        assert_eq!(stats(&switch, port).drops(DropReason::MacConflict), 1);
    }
    assert_eq!(
        switch.mac_table().lookup(A, t0),
        Some(Location::Port(POD_A))
    );
}

#[test]
fn group_or_zero_source_is_invalid() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    for src in [
        MacAddr::BROADCAST,
        MacAddr::ZERO,
        MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
    ] {
        let bad = udp(H, src, IP_C, IP_H);
        assert_eq!(
            decide(&mut switch, t0, POD_C, &bad),
            Verdict::Drop(DropReason::InvalidSource)
        );
    }
    assert_eq!(stats(&switch, POD_C).drops(DropReason::InvalidSource), 3);
    assert_eq!(switch.mac_table().lookup(MacAddr::BROADCAST, t0), None);
}

#[test]
fn malformed_frames_are_counted_and_never_panic() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let good = udp(H, C, IP_C, IP_H);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43;
    let mut long_total = good.clone();
    long_total[16] = 0x05; // total length 1312 in a 60-byte frame
    let mut bad_arp = arp_request(C, IP_C, IP_H);
    bad_arp[18] = 16; // hlen 16
    let cases: [&[u8]; 7] = [
        &[],
        &good[..5],
        &good[..13],
        &good[..30],
        &bad_ihl,
        &long_total,
        &bad_arp,
    ];
    for case in cases {
        assert_eq!(
            decide(&mut switch, t0, POD_C, case),
            Verdict::Drop(DropReason::Malformed)
        );
    }
    let c = stats(&switch, POD_C);
    assert_eq!(c.drops(DropReason::Malformed), 7);
    assert_eq!(c.rx_packets, 7);
    // Nothing was learned from them.
    assert_eq!(switch.mac_table().lookup(C, t0), None);
}

#[test]
fn random_bytes_never_panic() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut buf = [0u8; 128];
    let mut reply = [0u8; 64];
    let ethertypes = [[8, 0], [8, 6], [0x86, 0xdd], [0x81, 0]];
    for round in 0..20_000usize {
        let len = round % 129;
        for byte in &mut buf[..len] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state.to_le_bytes()[0];
        }
        // Make the interesting ethertypes common.
        if len >= 14 {
            buf[12..14].copy_from_slice(&ethertypes[round % 4]);
        }
        let port = u16::try_from(round % 6).unwrap_or(0);
        let _ = switch.decide(t0, port, &buf[..len], &mut reply);
    }
    assert!(switch.mac_table().len() <= SwitchConfig::DEFAULT_MAC_CAPACITY);
}

#[test]
fn station_move_between_ports() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    let from_m = udp(H, M, IP_M, IP_H);
    decide(&mut switch, t0, POD_C, &from_m);
    let to_m = udp(M, A, IP_A, IP_M);
    assert_eq!(
        decide(&mut switch, t0, POD_A, &to_m),
        Verdict::Unicast(Location::Port(POD_C))
    );
    // M moves behind the host port.
    let t1 = t0 + Duration::from_secs(1);
    let from_m_again = udp(C, M, IP_M, IP_C);
    decide(&mut switch, t1, HOST, &from_m_again);
    assert_eq!(
        decide(&mut switch, t1, POD_A, &to_m),
        Verdict::Unicast(Location::Port(HOST))
    );
    // A and B (pinned), and M: one entry for M, not two.
    assert_eq!(switch.mac_table().len(), 3);
}

#[test]
fn destination_behind_the_ingress_port_is_a_hairpin() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    decide(&mut switch, t0, POD_C, &udp(H, M, IP_M, IP_H));
    let c_to_m = udp(M, C, IP_C, IP_M);
    assert_eq!(
        decide(&mut switch, t0, POD_C, &c_to_m),
        Verdict::Drop(DropReason::Hairpin)
    );
    assert_eq!(stats(&switch, POD_C).drops(DropReason::Hairpin), 1);
}

#[test]
fn remove_port_flushes_its_entries() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    decide(&mut switch, t0, POD_C, &udp(H, M, IP_M, IP_H));
    decide(&mut switch, t0, POD_C, &udp(H, C, IP_C, IP_H));
    assert!(switch
        .fdb(t0)
        .iter()
        .any(|&(_, at, _)| at == Location::Port(POD_C)));
    switch.remove_port(POD_C);
    assert!(switch
        .fdb(t0)
        .iter()
        .all(|&(_, at, _)| at != Location::Port(POD_C)));
    assert_eq!(
        switch.port_ids().collect::<Vec<_>>(),
        vec![POD_A, POD_B, HOST]
    );
    assert!(switch.stats(POD_C).is_none());
    // Frames to M are unknown unicast again, and never go to the removed port.
    let to_m = udp(M, A, IP_A, IP_M);
    assert_eq!(decide(&mut switch, t0, POD_A, &to_m), Verdict::Flood);
    assert!(!switch.flood_ports(POD_A).any(|p| p == POD_C));
    // The removed port's frames are dropped and counted switch-wide.
    assert_eq!(
        decide(&mut switch, t0, POD_C, &udp(H, C, IP_C, IP_H)),
        Verdict::Drop(DropReason::UnknownPort)
    );
    assert_eq!(switch.unknown_port_drops(), 1);
    // A secured pod's pinned MAC goes with its port.
    switch.remove_port(POD_A);
    assert_eq!(switch.mac_table().lookup(A, t0), None);
}

#[test]
fn idle_entries_age_out() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    decide(&mut switch, t0, POD_C, &udp(H, M, IP_M, IP_H));
    let to_m = udp(M, A, IP_A, IP_M);
    let t_live = t0 + SwitchConfig::DEFAULT_AGING;
    assert_eq!(
        decide(&mut switch, t_live, POD_A, &to_m),
        Verdict::Unicast(Location::Port(POD_C))
    );
    let t_dead = t_live + Duration::from_secs(1);
    assert_eq!(decide(&mut switch, t_dead, POD_A, &to_m), Verdict::Flood);
    assert_eq!(switch.age(t_dead), 1);
    // Pinned A and B stay; M went.
    let fdb = switch.fdb(t_dead);
    assert_eq!(
        fdb.iter().map(|&(mac, _, _)| mac).collect::<Vec<_>>(),
        vec![A, B]
    );
}

#[test]
fn fdb_shows_location_and_idle_time() {
    let mut switch = four_ports();
    let t0 = Instant::now();
    decide(&mut switch, t0, POD_C, &udp(H, M, IP_M, IP_H));
    decide(&mut switch, t0, POD_A, &udp(H, A, IP_A, IP_H));
    let t1 = t0 + Duration::from_secs(7);
    assert_eq!(
        switch.fdb(t1),
        vec![
            (M, Location::Port(POD_C), Duration::from_secs(7)),
            (A, Location::Port(POD_A), Duration::from_secs(7)),
            (B, Location::Port(POD_B), Duration::ZERO),
        ]
    );
}

#[test]
fn frames_from_the_overlay() {
    let mut switch = four_ports();
    const OVERLAY: u16 = 9;
    let overlay = PortConfig {
        kind: PortKind::Overlay,
        mac: MacAddr::ZERO,
        ip: None,
        security: true, // ignored: only pods are checked
    };
    switch.add_port(OVERLAY, overlay, Arc::default());
    let t0 = Instant::now();
    let mut reply = [0u8; 64];
    let remote = MacAddr::from_ipv4(Ipv4Addr::new(10, 244, 2, 3));
    let remote_ip = Ipv4Addr::new(10, 244, 2, 3);
    // A remote pod broadcasts: local ports only (the overlay is the ingress).
    let hello = udp(MacAddr::BROADCAST, remote, remote_ip, Ipv4Addr::BROADCAST);
    assert_eq!(
        switch.decide_from_vtep(t0, OVERLAY, VTEP_1, &hello, &mut reply),
        Verdict::Flood
    );
    assert_eq!(
        switch.flood_ports(OVERLAY).collect::<Vec<_>>(),
        vec![POD_A, POD_B, POD_C, HOST]
    );
    // Local pods now reach it through its VTEP.
    let to_remote = udp(remote, A, IP_A, remote_ip);
    assert_eq!(
        decide(&mut switch, t0, POD_A, &to_remote),
        Verdict::Unicast(Location::Vtep(VTEP_1))
    );
    // A frame from another VTEP for it is not relayed (split horizon).
    let other = MacAddr::from_ipv4(Ipv4Addr::new(10, 244, 3, 3));
    let relay = udp(remote, other, Ipv4Addr::new(10, 244, 3, 3), remote_ip);
    assert_eq!(
        switch.decide_from_vtep(t0, OVERLAY, VTEP_2, &relay, &mut reply),
        Verdict::Drop(DropReason::Hairpin)
    );
    // To a local pod: delivered.
    let to_b = udp(B, remote, remote_ip, IP_B);
    assert_eq!(
        switch.decide_from_vtep(t0, OVERLAY, VTEP_1, &to_b, &mut reply),
        Verdict::Unicast(Location::Port(POD_B))
    );
    // ARP from a remote node for a local pod is answered; for a pod behind the very VTEP
    // that asks, it is not.
    switch.set_address(IP_B, B);
    switch.set_address(remote_ip, remote);
    let ask_b = arp_request(other, Ipv4Addr::new(10, 244, 3, 3), IP_B);
    assert_eq!(
        switch.decide_from_vtep(t0, OVERLAY, VTEP_2, &ask_b, &mut reply),
        Verdict::Reply { len: 42 }
    );
    let ask_remote = arp_request(
        MacAddr::from_ipv4(Ipv4Addr::new(10, 244, 2, 4)),
        Ipv4Addr::new(10, 244, 2, 4),
        remote_ip,
    );
    assert_eq!(
        switch.decide_from_vtep(t0, OVERLAY, VTEP_1, &ask_remote, &mut reply),
        Verdict::Flood
    );
    // A node leaving takes its MACs along.
    assert_eq!(switch.forget_vtep(VTEP_1), 2);
    assert_eq!(decide(&mut switch, t0, POD_A, &to_remote), Verdict::Flood);
}

#[test]
fn flood_without_peers_is_dropped() {
    let mut switch = Switch::new(SwitchConfig::default());
    switch.add_port(POD_A, pod(A, IP_A, true), Arc::default());
    let t0 = Instant::now();
    let broadcast = udp(MacAddr::BROADCAST, A, IP_A, Ipv4Addr::BROADCAST);
    assert_eq!(
        decide(&mut switch, t0, POD_A, &broadcast),
        Verdict::Drop(DropReason::NoPeers)
    );
    assert_eq!(stats(&switch, POD_A).drops(DropReason::NoPeers), 1);
}

#[test]
fn mac_table_capacity_holds_under_a_mac_flood() {
    let config = SwitchConfig {
        mac_capacity: 64,
        ..SwitchConfig::default()
    };
    let mut switch = Switch::new(config);
    switch.add_port(POD_C, pod(C, IP_C, false), Arc::default());
    switch.add_port(
        HOST,
        PortConfig {
            kind: PortKind::Host,
            mac: H,
            ip: None,
            security: false,
        },
        Arc::default(),
    );
    let t0 = Instant::now();
    for n in 0..1000u16 {
        let [hi, lo] = n.to_be_bytes();
        let src = MacAddr([0x02, 0, 0, 0, hi, lo]);
        decide(&mut switch, t0, POD_C, &udp(H, src, IP_C, IP_H));
    }
    assert_eq!(switch.mac_table().len(), 64);
    assert_eq!(switch.mac_table().evictions(), 1000 - 64);
}

/// Port C (no port security: a nested bridge, say) floods source MACs; with a bound of 16
/// per port it churns only its own 16 entries. The host's, a pinned pod's and a remote
/// VTEP's entries stay, nothing is evicted from the table as a whole, and the evictions
/// are counted on port C.
#[test]
fn a_mac_flood_from_one_port_evicts_only_that_ports_entries() {
    let mut switch = Switch::new(SwitchConfig {
        mac_capacity: 64,
        mac_per_port: 16,
        ..SwitchConfig::default()
    });
    switch.add_port(POD_A, pod(A, IP_A, true), Arc::default());
    switch.add_port(POD_C, pod(C, IP_C, false), Arc::default());
    let host = PortConfig {
        kind: PortKind::Host,
        mac: H,
        ip: None,
        security: false,
    };
    switch.add_port(HOST, host, Arc::default());
    let overlay = PortConfig {
        kind: PortKind::Overlay,
        mac: MacAddr::ZERO,
        ip: None,
        security: false,
    };
    const OVERLAY: PortId = 9;
    switch.add_port(OVERLAY, overlay, Arc::default());
    let t0 = Instant::now();
    let mut reply = [0u8; 64];
    decide(&mut switch, t0, HOST, &udp(A, H, IP_H, IP_A));
    let remote = MacAddr([0x0a, 0x58, 10, 244, 2, 9]);
    let from_remote = udp(A, remote, Ipv4Addr::new(10, 244, 2, 9), IP_A);
    switch.decide_from_vtep(t0, OVERLAY, VTEP_1, &from_remote, &mut reply);
    for n in 0..1000u16 {
        let [hi, lo] = n.to_be_bytes();
        let src = MacAddr([0x02, 0, 0, 0, hi, lo]);
        let now = t0 + Duration::from_millis(u64::from(n));
        decide(&mut switch, now, POD_C, &udp(H, src, IP_C, IP_H));
    }
    let now = t0 + Duration::from_secs(1);
    let table = switch.mac_table();
    assert_eq!(table.learned_at(Location::Port(POD_C)), 16);
    assert_eq!(table.evictions(), 0);
    assert_eq!(table.location_evictions(), 1000 - 16);
    assert_eq!(stats(&switch, POD_C).mac_evictions, 1000 - 16);
    assert_eq!(stats(&switch, HOST).mac_evictions, 0);
    assert_eq!(table.lookup(H, now), Some(Location::Port(HOST)));
    assert_eq!(table.lookup(A, now), Some(Location::Port(POD_A)));
    assert_eq!(table.lookup(remote, now), Some(Location::Vtep(VTEP_1)));
    // The newest 16 of the flood are there, the older ones are not.
    assert!(table
        .lookup(MacAddr([0x02, 0, 0, 0, 0x03, 0xe7]), now)
        .is_some());
    assert!(table
        .lookup(MacAddr([0x02, 0, 0, 0, 0x03, 0xd7]), now)
        .is_none());
    // Unicast to the others still goes straight to them.
    assert_eq!(
        decide(&mut switch, now, POD_A, &udp(H, A, IP_A, IP_H)),
        Verdict::Unicast(Location::Port(HOST))
    );
}

/// A broadcast storm from pod A floods 200 frames, then 1000 a second; the rest are
/// dropped as `flood_rate` on A. Pod B's broadcasts, a remote VTEP's, and A's unicast to
/// known stations are not held back by A's storm; another VTEP's storm is limited on its
/// own.
#[test]
fn a_broadcast_storm_is_rate_limited_per_port() {
    let mut switch = four_ports();
    let overlay = PortConfig {
        kind: PortKind::Overlay,
        mac: MacAddr::ZERO,
        ip: None,
        security: false,
    };
    const OVERLAY: PortId = 9;
    switch.add_port(OVERLAY, overlay, Arc::default());
    let rate = SwitchConfig::DEFAULT_FLOOD_RATE;
    let t0 = Instant::now();
    let storm = udp(MacAddr::BROADCAST, A, IP_A, Ipv4Addr::BROADCAST);
    let unknown = udp(STRANGER, A, IP_A, IP_M);
    let count = |switch: &mut Switch, port: PortId, frame: &[u8], frames: u32, now: Instant| {
        (0..frames)
            .filter(|_| decide(switch, now, port, frame) == Verdict::Flood)
            .count()
    };
    assert_eq!(
        count(&mut switch, POD_A, &storm, 5000, t0),
        usize::try_from(rate.burst).unwrap_or(0)
    );
    // Unknown unicast comes out of the same bucket.
    assert_eq!(count(&mut switch, POD_A, &unknown, 10, t0), 0);
    let a = stats(&switch, POD_A);
    assert_eq!(a.drops(DropReason::FloodRate), 5000 - 200 + 10);
    assert_eq!(a.total_drops(), a.drops(DropReason::FloodRate));
    // Known unicast from A still goes.
    assert_eq!(
        decide(&mut switch, t0, POD_A, &udp(B, A, IP_A, IP_B)),
        Verdict::Unicast(Location::Port(POD_B))
    );
    // B is not starved by A's storm.
    let from_b = udp(MacAddr::BROADCAST, B, IP_B, Ipv4Addr::BROADCAST);
    assert_eq!(count(&mut switch, POD_B, &from_b, 5, t0), 5);
    // The sustained rate: over the next second, 1 ms apart, about 1000 more.
    let mut passed = 0;
    for ms in 1..=1000u64 {
        let now = t0 + Duration::from_millis(ms);
        passed += count(&mut switch, POD_A, &storm, 3, now);
    }
    assert!((999..=1001).contains(&passed), "{passed}");

    // Per VTEP: VTEP_1's storm does not hold back VTEP_2.
    let mut reply = [0u8; 64];
    let r1 = MacAddr([0x0a, 0x58, 10, 244, 2, 9]);
    let r2 = MacAddr([0x0a, 0x58, 10, 244, 3, 9]);
    let storm_1 = udp(
        MacAddr::BROADCAST,
        r1,
        Ipv4Addr::new(10, 244, 2, 9),
        Ipv4Addr::BROADCAST,
    );
    let storm_2 = udp(
        MacAddr::BROADCAST,
        r2,
        Ipv4Addr::new(10, 244, 3, 9),
        Ipv4Addr::BROADCAST,
    );
    let t1 = t0 + Duration::from_secs(10);
    let floods = (0..1000)
        .filter(|_| {
            switch.decide_from_vtep(t1, OVERLAY, VTEP_1, &storm_1, &mut reply) == Verdict::Flood
        })
        .count();
    assert_eq!(floods, 200);
    assert_eq!(
        switch.decide_from_vtep(t1, OVERLAY, VTEP_2, &storm_2, &mut reply),
        Verdict::Flood
    );
    assert_eq!(stats(&switch, OVERLAY).drops(DropReason::FloodRate), 800);
    // A VTEP that leaves takes its bucket along.
    switch.forget_vtep(VTEP_1);
    assert_eq!(
        switch.decide_from_vtep(t1, OVERLAY, VTEP_1, &storm_1, &mut reply),
        Verdict::Flood
    );
}

#[test]
fn flood_rate_zero_means_no_limit() {
    let mut switch = Switch::new(SwitchConfig {
        flood_rate: FloodRate::UNLIMITED,
        ..SwitchConfig::default()
    });
    switch.add_port(POD_A, pod(A, IP_A, true), Arc::default());
    switch.add_port(POD_B, pod(B, IP_B, true), Arc::default());
    let t0 = Instant::now();
    let storm = udp(MacAddr::BROADCAST, A, IP_A, Ipv4Addr::BROADCAST);
    for _ in 0..10_000 {
        assert_eq!(decide(&mut switch, t0, POD_A, &storm), Verdict::Flood);
    }
}

#[test]
fn a_secured_pod_keeps_its_rules_when_its_mac_entry_changes() {
    // The switch refreshes a secured pod's own MAC through the slot it was pinned in;
    // whatever happens to that entry, the pod's frames are decided as before.
    let mut switch = four_ports();
    let t0 = Instant::now();
    let to_h = udp(H, A, IP_A, IP_H);
    let later = t0 + Duration::from_secs(7);
    assert_eq!(
        decide(&mut switch, t0, HOST, &udp(A, H, IP_H, IP_A)),
        Verdict::Unicast(Location::Port(POD_A))
    );
    assert_eq!(
        decide(&mut switch, later, POD_A, &to_h),
        Verdict::Unicast(Location::Port(HOST))
    );
    let idle = |switch: &Switch, now| {
        switch
            .fdb(now)
            .into_iter()
            .find(|&(mac, _, _)| mac == A)
            .map(|(_, _, idle)| idle)
    };
    assert_eq!(
        idle(&switch, later + Duration::from_secs(3)),
        Some(Duration::from_secs(3))
    );
    // The cluster store places A's MAC behind a VTEP (the same MAC on another node):
    // A's frames are a conflict now, as for any other port.
    let vtep = Ipv4Addr::new(192, 168, 0, 2);
    assert!(switch.set_remote_station(A, vtep));
    assert_eq!(
        decide(&mut switch, later, POD_A, &to_h),
        Verdict::Drop(DropReason::MacConflict)
    );
    assert_eq!(stats(&switch, POD_A).drops(DropReason::MacConflict), 1);
    // Its port attached again: pinned again (in whatever slot), forwarded again.
    assert!(switch.remove_remote_station(A, vtep));
    switch.remove_port(POD_A);
    decide(&mut switch, t0, POD_C, &udp(H, M, IP_M, IP_H));
    switch.add_port(POD_A, pod(A, IP_A, true), Arc::default());
    assert_eq!(
        decide(&mut switch, later, POD_A, &to_h),
        Verdict::Unicast(Location::Port(HOST))
    );
    assert_eq!(
        switch.mac_table().lookup(M, t0),
        Some(Location::Port(POD_C))
    );
    // Another port still cannot take A's MAC.
    assert_eq!(
        decide(&mut switch, later, POD_C, &to_h),
        Verdict::Drop(DropReason::MacConflict)
    );
}
