//! Next-hop MACs for peer VTEPs, from the kernel's neighbour table.
//!
//! AF_XDP bypasses the kernel's IP output, so the underlay must put the right
//! destination MAC on every frame itself. A [`Resolver`] thread keeps a table
//! VTEP → next-hop MAC for the VTEPs the data path asked for: the route to the VTEP
//! gives the next hop (the VTEP itself when on-link, else the gateway), the kernel's
//! neighbour table gives its MAC. It follows changes as they happen (it listens to
//! `RTNLGRP_NEIGH` and `RTNLGRP_IPV4_ROUTE`) and re-checks every second.
//!
//! A next hop without a usable entry is not silently dropped behind: the resolver asks
//! the kernel to resolve it (`RTM_NEWNEIGH` with `NTF_USE`, the kernel sends ARP), and
//! the data path counts the frames it could not send meanwhile. A `STALE` entry, which
//! the kernel would confirm before use but which our traffic never confirms, is
//! re-checked the same way every [`REFRESH_STALE`], so a peer whose MAC changed is
//! followed.
//!
//! The data path never waits on the resolver: it reads a generation counter (one atomic
//! load per frame) and copies the table when it changed.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netlink::{
    self, Message, Neighbour, Netlink, NUD_STALE, RTMGRP_IPV4_ROUTE, RTMGRP_NEIGH,
};

/// How long the thread waits for an event before it looks at new requests and the stop
/// flag.
const TICK: Duration = Duration::from_millis(50);
/// A full re-check of every wanted VTEP, events or not.
const RECHECK: Duration = Duration::from_secs(1);
/// How often an unresolved next hop is asked for again.
const RETRY: Duration = Duration::from_secs(1);
/// How often a `STALE` next hop is re-confirmed.
pub const REFRESH_STALE: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Shared {
    /// VTEP → next-hop MAC.
    table: Mutex<HashMap<Ipv4Addr, [u8; 6]>>,
    generation: AtomicU64,
    /// VTEPs the data path needs, and whether new ones came since the thread looked.
    wanted: Mutex<(HashSet<Ipv4Addr>, bool)>,
    stop: AtomicBool,
}

