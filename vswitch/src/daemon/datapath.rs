//! The data-path thread: it owns the [`Switch`] and every port's TAP descriptor, reads
//! frames, asks the switch what to do with each, and writes them out. Run to completion,
//! one frame at a time, no allocation per frame.
//!
//! The control plane never touches the switch directly: it sends [`DatapathCmd`]s over a
//! channel and wakes the loop with a [`mio::Waker`]; the loop drains them between
//! batches. So the data path never waits on the control socket or the store.
//!
//! A frame from a TAP without a segmentation offload that is larger than the pod MTU
//! allows (the MTU, the Ethernet header and one VLAN tag) is dropped as
//! [`DropReason::TooBig`] before the switch sees it: a pod that raises its own MTU gains
//! nothing. A GSO super-frame is larger by design; its segments are checked where it is
//! segmented.
//!
//! Readiness is edge-triggered. A port's queue is drained until `WouldBlock`, but at most
//! [`BATCH`] frames per turn so one busy port cannot starve the others: a port cut short is
//! kept on a ready list and served again on the next turn, with a zero poll timeout.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::control::proto::{ConnTableInfo, MacTableInfo, TablesInfo};
use crate::mac::MacAddr;
use crate::switch::{
    DropReason, Location, NewFlowPolicy, PortConfig, PortId, PortKind, PortStats, Switch,
    SwitchConfig, Verdict,
};
use crate::sys::tap::{Tap, VNET_HDR_LEN};
use crate::wire::virtio_net::{VirtioNetHdr, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE};

use super::overlay_port::{coalesced_header, OverlayPort, RX_BLOCKS, RX_SLOT};
use super::underlay::NodeUnderlay;
use overlay::{Coalescer, Push, Received};

/// The switch port id of the overlay (every remote VTEP is behind it). Its poll token is
/// the same number.
pub const OVERLAY_PORT: PortId = 1;

/// The token of the waker that says "commands are waiting".
const WAKER: Token = Token(usize::MAX);

/// Frames served from one port before the loop moves on to the next.
pub const BATCH: usize = 64;

/// How often idle MAC entries are aged out.
const AGING_TICK: Duration = Duration::from_secs(1);

/// The largest frame a TAP hands us: a 64 KiB GSO super-frame plus its Ethernet header
/// and virtio-net header.
const FRAME_BUF: usize = VNET_HDR_LEN + 14 + 4 + 65_535;

/// Super-frames the receive coalescer builds at once (distinct flows in one batch).
pub const COALESCE_FRAMES: usize = 32;

/// Room for a reply the switch writes (an ARP reply is 42 bytes).
const REPLY_BUF: usize = VNET_HDR_LEN + 128;

/// What a frame may carry beyond the MTU: an Ethernet header and one 802.1Q tag.
const ETHERNET_AND_TAG: usize = 14 + 4;

/// What the control plane asks of the data path.
pub enum DatapathCmd {
    /// Attach a port.
    AddPort {
        /// Its id (also its poll token).
        id: PortId,
        /// Its TAP.
        tap: Tap,
        /// What the switch needs to know of it.
        config: PortConfig,
        /// Its counters, shared with the control plane.
        stats: Arc<PortStats>,
        /// Cleared by the data path when the TAP fails for good (its namespace is gone).
        attached: Arc<AtomicBool>,
    },
    /// Detach a port and hand its TAP back (so the caller can delete the device).
    RemovePort {
        /// Which port.
        id: PortId,
        /// Where the TAP goes, `None` when the port was not attached.
        reply: Sender<Option<Tap>>,
    },
    /// Attach the overlay port (once, at start).
    AttachOverlay(Box<OverlayPort<NodeUnderlay>>),
    /// The peer VTEPs, replacing the previous set; MACs learned behind a peer that left
    /// are forgotten.
    SetPeers(HashSet<Ipv4Addr>),
    /// The stations of other nodes (pods, gateways) the cluster store knows, replacing the
    /// previous set: IP → (MAC, VTEP). The switch answers ARP for them and sends unicast
    /// to their VTEP without flooding.
    SetRemoteStations(HashMap<Ipv4Addr, (MacAddr, Ipv4Addr)>),
    /// The NetworkPolicy to enforce on new connections.
    SetPolicy(Arc<dyn NewFlowPolicy>),
    /// An address the cluster knows: the switch answers ARP for it.
    SetAddress(Ipv4Addr, MacAddr),
    /// Forget an address.
    RemoveAddress(Ipv4Addr),
    /// A snapshot of the MAC table.
    Fdb(Sender<Vec<(MacAddr, Location, Duration)>>),
    /// The sizes, bounds and eviction counters of the MAC and connection tables.
    Tables(Sender<TablesInfo>),
    /// Stop the loop.
    Shutdown,
}

