//! Probing reachability the way NetworkPolicy tests need it: a server answering on
//! several TCP and UDP ports of a namespace ([`PortServer`]), and a long-lived prober in a
//! client namespace ([`Prober`]) that opens TCP connections and UDP exchanges on request,
//! each bounded by its own timeout, and tells an answer, a refusal and silence apart. The
//! prober also keeps TCP connections open ([`Prober::open`], [`Prober::exchange`]) to show
//! that an established connection survives a change.
//!
//! One prober process serves many probes, so a probe costs a round trip on a pipe, not a
//! Python start-up: polling every 100 ms for a verdict that flips is meaningful.
#![forbid(unsafe_code)]

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::netns::Netns;
use crate::python::{spawn_python, Reaped};

/// How long a server or prober may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// What the harness waits beyond a probe's own timeout before calling the prober hung.
const SLACK: Duration = Duration::from_secs(5);

/// Listens on the TCP and UDP ports given (comma-separated lists). A TCP connection gets
/// the line `srv:<port>` at once and then an echo of everything it sends; a UDP datagram
/// gets `echo:<port>:` followed by its own bytes.
const SERVER: &str = r"
import select, socket, sys
tcp = [int(p) for p in sys.argv[1].split(',') if p]
udp = [int(p) for p in sys.argv[2].split(',') if p]
listeners, dgrams, conns = {}, {}, {}
for p in tcp:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', p))
    s.listen(128)
    listeners[s] = p
for p in udp:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', p))
    dgrams[s] = p
print('ready', flush=True)
while True:
    ready, _, _ = select.select(list(listeners) + list(dgrams) + list(conns), [], [])
    for s in ready:
        if s in listeners:
            try:
                c, _ = s.accept()
                c.sendall(b'srv:%d\n' % listeners[s])
                conns[c] = listeners[s]
            except OSError:
                pass
        elif s in dgrams:
            try:
                d, a = s.recvfrom(65535)
                s.sendto(b'echo:%d:' % dgrams[s] + d, a)
            except OSError:
                pass
        else:
            try:
                d = s.recv(65536)
            except OSError:
                d = b''
            if d:
                try:
                    s.sendall(d)
                    continue
                except OSError:
                    pass
            s.close()
            del conns[s]
";

/// Reads commands on stdin, one a line, and prints one result line for each:
///
/// - `tcp IP PORT SECS`: connect and read the server's first line: `answered LINE`,
///   `silent` (connected, nothing came), `refused`, `timeout` or `error WHAT`;
/// - `udp IP PORT SECS`: send a datagram (again every 200 ms) until one comes back:
///   `answered REPLY`, `refused` (ICMP port unreachable), `timeout` or `error WHAT`;
/// - `open ID IP PORT SECS`: as `tcp`, keeping the connection as `ID` when it answers;
/// - `send ID WORD SECS`: sends `WORD` and a newline on connection `ID` and reads a line
///   back: `answered LINE`, `closed`, `timeout` or `error WHAT`;
/// - `close ID`: `closed`.
const PROBER: &str = r"
import os, socket, sys, time
conns = {}
def out(s):
    sys.stdout.write(s + '\n')
    sys.stdout.flush()
def readline(s, secs):
    deadline = time.monotonic() + secs
    buf = b''
    while b'\n' not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            d = s.recv(4096)
        except socket.timeout:
            return None
        if not d:
            return b''
        buf += d
    return buf.split(b'\n', 1)[0]
def connect(ip, port, secs):
    s = socket.socket()
    s.settimeout(secs)
    try:
        s.connect((ip, port))
    except socket.timeout:
        s.close()
        return None, 'timeout'
    except ConnectionRefusedError:
        s.close()
        return None, 'refused'
    except OSError as e:
        s.close()
        return None, 'error ' + str(e).replace('\n', ' ')
    line = readline(s, secs)
    if not line:
        s.close()
        return None, 'silent'
    return s, 'answered ' + line.decode(errors='replace')
