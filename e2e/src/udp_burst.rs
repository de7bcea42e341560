//! A burst of equal-size UDP datagrams from one namespace to another, every datagram
//! checked on arrival: its size, its payload (numbered, the rest a pattern of its
//! number) and that it came once. What a data path that merges datagrams into UDP
//! super-frames and lets the receiving kernel cut them again must hand over unchanged.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use crate::cmd::run_timeout;
use crate::env::next_id;
use crate::netns::Netns;
use crate::python::spawn_python;

/// How long each step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Receives datagrams until `count` came or none came for 2 s, checking each; prints
/// `received distinct bad_size bad_payload duplicates`.
const SERVER: &str = r"
import socket, sys
port, count, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# SO_RCVBUFFORCE (root): room for the whole burst, so the socket drops nothing.
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
s.bind(('0.0.0.0', port))
print('ready', flush=True)
seen, received, bad_size, bad_payload, duplicates = set(), 0, 0, 0, 0
s.settimeout(20)
while received < count:
    try:
        d = s.recv(65536)
    except socket.timeout:
        break
    s.settimeout(2)
    received += 1
    if len(d) != size:
        bad_size += 1
        continue
    n = int.from_bytes(d[:4], 'big')
    if d[4:] != bytes((n + i) % 256 for i in range(size - 4)):
        bad_payload += 1
    elif n in seen:
        duplicates += 1
    else:
        seen.add(n)
print(received, len(seen), bad_size, bad_payload, duplicates, flush=True)
";

/// Sends `count` datagrams of `size` bytes, 32 at a time in one `sendmsg` with
/// `UDP_SEGMENT` (the pod's kernel hands its TAP one UDP super-frame per call), 2 ms
/// apart.
const CLIENT: &str = r"
import socket, struct, sys, time
ip, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
segment = [(socket.SOL_UDP, 103, struct.pack('=H', size))]  # UDP_SEGMENT
for first in range(0, count, 32):
    burst = b''.join(
        n.to_bytes(4, 'big') + bytes((n + i) % 256 for i in range(size - 4))
        for n in range(first, min(first + 32, count)))
    while True:
        try:
            s.sendmsg([burst], segment, 0, (ip, port))
            break
        except OSError:
            time.sleep(0.001)
    time.sleep(0.002)
";

/// What the receiver counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstReport {
    /// Datagrams received.
    pub received: usize,
    /// Distinct datagram numbers received intact.
    pub distinct: usize,
    /// Datagrams of another size than sent.
    pub bad_size: usize,
    /// Datagrams of the right size whose payload was not the one sent.
    pub bad_payload: usize,
    /// Intact datagrams received more than once.
    pub duplicates: usize,
}

/// Sends `count` UDP datagrams of `size` bytes (at least 4) from `client` to
/// `server_ip` (an address in `server`), 32 to a UDP GSO send, and reports what
/// arrived.
///
/// # Errors
/// When the server does not start or does not report.
pub fn udp_burst(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
    count: usize,
    size: usize,
) -> Result<BurstReport, String> {
    let port = (40_000 + next_id() % 20_000).to_string();
    let (count_arg, size_arg) = (count.to_string(), size.max(4).to_string());
    let receiver = spawn_python(
        server,
        SERVER,
        &[&port, &count_arg, &size_arg],
        Stdio::null(),
        Stdio::null(),
    )
    .map_err(|e| format!("cannot start the UDP receiver: {e}"))?;
    let lines = &receiver.lines;
    match lines.recv_timeout(STEP_TIMEOUT) {
        Ok(line) if line == "ready" => {}
        other => return Err(format!("the UDP receiver did not start: {other:?}")),
    }
    let mut cmd = client.command("python3");
    cmd.args([
        "-c",
        CLIENT,
        &server_ip.to_string(),
        &port,
        &count_arg,
        &size_arg,
    ]);
    let sent = run_timeout(&mut cmd, None, STEP_TIMEOUT);
    if !sent.as_ref().is_ok_and(|done| done.success()) {
        return Err(format!("the UDP sender failed: {sent:?}"));
    }
    let line = lines
        .recv_timeout(STEP_TIMEOUT)
        .map_err(|_| "the UDP receiver did not report".to_owned())?;
    let numbers: Vec<usize> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers[..] {
        [received, distinct, bad_size, bad_payload, duplicates] => Ok(BurstReport {
            received,
            distinct,
            bad_size,
            bad_payload,
            duplicates,
        }),
        _ => Err(format!("the UDP receiver printed {line:?}")),
    }
}
