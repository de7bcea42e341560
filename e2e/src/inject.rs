//! Raw Ethernet frames written onto an interface from inside a namespace, the way a
//! compromised pod would: a `python3` AF_PACKET socket bound to the pod's `eth0` (its TAP),
//! so the frames reach `vswitchd` exactly as the pod's kernel would hand them over.
//!
//! The frames are built by the caller (see the builders in `vxlan_probe`), wrong ones
//! included; the injector only writes them, optionally with a fresh random source MAC
//! each time (a MAC flood), and reports how many the kernel took.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::cmd::run_timeout;
use crate::netns::Netns;

/// Frames to write: `count` copies of `frame`.
#[derive(Debug, Clone)]
pub struct Burst {
    /// The Ethernet frame (no FCS).
    pub frame: Vec<u8>,
    /// How many times to send it.
    pub count: u32,
    /// Give every copy its own random, locally administered unicast source MAC.
    pub random_source: bool,
}

impl Burst {
    /// `frame`, once.
    pub fn once(frame: Vec<u8>) -> Burst {
        Burst::repeat(frame, 1)
    }

    /// `frame`, `count` times.
    pub fn repeat(frame: Vec<u8>, count: u32) -> Burst {
        Burst {
            frame,
            count,
            random_source: false,
        }
    }

    /// `frame`, `count` times, each copy from a new random source MAC.
    pub fn mac_flood(frame: Vec<u8>, count: u32) -> Burst {
        Burst {
            frame,
            count,
            random_source: true,
        }
    }
}

/// What the kernel made of the writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injected {
    /// Frames the socket accepted.
    pub sent: u64,
    /// Writes refused, by errno (e.g. `EMSGSIZE` for a frame over the interface's MTU).
    pub refused: BTreeMap<i32, u64>,
}

/// Writes each line's frame `count` times; a write the queue cannot take right now
/// (ENOBUFS) is retried shortly, any other refusal is counted by errno.
const INJECTOR: &str = r#"
import errno, os, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
sent, refused = 0, {}
for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    count, frame, random_source = int(parts[0]), bytes.fromhex(parts[1]), parts[2] == "1"
    for _ in range(count):
        f = frame
        if random_source:
            f = frame[:6] + bytes([0x02]) + os.urandom(5) + frame[12:]
        for attempt in range(200):
            try:
                s.send(f)
                sent += 1
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS and attempt < 199:
                    time.sleep(0.001)
                    continue
                refused[e.errno] = refused.get(e.errno, 0) + 1
                break
print(sent, " ".join("%d:%d" % kv for kv in refused.items()))
"#;

/// From inside `ns`, writes `bursts` onto interface `ifname` with a raw AF_PACKET socket.
///
/// # Panics
/// When the injector cannot run (no such interface, no python3) or hangs.
pub fn inject(ns: &Netns, ifname: &str, bursts: &[Burst]) -> Injected {
    let mut input = String::new();
    for burst in bursts {
        let hex: String = burst.frame.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        });
        let _ = writeln!(
            input,
            "{} {hex} {}",
            burst.count,
            u8::from(burst.random_source)
        );
    }
    let mut cmd = ns.command("python3");
    cmd.args(["-c", INJECTOR, ifname]);
    let done = run_timeout(&mut cmd, Some(input.as_bytes()), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("frame injector in {}: {e}", ns.name()));
    assert!(
        done.success(),
        "frame injector in {} on {ifname} failed ({}): {}",
        ns.name(),
        done.status,
        done.stderr
    );
    parse_report(&done.stdout).unwrap_or_else(|| {
        panic!(
            "frame injector in {}: unreadable report {:?}",
            ns.name(),
            done.stdout
        )
    })
}

fn parse_report(text: &str) -> Option<Injected> {
    let mut words = text.split_whitespace();
    let sent = words.next()?.parse().ok()?;
    let mut refused = BTreeMap::new();
    for word in words {
        let (errno, count) = word.split_once(':')?;
        refused.insert(errno.parse().ok()?, count.parse().ok()?);
    }
    Some(Injected { sent, refused })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(
            parse_report("12 \n"),
            Some(Injected {
                sent: 12,
                refused: BTreeMap::new()
            })
        );
        let report = parse_report("3 90:1 105:2").unwrap();
        assert_eq!(report.sent, 3);
        assert_eq!(report.refused.get(&90), Some(&1));
        assert_eq!(report.refused.get(&105), Some(&2));
        assert_eq!(parse_report(""), None);
    }
}