for cmd in sys.stdin:
    a = cmd.split()
    if not a:
        continue
    try:
        if a[0] == 'tcp':
            s, said = connect(a[1], int(a[2]), float(a[3]))
            if s:
                s.close()
            out(said)
        elif a[0] == 'open':
            s, said = connect(a[2], int(a[3]), float(a[4]))
            if s:
                conns[a[1]] = s
            out(said)
        elif a[0] == 'send':
            s = conns[a[1]]
            s.sendall(a[2].encode() + b'\n')
            line = readline(s, float(a[3]))
            out('timeout' if line is None else 'closed' if line == b'' else
                'answered ' + line.decode(errors='replace'))
        elif a[0] == 'close':
            s = conns.pop(a[1], None)
            if s:
                s.close()
            out('closed')
        elif a[0] == 'udp':
            secs = float(a[3])
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((a[1], int(a[2])))
            nonce = os.urandom(6).hex().encode()
            deadline = time.monotonic() + secs
            said = 'timeout'
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    s.send(nonce)
                    s.settimeout(min(0.2, left))
                    d = s.recv(65535)
                    if d.endswith(nonce):
                        said = 'answered ' + d[:-len(nonce)].decode(errors='replace')
                        break
                except socket.timeout:
                    pass
                except ConnectionRefusedError:
                    said = 'refused'
                    break
            s.close()
            out(said)
        else:
            out('error unknown command ' + a[0])
    except Exception as e:
        out('error ' + repr(e).replace('\n', ' '))
";

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The other end answered: the server's first line (TCP: `srv:<port>`), the reply
    /// datagram without the probe's nonce (UDP: `echo:<port>:`), or the echoed word.
    Answered(String),
    /// TCP connected, but no line came back in time.
    Silent,
    /// Refused: a TCP reset, or an ICMP port unreachable for UDP.
    Refused,
    /// Nothing at all came back in time.
    TimedOut,
    /// The connection was closed (`exchange` only).
    Closed,
    /// Anything else (the prober's error, or the prober died).
    Failed(String),
}

impl Probe {
    /// Whether the other end answered.
    pub fn answered(&self) -> bool {
        matches!(self, Probe::Answered(_))
    }

