//! A test driver for several switches joined by an in-memory underlay, and hand-built
//! frames for them.
//!
//! A [`Node`] is what one `vswitchd` holds on its data path: a [`Switch`], a host port
//! (`vsw0`), pod ports, and an [`OverlayPort`] on a [`MemoryMesh`] shared with the other
//! nodes. A pod "port" is a queue of the frames the node wrote to it (virtio-net header
//! included, as a TAP would get them). Time is simulated: each node has its own `now`,
//! which only [`Node::advance`] moves.
//!
//! Addressing follows the product: node `n` has VTEP 192.0.2.`n`, pod block 10.244.`n`.0/24
//! with its gateway (`vsw0`) at .1, and every MAC is `0a:58:` + the IPv4 address.

// Each test binary uses part of this module; and test code may index and slice (a panic
// here is a test failure with a backtrace), as clippy.toml allows in test functions.
#![allow(dead_code, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use overlay::{Coalescer, MemoryMesh, MemoryUnderlay, Push, Received};
use vswitch::daemon::control_plane::HOST_PORT;
use vswitch::daemon::datapath::{COALESCE_FRAMES, OVERLAY_PORT};
use vswitch::daemon::overlay_port::{coalesced_header, OverlayPort, RX_BLOCKS, RX_SLOT};
use vswitch::mac::MacAddr;
use vswitch::switch::{
    DropReason, Location, PortConfig, PortId, PortKind, PortStats, PortStatsSnapshot, Switch,
    SwitchConfig, Verdict,
};
use vswitch::wire::virtio_net::{
    VirtioNetHdr, VirtioNetRepr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4,
};
use vswitch::wire::VIRTIO_NET_HDR_LEN;

/// The virtio-net header in front of every frame a TAP reads or writes.
pub const VNET: usize = VIRTIO_NET_HDR_LEN;
/// The cluster's VNI.
pub const VNI: u32 = 1;
/// The pod MTU: a 1500-byte underlay less the 50 bytes of VXLAN overhead.
pub const MTU: usize = 1450;

/// Same as the data path's receive buffer: a 64 KiB super-frame and its headers.
const FRAME_BUF: usize = VNET + 14 + 4 + 65_535;
/// Same as the data path's reply buffer.
const REPLY_BUF: usize = VNET + 128;
/// The data path numbers pod ports from 2 (0 is `vsw0`, 1 the overlay).
const FIRST_POD_PORT: PortId = 2;

/// VTEP address of node `n`.
pub fn vtep(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, n)
}

/// A station on a port of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Station {
    /// The switch port it sits behind.
    pub port: PortId,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// One node's data path, driven by hand.
pub struct Node {
    /// This node's number (1, 2, 3): its VTEP is 192.0.2.`n`.
    pub n: u8,
    /// Its VTEP address.
    pub vtep: Ipv4Addr,
    /// The switch.
    pub switch: Switch,
    /// The overlay port.
    pub overlay: OverlayPort<MemoryUnderlay>,
    /// This node's clock.
    pub now: Instant,
    /// The node's `vsw0`.
    pub host: Station,
    /// Frames written to each local port, oldest first.
    delivered: BTreeMap<PortId, Vec<Vec<u8>>>,
    /// Local port addresses, to forget them when a port goes.
    addresses: BTreeMap<PortId, Ipv4Addr>,
    frame: Vec<u8>,
    reply: Vec<u8>,
    rx: Vec<u8>,
    blocks: [Received; RX_BLOCKS],
    coalescer: Coalescer,
}

/// `N` nodes numbered from 1 on one fresh mesh, each with every other as a peer, all
/// clocks at the same instant.
pub fn cluster<const N: usize>(config: SwitchConfig) -> (MemoryMesh, [Node; N]) {
    let mesh = MemoryMesh::new();
    let t0 = Instant::now();
    let mut nodes: [Node; N] = std::array::from_fn(|i| {
        let n = u8::try_from(i + 1).expect("a small cluster");
        Node::new(&mesh, n, config, t0)
    });
    let all: Vec<Ipv4Addr> = nodes.iter().map(|node| node.vtep).collect();
    for node in &mut nodes {
        let peers: Vec<Ipv4Addr> = all.iter().copied().filter(|&v| v != node.vtep).collect();
        node.set_peers(&peers);
    }
    (mesh, nodes)
}

