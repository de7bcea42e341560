//! Several switches joined by an in-memory VXLAN underlay: learning, flooding, split
//! horizon, the checks on received datagrams, ARP, station moves, segmentation and aging,
//! as pods and operators would observe them.
//!
//! Each node is the daemon's data path driven by hand (see `common`): pod frames go
//! through `Switch::decide` and the `OverlayPort`, datagrams come back in batches through
//! `OverlayPort::recv_blocks`, `Switch::decide_from_vtep` and the TCP coalescer. Time is
//! simulated.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::{Ipv4Header, TcpHeader};
use overlay::{encapsulate, GsoKind, Offload, Underlay, VXLAN_HEADER_LEN};
use vswitch::mac::MacAddr;
use vswitch::switch::{DropReason, Location, PortId, SwitchConfig};
use vswitch::wire::virtio_net::{
    VirtioNetHdr, VirtioNetRepr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4,
};

use common::{
    arp_reply, arp_request, cluster, ethernet, ethernet_frame, in_flight, settle, tcp_tso, udp,
    udp_to, vtep, Node, Station, MTU, VNET, VNI,
};

/// A station nobody has heard of.
const STRANGER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
const STRANGER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 9, 9);

/// Every frame delivered on any local port of `node`, taken.
fn take_all(node: &mut Node, stations: &[Station]) -> Vec<(PortId, Vec<u8>)> {
    let mut out = Vec::new();
    for station in stations {
        for frame in node.take(station.port) {
            out.push((station.port, frame));
        }
    }
    assert_eq!(
        node.delivered(),
        0,
        "frames on a port the test did not list"
    );
    out
}

#[test]
fn learning_across_the_overlay() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);
    let c = n3.add_pod(5);

    // The store has not told node1 about b yet: a's first frame to b is unknown unicast,
    // replicated once to each peer VTEP (and to node1's own vsw0).
    let to_b = udp_to(a, b, b"hello b");
    n1.send_from(a.port, &to_b);
    assert_eq!(in_flight(&mesh), [0, 1, 1]);
    assert_eq!(n1.take(n1.host.port), vec![to_b.clone()]);
    assert_eq!(n1.delivered(), 0);

    n2.pump();
    n3.pump();
    // node2 hands it to b only (b's MAC is pinned to its port).
    assert_eq!(n2.take(b.port), vec![to_b.clone()]);
    assert_eq!(n2.delivered(), 0);
    // node3 does not know b either: it floods to its own ports, and only them.
    let (c_port, n3_host) = (c.port, n3.host.port);
    assert_eq!(n3.take(c_port), vec![to_b.clone()]);
    assert_eq!(n3.take(n3_host), vec![to_b.clone()]);
    assert_eq!(in_flight(&mesh), [0, 0, 0]);

    // node2 learned a behind node1's VTEP: b's reply goes to node1 only.
    assert_eq!(n2.fdb(a.mac), Some(Location::Vtep(vtep(1))));
    let to_a = udp_to(b, a, b"hello a");
    n2.send_from(b.port, &to_a);
    assert_eq!(in_flight(&mesh), [1, 0, 0]);
    assert_eq!(n2.delivered(), 0);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n1.take(a.port), [to_a]);
    assert_eq!(n1.delivered() + n3.delivered(), 0);

    // And node1 learned b behind node2: from now on a → b is unicast.
    assert_eq!(n1.fdb(b.mac), Some(Location::Vtep(vtep(2))));
    n1.send_from(a.port, &to_b);
    assert_eq!(in_flight(&mesh), [0, 1, 0]);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n2.take(b.port), [to_b]);
    assert_eq!(n1.delivered() + n2.delivered() + n3.delivered(), 0);

    // Two flooded copies and one unicast left node1; nothing was dropped anywhere.
    assert_eq!(n1.overlay_stats().tx_packets, 3);
    for node in [&n1, &n2, &n3] {
        assert_eq!(node.overlay_stats().total_drops(), 0, "node{}", node.n);
    }
    assert_eq!(mesh.dropped(), 0);
}

