//! The node's underlay, chosen by `--datapath`: the kernel UDP socket, or AF_XDP
//! sockets on `--underlay-dev` ([`overlay::AfxdpUnderlay`]).
//!
//! `udp` (the default) is the UDP socket. `afxdp` demands AF_XDP: when it cannot run
//! (old kernel, missing capability, a device or MTU it cannot serve, another XDP program
//! on the device) the daemon exits with the reason. `auto` tries AF_XDP and falls back
//! to the UDP socket with one log line saying why.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};

use overlay::underlay::afxdp::AfxdpCounters;
use overlay::{AfxdpError, AfxdpUnderlay, Received, SendReport, UdpUnderlay, Underlay};

use crate::switch::{DropReason, PortStats};

use super::config::{DaemonConfig, DatapathKind};

/// The underlay the daemon's overlay port runs on.
#[derive(Debug)]
pub enum NodeUnderlay {
    /// The kernel UDP socket.
    Udp(UdpUnderlay),
    /// AF_XDP sockets on the underlay device, and its counters as last reported.
    Afxdp(AfxdpUnderlay, Cell<AfxdpCounters>),
}

/// Why the underlay could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    /// The UDP socket could not be bound.
    #[error("binding the VXLAN socket to {addr}:{port} (is --underlay-ip an address of this node, and the port free?): {source}")]
    Udp {
        /// Address.
        addr: Ipv4Addr,
        /// Port.
        port: u16,
        /// Why.
        source: io::Error,
    },
    /// `--datapath afxdp` was asked for and AF_XDP cannot run.
    #[error("--datapath afxdp: AF_XDP is not available on {dev}: {source}")]
    Afxdp {
        /// The underlay device.
        dev: String,
        /// Why.
        source: AfxdpError,
    },
}

impl NodeUnderlay {
    /// Opens the underlay `config.datapath` asks for.
    ///
    /// # Errors
    /// An [`UnderlayError`]; with `auto`, only when the UDP socket fails too.
    pub fn open(config: &DaemonConfig) -> Result<NodeUnderlay, UnderlayError> {
        let afxdp =
            || AfxdpUnderlay::open(&config.underlay_dev, config.underlay_ip, config.vxlan_port);
        let underlay = match config.datapath {
            DatapathKind::Udp => Self::udp(config),
            DatapathKind::Afxdp => {
                afxdp()
                    .map(NodeUnderlay::afxdp)
                    .map_err(|source| UnderlayError::Afxdp {
                        dev: config.underlay_dev.clone(),
                        source,
                    })
            }
            DatapathKind::Auto => match afxdp() {
                Ok(underlay) => Ok(NodeUnderlay::afxdp(underlay)),
                Err(error) => {
                    eprintln!(
                        "vswitchd: AF_XDP unavailable on {}, using the UDP socket: {error}",
                        config.underlay_dev
                    );
                    Self::udp(config)
                }
            },
        }?;
        if let NodeUnderlay::Afxdp(afxdp, _) = &underlay {
            eprintln!(
                "vswitchd: underlay: AF_XDP on {} ({})",
                config.underlay_dev,
                afxdp.mode()
            );
        }
        Ok(underlay)
    }

    fn afxdp(underlay: AfxdpUnderlay) -> NodeUnderlay {
        // The data path calls `flush_sends` after every turn: one wake-up per batch.
        underlay.defer_wakeups();
        NodeUnderlay::Afxdp(underlay, Cell::new(AfxdpCounters::default()))
    }

    /// From the data path after every turn of its loop: has the kernel send what the
    /// turn queued (the AF_XDP underlay defers its wake-ups to here; the UDP socket
    /// sent at once).
    pub fn flush_sends(&self) {
        if let NodeUnderlay::Afxdp(underlay, _) = self {
            underlay.flush();
        }
    }