/// Pumps every node until the mesh is quiet; returns how many datagrams were taken off it.
pub fn settle(nodes: &mut [&mut Node]) -> usize {
    let mut total = 0;
    loop {
        let round: usize = nodes.iter_mut().map(|node| node.pump()).sum();
        if round == 0 {
            return total;
        }
        total += round;
    }
}

/// Datagrams queued on the mesh for nodes 1..=3 (0 for a node that does not exist).
pub fn in_flight(mesh: &MemoryMesh) -> [usize; 3] {
    [1, 2, 3].map(|n| mesh.pending(vtep(n)))
}

impl Node {
    /// Node `n`: the switch, `vsw0` at 10.244.`n`.1, and the overlay port on `mesh`, with
    /// no peers yet. What `ControlPlane::start` sets up.
    pub fn new(mesh: &MemoryMesh, n: u8, config: SwitchConfig, now: Instant) -> Node {
        let vtep = vtep(n);
        let underlay = mesh.attach(vtep).expect("a fresh VTEP address");
        let overlay_stats = Arc::new(PortStats::new());
        let mtu = u32::try_from(MTU).expect("MTU fits u32");
        let overlay = OverlayPort::new(underlay, VNI, mtu, Arc::clone(&overlay_stats));
        let mut switch = Switch::new(config);
        let overlay_config = PortConfig {
            kind: PortKind::Overlay,
            mac: MacAddr::ZERO,
            ip: None,
            security: false,
        };
        switch.add_port(OVERLAY_PORT, overlay_config, overlay_stats);
        let gateway = Ipv4Addr::new(10, 244, n, 1);
        let host = Station {
            port: HOST_PORT,
            ip: gateway,
            mac: MacAddr::from_ipv4(gateway),
        };
        let mut node = Node {
            n,
            vtep,
            switch,
            overlay,
            now,
            host,
            delivered: BTreeMap::new(),
            addresses: BTreeMap::new(),
            frame: vec![0; FRAME_BUF],
            reply: vec![0; REPLY_BUF],
            rx: vec![0; RX_SLOT * RX_BLOCKS],
            blocks: [Received::EMPTY; RX_BLOCKS],
            coalescer: Coalescer::new(COALESCE_FRAMES, VNET),
        };
        let host_config = PortConfig {
            kind: PortKind::Host,
            mac: host.mac,
            ip: Some(host.ip),
            security: false,
        };
        node.attach(host, host_config);
        node
    }

    /// A pod at 10.244.`n`.`host_byte` with port security, as the CNI ADD attaches it.
    pub fn add_pod(&mut self, host_byte: u8) -> Station {
        let ip = Ipv4Addr::new(10, 244, self.n, host_byte);
        self.add_station(MacAddr::from_ipv4(ip), ip, true)
    }

    /// A pod port for a station with any MAC and address.
    pub fn add_station(&mut self, mac: MacAddr, ip: Ipv4Addr, security: bool) -> Station {
        let port = (FIRST_POD_PORT..)
            .find(|id| !self.delivered.contains_key(id))
            .expect("a free port id");
        let station = Station { port, ip, mac };
        let config = PortConfig {
            kind: PortKind::Pod,
            mac,
            ip: Some(ip),
            security,
        };
        self.attach(station, config);
        station
    }

    fn attach(&mut self, station: Station, config: PortConfig) {
        self.switch.set_address(station.ip, station.mac);
        self.switch
            .add_port(station.port, config, Arc::new(PortStats::new()));
        self.delivered.insert(station.port, Vec::new());
        self.addresses.insert(station.port, station.ip);
    }

