//! Fuzz target: the two JSON files vswitchd reads from disk at start and on every store
//! poll: the cluster store file (`--store file:PATH`, [`FileStore`]) and the node state
//! file (`STATE_DIR/attachments.json`, [`NodeState`]).
//!
//! Each input is written to a fresh temporary directory (on /dev/shm when it exists, so
//! the fsyncs of the write paths stay cheap) and read with the product's own code. Reads
//! must return `Ok` or a clean error, never panic. On top:
//! - store: `nodes`, `pods`, `generation` and `cluster` agree on whether the file is
//!   readable; when it is, one more write through the product (`put_static_node`,
//!   whether it succeeds or is refused) leaves a file that reads back, with the
//!   generation moved exactly when the write succeeded.
//! - node state: when the file opens (against the subnet it records, if it is not the
//!   default one), every lease is a pod address of the subnet and unique; leasing one
//!   more address and reopening gives the same leases plus that one.
#![no_main]

use std::net::Ipv4Addr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vswitch::control::proto::AttachmentKey;
use vswitch::ipnet::Ipv4Net;
use vswitch::node_state::{NodeState, StateError};
use vswitch::store::file::FileStore;
use vswitch::store::{ClusterStore, StoreError};

const SUBNET: Ipv4Net = Ipv4Net::new_const(Ipv4Addr::new(10, 244, 1, 0), 24);

fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("vswitch-fuzz")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

fn check_store(data: &[u8]) {
    let dir = tempdir();
    let path = dir.path().join("cluster.json");
    std::fs::write(&path, data).expect("write the store file");
    let mut store = FileStore::open(&path).expect("open never reads the file");

    let nodes = store.nodes();
    let pods = store.pods();
    let generation = store.generation();
    let cluster = store.cluster();
    let readable = nodes.is_ok();
    assert_eq!(pods.is_ok(), readable, "pods() and nodes() disagree");
    assert_eq!(
        generation.is_ok(),
        readable,
        "generation() and nodes() disagree"
    );
    assert_eq!(cluster.is_ok(), readable, "cluster() and nodes() disagree");
    let Ok(generation) = generation else {
        // Unreadable files are never overwritten.
        let err = store
            .put_static_node("fuzz", Ipv4Addr::new(192, 168, 0, 9), SUBNET)
            .expect_err("a write on an unreadable store");
        assert!(
            matches!(
                err,
                StoreError::Corrupt { .. } | StoreError::UnsupportedVersion { .. }
            ),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).expect("still there"),
            data,
            "file touched"
        );
        return;
    };
    let nodes = nodes.unwrap_or_default();
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    names.dedup();
    assert_eq!(names.len(), nodes.len(), "a node listed twice");

    // One write through the product: whatever it decides, the file it leaves reads back.
    let written = store.put_static_node("fuzz", Ipv4Addr::new(192, 168, 0, 9), SUBNET);
    let after = match store.generation() {
        Ok(after) => after,
        Err(e) => panic!("the store wrote a file it cannot read: {e}"),
    };
    assert!(store.nodes().is_ok() && store.pods().is_ok() && store.cluster().is_ok());
    match written {
        Ok(()) => {
            let fuzz = store.nodes().unwrap_or_default();
            assert!(
                fuzz.iter()
                    .any(|n| n.name == "fuzz" && n.subnet == SUBNET && n.is_static),
                "the static node is not in the store after a successful write"
            );
        }
        Err(StoreError::Io { .. }) => {}
        Err(_) => assert_eq!(after, generation, "a refused write moved the generation"),
    }
}

fn key(id: &str) -> AttachmentKey {
    AttachmentKey {
        container_id: id.into(),
        ifname: "eth0".into(),
    }
}

fn check_node_state(data: &[u8]) {
    let dir = tempdir();
    std::fs::write(dir.path().join("attachments.json"), data).expect("write the state file");
    let state = match NodeState::open(dir.path(), SUBNET) {
        Ok(state) => state,
        // Let the input pick the subnet too: open again with the one the file records.
        Err(StateError::SubnetChanged { old, .. }) => match NodeState::open(dir.path(), old) {
            Ok(state) => state,
            Err(StateError::SubnetChanged { .. }) if old.network() != old => return,
            Err(StateError::SubnetChanged { old: again, new }) => {
                panic!("file records {again}, opened with {new}, refused again")
            }
            Err(_) => return,
        },
        Err(StateError::InUse { .. }) => panic!("a fresh directory is in use"),
        Err(_) => return,
    };

    let subnet = state.subnet();
    let gateway = state.gateway();
    let mut seen = std::collections::BTreeSet::new();
    for a in state.attachments() {
        assert!(subnet.contains(a.ip), "{} outside {subnet}", a.ip);
        assert_ne!(a.ip, subnet.network().addr(), "network address leased");
        assert_ne!(a.ip, gateway, "gateway leased");
        assert_ne!(a.ip, subnet.broadcast(), "broadcast address leased");
        assert!(seen.insert(a.ip), "{} leased twice", a.ip);
    }

    // Lease one more, reopen: the same leases plus the new one, read from what we wrote.
    let before: Vec<_> = state.attachments().cloned().collect();
    let mut state = state;
    let added = state.allocate(
        key("fuzz-new"),
        "/run/netns/fuzz".into(),
        "default".into(),
        "fuzz".into(),
    );
    drop(state);
    let reopened = match NodeState::open(dir.path(), subnet) {
        Ok(state) => state,
        Err(e) => panic!("node state wrote a file it cannot read: {e}"),
    };
    let mut after: Vec<_> = reopened.attachments().cloned().collect();
    match added {
        Ok(new) => {
            assert!(subnet.contains(new.ip) && new.ip != gateway);
            assert!(!seen.contains(&new.ip), "{} handed out twice", new.ip);
            let pos = after
                .iter()
                .position(|a| *a == new)
                .expect("the new lease persisted");
            after.remove(pos);
        }
        Err(StateError::Exists(_) | StateError::Exhausted(_)) => {}
        Err(e) => panic!("allocate failed: {e}"),
    }
    assert_eq!(after, before, "reopening changed the leases");
}

fuzz_target!(|data: &[u8]| {
    check_store(data);
    check_node_state(data);
});
