//! Traffic between namespaces the test made: ping, and a TCP transfer whose bytes are
//! checked end to end. Everything is bounded by timeouts, so a broken data path fails.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::run_timeout;
use crate::env::next_id;
use crate::netns::Netns;
use crate::python::{spawn_python, PythonServer};

/// How long one `ping` run may take (2 probes, 1 s wait each).
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each step of a TCP transfer may take.
const TCP_STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `ip` answers an ICMP echo from inside `from` (`ping -c 2 -W 1 -i 0.2`; one
/// reply is enough).
pub fn ping(from: &Netns, ip: Ipv4Addr) -> bool {
    let mut cmd = from.command("ping");
    cmd.args([
        "-n",
        "-q",
        "-c",
        "2",
        "-W",
        "1",
        "-i",
        "0.2",
        &ip.to_string(),
    ]);
    run_timeout(&mut cmd, None, PING_TIMEOUT).is_ok_and(|done| done.success())
}

/// Pings every `(from, to, what)` at once, one thread each, each until it answers or
/// `within` has passed.
///
/// # Panics
/// Listing every ping that got no answer.
pub fn ping_all(checks: &[(&Netns, Ipv4Addr, String)], within: Duration) {
    let failures: Vec<String> = thread::scope(|scope| {
        let workers: Vec<_> = checks
            .iter()
            .map(|(from, to, what)| {
                scope.spawn(move || {
                    (!ping_within(from, *to, within))
                        .then(|| format!("{what}: no answer from {to} within {within:?}"))
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().expect("a ping thread panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} pings failed:\n{}",
        failures.len(),
        checks.len(),
        failures.join("\n")
    );
}

/// Pings `ip` from `from` until it answers or `within` has passed.
pub fn ping_within(from: &Netns, ip: Ipv4Addr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ping(from, ip) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that `ip` answers pings from `from` within `within`; `what` names the check.
///
/// # Panics
/// When it does not.
pub fn assert_ping_within(from: &Netns, ip: Ipv4Addr, within: Duration, what: &str) {
    assert!(
        ping_within(from, ip, within),
        "{what}: {ip} does not answer ping from {} within {within:?}",
        from.name()
    );
}

/// The receiving end: accepts one connection, reads to EOF, prints byte count and SHA-256.
const SERVER: &str = r"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.listen(1)
s.settimeout(30)
print('ready', flush=True)
c, _ = s.accept()
c.settimeout(30)
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
c.close()
print(n, h.hexdigest(), flush=True)
";

/// The sending end: sends random bytes, prints byte count and SHA-256.
const CLIENT: &str = r"
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[3]))
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
while c.recv(1 << 16):
    pass
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
";

/// A finished TCP transfer.
#[derive(Debug, Clone, Copy)]
pub struct TcpReport {
    /// Bytes that arrived intact.
    pub bytes: usize,
    /// How long the client took, connect to close.
    pub elapsed: Duration,
}

/// Sends `bytes` random bytes over TCP from `client` to a server in `server` listening on
/// `server_ip`, and checks that exactly those bytes arrived (count and SHA-256).
///
/// # Errors
/// What went wrong: the server did not start, the connection failed or stalled, or the
/// bytes differ.
pub fn tcp_transfer(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
    bytes: usize,
) -> Result<TcpReport, String> {
    let port = (20_000 + next_id() % 20_000).to_string();
    let PythonServer {
        process: server_proc,
        stderr,
        lines,
        ..
    } = spawn_python(server, SERVER, &[&port], Stdio::null(), Stdio::piped())
        .map_err(|e| format!("cannot start the TCP server: {e}"))?;
    let server_stderr = move || {
        let mut text = String::new();
        if let Some(err) = stderr {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    };
    match lines.recv_timeout(TCP_STEP_TIMEOUT) {
        Ok(line) if line == "ready" => {}
        other => {
            drop(server_proc);
            return Err(format!(
                "the TCP server in {} did not start ({other:?}): {}",
                server.name(),
                server_stderr()
            ));
        }
    }
    let started = Instant::now();
    let mut cmd = client.command("python3");
    cmd.args([
        "-c",
        CLIENT,
        &server_ip.to_string(),
        &port,
        &bytes.to_string(),
    ]);
    let sent = run_timeout(&mut cmd, None, TCP_STEP_TIMEOUT * 2)
        .map_err(|e| format!("TCP client in {} → {server_ip}: {e}", client.name()))?;
    let elapsed = started.elapsed();
    if !sent.success() {
        return Err(format!(
            "TCP client in {} → {server_ip}:{port} failed: {}",
            client.name(),
            sent.stderr
        ));
    }
    let received = lines.recv_timeout(TCP_STEP_TIMEOUT).map_err(|_| {
        format!(
            "the TCP server in {} reported nothing after the client finished",
            server.name()
        )
    })?;
    drop(server_proc);
    let sent = sent.stdout.trim().to_owned();
    if received.trim() != sent {
        return Err(format!(
            "TCP {} → {server_ip}: sent {sent:?} (bytes, sha256) but received {received:?}",
            client.name()
        ));
    }
    Ok(TcpReport { bytes, elapsed })
}
