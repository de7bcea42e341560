//! `vswitchctl`: the operator CLI. It talks to the daemon over the control socket.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use std::net::Ipv4Addr;

use clap::{Parser, Subcommand};
use vswitch::control::client::{self, ClientError};
use vswitch::control::proto::{FdbEntry, PortCounters, Reply, Request, ShowReply};
use vswitch::ipnet::Ipv4Net;

/// Operate a vswitch node.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version)]
struct Args {
    /// The daemon's control socket
    #[arg(long, global = true, value_name = "PATH", default_value = vswitch::control::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// This node: name, subnet, VTEP, ports, peer nodes
    Show {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// The MAC table: MAC, where it lives, age
    Fdb {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Peer nodes of the cluster
    #[command(subcommand)]
    Node(NodeCommand),
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Add a static peer node, e.g. a hardware or kernel VXLAN VTEP with no daemon of ours
    Add {
        /// Its name
        name: String,
        /// Its VTEP address
        #[arg(long, value_name = "IPV4")]
        underlay_ip: Ipv4Addr,
        /// The pod subnet behind it (inside the cluster CIDR)
        #[arg(long, value_name = "CIDR")]
        subnet: Ipv4Net,
    },
    /// Remove a node from the cluster store
    Remove {
        /// Its name
        name: String,
        /// Also remove a node that a vswitchd runs (a decommissioned one)
        #[arg(long)]
        force: bool,
    },
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("vswitchctl: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), ClientError> {
    match args.command {
        Command::Show { json } => {
            let Reply::Show(show) = client::call(&args.socket, &Request::Show)? else {
                return Err(ClientError::Malformed("expected a show reply".into()));
            };
            if json {
                print_json(&show);
            } else {
                print_show(&show);
            }
        }
        Command::Fdb { json } => {
            let Reply::Fdb(entries) = client::call(&args.socket, &Request::Fdb)? else {
                return Err(ClientError::Malformed("expected an fdb reply".into()));
            };
            if json {
                print_json(&entries);
            } else {
                print_fdb(&entries);
            }
        }
        Command::Node(NodeCommand::Add {
            name,
            underlay_ip,
            subnet,
        }) => {
            client::call(
                &args.socket,
                &Request::NodeAdd {
                    name,
                    underlay_ip,
                    subnet,
                },
            )?;
        }
        Command::Node(NodeCommand::Remove { name, force }) => {
            client::call(&args.socket, &Request::NodeRemove { name, force })?;
        }
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("vswitchctl: {e}"),
    }
}

fn drops(counters: &PortCounters) -> u64 {
    counters.drops.values().sum()
}

fn print_show(show: &ShowReply) {
    println!("node      {}", show.node);
    println!("subnet    {}  (cluster {})", show.subnet, show.cluster_cidr);
    println!("vtep      {}", show.vtep);
    match &show.store.health {
        vswitch::store::StoreHealth::Connected => println!("store     {} (connected)", show.store.url),
        vswitch::store::StoreHealth::Disconnected { since_unix, reason } => println!(
            "store     {} (DISCONNECTED since unix time {since_unix}: {reason}; forwarding with the last known state)",
            show.store.url
        ),
    }
    println!("pod mtu   {}", show.mtu);
    let host = &show.host_port;
    println!(
        "host port {} {} {}  rx {} pkts  tx {} pkts  drops {}",
        host.ifname,
        host.address,
        host.mac,
        host.counters.rx_packets,
        host.counters.tx_packets,
        drops(&host.counters)
    );
    println!();
    println!(
        "{:<28} {:<8} {:<18} {:<18} {:>10} {:>10} {:>7}",
        "POD", "IFACE", "IP", "MAC", "RX PKTS", "TX PKTS", "DROPS"
    );
    for port in &show.ports {
        let pod = if port.attached {
            port.pod.clone()
        } else {
            format!("{} (detached)", port.pod)
        };
        println!(
            "{:<28} {:<8} {:<18} {:<18} {:>10} {:>10} {:>7}",
            pod,
            port.key.ifname,
            port.address.to_string(),
            port.mac.to_string(),
            port.counters.rx_packets,
            port.counters.tx_packets,
            drops(&port.counters)
        );
    }
    println!();
    println!("{:<20} {:<16} {:<18} STATIC", "PEER", "VTEP", "SUBNET");
    for peer in &show.peers {
        println!(
            "{:<20} {:<16} {:<18} {}",
            peer.node,
            peer.vtep.to_string(),
            peer.subnet.to_string(),
            peer.is_static
        );
    }
}

fn print_fdb(entries: &[FdbEntry]) {
    println!("{:<18} {:<40} {:>8}", "MAC", "LOCATION", "AGE(s)");
    for entry in entries {
        println!(
            "{:<18} {:<40} {:>8}",
            entry.mac.to_string(),
            entry.location,
            entry.age_secs
        );
    }
}