/// The control plane's handle on the data-path thread.
pub struct DatapathHandle {
    commands: Sender<DatapathCmd>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// The data path is gone (its thread ended).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the data-path thread has stopped")]
pub struct DatapathGone;

impl DatapathHandle {
    /// Starts the data-path thread with an empty switch, for pods with MTU `mtu`.
    ///
    /// # Errors
    /// When the poll instance or the thread cannot be created.
    pub fn start(config: SwitchConfig, mtu: u32) -> io::Result<DatapathHandle> {
        let max_frame = usize::try_from(mtu)
            .unwrap_or(usize::MAX)
            .saturating_add(ETHERNET_AND_TAG);
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, inbox) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("datapath".into())
            .spawn(move || Datapath::new(poll, inbox, Switch::new(config), max_frame).run())?;
        Ok(DatapathHandle {
            commands,
            waker,
            thread: Some(thread),
        })
    }

    /// Sends a command and wakes the loop.
    ///
    /// # Errors
    /// [`DatapathGone`] when the thread has ended.
    pub fn send(&self, command: DatapathCmd) -> Result<(), DatapathGone> {
        self.commands.send(command).map_err(|_| DatapathGone)?;
        self.waker.wake().map_err(|_| DatapathGone)
    }

    /// Sends a command that carries a reply channel and waits for the answer.
    ///
    /// # Errors
    /// [`DatapathGone`] when the thread has ended.
    pub fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> DatapathCmd) -> Result<T, DatapathGone> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(make(tx))?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| DatapathGone)
    }

    /// True while the thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for DatapathHandle {
    fn drop(&mut self) {
        if self.send(DatapathCmd::Shutdown).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

struct Port {
    tap: Tap,
    stats: Arc<PortStats>,
    attached: Arc<AtomicBool>,
}

struct Datapath {
    poll: Poll,
    inbox: Receiver<DatapathCmd>,
    switch: Switch,
    /// Indexed by port id.
    ports: Vec<Option<Port>>,
    /// The overlay port, once attached.
    overlay: Option<Box<OverlayPort<NodeUnderlay>>>,
    /// What [`DatapathCmd::SetRemoteStations`] last said.
    remote: HashMap<Ipv4Addr, (MacAddr, Ipv4Addr)>,
    /// Ports with frames still queued after a cut-short batch.
    ready: VecDeque<PortId>,
    /// The largest frame without offload a TAP may hand us (pod MTU + 18).
    max_frame: usize,
    frame: Vec<u8>,
    reply: Vec<u8>,
    /// The underlay receive buffer: [`RX_BLOCKS`] blocks of [`RX_SLOT`] bytes.
    rx: Vec<u8>,
    blocks: [Received; RX_BLOCKS],
    /// Merges the TCP segments of one receive batch into super-frames.
    coalescer: Coalescer,
}

impl Datapath {
    fn new(poll: Poll, inbox: Receiver<DatapathCmd>, switch: Switch, max_frame: usize) -> Self {
        Datapath {
            poll,
            inbox,
            switch,
            ports: Vec::new(),
            overlay: None,
            remote: HashMap::new(),
            ready: VecDeque::new(),
            max_frame,
            frame: vec![0; FRAME_BUF],
            reply: vec![0; REPLY_BUF],
            rx: vec![0; RX_SLOT * RX_BLOCKS],
            blocks: [Received::EMPTY; RX_BLOCKS],
            coalescer: Coalescer::new(COALESCE_FRAMES, VNET_HDR_LEN),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_aging = Instant::now() + AGING_TICK;
        loop {
            let timeout = if self.ready.is_empty() {
                next_aging.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("vswitchd: datapath: poll failed, stopping: {e}");
                    return;
                }
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                if let Ok(id) = PortId::try_from(event.token().0) {
                    if !self.ready.contains(&id) {
                        self.ready.push_back(id);
                    }
                }
            }
            if !self.drain_commands() {
                return;
            }
            // Serve each port that was ready at the start of this turn once.
            for _ in 0..self.ready.len() {
                let Some(id) = self.ready.pop_front() else {
                    break;
                };
                if self.serve(id) == Served::CutShort {
                    self.ready.push_back(id);
                }
            }
            if let Some(overlay) = self.overlay.as_mut() {
                overlay.flush();
                overlay.underlay().flush_sends();
            }
            let now = Instant::now();
            if now >= next_aging {
                self.switch.age(now);
                if let Some(overlay) = self.overlay.as_ref() {
                    overlay.underlay().tick(overlay.stats());
                }
                next_aging = now + AGING_TICK;
            }
        }
    }

    /// Applies every queued command; false on Shutdown.
    fn drain_commands(&mut self) -> bool {
        while let Ok(command) = self.inbox.try_recv() {
            match command {
                DatapathCmd::AddPort {
                    id,
                    tap,
                    config,
                    stats,
                    attached,
                } => self.add_port(id, tap, config, stats, attached),
                DatapathCmd::RemovePort { id, reply } => {
                    let tap = self.remove_port(id);
                    let _ = reply.send(tap);
                }
                DatapathCmd::AttachOverlay(port) => self.attach_overlay(port),
                DatapathCmd::SetPeers(peers) => {
                    if let Some(overlay) = self.overlay.as_mut() {
                        overlay.underlay().expect_peers(&peers);
                        for gone in overlay.set_peers(peers) {
                            self.switch.forget_vtep(gone);
                        }
                    }
                }
                DatapathCmd::SetRemoteStations(stations) => self.set_remote_stations(stations),
                DatapathCmd::SetPolicy(policy) => self.switch.set_policy(policy),
                DatapathCmd::SetAddress(ip, mac) => self.switch.set_address(ip, mac),
                DatapathCmd::RemoveAddress(ip) => self.switch.remove_address(ip),
                DatapathCmd::Fdb(reply) => {
                    let _ = reply.send(self.switch.fdb(Instant::now()));
                }
                DatapathCmd::Tables(reply) => {
                    let _ = reply.send(tables(&self.switch));
                }
                DatapathCmd::Shutdown => return false,
            }
        }
        true
    }

    fn add_port(
        &mut self,
        id: PortId,
        tap: Tap,
        config: PortConfig,
        stats: Arc<PortStats>,
        attached: Arc<AtomicBool>,
    ) {
        let index = usize::from(id);
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&tap.as_raw_fd()),
            Token(index),
            Interest::READABLE,
        ) {
            eprintln!("vswitchd: datapath: cannot watch port {}: {e}", tap.name());
            attached.store(false, Ordering::Relaxed);
            return;
        }
        if self.ports.len() <= index {
            self.ports.resize_with(index + 1, || None);
        }
        self.switch.add_port(id, config, Arc::clone(&stats));
        attached.store(true, Ordering::Relaxed);
        if let Some(slot) = self.ports.get_mut(index) {
            *slot = Some(Port {
                tap,
                stats,
                attached,
            });
        }
        // Frames may have queued before registration: an edge already passed.
        self.ready.push_back(id);
    }

    fn attach_overlay(&mut self, mut port: Box<OverlayPort<NodeUnderlay>>) {
        // One descriptor for the UDP socket, one per queue for AF_XDP, all on the
        // overlay's token: `serve_overlay` reads from every queue.
        let token = Token(usize::from(OVERLAY_PORT));
        for fd in port.underlay().poll_fds() {
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), token, Interest::READABLE)
            {
                eprintln!("vswitchd: datapath: cannot watch the underlay, no overlay: {e}");
                return;
            }
        }
        let config = PortConfig {
            kind: PortKind::Overlay,
            mac: MacAddr::ZERO,
            ip: None,
            security: false,
        };
        self.switch
            .add_port(OVERLAY_PORT, config, Arc::clone(port.stats()));
        port.set_peers(HashSet::new());
        self.overlay = Some(port);
        self.ready.push_back(OVERLAY_PORT);
    }

    fn set_remote_stations(&mut self, stations: HashMap<Ipv4Addr, (MacAddr, Ipv4Addr)>) {
        for (ip, &(mac, vtep)) in &self.remote {
            if stations.get(ip) != Some(&(mac, vtep)) {
                self.switch.remove_remote_station(mac, vtep);
                if self.switch.address(*ip) == Some(mac) {
                    self.switch.remove_address(*ip);
                }
            }
        }
        for (&ip, &(mac, vtep)) in &stations {
            self.switch.set_address(ip, mac);
            self.switch.set_remote_station(mac, vtep);
        }
        self.remote = stations;
    }

    fn remove_port(&mut self, id: PortId) -> Option<Tap> {
        let port = self.ports.get_mut(usize::from(id))?.take()?;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&port.tap.as_raw_fd()));
        self.switch.remove_port(id);
        self.ready.retain(|&p| p != id);
        port.attached.store(false, Ordering::Relaxed);
        Some(port.tap)
    }

    /// Reads and forwards up to [`BATCH`] frames from port `id`.
    fn serve(&mut self, ingress: PortId) -> Served {
        if ingress == OVERLAY_PORT {
            return self.serve_overlay();
        }
        for _ in 0..BATCH {
            let Some(Some(port)) = self.ports.get(usize::from(ingress)) else {
                return Served::Drained;
            };
            let len = match port.tap.read(&mut self.frame) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Served::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The device is gone (its namespace was deleted) or broken for good.
                    eprintln!(
                        "vswitchd: datapath: port {} failed, detaching it: {e}",
                        port.tap.name()
                    );
                    self.remove_port(ingress);
                    return Served::Drained;
                }
            };
            self.forward(ingress, len);
        }
        Served::CutShort
    }

    /// Reads one batch from the underlay (up to [`RX_BLOCKS`] blocks of datagrams, one
    /// system call), forwards every datagram, and writes the TCP segments bound for a
    /// local port coalesced into as few super-frames as they allow (and the UDP
    /// datagrams, for a TAP that takes UDP super-frames).
    fn serve_overlay(&mut self) -> Served {
        let Datapath {
            switch,
            ports,
            overlay,
            frame,
            reply,
            rx,
            blocks,
            coalescer,
            ..
        } = self;
        let Some(overlay) = overlay.as_mut() else {
            return Served::Drained;
        };
        let filled = match overlay.recv_blocks(rx, blocks) {
            Ok(filled) => filled,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Served::CutShort,
            Err(e) => {
                eprintln!("vswitchd: datapath: underlay receive failed: {e}");
                return Served::Drained;
            }
        };
        let now = Instant::now();
        for (index, block) in blocks.iter().take(filled).enumerate() {
            let start = index * RX_SLOT;
            let Some(bytes) = rx.get(start..start + block.len) else {
                continue;
            };
            for datagram in bytes.chunks(block.segment_len.max(1)) {
                let Some(inner) = overlay.inner(datagram, block.src) else {
                    continue;
                };
                let Some(reply_body) = reply.get_mut(VNET_HDR_LEN..) else {
                    continue;
                };
                match switch.decide_from_vtep(now, OVERLAY_PORT, block.src, inner, reply_body) {
                    Verdict::Unicast(Location::Port(egress)) => {
                        // UDP datagrams are merged only for a TAP that takes USO frames.
                        let uso = matches!(
                            ports.get(usize::from(egress)),
                            Some(Some(port)) if port.tap.offloads().uso
                        );
                        let push = |coalescer: &mut Coalescer| {
                            if uso {
                                coalescer.push_with_udp(egress, inner)
                            } else {
                                coalescer.push(egress, inner)
                            }
                        };
                        let mut pushed = push(coalescer);
                        if pushed == Push::Full {
                            flush_coalesced(coalescer, ports);
                            pushed = push(coalescer);
                        }
                        if matches!(pushed, Push::NotTaken | Push::Full) {
                            send_plain(ports, frame, egress, inner);
                        }
                    }
                    Verdict::Flood => {
                        for egress in switch.flood_ports(OVERLAY_PORT) {
                            send_plain(ports, frame, egress, inner);
                        }
                    }
                    Verdict::Reply { len } => {
                        if let Some(header) = reply.get_mut(..VNET_HDR_LEN) {
                            header.fill(0);
                        }
                        if let Some(reply) = reply.get_mut(..VNET_HDR_LEN + len) {
                            overlay.unicast(reply, block.src);
                        }
                    }
                    // The switch drops (and counts) a frame from one VTEP for another.
                    Verdict::Unicast(Location::Vtep(_)) | Verdict::Drop(_) => {}
                }
            }
        }
        flush_coalesced(coalescer, ports);
        if filled == blocks.len() {
            Served::CutShort
        } else {
            Served::Drained
        }
    }

    /// Decides and sends one frame of `len` bytes (virtio-net header included) sitting in
    /// `self.frame`.
    fn forward(&mut self, ingress: PortId, len: usize) {
        let now = Instant::now();
        let Some(frame) = self.frame.get(..len) else {
            return;
        };
        let Some(ethernet) = frame.get(VNET_HDR_LEN..) else {
            if let Some(Some(port)) = self.ports.get(usize::from(ingress)) {
                port.stats.record_drop(DropReason::Malformed);
            }
            return;
        };
        if ethernet.len() > self.max_frame && !is_gso(frame) {
            if let Some(Some(port)) = self.ports.get(usize::from(ingress)) {
                port.stats.record_drop(DropReason::TooBig);
            }
            return;
        }
        let Some(reply_body) = self.reply.get_mut(VNET_HDR_LEN..) else {
            return;
        };
        match self.switch.decide(now, ingress, ethernet, reply_body) {
            Verdict::Unicast(Location::Port(egress)) => send(&self.ports, egress, frame),
            Verdict::Unicast(Location::Vtep(vtep)) => {
                if let (Some(overlay), Some(frame)) =
                    (self.overlay.as_mut(), self.frame.get_mut(..len))
                {
                    overlay.unicast(frame, vtep);
                }
            }
            Verdict::Flood => {
                let mut to_overlay = false;
                for egress in self.switch.flood_ports(ingress) {
                    if egress == OVERLAY_PORT {
                        to_overlay = true;
                    } else {
                        send(&self.ports, egress, frame);
                    }
                }
                // Last: encapsulation overwrites the virtio-net header in place.
                if let (true, Some(overlay), Some(frame)) =
                    (to_overlay, self.overlay.as_mut(), self.frame.get_mut(..len))
                {
                    overlay.flood(frame);
                }
            }
            Verdict::Reply { len } => {
                if let Some(header) = self.reply.get_mut(..VNET_HDR_LEN) {
                    header.fill(0);
                }
                if let Some(reply) = self.reply.get(..VNET_HDR_LEN + len) {
                    send(&self.ports, ingress, reply);
                }
            }
            Verdict::Drop(_) => {}
        }
    }
}

