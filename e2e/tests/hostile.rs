//! Hostile input from a pod and from the control socket, against the real daemon: frames
//! are written onto a pod's TAP from inside its namespace with a raw AF_PACKET socket, as
//! a compromised pod would; control requests are written raw onto the socket. Each test
//! asserts both the counters an operator reads (`vswitchctl show --json`) and what the
//! other pods observe (reachability, their neighbour entries, the MAC table).
//!
//! Hostile VXLAN from the underlay is in `overlay.rs`
//! (`vxlan_from_strangers_and_bad_datagrams_are_dropped_and_counted`).
//!
//! Needs root and the built binaries (`cargo build --workspace --bins`); see the
//! harness, `vswitch_e2e`.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use vswitch_e2e::{
    arp_request, assert_ping_within, icmp_echo, inject, parse_mac, port_by_container, run_timeout,
    Burst, Cluster, Netns, Node, Pod,
};

/// How long a healthy data path may take to answer a ping (ARP included).
const PING_WITHIN: Duration = Duration::from_secs(5);
/// How long counters may take to show frames the injector has written.
const SETTLE: Duration = Duration::from_secs(3);
/// The daemon's default flood rate: frames a second, and at once.
const FLOOD_RATE: f64 = 1000.0;
const FLOOD_BURST: f64 = 200.0;
/// errno EMSGSIZE.
const EMSGSIZE: i32 = 90;

fn assert_ping(from: &Netns, ip: Ipv4Addr, what: &str) {
    assert_ping_within(from, ip, PING_WITHIN, what);
}

/// The `show --json` port of `pod`.
fn port<'a>(show: &'a Value, pod: &Pod) -> &'a Value {
    port_by_container(show, &pod.container_id)
        .unwrap_or_else(|| panic!("{} not in show: {show}", pod.full_name()))
}

/// `counters.<key>` of a port (or of `host_port`, `overlay`).
fn counter(port: &Value, key: &str) -> u64 {
    port.get("counters")
        .and_then(|c| c.get(key))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no counter `{key}` in {port}"))
}