#[test]
fn broadcast_and_multicast_reach_every_port_once() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let (a1, a2) = (n1.add_pod(5), n1.add_pod(6));
    let (b1, b2) = (n2.add_pod(5), n2.add_pod(6));
    let c1 = n3.add_pod(5);
    let mdns = MacAddr([0x01, 0x00, 0x5e, 0, 0, 0xfb]);

    for (dst_mac, dst_ip) in [
        (MacAddr::BROADCAST, Ipv4Addr::new(10, 244, 255, 255)),
        (mdns, Ipv4Addr::new(224, 0, 0, 251)),
    ] {
        let frame = udp(a1, dst_mac, dst_ip, b"anyone?");
        n1.send_from(a1.port, &frame);
        // One copy per peer VTEP, whatever the number of pods behind it.
        assert_eq!(in_flight(&mesh), [0, 1, 1]);
        assert_eq!(settle(&mut [&mut n1, &mut n2, &mut n3]), 2);

        let (h1, h2, h3) = (n1.host, n2.host, n3.host);
        let expect = |ports: &[Station]| -> Vec<(PortId, Vec<u8>)> {
            ports.iter().map(|s| (s.port, frame.clone())).collect()
        };
        // Every port but the ingress one, exactly once.
        assert_eq!(take_all(&mut n1, &[h1, a1, a2]), expect(&[h1, a2]));
        assert_eq!(take_all(&mut n2, &[h2, b1, b2]), expect(&[h2, b1, b2]));
        assert_eq!(take_all(&mut n3, &[h3, c1]), expect(&[h3, c1]));
    }
    assert_eq!(n1.overlay_stats().tx_packets, 4);
    assert_eq!(
        n2.overlay_stats().tx_packets + n3.overlay_stats().tx_packets,
        0
    );
}

#[test]
fn frames_from_the_overlay_never_go_back_into_it() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let (b1, b2) = (n2.add_pod(5), n2.add_pod(6));
    let c = n3.add_pod(5);

    // Unknown unicast from node1: node2 floods its copy to its local ports only.
    let to_stranger = udp(a, STRANGER, STRANGER_IP, b"where are you");
    n1.send_from(a.port, &to_stranger);
    assert_eq!(in_flight(&mesh), [0, 1, 1]);
    assert_eq!(n2.pump(), 1);
    let h2 = n2.host;
    let got = take_all(&mut n2, &[h2, b1, b2]);
    let ports: Vec<PortId> = got.iter().map(|(port, _)| *port).collect();
    assert_eq!(ports, [h2.port, b1.port, b2.port]);
    assert!(got.iter().all(|(_, frame)| *frame == to_stranger));
    assert_eq!(
        in_flight(&mesh),
        [0, 0, 1],
        "node2 sent nothing into the overlay"
    );
    assert_eq!(n2.overlay_stats().tx_packets, 0);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    n1.clear();
    n3.clear();

    // node2 already knows c is behind node3 (its store sync ran), node1 does not yet:
    // node1 floods, node2 drops its copy rather than relay it to node3 or spray it over
    // its own pods, and c gets exactly one copy, straight from node1.
    n2.set_remote_station(c, vtep(3));
    let to_c = udp_to(a, c, b"for c");
    n1.send_from(a.port, &to_c);
    assert_eq!(in_flight(&mesh), [0, 1, 1]);
    assert_eq!(settle(&mut [&mut n1, &mut n2, &mut n3]), 2);
    assert_eq!(n3.take(c.port), [to_c]);
    assert_eq!(n2.delivered(), 0);
    assert_eq!(n2.overlay_stats().drops(DropReason::Hairpin), 1);
    assert_eq!(n2.overlay_stats().tx_packets, 0);
}