/// What `show` reports of the switch's tables.
fn tables(switch: &Switch) -> TablesInfo {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let macs = switch.mac_table();
    let connections = switch.policy_gate().conntrack();
    TablesInfo {
        mac: MacTableInfo {
            entries: count(macs.len()),
            capacity: count(macs.capacity()),
            per_port: count(macs.per_location_capacity()),
            evictions: macs.evictions(),
            port_evictions: macs.location_evictions(),
        },
        connections: ConnTableInfo {
            entries: count(connections.len()),
            capacity: count(connections.capacity()),
            evictions: connections.evictions(),
        },
    }
}

/// True when the virtio-net header at the front of `frame` asks for segmentation.
fn is_gso(frame: &[u8]) -> bool {
    VirtioNetHdr::new_checked(frame)
        .is_ok_and(|header| header.gso_type() & !VIRTIO_NET_HDR_GSO_ECN != VIRTIO_NET_HDR_GSO_NONE)
}

/// Writes every frame the coalescer holds to its port, behind the virtio-net header
/// its offload asks for.
fn flush_coalesced(coalescer: &mut Coalescer, ports: &[Option<Port>]) {
    coalescer.drain(|egress, offload, buf| {
        let Some(header) = buf.get_mut(..VNET_HDR_LEN) else {
            return;
        };
        coalesced_header(offload).emit(&mut VirtioNetHdr::new_unchecked(header));
        send(ports, egress, buf);
    });
}

/// Writes an Ethernet frame that has no virtio-net header of its own to a port, copied
/// behind a plain header into `scratch`.
fn send_plain(ports: &[Option<Port>], scratch: &mut [u8], egress: PortId, ethernet: &[u8]) {
    let Some(frame) = scratch.get_mut(..VNET_HDR_LEN + ethernet.len()) else {
        return;
    };
    let (header, body) = frame.split_at_mut(VNET_HDR_LEN);
    header.fill(0);
    body.copy_from_slice(ethernet);
    send(ports, egress, frame);
}

/// Writes one frame to a port, counting it as sent or dropped.
fn send(ports: &[Option<Port>], egress: PortId, frame: &[u8]) {
    let Some(Some(port)) = ports.get(usize::from(egress)) else {
        return;
    };
    let wire_len = u64::try_from(frame.len().saturating_sub(VNET_HDR_LEN)).unwrap_or(u64::MAX);
    match port.tap.write(frame) {
        Ok(_) => port.stats.record_tx(wire_len),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            port.stats.record_drop(DropReason::TxQueueFull)
        }
        Err(_) => port.stats.record_drop(DropReason::TxError),
    }
}

#[derive(PartialEq, Eq)]
enum Served {
    Drained,
    CutShort,
}