    /// Detaches a pod's port, as the CNI DEL does.
    pub fn remove_station(&mut self, station: Station) {
        self.switch.remove_port(station.port);
        self.delivered.remove(&station.port);
        if let Some(ip) = self.addresses.remove(&station.port) {
            self.switch.remove_address(ip);
        }
    }

    /// The peer VTEPs, as the store sync sends them (`DatapathCmd::SetPeers`).
    pub fn set_peers(&mut self, peers: &[Ipv4Addr]) {
        let peers: HashSet<Ipv4Addr> = peers.iter().copied().collect();
        for gone in self.overlay.set_peers(peers) {
            self.switch.forget_vtep(gone);
        }
    }

    /// A station of another node, as the store sync places it
    /// (`DatapathCmd::SetRemoteStations`).
    pub fn set_remote_station(&mut self, station: Station, vtep: Ipv4Addr) {
        self.switch.set_address(station.ip, station.mac);
        assert!(self.switch.set_remote_station(station.mac, vtep));
    }

    /// Moves this node's clock on.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Takes the frames written to `port` so far (virtio-net header included).
    pub fn take(&mut self, port: PortId) -> Vec<Vec<u8>> {
        self.delivered
            .get_mut(&port)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Frames written to every local port, not yet taken.
    pub fn delivered(&self) -> usize {
        self.delivered.values().map(Vec::len).sum()
    }

    /// Forgets every frame delivered so far.
    pub fn clear(&mut self) {
        self.delivered.values_mut().for_each(Vec::clear);
    }

    /// The counters of the overlay port (the overlay port and the switch share them).
    pub fn overlay_stats(&self) -> PortStatsSnapshot {
        self.overlay.stats().snapshot()
    }

    /// The counters of a local port.
    pub fn port_stats(&self, port: PortId) -> PortStatsSnapshot {
        self.switch
            .stats(port)
            .map(|stats| stats.snapshot())
            .unwrap_or_default()
    }

    /// Where this node's switch has `mac` now, per `vswitchctl fdb`.
    pub fn fdb(&self, mac: MacAddr) -> Option<Location> {
        self.switch
            .fdb(self.now)
            .into_iter()
            .find(|&(m, _, _)| m == mac)
            .map(|(_, location, _)| location)
    }

    /// The pod behind `port` writes `frame` (virtio-net header, then Ethernet) to its TAP.
    pub fn send_from(&mut self, port: PortId, frame: &[u8]) {
        let len = frame.len();
        self.frame[..len].copy_from_slice(frame);
        self.forward(port, len);
        // The end of a data-path turn: queued datagrams go.
        self.overlay.flush();
    }

    /// Takes every datagram queued for this node off the mesh; returns how many.
    pub fn pump(&mut self) -> usize {
        let mut taken = 0;
        // Mirrors `Datapath::serve_overlay` (daemon/datapath.rs), without the batch bound:
        // batches of blocks, then the TCP segments bound for local ports coalesced.
        loop {
            let filled = self
                .overlay
                .recv_blocks(&mut self.rx, &mut self.blocks)
                .expect("the memory underlay does not fail");
            if filled == 0 {
                self.overlay.flush();
                return taken;
            }
            for index in 0..filled {
                let block = self.blocks[index];
                let start = index * RX_SLOT;
                let bytes = self.rx[start..start + block.len].to_vec();
                for datagram in bytes.chunks(block.segment_len) {
                    taken += 1;
                    if let Some(inner) = self.overlay.inner(datagram, block.src) {
                        self.forward_from_vtep(block.src, inner);
                    }
                }
            }
            self.flush_coalesced();
        }
    }

    fn flush_coalesced(&mut self) {
        let Node {
            coalescer,
            delivered,
            switch,
            ..
        } = self;
        coalescer.drain(|egress, offload, buf| {
            coalesced_header(offload).emit(&mut VirtioNetHdr::new_unchecked(&mut buf[..VNET]));
            write(delivered, switch, egress, buf);
        });
    }

    // What follows mirrors `Datapath::forward` and `Datapath::serve_overlay`
    // (daemon/datapath.rs) verdict for verdict; keep them in step.

    fn forward(&mut self, ingress: PortId, len: usize) {
        if len < VNET {
            if let Some(stats) = self.switch.stats(ingress) {
                stats.record_drop(DropReason::Malformed);
            }
            return;
        }
        let (frame, reply_body) = (&self.frame[..len], &mut self.reply[VNET..]);
        match self
            .switch
            .decide(self.now, ingress, &frame[VNET..], reply_body)
        {
            Verdict::Unicast(Location::Port(egress)) => {
                write(&mut self.delivered, &self.switch, egress, frame);
            }
            Verdict::Unicast(Location::Vtep(vtep)) => {
                self.overlay.unicast(&mut self.frame[..len], vtep);
            }
            Verdict::Flood => {
                let mut to_overlay = false;
                for egress in self.switch.flood_ports(ingress) {
                    if egress == OVERLAY_PORT {
                        to_overlay = true;
                    } else {
                        write(&mut self.delivered, &self.switch, egress, frame);
                    }
                }
                // Last: encapsulation overwrites the virtio-net header in place.
                if to_overlay {
                    self.overlay.flood(&mut self.frame[..len]);
                }
            }
            Verdict::Reply { len } => {
                self.reply[..VNET].fill(0);
                let reply = &self.reply[..VNET + len];
                write(&mut self.delivered, &self.switch, ingress, reply);
            }
            Verdict::Drop(_) => {}
        }
    }

    fn forward_from_vtep(&mut self, vtep: Ipv4Addr, inner: &[u8]) {
        let reply_body = &mut self.reply[VNET..];
        match self
            .switch
            .decide_from_vtep(self.now, OVERLAY_PORT, vtep, inner, reply_body)
        {
            Verdict::Unicast(Location::Port(egress)) => {
                let mut pushed = self.coalescer.push(egress, inner);
                if pushed == Push::Full {
                    self.flush_coalesced();
                    pushed = self.coalescer.push(egress, inner);
                }
                if matches!(pushed, Push::NotTaken | Push::Full) {
                    write(&mut self.delivered, &self.switch, egress, &with_vnet(inner));
                }
            }
            Verdict::Flood => {
                for egress in self.switch.flood_ports(OVERLAY_PORT) {
                    write(&mut self.delivered, &self.switch, egress, &with_vnet(inner));
                }
            }
            Verdict::Reply { len } => {
                self.reply[..VNET].fill(0);
                self.overlay.unicast(&mut self.reply[..VNET + len], vtep);
            }
            Verdict::Unicast(Location::Vtep(_)) | Verdict::Drop(_) => {}
        }
    }
}

/// Writes a frame to a local port's queue and counts it, as `datapath::send` does with a
/// TAP. Like it, a port that has no TAP (the overlay) takes nothing.
fn write(
    delivered: &mut BTreeMap<PortId, Vec<Vec<u8>>>,
    switch: &Switch,
    egress: PortId,
    frame: &[u8],
) {
    let Some(queue) = delivered.get_mut(&egress) else {
        return;
    };
    queue.push(frame.to_vec());
    if let Some(stats) = switch.stats(egress) {
        let wire_len = u64::try_from(frame.len() - VNET).expect("fits u64");
        stats.record_tx(wire_len);
    }
}

// ---- Frames, built by hand. Each starts with a virtio-net header. ----

/// A zero virtio-net header (no offload) followed by `ethernet`.
pub fn with_vnet(ethernet: &[u8]) -> Vec<u8> {
    let mut out = vec![0; VNET];
    out.extend_from_slice(ethernet);
    out
}

/// The Ethernet frame behind a frame's virtio-net header.
pub fn ethernet(frame: &[u8]) -> &[u8] {
    &frame[VNET..]
}

/// An Ethernet frame, padded to the 60-byte minimum.
pub fn ethernet_frame(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().max(60), 0);
    out
}