#[test]
fn datagrams_that_are_not_ours_are_dropped_and_counted() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let rogue_ip = Ipv4Addr::new(192, 0, 2, 99);
    let rogue = mesh.attach(rogue_ip).unwrap();
    // A pod behind the rogue VTEP (its port number is never used).
    let rogue_pod = Station {
        port: 0,
        ip: Ipv4Addr::new(10, 244, 99, 5),
        mac: MacAddr::from_ipv4(Ipv4Addr::new(10, 244, 99, 5)),
    };
    let inner = udp_to(rogue_pod, a, b"let me in");
    let datagram = |vni: u32, inner: &[u8]| {
        let mut out = vec![0; VXLAN_HEADER_LEN + inner.len()];
        encapsulate(vni, inner, &mut out).unwrap();
        out
    };
    let good = datagram(VNI, ethernet(&inner));

    // An address that is no node of the cluster.
    rogue.send(&good, n1.vtep, 4789).unwrap();
    assert_eq!(n1.pump(), 1);
    assert_eq!(n1.delivered(), 0);
    assert_eq!(n1.overlay_stats().drops(DropReason::UnknownVtep), 1);
    assert_eq!(n1.fdb(rogue_pod.mac), None);

    // A peer, but a bad datagram each time.
    n1.set_peers(&[vtep(2), vtep(3), rogue_ip]);
    let mut no_i_flag = good.clone();
    no_i_flag[0] = 0;
    let big_inner = ethernet_frame(a.mac, rogue_pod.mac, 0x0800, &vec![0; MTU + 5]);
    assert_eq!(big_inner.len(), MTU + 19);
    let bad: [(&[u8], DropReason); 6] = [
        (&datagram(VNI + 1, ethernet(&inner)), DropReason::WrongVni),
        (&no_i_flag, DropReason::BadVxlan),
        (&good[..5], DropReason::BadVxlan),
        (&good[..VXLAN_HEADER_LEN + 13], DropReason::BadVxlan),
        (&good[..VXLAN_HEADER_LEN], DropReason::BadVxlan),
        (&datagram(VNI, &big_inner), DropReason::TooBig),
    ];
    for (bytes, reason) in bad {
        let before = n1.overlay_stats().drops(reason);
        rogue.send(bytes, n1.vtep, 4789).unwrap();
        assert_eq!(n1.pump(), 1);
        assert_eq!(n1.overlay_stats().drops(reason), before + 1, "{reason}");
        assert_eq!(n1.delivered(), 0, "{reason}");
    }
    let stats = n1.overlay_stats();
    assert_eq!(stats.total_drops(), 7);
    assert_eq!(stats.rx_packets, 0, "the switch saw none of them");

    // The same good datagram from a peer gets through.
    rogue.send(&good, n1.vtep, 4789).unwrap();
    assert_eq!(n1.pump(), 1);
    assert_eq!(n1.take(a.port), [inner]);
    assert_eq!(n1.overlay_stats().rx_packets, 1);

    // A node that leaves the cluster: what was learned behind it goes, and what it still
    // sends is dropped as from a stranger.
    assert_eq!(n1.fdb(rogue_pod.mac), Some(Location::Vtep(rogue_ip)));
    n1.set_peers(&[vtep(2), vtep(3)]);
    assert_eq!(n1.fdb(rogue_pod.mac), None);
    rogue.send(&good, n1.vtep, 4789).unwrap();
    n1.pump();
    assert_eq!(n1.delivered(), 0);
    assert_eq!(n1.overlay_stats().drops(DropReason::UnknownVtep), 2);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n2.delivered() + n3.delivered(), 0);
}

#[test]
fn arp_for_a_remote_pod_is_answered_without_flooding() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);
    // What the store sync tells node1 about node2's pod.
    n1.set_remote_station(b, vtep(2));

    n1.send_from(a.port, &arp_request(a, b.ip));
    assert_eq!(n1.take(a.port), [arp_reply((b.mac, b.ip), a)]);
    assert_eq!(n1.delivered(), 0, "vsw0 saw nothing");
    assert_eq!(in_flight(&mesh), [0, 0, 0]);
    assert_eq!(n1.overlay_stats().tx_packets, 0);
    assert_eq!(n1.port_stats(a.port).arp_replies, 1);

    // And the unicast that follows goes to node2 alone, never flooded.
    let to_b = udp_to(a, b, b"hi");
    n1.send_from(a.port, &to_b);
    assert_eq!(in_flight(&mesh), [0, 1, 0]);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n2.take(b.port), [to_b]);
    assert_eq!(n1.delivered() + n2.delivered() + n3.delivered(), 0);
}

#[test]
fn arp_from_a_node_that_does_not_know_the_pod_is_answered_by_the_owner_node() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);

    // node2 knows nothing of a: the request floods. node1 knows a (a local pod) and
    // answers over the overlay, to node2 only, without bothering a.
    n2.send_from(b.port, &arp_request(b, a.ip));
    assert_eq!(in_flight(&mesh), [1, 0, 1]);
    assert_eq!(n1.pump(), 1);
    assert_eq!(n1.delivered(), 0);
    assert_eq!(in_flight(&mesh), [0, 1, 1]);
    assert_eq!(n1.overlay_stats().arp_replies, 1);
    n2.pump();
    let n2_host = n2.host.port;
    n2.take(n2_host);
    assert_eq!(n2.take(b.port), [arp_reply((a.mac, a.ip), b)]);
    assert_eq!(n2.fdb(a.mac), Some(Location::Vtep(vtep(1))));
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n1.delivered() + n2.delivered(), 0);
}

