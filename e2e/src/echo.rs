//! Who does the receiver think sent it? A UDP probe whose server reports the source
//! address it saw, to prove traffic is not NATed on the way.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::cmd::run_timeout;
use crate::env::next_id;
use crate::netns::Netns;
use crate::python::spawn_python;

/// How long each step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Receives one datagram and prints its source address.
const SERVER: &str = r"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.settimeout(10)
print('ready', flush=True)
d, a = s.recvfrom(2048)
print(a[0], flush=True)
";

/// Sends a datagram every 50 ms, 20 times (the first may wait for ARP).
const CLIENT: &str = r"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    try:
        s.sendto(b'who am i', (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    time.sleep(0.05)
";

/// Sends UDP datagrams from `client` to `server_ip` (an address in `server`) and returns
/// the source address the server saw on the first one.
///
/// # Errors
/// When the server does not start or nothing arrives within 10 s.
pub fn udp_source_seen(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
) -> Result<Ipv4Addr, String> {
    let port = (40_000 + next_id() % 20_000).to_string();
    let receiver = spawn_python(server, SERVER, &[&port], Stdio::null(), Stdio::null())
        .map_err(|e| format!("cannot start the UDP server: {e}"))?;
    let lines = &receiver.lines;
    match lines.recv_timeout(STEP_TIMEOUT) {
        Ok(line) if line == "ready" => {}
        other => {
            return Err(format!(
                "the UDP server in {} did not start: {other:?}",
                server.name()
            ))
        }
    }
    let mut cmd = client.command("python3");
    cmd.args(["-c", CLIENT, &server_ip.to_string(), &port]);
    let client_name = client.name().to_owned();
    let sender = thread::spawn(move || run_timeout(&mut cmd, None, STEP_TIMEOUT));
    let seen = lines.recv_timeout(STEP_TIMEOUT);
    let _ = sender.join();
    let seen = seen.map_err(|_| {
        format!(
            "no UDP datagram from {client_name} reached {server_ip}:{port} in {}",
            server.name()
        )
    })?;
    seen.trim()
        .parse()
        .map_err(|_| format!("the UDP server printed {seen:?}"))
}
