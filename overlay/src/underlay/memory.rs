//! An in-memory underlay for tests and benches: a [`MemoryMesh`] is a network of nodes
//! keyed by VTEP address, and each [`MemoryUnderlay`] is one node's end of it, so
//! several switches can be joined in one process without sockets.
//!
//! Delivery is immediate and in order; a datagram to an address with no node is
//! dropped and counted, as UDP would lose it. This is test code (feature `test-utils`):
//! it allocates per datagram and takes a lock per call.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Underlay;

/// One datagram in flight.
#[derive(Debug)]
struct Datagram {
    src: Ipv4Addr,
    src_port: u16,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct MeshState {
    queues: HashMap<Ipv4Addr, VecDeque<Datagram>>,
    dropped: u64,
}

/// An in-memory underlay network. Clones share the same network.
#[derive(Debug, Clone, Default)]
pub struct MemoryMesh {
    state: Arc<Mutex<MeshState>>,
}

impl MemoryMesh {
    /// An empty network.
    pub fn new() -> MemoryMesh {
        MemoryMesh::default()
    }

    /// Adds a node with VTEP address `addr` and returns its end of the network. The
    /// node leaves the network when the returned underlay is dropped.
    ///
    /// # Errors
    /// `AddrInUse` when a node already has `addr`.
    pub fn attach(&self, addr: Ipv4Addr) -> io::Result<MemoryUnderlay> {
        let mut state = self.lock();
        if state.queues.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("a node of the memory mesh already has address {addr}"),
            ));
        }
        state.queues.insert(addr, VecDeque::new());
        Ok(MemoryUnderlay {
            addr,
            mesh: self.clone(),
        })
    }

    /// Datagrams sent to an address no node had.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Datagrams waiting for the node at `addr` (0 when there is no such node).
    pub fn pending(&self, addr: Ipv4Addr) -> usize {
        self.lock().queues.get(&addr).map_or(0, VecDeque::len)
    }

    fn lock(&self) -> MutexGuard<'_, MeshState> {
        // A test that panicked while holding the lock leaves consistent queues behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One node's end of a [`MemoryMesh`].
#[derive(Debug)]
pub struct MemoryUnderlay {
    addr: Ipv4Addr,
    mesh: MemoryMesh,
}

impl MemoryUnderlay {
    /// Two nodes joined by a fresh network of their own.
    ///
    /// # Errors
    /// `AddrInUse` when `a == b`.
    pub fn pair(a: Ipv4Addr, b: Ipv4Addr) -> io::Result<(MemoryUnderlay, MemoryUnderlay)> {
        let mesh = MemoryMesh::new();
        Ok((mesh.attach(a)?, mesh.attach(b)?))
    }

    /// This node's VTEP address.
    pub fn local_addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The network this node is on.
    pub fn mesh(&self) -> &MemoryMesh {
        &self.mesh
    }

    /// Like [`Underlay::recv`], also returning the `src_port_hint` the sender gave, so
    /// tests can check the flow hash.
    ///
    /// # Errors
    /// None today; the signature matches [`Underlay::recv`].
    pub fn recv_with_port(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr, u16)>> {
        let Some(datagram) = self
            .mesh
            .lock()
            .queues
            .get_mut(&self.addr)
            .and_then(VecDeque::pop_front)
        else {
            return Ok(None);
        };
        let len = datagram.bytes.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..len), datagram.bytes.get(..len)) {
            dst.copy_from_slice(src);
        }
        Ok(Some((len, datagram.src, datagram.src_port)))
    }
}

impl Underlay for MemoryUnderlay {
    /// Queues the datagram for the node at `dst`, keeping `src_port_hint` for
    /// [`MemoryUnderlay::recv_with_port`]. A datagram for an unknown address is counted
    /// in [`MemoryMesh::dropped`] and the send still succeeds, as with UDP.
    fn send(&self, datagram: &[u8], dst: Ipv4Addr, src_port_hint: u16) -> io::Result<()> {
        let mut state = self.mesh.lock();
        match state.queues.get_mut(&dst) {
            Some(queue) => queue.push_back(Datagram {
                src: self.addr,
                src_port: src_port_hint,
                bytes: datagram.to_vec(),
            }),
            None => state.dropped += 1,
        }
        Ok(())
    }

    /// Takes the oldest datagram for this node; one longer than `buf` is truncated.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
        Ok(self.recv_with_port(buf)?.map(|(len, src, _)| (len, src)))
    }
}

impl Drop for MemoryUnderlay {
    fn drop(&mut self) {
        self.mesh.lock().queues.remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
    const C: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);

    #[test]
    fn mesh_delivers_to_the_right_node() {
        let mesh = MemoryMesh::new();
        let (a, b, c) = (
            mesh.attach(A).unwrap(),
            mesh.attach(B).unwrap(),
            mesh.attach(C).unwrap(),
        );
        a.send(b"to-b", B, 50001).unwrap();
        a.send(b"to-c", C, 50002).unwrap();
        c.send(b"c-to-b", B, 50003).unwrap();
        assert_eq!(
            (mesh.pending(A), mesh.pending(B), mesh.pending(C)),
            (0, 2, 1)
        );

        let mut buf = [0u8; 64];
        assert_eq!(b.recv_with_port(&mut buf).unwrap(), Some((4, A, 50001)));
        assert_eq!(&buf[..4], b"to-b");
        assert_eq!(b.recv(&mut buf).unwrap(), Some((6, C)));
        assert_eq!(&buf[..6], b"c-to-b");
        assert_eq!(b.recv(&mut buf).unwrap(), None);
        assert_eq!(c.recv(&mut buf).unwrap(), Some((4, A)));
        assert_eq!(&buf[..4], b"to-c");
        assert_eq!(a.recv(&mut buf).unwrap(), None);
        assert_eq!(mesh.dropped(), 0);
    }

    #[test]
    fn unknown_and_departed_nodes_drop() {
        let (a, b) = MemoryUnderlay::pair(A, B).unwrap();
        a.send(b"x", C, 0).unwrap();
        drop(b);
        a.send(b"y", B, 0).unwrap();
        assert_eq!(a.mesh().dropped(), 2);
        // The address is free again.
        let b = a.mesh().attach(B).unwrap();
        assert_eq!(b.local_addr(), B);
    }

    #[test]
    fn duplicate_address_refused() {
        let mesh = MemoryMesh::new();
        let _a = mesh.attach(A).unwrap();
        assert_eq!(mesh.attach(A).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert!(MemoryUnderlay::pair(B, B).is_err());
    }

    #[test]
    fn long_datagram_truncated_to_buffer() {
        let (a, b) = MemoryUnderlay::pair(A, B).unwrap();
        a.send(&[7u8; 100], B, 0).unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(b.recv(&mut buf).unwrap(), Some((10, A)));
        assert_eq!(buf, [7u8; 10]);
    }

    /// Works through the trait object the switch will hold.
    #[test]
    fn usable_as_dyn_underlay() {
        let (a, b) = MemoryUnderlay::pair(A, B).unwrap();
        let nodes: [&dyn Underlay; 2] = [&a, &b];
        nodes[0].send(b"hello", B, 1).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(nodes[1].recv(&mut buf).unwrap(), Some((5, A)));
    }
}
