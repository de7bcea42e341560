//! A real etcd for tests (`/usr/bin/etcd`, Debian's `etcd-server`), a TCP proxy that can
//! cut a client off from it, and TLS certificates made with the `openssl` tool.
//!
//! Every [`Etcd`] is its own single-member cluster: its own data directory, name and free
//! ports on 127.0.0.1. It is killed when dropped, also when the test panics, and can be
//! killed and restarted on the same data directory and ports to play an outage.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The etcd binary.
pub const ETCD: &str = "/usr/bin/etcd";

/// How long etcd may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// TLS files for a server and its client, all signed by one CA.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate (SAN IP 127.0.0.1) and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate and key.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

/// One running etcd (see the module docs).
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    name: String,
    client_port: u16,
    peer_port: u16,
    tls: Option<Certs>,
}

impl Etcd {
    /// Starts a plain-HTTP etcd and waits until it answers.
    pub fn start() -> Etcd {
        Etcd::launch(None)
    }

    /// Starts an etcd that speaks only TLS and requires client certificates.
    pub fn start_tls(certs: &Certs) -> Etcd {
        Etcd::launch(Some(certs.clone()))
    }

    fn launch(tls: Option<Certs>) -> Etcd {
        let mut dir = tempfile::tempdir().expect("a temporary directory for etcd");
        let name = format!(
            "vswitch-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut last_log = String::new();
        for _ in 0..3 {
            let (client_port, peer_port) = free_ports();
            let mut etcd = Etcd {
                child: None,
                dir,
                name: name.clone(),
                client_port,
                peer_port,
                tls: tls.clone(),
            };
            if etcd.spawn_and_wait() {
                return etcd;
            }
            // Most likely a port taken in between: try others, in a clean data dir.
            last_log = etcd.log();
            etcd.kill();
            dir = tempfile::tempdir().expect("a temporary directory for etcd");
        }
        panic!("etcd did not start; its last log:\n{last_log}");
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn spawn_and_wait(&mut self) -> bool {
        let client = format!("{}://127.0.0.1:{}", self.scheme(), self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.log_path()).expect("etcd log file");
        let mut cmd = Command::new(ETCD);
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("{}={peer}", self.name))
            .arg("--initial-cluster-token")
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log file"))
            .stderr(log);
        if let Some(certs) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&certs.server_cert)
                .arg("--key-file")
                .arg(&certs.server_key)
                .arg("--trusted-ca-file")
                .arg(&certs.ca)
                .arg("--client-cert-auth");
        }
        self.child = Some(
            cmd.spawn()
                .expect("start /usr/bin/etcd (Debian package etcd-server)"),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if self.healthy() {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Whether etcd answers a health check.
    fn healthy(&self) -> bool {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoint())
            .arg("--dial-timeout=1s")
            .arg("--command-timeout=1s");
        if let Some(certs) = &self.tls {
            cmd.arg("--cacert")
                .arg(&certs.ca)
                .arg("--cert")
                .arg(&certs.client_cert)
                .arg("--key")
                .arg(&certs.client_key);
        }
        cmd.args(["endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Everything etcd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// `etcd://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint())
    }

    /// Kills etcd (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn_and_wait(),
            "etcd did not come back; its log:\n{}",
            self.log()
        );
    }

    /// Runs `etcdctl` against this etcd; returns its standard output.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoint())
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two ports free on 127.0.0.1 right now, taken from below the kernel's ephemeral range.
///
/// An etcd that is killed and restarted must get its ports back. A port the kernel hands
/// out (`bind` to port 0, or the source port of any `connect`, e.g. another test's client)
/// could be taken by someone else while etcd is down, and the restart would then fail;
/// ports below `ip_local_port_range` are never handed out, and this process goes through
/// them in order (from an offset of its pid, for other processes), never twice.
fn free_ports() -> (u16, u16) {
    static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);
    const SPAN: usize = 8000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(SPAN).max(1024);
    let span = ephemeral_low.saturating_sub(low).max(1);
    let offset = std::process::id() as usize * 97;
    let mut found = Vec::new();
    for _ in 0..span {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(low + (offset + n) % span).expect("a port below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            found.push(port);
            if let [a, b] = found[..] {
                return (a, b);
            }
        }
    }
    panic!("no two free ports on 127.0.0.1 in {low}..{ephemeral_low}");
}

/// A TCP proxy on 127.0.0.1 in front of one upstream port, which can cut every connection
/// through it and refuse new ones until healed: a network partition between one client
/// and etcd.
pub struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding a free port to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("local address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (cut, stop, live) = (cut.clone(), stop.clone(), live.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(down) = conn else { continue };
                    if cut.load(Ordering::SeqCst) {
                        let _ = down.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    let mut registry = live.lock().expect("proxy registry");
                    // Checked again under the lock `cut` drains under: a connection
                    // accepted while the proxy was being cut would otherwise be missed by
                    // the drain and carry on through the partition.
                    if cut.load(Ordering::SeqCst) {
                        drop(registry);
                        let _ = down.shutdown(Shutdown::Both);
                        let _ = up.shutdown(Shutdown::Both);
                        continue;
                    }
                    for s in [&down, &up] {
                        if let Ok(clone) = s.try_clone() {
                            registry.push(clone);
                        }
                    }
                    drop(registry);
                    pipe(&down, &up);
                    pipe(&up, &down);
                }
            })
        };
        Proxy {
            port,
            cut,
            stop,
            live,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        let mut live = self.live.lock().expect("proxy registry");
        self.cut.store(true, Ordering::SeqCst);
        for s in live.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let Some(chunk) = buf.get(..n) else { break };
                    if to.write_all(chunk).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate in `dir`, with
/// the `openssl` tool; `None` when the tool is missing.
pub fn make_certs(dir: &Path) -> Option<Certs> {
    let openssl = |args: &[&str]| -> io::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
    };
    if Command::new("openssl").arg("version").output().is_err() {
        return None;
    }
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let run = || -> io::Result<()> {
        let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=vswitch-test-ca"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&ca)?;
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
            )?;
            let subj = format!("/CN=vswitch-test-{name}");
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let mut req = vec!["req", "-subj", subj.as_str()];
            req.extend(ec);
            req.extend(["-keyout", key.as_str(), "-out", csr.as_str()]);
            openssl(&req)?;
            let pem = format!("{name}.pem");
            let ext = format!("{name}.ext");
            openssl(&[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ])?;
        }
        Ok(())
    };
    run().expect("openssl made the test certificates");
    Some(Certs {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    })
}
