//! One suite of cluster store tests, run against both backends: a fresh file store in a
//! temporary directory, and a real etcd started for the test (see `etcd_harness`). Then
//! what only the etcd backend has: leases that run out, subnets held for a grace period,
//! outages, partitions, TLS.
//!
//! Each suite test takes `open`, which makes a new handle on the test's one store (a new
//! `FileStore` on the same file, a new `EtcdStore` on the same etcd), as a second daemon
//! or `vswitchctl` would.

// The suite's functions are test bodies called by the `#[test]`s the `suite!` macro makes:
// a panic there is a test failure with a backtrace, as clippy.toml allows in tests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod etcd_harness;

use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use etcd_harness::{Etcd, Proxy};
use vswitch::ipnet::Ipv4Net;
use vswitch::mac::MacAddr;
use vswitch::store::etcd::{EtcdOptions, EtcdStore};
use vswitch::store::file::FileStore;
use vswitch::store::{
    open_with, ClusterStore, EtcdTls, ObjectKey, ObjectKind, ObjectRecord, PodRecord, StoreError,
    StoreHealth,
};

/// Makes a new handle on the test's store.
type Open<'a> = &'a mut dyn FnMut() -> Box<dyn ClusterStore>;

const CLUSTER: &str = "10.244.0.0/16";

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn pod(node: &str, container_id: &str, addr: &str) -> PodRecord {
    PodRecord {
        namespace: "default".into(),
        name: format!("pod-{container_id}"),
        node: node.into(),
        ip: ip(addr),
        mac: MacAddr::from_ipv4(ip(addr)),
        container_id: container_id.into(),
        ifname: "eth0".into(),
    }
}

fn object(kind: ObjectKind, namespace: &str, name: &str, doc: serde_json::Value) -> ObjectRecord {
    ObjectRecord {
        key: ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        },
        document: doc,
    }
}

/// Polls `check` until it holds, at most `limit`; returns how long that took.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The error `open_with` fails with (a store handle has no `Debug` for `unwrap_err`).
fn open_err(url: &str, tls: &EtcdTls) -> StoreError {
    match open_with(url, tls) {
        Err(e) => e,
        Ok(_) => panic!("{url} opened"),
    }
}

fn names(store: &mut dyn ClusterStore) -> Vec<String> {
    store.nodes().unwrap().into_iter().map(|n| n.name).collect()
}

// ---------------------------------------------------------------------------------------
// The suite.

fn lease_is_stable_across_reopen(open: Open<'_>) {
    let mut store = open();
    let a = store
        .lease_subnet("a", ip("192.168.0.1"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(a.subnet, net("10.244.0.0/24"));
    assert!(!a.is_static);
    let b = store
        .lease_subnet("b", ip("192.168.0.2"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(b.subnet, net("10.244.1.0/24"));
    assert_eq!(store.nodes().unwrap(), vec![a.clone(), b.clone()]);
    drop(store);

    // A restarted daemon: host bits in the cluster CIDR are ignored, a new VTEP recorded.
    let mut again = open();
    let a2 = again
        .lease_subnet("a", ip("192.168.0.9"), net("10.244.7.7/16"), 24)
        .unwrap();
    assert_eq!(a2.subnet, a.subnet);
    assert_eq!(a2.vtep, ip("192.168.0.9"));
    assert_eq!(again.nodes().unwrap(), vec![a2, b]);
    assert_eq!(again.cluster().unwrap(), Some((net(CLUSTER), 24)));
}

fn concurrent_joiners_get_distinct_subnets(open: Open<'_>) {
    const JOINERS: usize = 12;
    let barrier = Arc::new(Barrier::new(JOINERS));
    // Each joiner has its own handle, as each daemon would.
    let joiners: Vec<_> = (0..JOINERS)
        .map(|i| {
            let mut store = open();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let node = format!("node-{i}");
                let rec = store
                    .lease_subnet(&node, Ipv4Addr::new(10, 0, 0, 1), net(CLUSTER), 24)
                    .unwrap();
                let addr = rec.subnet.nth(2).unwrap();
                store
                    .put_pod(&pod(&node, &format!("c{i}"), &addr.to_string()))
                    .unwrap();
                (rec, store)
            })
        })
        .collect();
    // Keep the handles until the end, so the etcd nodes stay alive.
    let (records, _handles): (Vec<_>, Vec<_>) =
        joiners.into_iter().map(|j| j.join().unwrap()).unzip();
    let mut subnets: Vec<Ipv4Net> = records.iter().map(|r| r.subnet).collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), JOINERS, "no two joiners share a subnet");
    assert_eq!(
        subnets.last(),
        Some(&net("10.244.11.0/24")),
        "the lowest blocks"
    );
    let mut store = open();
    assert_eq!(store.nodes().unwrap().len(), JOINERS);
    assert_eq!(store.pods().unwrap().len(), JOINERS, "no update was lost");
}