/// `counters.drops.<reason>` of a port (absent means 0).
fn drops(port: &Value, reason: &str) -> u64 {
    port.get("counters")
        .and_then(|c| c.get("drops"))
        .unwrap_or_else(|| panic!("no `counters.drops` in {port}"))
        .get(reason)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `tables.<table>.<key>` of `show --json`.
fn table(show: &Value, table: &str, key: &str) -> u64 {
    show.get("tables")
        .and_then(|t| t.get(table))
        .and_then(|t| t.get(key))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no `tables.{table}.{key}` in {show}"))
}

/// Polls `show --json` until `done` holds (or [`SETTLE`] passes); the last one.
fn settle(node: &Node, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let show = node.show();
        if done(&show) || Instant::now() >= deadline {
            return show;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `show --json` until `value` of it has not changed for 300 ms (a flood has been
/// served) or [`SETTLE`] passes; the last `show`.
fn settle_stable(node: &Node, value: impl Fn(&Value) -> u64) -> Value {
    let deadline = Instant::now() + SETTLE;
    let mut last = node.show();
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(100));
        let show = node.show();
        if value(&show) != value(&last) {
            since = Instant::now();
        }
        last = show;
        if since.elapsed() >= Duration::from_millis(300) || Instant::now() >= deadline {
            return last;
        }
    }
}

/// The `location` of `mac` in the node's MAC table.
fn fdb_location(node: &Node, mac: &str) -> Option<String> {
    node.fdb().iter().find_map(|entry| {
        (entry.get("mac").and_then(Value::as_str) == Some(mac))
            .then(|| entry.get("location").and_then(Value::as_str))
            .flatten()
            .map(str::to_owned)
    })
}

/// Locations of every MAC-table entry.
fn fdb_locations(node: &Node) -> Vec<(String, String)> {
    node.fdb()
        .iter()
        .filter_map(|entry| {
            Some((
                entry.get("mac")?.as_str()?.to_owned(),
                entry.get("location")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The MAC `ns`'s neighbour table holds for `ip` on eth0, if any.
fn neighbour_mac(ns: &Netns, ip: Ipv4Addr) -> Option<String> {
    let out = ns.ip_ok(&["-j", "neigh", "show", &ip.to_string(), "dev", "eth0"]);
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
    entries
        .iter()
        .find_map(|e| e.get("lladdr").and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
}

/// `ping -c count -i interval` from `from` to `ip`; the number of replies.
fn replies(from: &Netns, ip: Ipv4Addr, count: u32, interval: &str) -> u32 {
    let mut cmd = from.command("ping");
    cmd.args([
        "-n",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        interval,
        "-W",
        "1",
        &ip.to_string(),
    ]);
    let done = run_timeout(&mut cmd, None, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("ping from {}: {e}", from.name()));
    // "10 packets transmitted, 10 received, ..."
    done.stdout
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An ICMP echo from `src` (MAC, IP) to `dst` (MAC, IP), as a frame.
fn echo(src: (&str, Ipv4Addr), dst: (&str, Ipv4Addr), seq: u16) -> Vec<u8> {
    icmp_echo(
        parse_mac(src.0),
        parse_mac(dst.0),
        src.1,
        dst.1,
        0x5157,
        seq,
        b"vswitch-e2e hostile",
    )
}

const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";

// ---------------------------------------------------------------------------------------
// 1. Port security
// ---------------------------------------------------------------------------------------

/// Pod a sends as pod b (b's MAC; b's IP from a's MAC), and ARP claiming b's IP or with
/// b's MAC as sender. Every one of those frames is dropped and counted as port_security
/// on a's port, b's MAC-table entry stays on b's port, pod c's neighbour entry for b
/// keeps b's MAC, the switch still answers c's ARP for b with b's MAC, and c reaches b.
#[test]
fn spoofed_frames_from_a_pod_are_dropped_and_move_nothing() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let c = node.add_pod("default", "c");
    assert_ping(&c.netns, b.ip, "pod c → pod b");
    assert_eq!(
        neighbour_mac(&c.netns, b.ip).as_deref(),
        Some(b.mac.as_str())
    );
    let b_home = format!("{}:eth0", b.full_name());
    assert_eq!(fdb_location(node, &b.mac).as_deref(), Some(b_home.as_str()));

    let mut gratuitous_as_b = arp_request(parse_mac(&a.mac), b.ip, b.ip);
    // An ARP reply rather than a request: "b.ip is at a.mac".
    gratuitous_as_b[21] = 2;
    let mut sender_mac_of_b = arp_request(parse_mac(&a.mac), a.ip, c.ip);
    sender_mac_of_b[22..28].copy_from_slice(&parse_mac(&b.mac));
    let spoofs = [
        // b's MAC and IP: full impersonation.
        echo((&b.mac, b.ip), (&c.mac, c.ip), 1),
        // a's MAC, b's IP.
        echo((&a.mac, b.ip), (&c.mac, c.ip), 2),
        // a's own MAC and IP, but a forged broadcast "from b".
        echo((&b.mac, a.ip), (BROADCAST, Ipv4Addr::BROADCAST), 3),
        // ARP announcing b's IP at a's MAC.
        gratuitous_as_b,
        // ARP about b's IP with b's MAC, sent by b's MAC.
        arp_request(parse_mac(&b.mac), b.ip, b.ip),
        // ARP with b's MAC as sender inside a frame from a.
        sender_mac_of_b,
    ];
    const COPIES: u32 = 5;
    let before = node.show();
    let bursts: Vec<Burst> = spoofs
        .iter()
        .map(|frame| Burst::repeat(frame.clone(), COPIES))
        .collect();
    let sent = inject(&a.netns, "eth0", &bursts);
    let expected = u64::from(COPIES) * u64::try_from(spoofs.len()).unwrap_or(0);
    assert_eq!(sent.sent, expected, "the kernel refused spoofs: {sent:?}");
    let base = drops(port(&before, &a), "port_security");
    let show = settle(node, |s| {
        drops(port(s, &a), "port_security") >= base + expected
    });
    assert_eq!(
        drops(port(&show, &a), "port_security"),
        base + expected,
        "port_security on pod a: {}",
        port(&show, &a)
    );
    for (pod, name) in [(&b, "b"), (&c, "c")] {
        assert_eq!(
            drops(port(&show, pod), "port_security"),
            0,
            "pod {name}: {}",
            port(&show, pod)
        );
    }

    // Nothing moved: b's entry, c's neighbour entry, the switch's ARP answer.
    assert_eq!(
        fdb_location(node, &b.mac).as_deref(),
        Some(b_home.as_str()),
        "b's MAC-table entry moved"
    );
    assert_eq!(
        neighbour_mac(&c.netns, b.ip).as_deref(),
        Some(b.mac.as_str()),
        "pod c's neighbour entry for b changed"
    );
    c.netns.ip_ok(&["neigh", "flush", "dev", "eth0"]);
    assert_ping(&c.netns, b.ip, "pod c → pod b after the spoofs");
    assert_eq!(
        neighbour_mac(&c.netns, b.ip).as_deref(),
        Some(b.mac.as_str()),
        "the ARP answer for b is no longer b's MAC"
    );
    // And a is still a pod in good standing: its own frames pass.
    assert_ping(&a.netns, b.ip, "pod a → pod b");
    eprintln!("port security: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 2. Bounded state: MAC flood, per-port bound, flood rate
// ---------------------------------------------------------------------------------------

/// Pod a floods 20,000 random source MACs while pod b pings pod c: every flooded frame is
/// a port_security drop, nothing is learned on a's port, b's and c's entries stay, and
/// b's pings get through. Then the host port (trusted, so not port-secured) floods 500
/// source MACs: with `--mac-table-per-port 64` it churns only its own entries (counted
/// in its `mac_evictions` and `tables.mac.port_evictions`), the table as a whole evicts
/// nothing, and the pods still reach each other and their gateway.
#[test]
fn a_mac_flood_moves_no_entry_and_starves_no_one() {
    let started = Instant::now();
    let cluster = Cluster::with_daemon_args(1, &["--mac-table-per-port", "64"]);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let c = node.add_pod("default", "c");
    assert_ping(&b.netns, c.ip, "pod b → pod c");
    let before = node.show();
    assert_eq!(table(&before, "mac", "per_port"), 64, "{before}");

    const FLOOD: u32 = 20_000;
    // Room in the TAP for the whole flood, so it reaches the switch even while the
    // daemon (a debug build under test) lags: the pod can do this itself.
    a.netns.ip_ok(&[
        "link",
        "set",
        "eth0",
        "txqueuelen",
        &(FLOOD + 1000).to_string(),
    ]);
    let template = echo((&a.mac, a.ip), (&c.mac, c.ip), 7);
    let (sent, answered) = thread::scope(|scope| {
        let flood = scope.spawn(|| inject(&a.netns, "eth0", &[Burst::mac_flood(template, FLOOD)]));
        thread::sleep(Duration::from_millis(100));
        let answered = replies(&b.netns, c.ip, 10, "0.05");
        (
            flood.join().expect("the injector thread panicked"),
            answered,
        )
    });
    assert_eq!(sent.sent, u64::from(FLOOD), "{sent:?}");
    assert!(
        answered >= 8,
        "pod b got {answered} of 10 ping replies from c during a's MAC flood"
    );
    // Even with the longer queue a frame or two may be lost in the pod's kernel; nine
    // in ten must reach the switch.
    let base = drops(port(&before, &a), "port_security");
    let show = settle_stable(node, |s| drops(port(s, &a), "port_security"));
    let dropped = drops(port(&show, &a), "port_security") - base;
    assert!(
        (u64::from(FLOOD) * 9 / 10..=u64::from(FLOOD)).contains(&dropped),
        "{dropped} of {FLOOD} flooded frames counted as port_security: {}",
        port(&show, &a)
    );
    let a_home = format!("{}:eth0", a.full_name());
    let on_a: Vec<_> = fdb_locations(node)
        .into_iter()
        .filter(|(_, at)| *at == a_home)
        .collect();
    assert_eq!(
        on_a,
        vec![(a.mac.clone(), a_home.clone())],
        "only a's own MAC may live on a's port"
    );
    for pod in [&b, &c] {
        assert_eq!(
            fdb_location(node, &pod.mac),
            Some(format!("{}:eth0", pod.full_name()))
        );
    }

    // The host port floods: bounded per port.
    const HOST_FLOOD: u32 = 500;
    let host = show
        .get("host_port")
        .unwrap_or_else(|| panic!("no host_port: {show}"));
    let host_mac = host
        .get("mac")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no host_port.mac: {host}"))
        .to_owned();
    let gateway = a.gateway;
    let before = node.show();
    // To vsw0's own MAC: learned, then dropped as a hairpin (once vsw0's own entry has
    // been churned out, flooded within the rate limit, and ignored by the pods, whose MAC
    // it is not).
    let to_self = echo((&host_mac, gateway), (&host_mac, gateway), 8);
    let sent = inject(
        node.netns(),
        "vsw0",
        &[Burst::mac_flood(to_self, HOST_FLOOD)],
    );
    assert_eq!(sent.sent, u64::from(HOST_FLOOD), "{sent:?}");
    let evictions =
        |s: &Value| counter(s.get("host_port").unwrap_or(&Value::Null), "mac_evictions");
    let floor = u64::from(HOST_FLOOD) * 9 / 10 - 64;
    let show = settle_stable(node, evictions);
    let evicted = evictions(&show) - evictions(&before);
    assert!(
        (floor..=u64::from(HOST_FLOOD)).contains(&evicted),
        "vsw0 evicted {evicted} of its MACs after a flood of {HOST_FLOOD} with a bound of 64: {}",
        show.get("host_port").unwrap_or(&Value::Null)
    );
    assert_eq!(
        table(&show, "mac", "port_evictions") - table(&before, "mac", "port_evictions"),
        evicted,
        "{show}"
    );
    assert_eq!(
        table(&show, "mac", "evictions"),
        table(&before, "mac", "evictions"),
        "a flood from one port evicted entries of others: {show}"
    );
    let at_vsw0 = fdb_locations(node)
        .into_iter()
        .filter(|(_, at)| at == "vsw0")
        .count();
    assert!(at_vsw0 <= 64, "{at_vsw0} MACs live behind vsw0");
    for pod in [&a, &b, &c] {
        assert_eq!(
            fdb_location(node, &pod.mac),
            Some(format!("{}:eth0", pod.full_name()))
        );
    }
    assert_ping(&b.netns, c.ip, "pod b → pod c after the floods");
    assert_ping(&a.netns, gateway, "pod a → its gateway after the floods");
    eprintln!("MAC floods: {:?}", started.elapsed());
}

/// Pod a sends 20,000 broadcast frames as fast as it can, while pod b pings pod c. The
/// switch floods at most the burst (200) plus 1000 a second of them; the rest are
/// flood_rate drops on a's port; b's port receives no more than were flooded; b's pings
/// get through, and b's own broadcasts right after are not held back by a's storm.
#[test]
fn a_broadcast_storm_is_rate_limited_per_port() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    let c = node.add_pod("default", "c");
    assert_ping(&b.netns, c.ip, "pod b → pod c");
    let before = node.show();

    const STORM: u32 = 20_000;
    // Room in the TAP for the whole storm (see the MAC flood test).
    a.netns.ip_ok(&[
        "link",
        "set",
        "eth0",
        "txqueuelen",
        &(STORM + 1000).to_string(),
    ]);
    let storm = echo((&a.mac, a.ip), (BROADCAST, Ipv4Addr::BROADCAST), 9);
    let t0 = Instant::now();
    let (sent, answered, elapsed) = thread::scope(|scope| {
        let flood = scope.spawn(|| {
            let sent = inject(&a.netns, "eth0", &[Burst::repeat(storm, STORM)]);
            (sent, t0.elapsed())
        });
        thread::sleep(Duration::from_millis(100));
        let answered = replies(&b.netns, c.ip, 10, "0.05");
        let (sent, elapsed) = flood.join().expect("the injector thread panicked");
        (sent, answered, elapsed)
    });
    assert_eq!(sent.sent, u64::from(STORM), "{sent:?}");
    assert!(
        answered >= 8,
        "pod b got {answered} of 10 ping replies from c during a's broadcast storm"
    );
    let rx =
        |s: &Value| counter(port(s, &a), "rx_packets") - counter(port(&before, &a), "rx_packets");
    let show = settle_stable(node, rx);
    // The switch may still have been serving the storm after the injector was done:
    // the limit's time is until the counters stood still.
    let served = t0.elapsed();
    let received = rx(&show);
    let limited = drops(port(&show, &a), "flood_rate") - drops(port(&before, &a), "flood_rate");
    let flooded = received - limited;
    // What the limit lets through in that time, plus room for a's own kernel (an ARP or
    // two).
    let allowed = FLOOD_BURST + FLOOD_RATE * served.as_secs_f64() + 50.0;
    eprintln!(
        "storm: {received} frames from a, sent in {elapsed:?}, served within {served:?}: \
         {flooded} flooded, {limited} dropped as flood_rate"
    );
    // What reached the switch must be well beyond what the limit lets through, or the
    // test proves nothing.
    assert!(
        received as f64 > 2.0 * allowed,
        "the switch saw only {received} of {STORM} frames, too few to test a limit of \
         {allowed:.0}: {}",
        port(&show, &a)
    );
    assert!(
        (flooded as f64) <= allowed,
        "{flooded} frames of the storm were flooded, more than {allowed:.0}: {}",
        port(&show, &a)
    );
    assert!(limited > 0, "nothing was rate-limited: {}", port(&show, &a));
    let to_b = counter(port(&show, &b), "tx_packets") - counter(port(&before, &b), "tx_packets");
    assert!(
        (to_b as f64) <= allowed + 100.0,
        "pod b was sent {to_b} frames during a storm limited to {allowed:.0}"
    );

    // b's broadcasts are not held back by a's storm.
    let b_storm = echo((&b.mac, b.ip), (BROADCAST, Ipv4Addr::BROADCAST), 10);
    let before_b = node.show();
    inject(&b.netns, "eth0", &[Burst::repeat(b_storm, 50)]);
    let show = settle(node, |s| {
        counter(port(s, &b), "rx_packets") >= counter(port(&before_b, &b), "rx_packets") + 50
    });
    assert_eq!(
        drops(port(&show, &b), "flood_rate"),
        drops(port(&before_b, &b), "flood_rate"),
        "pod b's broadcasts were limited: {}",
        port(&show, &b)
    );
    assert_ping(&b.netns, c.ip, "pod b → pod c after the storm");
    eprintln!("broadcast storm: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 4. Malformed frames
// ---------------------------------------------------------------------------------------

/// Pod a sends truncated frames, bad IPv4 headers (IHL, version, total length both ways),
/// an 802.3 length where the ethertype goes, a bogus ARP, an ethertype a pod has no
/// business with, and (after raising its own MTU) a frame over the pod MTU. Each is
/// counted under its reason on a's port, none reaches pod b, and the daemon lives on.
#[test]
fn malformed_frames_from_a_pod_are_counted_and_harmless() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let a = node.add_pod("default", "a");
    let b = node.add_pod("default", "b");
    assert_ping(&a.netns, b.ip, "pod a → pod b");
    let mtu = node
        .show()
        .get("mtu")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no mtu in show"));

    let good = echo((&a.mac, a.ip), (&b.mac, b.ip), 11);
    let with = |at: usize, bytes: &[u8]| {
        let mut frame = good.clone();
        frame[at..at + bytes.len()].copy_from_slice(bytes);
        frame
    };
    let arp = arp_request(parse_mac(&a.mac), a.ip, b.ip);
    let mut bad_arp = arp.clone();
    bad_arp[18] = 7; // hardware address length 7
    let malformed = [
        ("Ethernet header only", good[..14].to_vec()),
        ("IPv4 header cut short", good[..24].to_vec()),
        ("IHL 3", with(14, &[0x43])),
        ("IP version 6 in an IPv4 ethertype", with(14, &[0x65])),
        ("total length beyond the frame", with(16, &[0x0f, 0xff])),
        ("total length below the header", with(16, &[0x00, 0x0a])),
        ("802.3 length as the type", with(12, &[0x00, 0x40])),
        ("ARP hardware length 7", bad_arp),
        ("ARP cut short", arp[..30].to_vec()),
    ];
    let foreign_ethertype = with(12, &[0x88, 0xcc]);
    let before = node.show();
    let mut bursts: Vec<Burst> = malformed
        .iter()
        .map(|(_, frame)| Burst::repeat(frame.clone(), 2))
        .collect();
    bursts.push(Burst::repeat(foreign_ethertype, 2));
    let sent = inject(&a.netns, "eth0", &bursts);
    assert_eq!(
        sent.sent,
        2 * u64::try_from(bursts.len()).unwrap_or(0),
        "the kernel refused some: {sent:?}"
    );

    // A frame over the MTU: the pod's kernel refuses it at the pod's MTU...
    let payload = vec![0x5a; usize::try_from(mtu).unwrap_or(1450) + 100];
    let big = icmp_echo(
        parse_mac(&a.mac),
        parse_mac(&b.mac),
        a.ip,
        b.ip,
        0x5157,
        12,
        &payload,
    );
    let refused = inject(&a.netns, "eth0", &[Burst::once(big.clone())]);
    assert_eq!(
        refused.refused.get(&EMSGSIZE),
        Some(&1),
        "the pod's kernel let a frame over its MTU through: {refused:?}"
    );
    // ...so a hostile pod raises its own MTU first. The switch still says no.
    a.netns.ip_ok(&["link", "set", "eth0", "mtu", "9000"]);
    let sent_big = inject(&a.netns, "eth0", &[Burst::once(big)]);
    a.netns
        .ip_ok(&["link", "set", "eth0", "mtu", &mtu.to_string()]);
    assert_eq!(sent_big.sent, 1, "{sent_big:?}");

    let want_malformed =
        drops(port(&before, &a), "malformed") + 2 * u64::try_from(malformed.len()).unwrap_or(0);
    let want_security = drops(port(&before, &a), "port_security") + 2;
    let want_big = drops(port(&before, &a), "too_big") + 1;
    let show = settle(node, |s| {
        let p = port(s, &a);
        drops(p, "malformed") >= want_malformed
            && drops(p, "port_security") >= want_security
            && drops(p, "too_big") >= want_big
    });
    let p = port(&show, &a);
    assert_eq!(drops(p, "malformed"), want_malformed, "malformed: {p}");
    assert_eq!(
        drops(p, "port_security"),
        want_security,
        "foreign ethertype: {p}"
    );
    assert_eq!(drops(p, "too_big"), want_big, "over the MTU: {p}");
    assert_eq!(
        counter(port(&show, &b), "tx_packets"),
        counter(port(&before, &b), "tx_packets"),
        "pod b was sent something of the garbage: {}",
        port(&show, &b)
    );
    assert!(
        node.daemon().is_running(),
        "vswitchd died of malformed frames"
    );
    assert_ping(&a.netns, b.ip, "pod a → pod b after the garbage");
    eprintln!("malformed frames: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 7. The control socket
// ---------------------------------------------------------------------------------------

/// Writes `request` raw onto the control socket and returns the one response line.
fn raw_request(node: &Node, request: &[u8], close_write: bool) -> String {
    let mut stream = UnixStream::connect(node.socket())
        .unwrap_or_else(|e| panic!("connect {}: {e}", node.socket().display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("set_write_timeout");
    // A request over the size bound is cut off by the daemon mid-write: that error is
    // expected, the response is what counts.
    let _ = stream.write_all(request);
    if close_write {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// The control socket is a socket of mode 0600 that an unprivileged user cannot use;
/// malformed requests (not JSON, empty, unknown op, missing fields, a cut-off line, over
/// the 1 MiB bound) each get an `invalid_request` error with a message, and the daemon
/// serves the next request as before.
#[test]
fn control_socket_is_private_and_rejects_malformed_requests() {
    let started = Instant::now();
    let cluster = Cluster::new(1);
    let node = cluster.node(1);
    let meta = std::fs::metadata(node.socket()).expect("stat the control socket");
    assert!(meta.file_type().is_socket(), "not a socket: {meta:?}");
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "control socket mode {:o}",
        meta.permissions().mode()
    );
    let socket = node.socket().display().to_string();
    let as_nobody = run_timeout(
        std::process::Command::new("setpriv").args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            // The system's python (CI installs it with apt): a user's pyenv shim under
            // /root is out of nobody's reach.
            "/usr/bin/python3",
            "-c",
            "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
            &socket,
        ]),
        None,
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("setpriv: {e}"));
    assert!(
        !as_nobody.success() && as_nobody.stderr.contains("PermissionError"),
        "an unprivileged user could connect to the control socket: {as_nobody:?}"
    );

    let huge = {
        let mut line = vec![b' '; (1 << 20) + 16];
        line.push(b'\n');
        line
    };
    let cases: [(&str, &[u8], bool); 7] = [
        ("not JSON", b"hello vswitchd\n", false),
        ("an empty line", b"\n", false),
        ("an unknown op", b"{\"op\":\"reboot\"}\n", false),
        ("missing fields", b"{\"op\":\"add\"}\n", false),
        ("a JSON array", b"[1,2,3]\n", false),
        ("a line cut off", b"{\"op\":\"sh", true),
        ("over 1 MiB", &huge, false),
    ];
    for (what, request, close_write) in cases {
        let response = raw_request(node, request, close_write);
        let value: Value = serde_json::from_str(response.trim())
            .unwrap_or_else(|e| panic!("{what}: the response is no JSON ({e}): {response:?}"));
        let error = value
            .get("error")
            .unwrap_or_else(|| panic!("{what}: no error in {value}"));
        assert_eq!(
            error.get("code").and_then(Value::as_str),
            Some("invalid_request"),
            "{what}: {value}"
        );
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        assert!(
            !message.is_empty(),
            "{what}: an error without a message: {value}"
        );
        eprintln!("{what}: {message}");
    }
    assert!(
        node.daemon().is_running(),
        "vswitchd died of malformed requests"
    );
    let show = node.show();
    assert_eq!(show.get("node").and_then(Value::as_str), Some("node1"));
    let pod = node.add_pod("default", "after");
    assert_ping(
        &pod.netns,
        pod.gateway,
        "a pod added after the malformed requests",
    );
    eprintln!("control socket: {:?}", started.elapsed());
}
