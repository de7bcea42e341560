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
    /// Store Namespace, Pod and NetworkPolicy documents (YAML or JSON; several with ---, or a List)
    Apply {
        /// The file, or - for standard input
        #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
        file: PathBuf,
    },
    /// Remove what `apply` stored for the documents of a file
    Delete {
        /// The file, or - for standard input
        #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
        file: PathBuf,
    },
    /// The stored Namespace, Pod and NetworkPolicy objects
    Get {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// NetworkPolicy, evaluated offline (no daemon needed)
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Which pod may open a connection to which: a JSON object, client "ns/name" to server "ns/name" to true/false
    Matrix {
        /// Namespace and Pod objects (a List or several documents), pods with status.podIP, as `kubectl get namespaces,pods -A -o yaml` prints
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        /// NetworkPolicy objects (a List or several documents)
        #[arg(long, value_name = "FILE")]
        policies: PathBuf,
        /// The destination port on the server
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// The protocol: TCP, UDP or SCTP
        #[arg(long, value_name = "TCP|UDP|SCTP", default_value = "TCP")]
        protocol: vswitch::k8s::Protocol,
    },
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

fn run(args: Args) -> Result<(), CtlError> {
    match args.command {
        Command::Show { json } => {
            let Reply::Show(show) = client::call(&args.socket, &Request::Show)? else {
                return Err(ClientError::Malformed("expected a show reply".into()).into());
            };
            if json {
                print_json(&show);
            } else {
                print_show(&show);
            }
        }
        Command::Fdb { json } => {
            let Reply::Fdb(entries) = client::call(&args.socket, &Request::Fdb)? else {
                return Err(ClientError::Malformed("expected an fdb reply".into()).into());
            };
            if json {
                print_json(&entries);
            } else {
                print_fdb(&entries);
            }
        }
        Command::Apply { file } => {
            let documents = read_input(&file)?;
            if let Reply::Objects(keys) = client::call(&args.socket, &Request::Apply { documents })?
            {
                for key in keys {
                    println!("{} applied", object_name(&key));
                }
            }
        }
        Command::Delete { file } => {
            let documents = read_input(&file)?;
            if let Reply::Objects(keys) =
                client::call(&args.socket, &Request::Delete { documents })?
            {
                for key in keys {
                    println!("{} deleted", object_name(&key));
                }
            }
        }
        Command::Get { json } => {
            let Reply::Stored(objects) = client::call(&args.socket, &Request::Objects)? else {
                return Err(CtlError::Client(ClientError::Malformed(
                    "expected a list of objects".into(),
                )));
            };
            if json {
                print_json(&objects);
            } else {
                for object in &objects {
                    println!("{}", object_name(&object.key));
                }
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
        Command::Policy(PolicyCommand::Matrix {
            model,
            policies,
            port,
            protocol,
        }) => match vswitch::policy::matrix::run(&model, &policies, port, protocol) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("vswitchctl: {e}");
                std::process::exit(1);
            }
        },
    }
    Ok(())
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CtlError {
    /// Talking to the daemon failed, or it said no.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The input file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file (`-` is standard input).
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The text of `file`, or of standard input for `-`.
fn read_input(file: &std::path::Path) -> Result<String, CtlError> {
    let read_err = |source| CtlError::Read {
        path: file.display().to_string(),
        source,
    };
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(read_err)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).map_err(read_err)
    }
}

/// `kind/namespace/name`, or `kind/name` for a Namespace.
fn object_name(key: &vswitch::store::ObjectKey) -> String {
    if key.namespace.is_empty() {
        format!("{:?}/{}", key.kind, key.name)
    } else {
        format!("{:?}/{}/{}", key.kind, key.namespace, key.name)
    }
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
    if !show.datapath.is_empty() {
        println!("datapath  {}", show.datapath);
    }
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
    let mac = &show.tables.mac;
    println!(
        "mac table    {}/{} entries, at most {} learned per port; evicted: {} (table full), {} (port at its bound)",
        mac.entries, mac.capacity, mac.per_port, mac.evictions, mac.port_evictions
    );
    let connections = &show.tables.connections;
    println!(
        "connections  {}/{} tracked; evicted: {} (table full)",
        connections.entries, connections.capacity, connections.evictions
    );
    let mut dropping = vec![
        (host.ifname.clone(), &host.counters),
        ("overlay".to_owned(), &show.overlay.counters),
    ];
    dropping.extend(
        show.ports
            .iter()
            .map(|port| (port.pod.clone(), &port.counters)),
    );
    dropping.retain(|(_, counters)| drops(counters) > 0 || counters.mac_evictions > 0);
    if !dropping.is_empty() {
        println!();
        println!("{:<28} DROPS BY REASON", "PORT");
        for (name, counters) in dropping {
            let mut reasons: Vec<String> = counters
                .drops
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            if counters.mac_evictions > 0 {
                reasons.push(format!("(mac_evictions {})", counters.mac_evictions));
            }
            println!("{name:<28} {}", reasons.join(", "));
        }
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