fn static_nodes_and_conflicts(open: Open<'_>) {
    let mut store = open();
    // Before any daemon: accepted, and leases skip it.
    store
        .put_static_node("hw", ip("192.168.0.50"), net("10.244.0.0/24"))
        .unwrap();
    let a = store
        .lease_subnet("a", ip("192.168.0.1"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(a.subnet, net("10.244.1.0/24"));

    // Overlapping a held subnet, or a larger block around it.
    for bad in ["10.244.1.0/24", "10.244.1.128/25", "10.244.0.0/22"] {
        let err = store
            .put_static_node("hw2", ip("192.168.0.51"), net(bad))
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("node a") || m.contains("node hw")),
            "{bad}: {err}"
        );
    }
    // Outside the cluster CIDR; host bits.
    let err = store
        .put_static_node("hw2", ip("192.168.0.51"), net("10.245.0.0/24"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store
        .put_static_node("hw2", ip("192.168.0.51"), net("10.244.9.1/24"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    // A daemon's name cannot become static, and a static name cannot be leased.
    let err = store
        .put_static_node("a", ip("192.168.0.51"), net("10.244.9.0/24"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store
        .lease_subnet("hw", ip("192.168.0.1"), net(CLUSTER), 24)
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    // Replacing a static node with a new subnet, even overlapping its old one.
    store
        .put_static_node("hw", ip("192.168.0.52"), net("10.244.0.0/25"))
        .unwrap();
    let hw = store
        .nodes()
        .unwrap()
        .into_iter()
        .find(|n| n.name == "hw")
        .unwrap();
    assert!(hw.is_static);
    assert_eq!(hw.vtep, ip("192.168.0.52"));
    assert_eq!(hw.subnet, net("10.244.0.0/25"));

    // Another handle sees it and may remove it; its block is free again.
    let mut other = open();
    eventually(Duration::from_secs(2), "the other handle sees hw", || {
        other
            .nodes()
            .unwrap()
            .iter()
            .any(|n| n.name == "hw" && n.subnet == net("10.244.0.0/25"))
    });
    assert!(other.remove_node("hw").unwrap());
    assert!(!other.remove_node("hw").unwrap());
    eventually(
        Duration::from_secs(2),
        "the first handle sees hw go",
        || names(store.as_mut()) == ["a"],
    );
    let b = store
        .lease_subnet("b", ip("192.168.0.2"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(
        b.subnet,
        net("10.244.0.0/24"),
        "a removed node's block is free"
    );
}

fn cluster_setup_is_fixed_and_arguments_checked(open: Open<'_>) {
    let mut store = open();
    for len in [15, 31, 32] {
        let err = store
            .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), len)
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "/{len}: {err}");
    }
    let err = store
        .lease_subnet("", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.cluster().unwrap(), None, "nothing recorded");

    store
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    for (cidr, len) in [("10.245.0.0/16", 24), (CLUSTER, 25), ("10.244.0.0/15", 24)] {
        let err = store
            .lease_subnet("b", ip("10.0.0.2"), net(cidr), len)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("--cluster-cidr")),
            "{cidr} /{len}: {err}"
        );
        let err = store
            .lease_subnet("a", ip("10.0.0.1"), net(cidr), len)
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
    assert_eq!(store.nodes().unwrap().len(), 1);
}

fn cluster_full(open: Open<'_>) {
    let mut store = open();
    let small = net("10.244.0.0/22");
    store
        .put_static_node("hw", ip("10.0.0.9"), net("10.244.1.0/24"))
        .unwrap();
    let got: Vec<Ipv4Net> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            store
                .lease_subnet(name, ip("10.0.0.1"), small, 24)
                .unwrap()
                .subnet
        })
        .collect();
    assert_eq!(
        got,
        vec![
            net("10.244.0.0/24"),
            net("10.244.2.0/24"),
            net("10.244.3.0/24")
        ]
    );
    let err = store
        .lease_subnet("d", ip("10.0.0.1"), small, 24)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ClusterFull { cidr } if cidr == small),
        "{err}"
    );
    // An existing node still gets its lease back.
    let b = store.lease_subnet("b", ip("10.0.0.1"), small, 24).unwrap();
    assert_eq!(b.subnet, net("10.244.2.0/24"));
}

