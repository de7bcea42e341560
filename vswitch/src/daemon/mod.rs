//! The node daemon, `vswitchd`: the control plane, the control socket and the data-path
//! thread, wired together.
//!
//! Threads: `main` serves the control socket and spawns one short-lived thread per
//! connection; `datapath` owns the switch, the TAP descriptors and the underlay socket;
//! `store-sync` applies cluster store changes (peers, remote pods) every 250 ms; a signal
//! thread stops the daemon on SIGTERM/SIGINT. TAP devices are persistent, so a stop of any kind
//! (`kill -9` included) leaves every pod's interface and address in place, and the next
//! start takes them back.
#![forbid(unsafe_code)]

pub mod config;
pub mod control_plane;
pub mod control_server;
pub mod datapath;
pub mod host_port;
pub mod overlay_port;
pub mod underlay;

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the cluster store is checked for changes (nodes, pods): a change reaches
/// the data path within this, well inside the 1 s the contract promises.
const STORE_POLL: Duration = Duration::from_millis(250);

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use config::DaemonConfig;
use control_plane::ControlPlane;

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// When the daemon cannot start: the store, the state dir, `vsw0` or the socket fails.
pub fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let socket = config.socket.clone();
    let listener = control_server::bind(&socket)?;
    let plane = match ControlPlane::start(config.clone()) {
        Ok(plane) => plane,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e.into());
        }
    };
    let node = plane.node().clone();
    eprintln!(
        "vswitchd: node {} ready: subnet {}, VTEP {}, pod MTU {}, control socket {}",
        node.name,
        node.subnet,
        config.underlay_ip,
        config.mtu,
        socket.display()
    );
    let plane = Arc::new(Mutex::new(plane));

    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let socket_for_signals = socket.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                eprintln!("vswitchd: signal {signal}: stopping; pods keep their interfaces");
                let _ = std::fs::remove_file(&socket_for_signals);
                std::process::exit(0);
            }
        })?;

    let plane_for_sync = Arc::clone(&plane);
    std::thread::Builder::new()
        .name("store-sync".into())
        .spawn(move || loop {
            std::thread::sleep(STORE_POLL);
            match plane_for_sync.lock() {
                Ok(mut plane) => plane.sync_from_store(),
                Err(_) => return,
            }
        })?;

    control_server::serve(listener, plane);
    Ok(())
}