    fn parse(line: &str) -> Probe {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("answered ") {
            return Probe::Answered(rest.to_owned());
        }
        match line {
            "silent" => Probe::Silent,
            "refused" => Probe::Refused,
            "timeout" => Probe::TimedOut,
            "closed" => Probe::Closed,
            other => Probe::Failed(other.to_owned()),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Answered(what) => write!(f, "answered {what:?}"),
            Probe::Silent => f.write_str("connected but silent"),
            Probe::Refused => f.write_str("refused"),
            Probe::TimedOut => f.write_str("timed out"),
            Probe::Closed => f.write_str("closed"),
            Probe::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Spawns `python3 -c script args…` in `netns` with stdin and stdout piped; returns the
/// guard, its stdin and a channel of its stdout lines.
fn spawn_piped(
    netns: &Netns,
    script: &str,
    args: &[&str],
) -> (Reaped, ChildStdin, Receiver<String>) {
    let server = spawn_python(netns, script, args, Stdio::piped(), Stdio::inherit())
        .unwrap_or_else(|e| panic!("cannot start python3 in {}: {e}", netns.name()));
    let stdin = server.stdin.expect("piped stdin");
    (server.process, stdin, server.lines)
}

/// A server answering on TCP and UDP ports in one namespace, until dropped.
#[derive(Debug)]
pub struct PortServer {
    _process: Reaped,
    _stdin: ChildStdin,
    tcp: Vec<u16>,
    udp: Vec<u16>,
}

impl PortServer {
    /// Listens on `tcp` and `udp` ports (all addresses) inside `netns`: a TCP connection
    /// gets `srv:<port>` and then an echo; a UDP datagram comes back prefixed with
    /// `echo:<port>:`. Returns once every socket is bound.
    ///
    /// # Panics
    /// When it does not start (e.g. a port is taken).
    pub fn start(netns: &Netns, tcp: &[u16], udp: &[u16]) -> PortServer {
        let list = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let (process, stdin, lines) = spawn_piped(netns, SERVER, &[&list(tcp), &list(udp)]);
        match lines.recv_timeout(START_TIMEOUT) {
            Ok(line) if line == "ready" => {}
            other => panic!(
                "the port server in {} (TCP {tcp:?}, UDP {udp:?}) did not start: {other:?}",
                netns.name()
            ),
        }
        PortServer {
            _process: process,
            _stdin: stdin,
            tcp: tcp.to_vec(),
            udp: udp.to_vec(),
        }
    }

    /// The TCP ports it listens on.
    pub fn tcp_ports(&self) -> &[u16] {
        &self.tcp
    }

    /// The UDP ports it listens on.
    pub fn udp_ports(&self) -> &[u16] {
        &self.udp
    }
}

/// A connection kept open by a [`Prober`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId(u32);

/// A client process in one namespace that runs probes on request.
#[derive(Debug)]
pub struct Prober {
    process: Reaped,
    stdin: ChildStdin,
    lines: Receiver<String>,
    netns: String,
    next_conn: u32,
}

impl Prober {
    /// A prober inside `netns`.
    ///
    /// # Panics
    /// When python3 cannot be started there.
    pub fn new(netns: &Netns) -> Prober {
        let (process, stdin, lines) = spawn_piped(netns, PROBER, &[]);
        Prober {
            process,
            stdin,
            lines,
            netns: netns.name().to_owned(),
            next_conn: 1,
        }
    }

    /// Sends one command and waits for its line (at most `timeout` plus some slack).
    fn ask(&mut self, command: &str, timeout: Duration) -> Probe {
        if let Err(e) = writeln!(self.stdin, "{command}").and_then(|()| self.stdin.flush()) {
            return Probe::Failed(format!("the prober in {} is gone: {e}", self.netns));
        }
        match self.lines.recv_timeout(timeout + SLACK) {
            Ok(line) => Probe::parse(&line),
            Err(RecvTimeoutError::Timeout) => {
                self.process.kill();
                Probe::Failed(format!(
                    "the prober in {} did not answer `{command}` in {:?}",
                    self.netns,
                    timeout + SLACK
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Probe::Failed(format!("the prober in {} exited", self.netns))
            }
        }
    }

    /// A new TCP connection to `ip:port`: `Answered(first line)` when it connects and
    /// the server speaks within `timeout`.
    pub fn tcp(&mut self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Probe {
        self.ask(
            &format!("tcp {ip} {port} {:.3}", timeout.as_secs_f64()),
            timeout * 2,
        )
    }

    /// A UDP request to `ip:port` (a new socket, so a new flow), repeated every 200 ms
    /// until its echo comes back or `timeout` passes.
    pub fn udp(&mut self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Probe {
        self.ask(
            &format!("udp {ip} {port} {:.3}", timeout.as_secs_f64()),
            timeout,
        )
    }

    /// Opens a TCP connection to `ip:port` and keeps it open when the server answers.
    ///
    /// # Errors
    /// What the probe saw when the connection did not answer.
    pub fn open(&mut self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Result<ConnId, Probe> {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        match self.ask(
            &format!("open {} {ip} {port} {:.3}", id.0, timeout.as_secs_f64()),
            timeout * 2,
        ) {
            Probe::Answered(_) => Ok(id),
            other => Err(other),
        }
    }

    /// Sends `word` (no whitespace) and a newline on an open connection and reads a line
    /// back: `Answered(word)` from an echo server.
    pub fn exchange(&mut self, conn: ConnId, word: &str, timeout: Duration) -> Probe {
        assert!(
            !word.is_empty() && !word.contains(char::is_whitespace),
            "exchange: one word, not {word:?}"
        );
        self.ask(
            &format!("send {} {word} {:.3}", conn.0, timeout.as_secs_f64()),
            timeout,
        )
    }

    /// Closes an open connection.
    pub fn close(&mut self, conn: ConnId) {
        let _ = self.ask(&format!("close {}", conn.0), Duration::from_secs(1));
    }
}