/// The one's-complement sum of `data` as 16-bit big-endian words (RFC 1071), folded.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).expect("folded")
}

/// A 20-byte IPv4 header with a correct checksum.
fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize, id: u16) -> Vec<u8> {
    let total = u16::try_from(20 + payload_len).expect("fits an IPv4 packet");
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&[0x40, 0, 64, protocol, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let checksum = !ones_sum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    ip
}

/// An IPv4/UDP datagram 4000 → 5000 from `src` to `dst_mac`/`dst_ip`, with no UDP
/// checksum (allowed over IPv4).
pub fn udp(src: Station, dst_mac: MacAddr, dst_ip: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut packet = ipv4_header(src.ip, dst_ip, 17, udp_len, 1);
    packet.extend_from_slice(&4000u16.to_be_bytes());
    packet.extend_from_slice(&5000u16.to_be_bytes());
    packet.extend_from_slice(&u16::try_from(udp_len).expect("fits").to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    with_vnet(&ethernet_frame(dst_mac, src.mac, 0x0800, &packet))
}

/// `udp` from one station to another.
pub fn udp_to(src: Station, dst: Station, payload: &[u8]) -> Vec<u8> {
    udp(src, dst.mac, dst.ip, payload)
}

/// An Ethernet/IPv4 ARP packet (28 bytes) in an Ethernet frame, unpadded.
fn arp(op: u16, dst: MacAddr, sender: (MacAddr, Ipv4Addr), target: (MacAddr, Ipv4Addr)) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(&sender.0.octets());
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&sender.0.octets());
    frame.extend_from_slice(&sender.1.octets());
    frame.extend_from_slice(&target.0.octets());
    frame.extend_from_slice(&target.1.octets());
    frame
}

