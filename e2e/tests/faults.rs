//! Faults (issue #8, point 6): the daemon killed under traffic, a burst of concurrent CNI
//! callers, a full disk and a read-only state directory. Nothing is hijacked, nothing is
//! lost, nothing crashes: pods keep their interfaces and addresses, traffic comes back,
//! no address is handed out twice, nothing is left behind, and every failure is a CNI
//! error a user can act on with the state on disk still whole.
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`); see the
//! harness, `vswitch_e2e`.

use std::collections::HashSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_e2e::{
    devices_of_kind, ipv4_addresses, is_tap, link, ping_within, port_by_container, ports,
    subnet_contains, unix_now, Cluster, Node, PingFlow, Pod, PodSpec, ReadOnlyBind, StoreKind,
    Tmpfs,
};

/// How long a healthy data path may take to answer a first ping (ARP included).
const PING_WITHIN: Duration = Duration::from_secs(5);
/// The bound: traffic flows again within 2 s of the daemon's restart.
const RESUME_WITHIN_SECS: f64 = 2.0;
/// The flow's interval: 20 echo requests a second.
const FLOW_INTERVAL: Duration = Duration::from_millis(50);
/// CNI error code for an I/O failure of the daemon (vswitch-cni's `code::IO`).
const CNI_IO: u64 = 5;
/// The node state file in a `--state-dir`.
const STATE_FILE: &str = "attachments.json";

/// The leases in `node`'s state directory: `attachments.json` parsed (none when there is
/// no file yet) as (container id, address).
///
/// # Panics
/// When the file does not parse or lacks the fields node state always writes: a fault
/// must never leave corrupt state behind.
fn leases(node: &Node) -> Vec<(String, Ipv4Addr)> {
    let path = node.state_dir().join(STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let state: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} is corrupt ({e}):\n{}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(state.get("version"), Some(&Value::from(1)), "{state}");
    state
        .get("attachments")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no `attachments` list in {}: {state}", path.display()))
        .iter()
        .map(|a| {
            let id = a.get("container_id").and_then(Value::as_str);
            let ip = a
                .get("ip")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            match (id, ip) {
                (Some(id), Some(ip)) => (id.to_owned(), ip),
                _ => panic!(
                    "a lease without container_id or ip in {}: {a}",
                    path.display()
                ),
            }
        })
        .collect()
}

/// The pod records of `node` in the cluster's store, `file:` or etcd (container ids).
///
/// # Panics
/// When the store file does not parse, or etcdctl fails.
fn store_pods(cluster: &Cluster, node: &Node) -> Vec<String> {
    if cluster.store_kind() == StoreKind::Etcd {
        let prefix = format!("/vswitch/v1/pods/{}/", node.name());
        return cluster
            .etcd()
            .get_prefix(&prefix)
            .into_iter()
            .map(|(key, value)| {
                let record: Value = serde_json::from_str(&value)
                    .unwrap_or_else(|e| panic!("etcd {key} holds no JSON record ({e}): {value}"));
                record
                    .get("container_id")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("etcd {key}: no container_id in {record}"))
                    .to_owned()
            })
            .collect();
    }
    let path = PathBuf::from(
        cluster
            .store_url()
            .strip_prefix("file:")
            .unwrap_or_else(|| panic!("not a file: store: {}", cluster.store_url())),
    );
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let store: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is corrupt: {e}", path.display()));
    store
        .get("pods")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no `pods` list in the store: {store}"))
        .iter()
        .filter(|p| p.get("node").and_then(Value::as_str) == Some(node.name()))
        .filter_map(|p| p.get("container_id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// Files of the state directory other than the lock and the state file: a temporary file
/// left by a failed write would be one.
fn stray_state_files(node: &Node) -> Vec<PathBuf> {
    fs::read_dir(node.state_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n != "lock" && n != STATE_FILE)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that `pod` still has its TAP `eth0` holding its address.
fn assert_interface_kept(pod: &Pod, when: &str) {
    let who = pod.full_name();
    let eth0 = link(&pod.netns, "eth0").unwrap_or_else(|| panic!("{who}: eth0 gone {when}"));
    assert!(
        is_tap(&eth0),
        "{who}: eth0 is no longer a TAP {when}: {eth0}"
    );
    assert_eq!(
        ipv4_addresses(&pod.netns, "eth0"),
        vec![(pod.ip, 16)],
        "{who}: address of eth0 {when}"
    );
}

/// The pid of the node's daemon, checked to be `vswitchd` itself (`ip netns exec`
/// execs it in place).
fn daemon_pid(node: &Node) -> u32 {
    let pid = node
        .daemon()
        .pid()
        .unwrap_or_else(|| panic!("the daemon of {} is not running", node.name()));
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "vswitchd", "process {pid} is not the daemon");
    pid
}

/// Point 6a: `kill -9` of a daemon while a pod on its node pings a pod on another node
/// 20 times a second. While it is down the pods keep their TAPs and addresses and no
/// reply gets through (the data path is the daemon's); after the restart the first reply
/// comes within 2 s of the new process being started; the node keeps its subnet; and an
/// ADD after the restart gets an address nobody holds.
#[test]
fn kill9_under_traffic_keeps_pods_and_resumes_within_2s() {
    let cluster = Cluster::new(2);
    let (n1, n2) = (cluster.node(1), cluster.node(2));
    let a = n1.add_pod("default", "a");
    let a2 = n1.add_pod("default", "a2");
    let b = n2.add_pod("default", "b");
    let subnet = n1.subnet();
    let gateway = n1.gateway();
    assert!(
        ping_within(&a.netns, b.ip, PING_WITHIN),
        "pod a ({}) → pod b ({}) across the overlay before the crash",
        a.ip,
        b.ip
    );

    let flow = PingFlow::start(&a.netns, b.ip, FLOW_INTERVAL);
    let deadline = Instant::now() + PING_WITHIN;
    while flow.replies().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "the flow a → b does not get going: {:?}",
            flow.replies()
        );
        thread::sleep(FLOW_INTERVAL);
    }

    let killed_at = unix_now();
    n1.kill9();
    assert!(!n1.daemon().is_running(), "vswitchd survived kill -9");
    for pod in [&a, &a2] {
        assert_interface_kept(pod, "while the daemon is dead");
    }
    // An outage long enough to see: ~20 requests with nobody to forward them.
    thread::sleep(Duration::from_secs(1));
    for pod in [&a, &a2] {
        assert_interface_kept(pod, "while the daemon is dead");
    }

    let restarted_at = unix_now();
    n1.restart();
    let ready_at = unix_now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let resumed = loop {
        if let Some(reply) = flow.first_reply_after(restarted_at) {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "no echo reply at all within 10 s of the restart; replies: {:?}",
            flow.replies()
        );
        thread::sleep(FLOW_INTERVAL);
    };
    let replies = flow.stop();

    // In flight at the kill: at most a round trip; nothing after that until the restart.
    let during_outage: Vec<_> = replies
        .iter()
        .filter(|r| r.at > killed_at + 0.2 && r.at < restarted_at)
        .collect();
    assert!(
        during_outage.is_empty(),
        "replies got through while the daemon was dead, so the flow did not go through it: {during_outage:?}"
    );
    let resume_secs = resumed.at - restarted_at;
    eprintln!(
        "kill -9 under traffic: restart → daemon ready {:.3} s, restart → first reply {resume_secs:.3} s (icmp_seq {}), outage {:.3} s",
        ready_at - restarted_at,
        resumed.seq,
        resumed.at - killed_at
    );
    assert!(
        resume_secs <= RESUME_WITHIN_SECS,
        "traffic resumed {resume_secs:.3} s after the restart, more than {RESUME_WITHIN_SECS} s"
    );

    for pod in [&a, &a2] {
        assert_interface_kept(pod, "after the restart");
    }
    assert_eq!(
        n1.subnet(),
        subnet,
        "a restarted daemon leased another subnet"
    );
    assert_eq!(n1.gateway(), gateway);
    let show = n1.show();
    for pod in [&a, &a2] {
        let port = port_by_container(&show, &pod.container_id)
            .unwrap_or_else(|| panic!("{} not listed after the restart: {show}", pod.full_name()));
        assert_eq!(port.get("attached"), Some(&Value::Bool(true)), "{port}");
    }

    let c = n1.add_pod("default", "c");
    let taken = [a.ip, a2.ip, gateway];
    assert!(
        !taken.contains(&c.ip) && subnet_contains(&subnet, c.ip),
        "after the restart a new pod got {}, which is taken ({taken:?}) or outside {subnet}",
        c.ip
    );
    let leased = leases(n1);
    let unique: HashSet<Ipv4Addr> = leased.iter().map(|(_, ip)| *ip).collect();
    assert_eq!(unique.len(), 3, "leases after the restart: {leased:?}");
    assert!(
        ping_within(&c.netns, b.ip, PING_WITHIN),
        "new pod c → pod b"
    );
    assert!(ping_within(&b.netns, a2.ip, PING_WITHIN), "pod b → pod a2");
}

/// Point 6b: 60 pods added and then deleted by 6 concurrent callers, each a real
/// `vswitch-cni` process per call: 60 distinct addresses while they live, and after the
/// DELs (each caller deleting pods another one added) no TAP in any pod namespace and
/// none but `vsw0` on the node, no lease in the state directory, no pod record in the
/// `file:` store, no port in `show`.
#[test]
fn sixty_pods_by_six_concurrent_callers_leave_nothing_behind() {
    sixty_pods_by_six_callers(&Cluster::new(1));
}

/// Point 6b with the cluster store on etcd: no pod record left under
/// `/vswitch/v1/pods/<node>/` either.
#[test]
fn sixty_pods_by_six_concurrent_callers_leave_nothing_behind_in_etcd() {
    sixty_pods_by_six_callers(&Cluster::builder(1).store(StoreKind::Etcd).build());
}

fn sixty_pods_by_six_callers(cluster: &Cluster) {
    const CALLERS: usize = 6;
    const PODS: usize = 60;
    let node = cluster.node(1);
    let subnet = node.subnet();
    let gateway = node.gateway();

    let mut pods: Vec<Pod> = thread::scope(|scope| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                scope.spawn(move || {
                    (caller..PODS)
                        .step_by(CALLERS)
                        .map(|i| node.add_pod("burst", &format!("p{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|c| c.join().expect("an ADD caller panicked"))
            .collect()
    });
    assert_eq!(pods.len(), PODS);
    let addresses: HashSet<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(
        addresses.len(),
        PODS,
        "concurrent ADDs handed out an address twice: {:?}",
        pods.iter().map(|p| p.ip).collect::<Vec<_>>()
    );
    for pod in &pods {
        assert!(
            subnet_contains(&subnet, pod.ip) && pod.ip != gateway,
            "{}: {} is no pod address of {subnet}",
            pod.full_name(),
            pod.ip
        );
    }
    assert_eq!(ports(&node.show()).len(), PODS, "ports in show");
    assert_eq!(leases(node).len(), PODS, "leases on disk");
    assert_eq!(
        store_pods(cluster, node).len(),
        PODS,
        "pod records in the store"
    );
    if let [first, .., last] = pods.as_slice() {
        assert!(
            ping_within(&first.netns, last.ip, PING_WITHIN),
            "first pod → last pod"
        );
    }

    // Each caller deletes what the next one added, all at once.
    pods.sort_by_key(|p| {
        p.spec
            .name
            .trim_start_matches('p')
            .parse::<usize>()
            .unwrap_or(0)
    });
    thread::scope(|scope| {
        for caller in 0..CALLERS {
            let pods = &pods;
            scope.spawn(move || {
                for pod in pods.iter().skip((caller + 1) % CALLERS).step_by(CALLERS) {
                    node.del_pod(pod)
                        .expect_success(&format!("DEL {}", pod.full_name()));
                }
            });
        }
    });

    for pod in &pods {
        let taps = devices_of_kind(&pod.netns, "tun");
        assert!(
            taps.is_empty(),
            "{} still has {taps:?} after DEL",
            pod.full_name()
        );
        assert!(
            link(&pod.netns, "eth0").is_none(),
            "{}: eth0 left",
            pod.full_name()
        );
    }
    assert_eq!(
        devices_of_kind(node.netns(), "tun"),
        vec!["vsw0".to_owned()],
        "TAPs in the node namespace after the DELs"
    );
    let show = node.show();
    assert!(ports(&show).is_empty(), "ports left after the DELs: {show}");
    assert_eq!(leases(node), Vec::new(), "leases left after the DELs");
    assert_eq!(
        store_pods(cluster, node),
        Vec::<String>::new(),
        "pod records left in the store after the DELs"
    );
    assert_eq!(
        stray_state_files(node),
        Vec::<PathBuf>::new(),
        "stray files in the state dir"
    );
}

/// What a fault test checks after a refused ADD: a CNI I/O error whose message carries
/// the OS's words and whose details point at the state directory; no interface in the
/// pod; the state file as it was; no temporary file left; the daemon still answering.
fn assert_add_refused_cleanly(node: &Node, name: &str, os_words: &str, before: &[u8]) {
    let (pod_ns, container_id, out) = node.try_add_pod(&PodSpec::new("default", name));
    let error = out.expect_error(&format!("ADD {name}"), CNI_IO);
    eprintln!("ADD {name} refused as it should be: {}", out.stdout.trim());
    assert!(
        out.msg().contains(os_words) && out.msg().contains(STATE_FILE),
        "the message must say what failed and where: {}",
        out.describe()
    );
    assert!(
        error
            .get("details")
            .and_then(Value::as_str)
            .is_some_and(|d| d.contains("--state-dir")),
        "the details must point at the state directory: {}",
        out.describe()
    );
    assert!(
        link(&pod_ns, "eth0").is_none(),
        "a refused ADD left eth0 behind"
    );
    assert_eq!(
        fs::read(node.state_dir().join(STATE_FILE)).unwrap_or_default(),
        before,
        "a refused ADD changed the state file"
    );
    assert_eq!(
        stray_state_files(node),
        Vec::<PathBuf>::new(),
        "stray files in the state dir"
    );
    assert!(
        port_by_container(&node.show(), &container_id).is_none(),
        "a refused ADD is listed in show"
    );
}

/// Point 6c: the state directory and the `file:` store on one 256 KiB tmpfs (as
/// vswitchd's defaults keep both in `/var/lib/vswitch`), filled to the last byte. ADD
/// and DEL give CNI I/O errors that say "No space left on device" and point at
/// `--state-dir`; the state file and the store still parse, with the same leases and
/// records; the daemon keeps serving (and forwarding) and survives `kill -9` and a
/// restart while the disk is full; once space is freed, the DEL and a new ADD work and
/// the books balance.
#[test]
fn full_disk_gives_a_clear_cni_error_and_no_corrupt_state() {
    let disk = Tmpfs::new(256);
    let cluster = Cluster::builder(1)
        .state_root(disk.path())
        .store_file(&disk.path().join("cluster.json"))
        .build();
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let before = fs::read(node.state_dir().join(STATE_FILE)).expect("state file after ADD");

    let filler = disk.fill("filler");
    assert_add_refused_cleanly(node, "full", "No space left on device", &before);
    assert!(
        ping_within(&a.netns, b.ip, PING_WITHIN),
        "a → b with the disk full"
    );

    // A DEL must write too: refused the same way, the lease kept (the runtime retries).
    let del = node.del_pod(&b);
    del.expect_error("DEL on a full disk", CNI_IO);
    assert!(
        del.msg().contains("No space left on device"),
        "{}",
        del.describe()
    );
    assert_eq!(
        fs::read(node.state_dir().join(STATE_FILE)).unwrap_or_default(),
        before,
        "a refused DEL changed the state file"
    );

    let recorded = store_pods(&cluster, node);
    assert_eq!(
        recorded.len(),
        2,
        "pod records with the disk full: {recorded:?}"
    );

    // A crash with the disk full loses nothing either.
    node.kill9();
    node.restart();
    assert_eq!(
        leases(node).len(),
        2,
        "leases after a restart on a full disk"
    );
    assert_eq!(
        store_pods(&cluster, node),
        recorded,
        "pod records after the restart"
    );
    assert_interface_kept(&a, "after a restart on a full disk");
    assert!(
        ping_within(node.netns(), a.ip, PING_WITHIN),
        "node → a after the restart"
    );

    fs::remove_file(&filler).expect("free the disk");
    node.del_pod(&b)
        .expect_success("DEL once the disk has room");
    let c = node.add_pod("default", "c");
    assert_ne!(c.ip, a.ip, "c got a's address");
    let leased = leases(node);
    let ids: HashSet<&str> = leased.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        HashSet::from([a.container_id.as_str(), c.container_id.as_str()]),
        "leases once the disk has room: {leased:?}"
    );
    let mut recorded = store_pods(&cluster, node);
    recorded.sort();
    let mut expected = vec![a.container_id.clone(), c.container_id.clone()];
    expected.sort();
    assert_eq!(recorded, expected, "pod records once the disk has room");
    assert!(ping_within(&c.netns, a.ip, PING_WITHIN), "c → a");
    assert_eq!(
        stray_state_files(node),
        Vec::<PathBuf>::new(),
        "stray files in the state dir"
    );
}

/// Point 6c: the state directory turns read-only under a running daemon (a bind mount
/// remounted read-only in the daemon's mount namespace, as after a file system error).
/// ADD gives a CNI I/O error that says "Read-only file system"; nothing changes on disk;
/// the daemon keeps serving; once the directory is writable again ADD works, and a
/// restarted daemon reads the state back.
#[test]
fn read_only_state_dir_gives_a_clear_cni_error_and_no_corrupt_state() {
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let before = fs::read(node.state_dir().join(STATE_FILE)).expect("state file after ADD");

    let mut read_only = ReadOnlyBind::new(daemon_pid(node), node.state_dir());
    assert_add_refused_cleanly(node, "ro", "Read-only file system", &before);
    assert!(
        ping_within(node.netns(), a.ip, PING_WITHIN),
        "node → a with the state dir read-only"
    );
    node.check_pod(&a)
        .expect_success("CHECK with the state dir read-only");

    read_only.undo();
    let b = node.add_pod("default", "b");
    assert_ne!(a.ip, b.ip);
    node.restart();
    let leased = leases(node);
    assert_eq!(leased.len(), 2, "leases after the restart: {leased:?}");
    for pod in [&a, &b] {
        assert_interface_kept(pod, "after the restart");
    }
    assert!(
        ping_within(&a.netns, b.ip, PING_WITHIN),
        "a → b after the restart"
    );
}