#[test]
fn a_station_that_moves_between_nodes_is_followed() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let a = n1.add_pod(5);
    // A live-migrated VM keeps its MAC and address.
    let (vm_mac, vm_ip) = (
        MacAddr([0x02, 0, 0, 0, 0, 0x4d]),
        Ipv4Addr::new(10, 244, 2, 77),
    );
    let vm_on_2 = n2.add_station(vm_mac, vm_ip, true);

    n2.send_from(vm_on_2.port, &udp(vm_on_2, a.mac, a.ip, b"from node2"));
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n1.take(a.port).len(), 1);
    assert_eq!(n1.fdb(vm_mac), Some(Location::Vtep(vtep(2))));

    n2.remove_station(vm_on_2);
    let vm_on_3 = n3.add_station(vm_mac, vm_ip, true);
    n3.send_from(vm_on_3.port, &udp(vm_on_3, a.mac, a.ip, b"from node3"));
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n1.take(a.port).len(), 1);
    assert_eq!(n1.fdb(vm_mac), Some(Location::Vtep(vtep(3))));
    for node in [&mut n1, &mut n2, &mut n3] {
        node.clear();
    }

    let to_vm = udp(a, vm_mac, vm_ip, b"where you are now");
    n1.send_from(a.port, &to_vm);
    assert_eq!(in_flight(&mesh), [0, 0, 1]);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n3.take(vm_on_3.port), [to_vm]);
    assert_eq!(n1.delivered() + n2.delivered() + n3.delivered(), 0);
}

#[test]
fn a_remote_frame_cannot_steal_a_local_pods_mac() {
    let (mesh, [mut n1, mut n2]) = cluster::<2>(SwitchConfig::default());
    let a = n1.add_pod(5);
    // Something behind node2's trusted vsw0 sends with a's MAC.
    let impostor = Station {
        port: n2.host.port,
        ip: a.ip,
        mac: a.mac,
    };
    n2.send_from(
        n2.host.port,
        &udp(impostor, MacAddr::BROADCAST, Ipv4Addr::BROADCAST, b"x"),
    );
    assert_eq!(in_flight(&mesh)[0], 1);
    n1.pump();
    assert_eq!(n1.delivered(), 0);
    assert_eq!(n1.overlay_stats().drops(DropReason::MacConflict), 1);
    assert_eq!(n1.fdb(a.mac), Some(Location::Port(a.port)));

    // a is still reachable on its own port.
    let h1 = n1.host;
    let to_a = udp_to(h1, a, b"still yours");
    n1.send_from(h1.port, &to_a);
    assert_eq!(n1.take(a.port), [to_a]);
    assert_eq!(in_flight(&mesh), [0, 0, 0]);
}

/// A pod's TSO super-frame crosses the overlay as MTU-sized segments (one VXLAN
/// datagram each) and reaches the pod on the other node coalesced again: one frame whose
/// virtio-net header asks the pod's kernel to take it as the segments it stands for.
/// Cut again as a NIC would, those segments are exactly what left node 1.
#[test]
fn tso_super_frames_are_segmented_on_the_way_out_and_coalesced_on_the_way_in() {
    let (mesh, [mut n1, mut n2]) = cluster::<2>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);
    n1.set_remote_station(b, vtep(2));
    let payload: Vec<u8> = (0..10_000u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let (mss, isn) = (1398u16, 0x1000_0000u32);

    n1.send_from(a.port, &tcp_tso(a, b, isn, &payload, mss));
    assert_eq!(n1.overlay_stats().total_drops(), 0);
    let expected = payload.len().div_ceil(usize::from(mss));
    assert_eq!(expected, 8);
    assert_eq!(mesh.pending(vtep(2)), expected, "one datagram per segment");
    assert_eq!(n1.overlay_stats().tx_packets, 8);
    n2.pump();

    let frames = n2.take(b.port);
    assert_eq!(frames.len(), 1, "coalesced into one super-frame");
    let frame = &frames[0];
    let header = VirtioNetRepr::parse(&VirtioNetHdr::new_checked(&frame[..VNET]).unwrap()).unwrap();
    assert_eq!(
        header,
        VirtioNetRepr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        }
    );
    let offload = Offload {
        needs_csum: true,
        csum_start: 34,
        csum_offset: 16,
        gso: GsoKind::TcpV4,
        gso_size: mss,
        hdr_len: 54,
    };
    let mut out = vec![0u8; 16 * 1500];
    let mut lens = [0usize; 16];
    let count = overlay::segment(ethernet(frame), offload, &mut out, 1500, &mut lens).unwrap();
    assert_eq!(count, expected);
    let mut received = Vec::new();
    for i in 0..count {
        let eth = &out[i * 1500..i * 1500 + lens[i]];
        assert!(eth.len() <= MTU + 14, "segment {i}: {} bytes", eth.len());
        assert_eq!(eth[..6], b.mac.octets());
        assert_eq!(eth[6..12], a.mac.octets());
        let (ip, _) = Ipv4Header::from_slice(&eth[14..]).unwrap();
        let ip_packet = &eth[14..14 + usize::from(ip.total_len)];
        assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "segment {i}");
        assert_eq!(usize::from(ip.identification), 0x1000 + i);
        let (tcp, data) = TcpHeader::from_slice(&ip_packet[20..]).unwrap();
        assert_eq!(
            tcp.checksum,
            tcp.calc_checksum_ipv4(&ip, data).unwrap(),
            "segment {i}"
        );
        let offset = u32::try_from(received.len()).unwrap();
        assert_eq!(tcp.sequence_number, isn.wrapping_add(offset));
        assert_eq!(tcp.psh, i == expected - 1, "PSH on the last segment only");
        assert!(tcp.ack && !tcp.fin && !tcp.syn);
        assert!(data.len() <= usize::from(mss));
        received.extend_from_slice(data);
    }
    assert_eq!(received, payload);
    assert_eq!(n2.overlay_stats().total_drops(), 0);
}