    /// Once a second from the data path: pushes out queued AF_XDP sends, and adds the
    /// drops only the underlay saw since the last call to the overlay port's counters:
    /// frames that failed the outer checks (`malformed`) and frames the kernel dropped
    /// before the data path read them (`underlay_rx_dropped`).
    pub fn tick(&self, stats: &PortStats) {
        if let NodeUnderlay::Afxdp(underlay, reported) = self {
            underlay.flush();
            let now = underlay.counters();
            let new = now.since(&reported.get());
            reported.set(now);
            stats.record_drops(DropReason::Malformed, new.rx_bad_frames);
            stats.record_drops(DropReason::UnderlayRxDropped, new.rx_kernel_drops);
        }
    }

    fn udp(config: &DaemonConfig) -> Result<NodeUnderlay, UnderlayError> {
        let underlay =
            UdpUnderlay::bind(config.underlay_ip, config.vxlan_port).map_err(|source| {
                UnderlayError::Udp {
                    addr: config.underlay_ip,
                    port: config.vxlan_port,
                    source,
                }
            })?;
        let offloads = underlay.offloads();
        let on_off = |on: bool| if on { "on" } else { "off" };
        eprintln!(
            "vswitchd: underlay {}:{}: UDP GSO {} (else sendmmsg), UDP GRO {} (else recvmmsg)",
            config.underlay_ip,
            config.vxlan_port,
            on_off(offloads.gso),
            on_off(offloads.gro)
        );
        Ok(NodeUnderlay::Udp(underlay))
    }

    /// What `vswitchctl show` prints: `udp`, or `afxdp (native, copy, 1 queue)`.
    pub fn describe(&self) -> String {
        match self {
            NodeUnderlay::Udp(_) => "udp".to_owned(),
            NodeUnderlay::Afxdp(underlay, _) => format!("afxdp ({})", underlay.mode()),
        }
    }

    /// Learns the peer VTEPs ahead of the first frame to them, so the AF_XDP underlay
    /// resolves their next hops now rather than dropping that frame.
    pub fn expect_peers(&self, peers: &std::collections::HashSet<Ipv4Addr>) {
        if let NodeUnderlay::Afxdp(underlay, _) = self {
            underlay.resolve_ahead(peers.iter().copied());
        }
    }

    /// The descriptors to poll for received datagrams (one per AF_XDP queue).
    pub fn poll_fds(&self) -> Vec<RawFd> {
        match self {
            NodeUnderlay::Udp(underlay) => vec![underlay.as_raw_fd()],
            NodeUnderlay::Afxdp(underlay, _) => underlay.poll_fds(),
        }
    }
}

impl Underlay for NodeUnderlay {
    fn send(&self, datagram: &[u8], dst: Ipv4Addr, src_port_hint: u16) -> io::Result<()> {
        match self {
            NodeUnderlay::Udp(underlay) => underlay.send(datagram, dst, src_port_hint),
            NodeUnderlay::Afxdp(underlay, _) => underlay.send(datagram, dst, src_port_hint),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
        match self {
            NodeUnderlay::Udp(underlay) => underlay.recv(buf),
            NodeUnderlay::Afxdp(underlay, _) => underlay.recv(buf),
        }
    }

    fn send_segments(
        &self,
        datagrams: &[u8],
        segment_len: usize,
        dst: Ipv4Addr,
        src_port_hint: u16,
    ) -> SendReport {
        match self {
            NodeUnderlay::Udp(underlay) => {
                underlay.send_segments(datagrams, segment_len, dst, src_port_hint)
            }
            NodeUnderlay::Afxdp(underlay, _) => {
                underlay.send_segments(datagrams, segment_len, dst, src_port_hint)
            }
        }
    }

    fn recv_segments(
        &self,
        buf: &mut [u8],
        slot: usize,
        blocks: &mut [Received],
    ) -> io::Result<usize> {
        match self {
            NodeUnderlay::Udp(underlay) => underlay.recv_segments(buf, slot, blocks),
            NodeUnderlay::Afxdp(underlay, _) => underlay.recv_segments(buf, slot, blocks),
        }
    }
}