fn pods_put_remove_list(open: Open<'_>) {
    let mut store = open();
    store
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    store
        .lease_subnet("b", ip("10.0.0.2"), net(CLUSTER), 24)
        .unwrap();
    let p1 = pod("a", "c1", "10.244.0.2");
    let p2 = pod("a", "c2", "10.244.0.3");
    let p3 = pod("b", "c1", "10.244.1.2");
    store.put_pod(&p2).unwrap();
    store.put_pod(&p3).unwrap();
    store.put_pod(&p1).unwrap();
    assert_eq!(
        store.pods().unwrap(),
        vec![p1.clone(), p2.clone(), p3.clone()]
    );

    // Same key: replaced.
    let mut p1b = p1.clone();
    p1b.name = "renamed".into();
    store.put_pod(&p1b).unwrap();
    assert_eq!(store.pods().unwrap(), vec![p1b.clone(), p2, p3.clone()]);

    // Same node and address under a new key: the stale record goes.
    let p4 = pod("a", "c4", "10.244.0.3");
    store.put_pod(&p4).unwrap();
    assert_eq!(store.pods().unwrap(), vec![p1b, p4.clone(), p3.clone()]);

    // Address outside the node's subnet, or an unknown node.
    let err = store.put_pod(&pod("a", "c5", "10.244.1.9")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store.put_pod(&pod("zz", "c5", "10.244.1.9")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    assert!(store.remove_pod("a", "c1", "eth0").unwrap());
    assert!(!store.remove_pod("a", "c1", "eth0").unwrap());
    assert!(
        !store.remove_pod("b", "c4", "eth0").unwrap(),
        "key includes the node"
    );

    // Readable by another handle, which removes a node and with it its pods.
    let mut other = open();
    eventually(
        Duration::from_secs(2),
        "the other handle sees the pods",
        || other.pods().unwrap() == vec![p4.clone(), p3.clone()],
    );
    assert!(other.remove_node("a").unwrap());
    assert_eq!(other.pods().unwrap(), vec![p3.clone()]);
    eventually(
        Duration::from_secs(2),
        "the first handle sees a's pods go",
        || store.pods().unwrap() == vec![p3.clone()],
    );
}

fn objects_apply_and_list(open: Open<'_>) {
    let mut store = open();
    assert!(store.objects().unwrap().is_empty());
    let ns = object(
        ObjectKind::Namespace,
        "",
        "prod",
        serde_json::json!({"labels": {"env": "prod"}}),
    );
    let web = object(
        ObjectKind::Pod,
        "prod",
        "web",
        serde_json::json!({"labels": {"app": "web"}}),
    );
    let deny = object(
        ObjectKind::NetworkPolicy,
        "prod",
        "deny",
        serde_json::json!({"spec": {}}),
    );
    store
        .apply_objects(&[web.clone(), deny.clone(), ns.clone()], &[])
        .unwrap();
    // Sorted by key: kind, namespace, name.
    assert_eq!(
        store.objects().unwrap(),
        vec![ns.clone(), web.clone(), deny.clone()]
    );

    // Replace one, delete one (and an absent one), in one call; a key both deleted and
    // put ends up put.
    let web2 = object(
        ObjectKind::Pod,
        "prod",
        "web",
        serde_json::json!({"labels": {"app": "web2"}}),
    );
    let absent = ObjectKey {
        kind: ObjectKind::Pod,
        namespace: "prod".into(),
        name: "never".into(),
    };
    store
        .apply_objects(
            std::slice::from_ref(&web2),
            &[deny.key.clone(), absent, web.key.clone()],
        )
        .unwrap();
    assert_eq!(store.objects().unwrap(), vec![ns.clone(), web2.clone()]);
    store.apply_objects(&[], &[]).unwrap();

    let mut other = open();
    eventually(
        Duration::from_secs(2),
        "the other handle sees the objects",
        || other.objects().unwrap() == vec![ns.clone(), web2.clone()],
    );
}

fn generation_moves_on_change_only(open: Open<'_>) {
    let mut store = open();
    let g0 = store.generation().unwrap();
    store
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    let g1 = store.generation().unwrap();
    assert_ne!(g1, g0);

    // Reads, and writes that change nothing, leave it alone.
    let ns = object(ObjectKind::Namespace, "", "n", serde_json::json!({}));
    store.apply_objects(std::slice::from_ref(&ns), &[]).unwrap();
    let g2 = store.generation().unwrap();
    assert_ne!(g2, g1);
    store.nodes().unwrap();
    store.pods().unwrap();
    store.cluster().unwrap();
    store.objects().unwrap();
    store
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    assert!(!store.remove_pod("a", "nope", "eth0").unwrap());
    assert!(!store.remove_node("nope").unwrap());
    store.apply_objects(std::slice::from_ref(&ns), &[]).unwrap();
    store
        .apply_objects(&[], std::slice::from_ref(&ns.key))
        .unwrap();
    let g3 = store.generation().unwrap();
    assert_ne!(g3, g2, "the delete is a change");
    store
        .apply_objects(&[], std::slice::from_ref(&ns.key))
        .unwrap();
    assert_eq!(store.generation().unwrap(), g3);

    // Each change moves it.
    store
        .lease_subnet("a", ip("10.0.0.5"), net(CLUSTER), 24)
        .unwrap();
    let g4 = store.generation().unwrap();
    assert_ne!(g4, g3);
    store.put_pod(&pod("a", "c1", "10.244.0.2")).unwrap();
    let g5 = store.generation().unwrap();
    assert_ne!(g5, g4);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.generation().unwrap(),
        g5,
        "nothing moves it while idle"
    );
    // Another handle sees the same token.
    let mut other = open();
    assert_eq!(other.generation().unwrap(), g5);
}

fn changes_reach_other_handles_within_a_second(open: Open<'_>) {
    let mut writer = open();
    let mut reader = open();
    writer
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    type Change<'a> = &'a dyn Fn(&mut dyn ClusterStore);
    let changes: [Change<'_>; 3] = [
        &|s| {
            s.put_static_node("hw", ip("10.0.0.9"), net("10.244.100.0/24"))
                .unwrap()
        },
        &|s| s.put_pod(&pod("a", "c1", "10.244.0.7")).unwrap(),
        &|s| {
            s.apply_objects(
                &[object(
                    ObjectKind::Namespace,
                    "",
                    "x",
                    serde_json::json!({}),
                )],
                &[],
            )
            .unwrap()
        },
    ];
    for change in changes {
        // Let the reader settle on the current state first.
        let before = {
            let target = writer.generation().unwrap();
            eventually(Duration::from_secs(1), "the reader catches up", || {
                reader.generation().unwrap() == target
            });
            target
        };
        change(writer.as_mut());
        let took = eventually(Duration::from_secs(1), "the reader sees the change", || {
            reader.generation().unwrap() != before
        });
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    assert_eq!(names(reader.as_mut()), ["a", "hw"]);
    assert_eq!(reader.pods().unwrap(), vec![pod("a", "c1", "10.244.0.7")]);
    assert_eq!(reader.objects().unwrap().len(), 1);
}

fn file_backend() -> Box<dyn FnMut() -> Box<dyn ClusterStore>> {
    let dir = tempfile::tempdir().unwrap();
    Box::new(move || Box::new(FileStore::open(dir.path().join("cluster.json")).unwrap()))
}

fn etcd_backend() -> Box<dyn FnMut() -> Box<dyn ClusterStore>> {
    let etcd = Etcd::start();
    Box::new(move || open_with(&etcd.url(), &EtcdTls::default()).unwrap())
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod file_backend {
            $( #[test] fn $name() { super::$name(&mut *super::file_backend()) } )*
        }
        mod etcd_backend {
            $( #[test] fn $name() { super::$name(&mut *super::etcd_backend()) } )*
        }
    };
}

suite!(
    lease_is_stable_across_reopen,
    concurrent_joiners_get_distinct_subnets,
    static_nodes_and_conflicts,
    cluster_setup_is_fixed_and_arguments_checked,
    cluster_full,
    pods_put_remove_list,
    objects_apply_and_list,
    generation_moves_on_change_only,
    changes_reach_other_handles_within_a_second,
);

// ---------------------------------------------------------------------------------------
// etcd only.

/// Short leases for the tests that wait for them to run out.
fn short(ttl_secs: u64, grace_secs: u64) -> EtcdOptions {
    EtcdOptions {
        lease_ttl: Duration::from_secs(ttl_secs),
        subnet_grace: Duration::from_secs(grace_secs),
        ..EtcdOptions::default()
    }
}

fn connect(endpoint: &str, options: &EtcdOptions) -> EtcdStore {
    EtcdStore::connect(&[endpoint.to_owned()], options).unwrap()
}

#[test]
fn dead_nodes_vanish_after_the_ttl_and_free_their_subnet_after_the_grace() {
    const TTL: u64 = 2;
    const GRACE: u64 = 5;
    let etcd = Etcd::start();
    let options = short(TTL, GRACE);
    let mut daemon = connect(&etcd.endpoint(), &options);
    let a = daemon
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    let x = daemon
        .lease_subnet("x", ip("10.0.0.2"), net(CLUSTER), 24)
        .unwrap();
    daemon.put_pod(&pod("a", "c1", "10.244.0.2")).unwrap();
    let mut peer = connect(&etcd.endpoint(), &options);
    eventually(Duration::from_secs(3), "the peer sees a and x", || {
        names(&mut peer) == ["a", "x"]
    });

    // Alive: renewed past its TTL.
    thread::sleep(Duration::from_secs(TTL + 1));
    assert_eq!(names(&mut peer), ["a", "x"]);

    // The daemon stops: its nodes vanish after the TTL, not before long.
    drop(daemon);
    let died = Instant::now();
    let took = eventually(
        Duration::from_secs(TTL + 3),
        "the dead daemon's nodes vanish",
        || names(&mut peer).is_empty(),
    );
    assert!(took > Duration::from_millis(500), "vanished after {took:?}");
    // Their pods stay.
    assert_eq!(peer.pods().unwrap().len(), 1);

    // Within the grace: x comes back to its subnet; a newcomer gets neither a's nor x's.
    let mut back = connect(&etcd.endpoint(), &options);
    let x2 = back
        .lease_subnet("x", ip("10.0.0.2"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(x2.subnet, x.subnet);
    let c = back
        .lease_subnet("c", ip("10.0.0.3"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(c.subnet, net("10.244.2.0/24"));
    assert!(
        died.elapsed() < Duration::from_secs(GRACE),
        "the test ran too slowly"
    );

    // After the grace, a's subnet goes to the next newcomer, and a's pods with it.
    thread::sleep(Duration::from_secs(GRACE + 1).saturating_sub(died.elapsed()));
    let d = back
        .lease_subnet("d", ip("10.0.0.4"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(d.subnet, a.subnet);
    assert!(
        back.pods().unwrap().is_empty(),
        "a's pods went with its subnet"
    );
    eventually(
        Duration::from_secs(1),
        "the peer sees the new state",
        || names(&mut peer) == ["c", "d", "x"] && peer.pods().unwrap().is_empty(),
    );
    // a, back after its grace: a new block.
    let a2 = back
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(a2.subnet, net("10.244.3.0/24"));
}

#[test]
fn outage_reads_from_cache_fails_writes_fast_and_recovers() {
    let mut etcd = Etcd::start();
    let options = short(2, 60);
    let mut a = connect(&etcd.endpoint(), &options);
    let mut b = connect(&etcd.endpoint(), &options);
    a.lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    b.lease_subnet("b", ip("10.0.0.2"), net(CLUSTER), 24)
        .unwrap();
    a.put_pod(&pod("a", "c1", "10.244.0.2")).unwrap();
    eventually(Duration::from_secs(3), "a sees b", || {
        names(&mut a) == ["a", "b"]
    });
    let generation = a.generation().unwrap();
    assert_eq!(a.health(), StoreHealth::Connected);

    etcd.kill();
    eventually(Duration::from_secs(5), "a notices", || {
        matches!(a.health(), StoreHealth::Disconnected { .. })
    });
    let StoreHealth::Disconnected { since_unix, reason } = a.health() else {
        unreachable!()
    };
    assert!(since_unix > 1_600_000_000, "{since_unix}");
    assert!(!reason.is_empty());

    // Writes fail at once; reads answer from the cache.
    let start = Instant::now();
    let err = a.put_pod(&pod("a", "c2", "10.244.0.3")).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let err = a
        .apply_objects(
            &[object(
                ObjectKind::Namespace,
                "",
                "n",
                serde_json::json!({}),
            )],
            &[],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(names(&mut a), ["a", "b"]);
    assert_eq!(a.pods().unwrap(), vec![pod("a", "c1", "10.244.0.2")]);
    assert_eq!(a.generation().unwrap(), generation);
    // A handle that has not noticed yet still gives up within the call timeout.
    eventually(Duration::from_secs(5), "b notices", || {
        let start = Instant::now();
        let result = b.put_static_node("hw", ip("10.0.0.9"), net("10.244.200.0/24"));
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
        matches!(result, Err(StoreError::Unavailable(_)))
    });

    // Down for longer than the lease TTL, then back on the same data.
    thread::sleep(Duration::from_secs(3));
    etcd.restart();
    // A change made right away through a new handle.
    let mut c = connect(&etcd.endpoint(), &options);
    c.put_static_node("hw", ip("10.0.0.9"), net("10.244.200.0/24"))
        .unwrap();
    for store in [&mut a, &mut b] {
        eventually(Duration::from_secs(10), "connected again", || {
            store.health() == StoreHealth::Connected
        });
    }
    eventually(
        Duration::from_secs(2),
        "a and b see hw, and each other",
        || names(&mut a) == ["a", "b", "hw"] && names(&mut b) == ["a", "b", "hw"],
    );
    // Their nodes stay alive on renewed leases, and writes work again.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(names(&mut c), ["a", "b", "hw"]);
    a.put_pod(&pod("a", "c2", "10.244.0.3")).unwrap();
    assert_eq!(a.pods().unwrap().len(), 2);
}

#[test]
fn partition_longer_than_the_ttl_resyncs_and_puts_the_node_back() {
    let etcd = Etcd::start();
    let proxy = Proxy::start(etcd.port());
    let options = short(2, 60);
    let mut cut_off = connect(&proxy.endpoint(), &options);
    let mut peer = connect(&etcd.endpoint(), &options);
    cut_off
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    peer.lease_subnet("b", ip("10.0.0.2"), net(CLUSTER), 24)
        .unwrap();
    // Both must know both nodes before the cut: the last known state below.
    eventually(
        Duration::from_secs(2),
        "each handle sees both nodes",
        || names(&mut peer) == ["a", "b"] && names(&mut cut_off) == ["a", "b"],
    );

    proxy.cut();
    eventually(Duration::from_secs(8), "the cut-off handle notices", || {
        matches!(cut_off.health(), StoreHealth::Disconnected { .. })
    });
    let err = cut_off.put_pod(&pod("a", "c1", "10.244.0.2")).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    // Its lease runs out: a vanishes from the peer. Meanwhile the peer writes.
    eventually(Duration::from_secs(8), "a vanishes from the peer", || {
        names(&mut peer) == ["b"]
    });
    peer.put_static_node("hw", ip("10.0.0.9"), net("10.244.200.0/24"))
        .unwrap();
    peer.put_pod(&pod("b", "c9", "10.244.1.9")).unwrap();
    assert_eq!(names(&mut cut_off), ["a", "b"], "the last known state");

    proxy.heal();
    eventually(Duration::from_secs(20), "connected again", || {
        cut_off.health() == StoreHealth::Connected
    });
    // The resync brought what happened meanwhile; the keeper put a back on a new lease.
    eventually(Duration::from_secs(6), "a is back everywhere", || {
        names(&mut peer) == ["a", "b", "hw"] && names(&mut cut_off) == ["a", "b", "hw"]
    });
    assert_eq!(cut_off.pods().unwrap(), vec![pod("b", "c9", "10.244.1.9")]);
    // And it stays: the new lease is renewed.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(names(&mut peer), ["a", "b", "hw"]);
}

#[test]
fn an_oversized_apply_writes_nothing() {
    let etcd = Etcd::start();
    let mut store = open_with(&etcd.url(), &EtcdTls::default()).unwrap();
    let before = store.generation().unwrap();
    // etcd takes at most 128 operations per transaction by default.
    let many: Vec<ObjectRecord> = (0..200)
        .map(|i| {
            object(
                ObjectKind::Pod,
                "default",
                &format!("p{i}"),
                serde_json::json!({}),
            )
        })
        .collect();
    let err = store.apply_objects(&many, &[]).unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("--max-txn-ops")),
        "{err}"
    );
    assert!(store.objects().unwrap().is_empty(), "all or nothing");
    assert_eq!(store.generation().unwrap(), before);
    assert_eq!(
        store.health(),
        StoreHealth::Connected,
        "a refusal is no outage"
    );
    store.apply_objects(&many[..100], &[]).unwrap();
    assert_eq!(store.objects().unwrap().len(), 100);
}

#[test]
fn keys_outside_the_prefix_change_nothing() {
    let etcd = Etcd::start();
    let mut store = open_with(&etcd.url(), &EtcdTls::default()).unwrap();
    store
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    let generation = store.generation().unwrap();
    for i in 0..5 {
        etcd.etcdctl(&["put", &format!("/elsewhere/{i}"), "x"]);
    }
    // Unknown keys inside the prefix are ignored too (a later release may add some).
    etcd.etcdctl(&["put", "/vswitch/v1/future/thing", "{}"]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(store.generation().unwrap(), generation);
    // A write that changes nothing returns promptly although etcd's revision moved on
    // without a change under the prefix (the cache catches up by a progress request).
    let start = Instant::now();
    assert!(!store.remove_node("nope").unwrap());
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(store.generation().unwrap(), generation);
    // The records are JSON with a version, under the documented keys.
    let value = etcd.etcdctl(&["get", "--print-value-only", "/vswitch/v1/cluster"]);
    assert_eq!(
        value.trim(),
        r#"{"version":1,"cidr":"10.244.0.0/16","subnet_len":24}"#
    );
    let keys = etcd.etcdctl(&["get", "--keys-only", "--prefix", "/vswitch/v1/"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        keys,
        [
            "/vswitch/v1/cluster",
            "/vswitch/v1/future/thing",
            "/vswitch/v1/nodes/a",
            "/vswitch/v1/subnets/10.244.0.0/24"
        ]
    );
}

#[test]
fn unreachable_etcd_fails_to_open_promptly() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let err = open_err(&format!("etcd://127.0.0.1:{port}"), &EtcdTls::default());
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("cannot use etcd")),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let Some(certs) = etcd_harness::make_certs(dir.path()) else {
        eprintln!("skipped: no openssl tool to make certificates");
        return;
    };
    let etcd = Etcd::start_tls(&certs);
    let tls = EtcdTls {
        cacert: Some(certs.ca.clone()),
        cert: Some(certs.client_cert.clone()),
        key: Some(certs.client_key.clone()),
    };
    let mut store = open_with(&etcd.url(), &tls).unwrap();
    let a = store
        .lease_subnet("a", ip("10.0.0.1"), net(CLUSTER), 24)
        .unwrap();
    assert_eq!(store.nodes().unwrap(), vec![a]);

    // Without TLS, or without a client certificate: refused, promptly.
    for wrong in [
        EtcdTls::default(),
        EtcdTls {
            cacert: Some(certs.ca.clone()),
            ..EtcdTls::default()
        },
    ] {
        let start = Instant::now();
        let err = open_err(&etcd.url(), &wrong);
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    // Half a client identity, or a missing file.
    let half = EtcdTls {
        key: None,
        ..tls.clone()
    };
    assert!(matches!(
        open_err(&etcd.url(), &half),
        StoreError::Invalid(_)
    ));
    let missing = EtcdTls {
        cacert: Some(dir.path().join("nope.pem")),
        ..tls
    };
    assert!(matches!(
        open_err(&etcd.url(), &missing),
        StoreError::Io { .. }
    ));
}