/// A segment damaged on the underlay is never merged: it reaches the pod as it came
/// (whose kernel drops it on its bad checksum), and the good segments around it are
/// delivered in order.
#[test]
fn a_corrupt_segment_is_not_coalesced() {
    let (mesh, [mut n1, mut n2]) = cluster::<2>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);
    // Node 1's segments, sent by hand from a peer VTEP so one can be damaged on the way.
    let peer_ip = Ipv4Addr::new(192, 0, 2, 77);
    let peer = mesh.attach(peer_ip).unwrap();
    n2.set_peers(&[vtep(1), peer_ip]);
    let super_frame = tcp_tso(a, b, 1, &[7u8; 4 * 1000], 1000);
    let offload = Offload {
        needs_csum: true,
        csum_start: 34,
        csum_offset: 16,
        gso: GsoKind::TcpV4,
        gso_size: 1000,
        hdr_len: 54,
    };
    let mut out = vec![0u8; 4 * 1100];
    let mut lens = [0usize; 4];
    assert_eq!(
        overlay::segment(ethernet(&super_frame), offload, &mut out, 1100, &mut lens),
        Ok(4)
    );
    for (i, len) in lens.into_iter().enumerate() {
        let mut datagram = vec![0u8; VXLAN_HEADER_LEN + len];
        encapsulate(VNI, &out[i * 1100..i * 1100 + len], &mut datagram).unwrap();
        if i == 2 {
            datagram[VXLAN_HEADER_LEN + 54 + 10] ^= 1;
        }
        peer.send(&datagram, n2.vtep, 4789).unwrap();
    }
    n2.pump();
    let frames = n2.take(b.port);
    let sizes: Vec<(usize, [u8; VNET])> = frames
        .iter()
        .map(|f| (f.len() - VNET - 54, f[..VNET].try_into().unwrap()))
        .collect();
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert_eq!(sizes[0].0, 2000, "the first two merged");
    assert_eq!(sizes[1], (1000, [0; VNET]), "the corrupt one as it came");
    assert_eq!(sizes[2], (1000, [0; VNET]), "the last alone, after it");
}