/// The resolver thread's handle; dropping it stops the thread.
#[derive(Debug)]
pub struct Resolver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Resolver {
    /// Starts the thread for the underlay device `ifindex`.
    ///
    /// # Errors
    /// When the netlink sockets cannot be opened or the neighbour table read.
    pub fn start(ifindex: u32) -> io::Result<Resolver> {
        let events = Netlink::open(RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE, TICK)?;
        let mut requests = Netlink::open(0, Duration::from_secs(1))?;
        let neighbours = requests.neighbours()?;
        let shared = Arc::new(Shared::default());
        let mut worker = Worker {
            ifindex,
            shared: Arc::clone(&shared),
            events,
            requests,
            neighbours: HashMap::new(),
            asked: HashMap::new(),
            warned: HashSet::new(),
        };
        worker.load(neighbours);
        let thread = std::thread::Builder::new()
            .name("xdp-neigh".into())
            .spawn(move || worker.run())?;
        Ok(Resolver {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for `vtep`'s next hop to be resolved and kept.
    pub fn want(&self, vtep: Ipv4Addr) {
        let mut wanted = lock(&self.shared.wanted);
        if wanted.0.insert(vtep) {
            wanted.1 = true;
        }
    }

    /// The table, when its generation is newer than `seen` (which is updated).
    pub fn table_if_newer(&self, seen: &mut u64) -> Option<HashMap<Ipv4Addr, [u8; 6]>> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == *seen {
            return None;
        }
        *seen = generation;
        Some(lock(&self.shared.table).clone())
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Worker {
    ifindex: u32,
    shared: Arc<Shared>,
    events: Netlink,
    requests: Netlink,
    /// The kernel's IPv4 neighbours on our device.
    neighbours: HashMap<Ipv4Addr, Neighbour>,
    /// When we last asked the kernel to resolve a next hop.
    asked: HashMap<Ipv4Addr, Instant>,
    /// VTEPs whose route leaves by another device, logged once.
    warned: HashSet<Ipv4Addr>,
}

impl Worker {
    fn load(&mut self, list: Vec<Neighbour>) {
        self.neighbours = list
            .into_iter()
            .filter(|n| n.ifindex == self.ifindex)
            .map(|n| (n.ip, n))
            .collect();
    }

    fn run(mut self) {
        let mut last_check = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let mut dirty = false;
            match self.events.receive() {
                Ok(data) => {
                    let mut changes = Vec::new();
                    for message in netlink::messages(data) {
                        if let Message::Data { kind, payload } = message {
                            changes.push((kind, netlink::parse_neighbour(payload)));
                        }
                    }
                    for (kind, neighbour) in changes {
                        dirty = true;
                        match (kind, neighbour) {
                            (netlink::RTM_NEWNEIGH, Some(n)) if n.ifindex == self.ifindex => {
                                self.neighbours.insert(n.ip, n);
                            }
                            (netlink::RTM_DELNEIGH, Some(n)) if n.ifindex == self.ifindex => {
                                self.neighbours.remove(&n.ip);
                            }
                            _ => {}
                        }
                    }
                }
                Err(error) => {
                    // ENOBUFS: events were lost; read the whole table again.
                    if error.raw_os_error() != Some(libc::ENOBUFS) {
                        eprintln!("vswitchd: afxdp: reading neighbour events: {error}");
                        std::thread::sleep(TICK);
                    }
                    match self.requests.neighbours() {
                        Ok(list) => self.load(list),
                        Err(e) => eprintln!("vswitchd: afxdp: reading the neighbour table: {e}"),
                    }
                    dirty = true;
                }
            }
            let wanted = {
                let mut wanted = lock(&self.shared.wanted);
                dirty |= std::mem::take(&mut wanted.1);
                wanted.0.clone()
            };
            if dirty || last_check.elapsed() >= RECHECK {
                self.check(&wanted);
                last_check = Instant::now();
            }
        }
    }

    /// Recomputes the table for `wanted`, asking the kernel to resolve what is missing.
    fn check(&mut self, wanted: &HashSet<Ipv4Addr>) {
        let mut table = HashMap::with_capacity(wanted.len());
        let now = Instant::now();
        for &vtep in wanted {
            let route = match self.requests.route(vtep) {
                Ok(route) => route,
                Err(error) => {
                    if self.warned.insert(vtep) {
                        eprintln!("vswitchd: afxdp: no route to VTEP {vtep}: {error}");
                    }
                    continue;
                }
            };
            if route.oif.is_some_and(|oif| oif != self.ifindex) {
                if self.warned.insert(vtep) {
                    eprintln!(
                        "vswitchd: afxdp: VTEP {vtep} is routed out of another device than the underlay device; frames to it are dropped (counted as no_neighbour)"
                    );
                }
                continue;
            }
            self.warned.remove(&vtep);
            let hop = route.gateway.unwrap_or(vtep);
            let entry = self.neighbours.get(&hop).copied();
            let (mac, refresh_after) = match entry.and_then(|n| n.usable_mac().map(|m| (m, n))) {
                Some((mac, n)) if n.state == NUD_STALE => (Some(mac), REFRESH_STALE),
                Some((mac, _)) => (Some(mac), Duration::MAX),
                None => (None, RETRY),
            };
            if let Some(mac) = mac {
                table.insert(vtep, mac);
            }
            let due = self
                .asked
                .get(&hop)
                .is_none_or(|&at| now.duration_since(at) >= refresh_after);
            if refresh_after != Duration::MAX && due {
                self.asked.insert(hop, now);
                if let Err(error) = self.requests.resolve(self.ifindex, hop) {
                    eprintln!("vswitchd: afxdp: asking the kernel to resolve {hop}: {error}");
                }
            }
        }
        let mut current = lock(&self.shared.table);
        if *current != table {
            *current = table;
            self.shared.generation.fetch_add(1, Ordering::Release);
        }
    }
}
