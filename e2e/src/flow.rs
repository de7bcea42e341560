//! A continuous flow of traffic that runs while a test breaks things: `ping -D` at a
//! fixed interval, every reply kept with the wall-clock time it arrived, so a test can
//! say when traffic stopped and when it came back.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::netns::Netns;

/// The longest a flow runs, should a test forget to stop it (`ping -w`).
const MAX_FLOW: Duration = Duration::from_secs(300);

/// One echo reply: when it arrived and which request it answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoReply {
    /// When `ping` received it, as seconds since the Unix epoch (`ping -D`).
    pub at: f64,
    /// Its `icmp_seq`.
    pub seq: u64,
}

/// `ping -D -n -i <interval>` from a namespace, running until the guard is dropped (or
/// [`PingFlow::stop`]), at most 5 minutes.
#[derive(Debug)]
pub struct PingFlow {
    child: Option<Child>,
    replies: Arc<Mutex<Vec<EchoReply>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl PingFlow {
    /// Starts pinging `to` from inside `from`, one request every `interval` (at least
    /// 2 ms, ping's limit for root).
    ///
    /// # Panics
    /// When `ping` cannot be started.
    pub fn start(from: &Netns, to: Ipv4Addr, interval: Duration) -> PingFlow {
        let mut cmd = from.command("ping");
        cmd.args([
            "-D",
            "-n",
            "-i",
            &format!("{:.3}", interval.as_secs_f64()),
            "-W",
            "1",
            "-w",
            &MAX_FLOW.as_secs().to_string(),
            &to.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ping in {}: {e}", from.name()));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take();
        let sink = Arc::clone(&replies);
        let reader = thread::spawn(move || {
            let Some(out) = stdout else { return };
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(reply) = parse_reply(&line) {
                    if let Ok(mut all) = sink.lock() {
                        all.push(reply);
                    }
                }
            }
        });
        PingFlow {
            child: Some(child),
            replies,
            reader: Some(reader),
        }
    }

    /// Every reply so far, in arrival order.
    pub fn replies(&self) -> Vec<EchoReply> {
        self.replies.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The first reply that arrived at or after `since` (seconds since the epoch).
    pub fn first_reply_after(&self, since: f64) -> Option<EchoReply> {
        self.replies().into_iter().find(|r| r.at >= since)
    }

    /// Stops `ping` and returns every reply.
    pub fn stop(mut self) -> Vec<EchoReply> {
        self.kill();
        self.replies()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for PingFlow {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The wall clock as seconds since the Unix epoch, the clock of `ping -D`.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `[1764023456.123456] 64 bytes from 10.244.2.2: icmp_seq=5 ttl=64 time=0.512 ms`.
fn parse_reply(line: &str) -> Option<EchoReply> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once(']')?;
    if !rest.contains(" bytes from ") {
        return None;
    }
    let seq = rest
        .split_whitespace()
        .find_map(|word| word.strip_prefix("icmp_seq="))?
        .parse()
        .ok()?;
    Some(EchoReply {
        at: stamp.parse().ok()?,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_d_lines() {
        assert_eq!(
            parse_reply(
                "[1764023456.123456] 64 bytes from 10.244.2.2: icmp_seq=5 ttl=64 time=0.512 ms"
            ),
            Some(EchoReply {
                at: 1_764_023_456.123_456,
                seq: 5
            })
        );
        assert_eq!(
            parse_reply("PING 10.244.2.2 (10.244.2.2) 56(84) bytes of data."),
            None
        );
        assert_eq!(
            parse_reply("[1764023456.1] From 10.244.1.2 icmp_seq=7 Destination Host Unreachable"),
            None
        );
    }
}