#[test]
fn frames_too_big_for_the_underlay_are_dropped_not_fragmented() {
    let (mesh, [mut n1, mut n2]) = cluster::<2>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);
    n1.set_remote_station(b, vtep(2));

    // An IP packet of exactly the MTU passes.
    let fits = udp_to(a, b, &vec![7; MTU - 28]);
    assert_eq!(ethernet(&fits).len(), MTU + 14);
    n1.send_from(a.port, &fits);
    n2.pump();
    assert_eq!(n2.take(b.port), [fits]);

    // Beyond what the overlay port allows (MTU + Ethernet + one VLAN tag): dropped.
    let too_big = udp_to(a, b, &vec![7; MTU - 28 + 5]);
    n1.send_from(a.port, &too_big);
    assert_eq!(in_flight(&mesh), [0, 0, 0]);
    assert_eq!(n1.overlay_stats().drops(DropReason::TooBig), 1);

    // A pod whose MSS does not fit the MTU (it raised its own MTU): its segments cannot
    // fit the underlay, so they are dropped, never fragmented.
    n1.send_from(a.port, &tcp_tso(a, b, 1, &[1; 1440], 1460));
    assert_eq!(in_flight(&mesh), [0, 0, 0]);
    assert_eq!(n1.overlay_stats().drops(DropReason::TooBig), 2);
    n1.send_from(a.port, &tcp_tso(a, b, 1, &[1; 4000], 1460));
    assert_eq!(in_flight(&mesh), [0, 0, 0]);
    assert_eq!(n1.overlay_stats().total_drops(), 3);
    assert_eq!(n2.delivered(), 0);
}

/// The drop above is counted as `too_big`, not `bad_offload`: the pod's offload header is
/// fine, its segments just do not fit the underlay.
#[test]
fn an_mss_larger_than_the_mtu_is_counted_as_too_big() {
    let (_mesh, [mut n1, mut n2]) = cluster::<2>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);
    n1.set_remote_station(b, vtep(2));
    n1.send_from(a.port, &tcp_tso(a, b, 1, &[1; 4000], 1460));
    let stats = n1.overlay_stats();
    assert_eq!(stats.drops(DropReason::BadOffload), 0);
    assert_eq!(stats.drops(DropReason::TooBig), 1);
}

#[test]
fn a_mac_learned_behind_a_vtep_ages_out() {
    let aging = Duration::from_secs(1);
    let config = SwitchConfig {
        aging,
        ..SwitchConfig::default()
    };
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(config);
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);

    // b speaks at t0: node1 learns it behind node2.
    n2.send_from(b.port, &udp_to(b, a, b"t0"));
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n1.fdb(b.mac), Some(Location::Vtep(vtep(2))));
    let to_b = udp_to(a, b, b"still there?");

    // Within the aging time (and refreshed by b's traffic), a → b is unicast.
    for _ in 0..3 {
        n1.advance(aging / 2);
        n1.send_from(a.port, &to_b);
        assert_eq!(in_flight(&mesh), [0, 1, 0]);
        n2.send_from(b.port, &udp_to(b, a, b"yes"));
        settle(&mut [&mut n1, &mut n2, &mut n3]);
    }

    // b falls silent; a bit more than the aging time later, node1 has forgotten it.
    n1.advance(aging + aging / 2);
    assert_eq!(n1.fdb(b.mac), None);
    assert_eq!(n1.switch.age(n1.now), 1);
    n1.send_from(a.port, &to_b);
    assert_eq!(in_flight(&mesh), [0, 1, 1], "flooded again");
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert!(n2.take(b.port).contains(&to_b));

    // node1's own pod never ages (its MAC is pinned to its port).
    assert_eq!(n1.fdb(a.mac), Some(Location::Port(a.port)));
}

/// A node whose store sync lags asks the overlay who has a pod's address. Only the node
/// that owns the pod may answer: a reply from any other node carries the pod's MAC from
/// the wrong VTEP, the asking node learns the pod there, and its unicast is then dropped
/// by that node as a hairpin. (A static kernel VTEP, which never syncs the store and
/// learns from every reply, is always in this position.)
#[test]
fn arp_from_the_overlay_is_answered_by_the_owner_node_only() {
    let (mesh, [mut n1, mut n2, mut n3]) = cluster::<3>(SwitchConfig::default());
    let a = n1.add_pod(5);
    let b = n2.add_pod(5);
    // node3 has synced the store and knows a; node2 has not yet.
    n3.set_remote_station(a, vtep(1));

    n2.send_from(b.port, &arp_request(b, a.ip));
    assert_eq!(in_flight(&mesh), [1, 0, 1]);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    let replies = n2.take(b.port);
    assert_eq!(
        replies,
        [arp_reply((a.mac, a.ip), b)],
        "one answer, from a's node"
    );
    assert_eq!(n2.fdb(a.mac), Some(Location::Vtep(vtep(1))));

    let to_a = udp_to(b, a, b"hello");
    n2.send_from(b.port, &to_a);
    settle(&mut [&mut n1, &mut n2, &mut n3]);
    assert_eq!(n1.take(a.port), [to_a]);
}