/// `from` asks, by broadcast, who has `target`.
pub fn arp_request(from: Station, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = arp(
        1,
        MacAddr::BROADCAST,
        (from.mac, from.ip),
        (MacAddr::ZERO, target),
    );
    frame.resize(60, 0);
    with_vnet(&frame)
}

/// The reply `owner` gives `to` (unpadded, as the switch writes it).
pub fn arp_reply(owner: (MacAddr, Ipv4Addr), to: Station) -> Vec<u8> {
    with_vnet(&arp(2, to.mac, owner, (to.mac, to.ip)))
}

/// A TCP segment offered by a pod's stack as one TSO super-frame: ACK|PSH, `payload`
/// behind 54 bytes of headers, a virtio-net header asking for GSO_TCPV4 in `mss`-byte
/// pieces and NEEDS_CSUM (csum_start 34, csum_offset 16), and, as Linux leaves it, the
/// pseudo-header sum in the TCP checksum field.
pub fn tcp_tso(src: Station, dst: Station, seq: u32, payload: &[u8], mss: u16) -> Vec<u8> {
    let tcp_len = 20 + payload.len();
    let mut packet = ipv4_header(src.ip, dst.ip, 6, tcp_len, 0x1000);
    packet.extend_from_slice(&40_000u16.to_be_bytes());
    packet.extend_from_slice(&5201u16.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&1u32.to_be_bytes()); // ack
    packet.extend_from_slice(&[5 << 4, 0x18]); // data offset 5, ACK|PSH
    packet.extend_from_slice(&502u16.to_be_bytes()); // window
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip.octets());
    pseudo.extend_from_slice(&dst.ip.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&u16::try_from(tcp_len).expect("fits").to_be_bytes());
    packet.extend_from_slice(&ones_sum(&pseudo).to_be_bytes()); // partial, not inverted
    packet.extend_from_slice(&[0, 0]); // urgent
    packet.extend_from_slice(payload);
    let ethernet = ethernet_frame(dst.mac, src.mac, 0x0800, &packet);

    let mut frame = vec![0; VNET];
    VirtioNetRepr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
    }
    .emit(&mut VirtioNetHdr::new_unchecked(&mut frame[..]));
    frame.extend_from_slice(&ethernet);
    frame
}
