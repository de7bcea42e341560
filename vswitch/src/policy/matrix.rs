//! `vswitchctl policy matrix`: which pods may open a connection to which, offline, with
//! the same [`PolicySet`] the data path enforces.
//!
//! [`evaluate`] is the sans-IO core: objects in, [`Matrix`] out. [`run`] reads the two
//! files and renders the JSON the CLI prints (see `docs/policy.md` and CONTRACT.md).
//!
//! The model is a file of `Namespace` and `Pod` objects; a pod is at its
//! `status.podIP`, and a pod without one is left out of the matrix (it has no traffic).
//! The pods have no node, so the host-address rule plays no part.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::k8s::{self, DocumentError, Object, Protocol};
use crate::policy::compile::{protocol_number, PolicySet};
use crate::policy::model::{PodInfo, PolicyModel};

/// Client `ns/name` to server `ns/name` to whether a new connection from the client to
/// the server's port is allowed. Every pod of the model with an address appears as a
/// client and as a server of every client.
pub type Matrix = BTreeMap<String, BTreeMap<String, bool>>;

/// Why the objects do not make a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// An object of a kind the input does not take.
    #[error("{object}: {} takes only {} objects", input.flag(), input.kinds())]
    WrongKind {
        /// The object, as `kind ns/name`.
        object: String,
        /// The input it is in.
        input: Input,
    },
    /// Two pods of the model claim one address: the matrix could not tell them apart.
    #[error("Pod {second} has status.podIP {ip}, which Pod {first} already has")]
    DuplicateAddress {
        /// The address.
        ip: Ipv4Addr,
        /// The pod that has it first (`ns/name`).
        first: String,
        /// The pod that has it again.
        second: String,
    },
}

impl ModelError {
    /// The input the error is about.
    pub fn input(&self) -> Input {
        match self {
            ModelError::WrongKind { input, .. } => *input,
            ModelError::DuplicateAddress { .. } => Input::Model,
        }
    }
}

/// Which input an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `--model`: `Namespace` and `Pod` objects.
    Model,
    /// `--policies`: `NetworkPolicy` objects.
    Policies,
}

impl Input {
    /// The CLI flag.
    pub fn flag(self) -> &'static str {
        match self {
            Input::Model => "--model",
            Input::Policies => "--policies",
        }
    }

    /// The kinds it takes.
    pub fn kinds(self) -> &'static str {
        match self {
            Input::Model => "Namespace and Pod",
            Input::Policies => "NetworkPolicy",
        }
    }
}

/// Why `vswitchctl policy matrix` failed. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds an invalid document (the error names the document and field).
    #[error("{path}: {source}")]
    Document {
        /// The file.
        path: String,
        /// What is wrong, and where (boxed to keep the error small).
        source: Box<DocumentError>,
    },
    /// A file holds objects that do not belong there, or the model is inconsistent.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: String,
        /// What is wrong.
        source: ModelError,
    },
    /// The port is 0.
    #[error("port {0} is out of range: expected 1 to 65535")]
    Port(u16),
}

/// The matrix for new connections to `port` over `protocol`, with `model` (`Namespace`
/// and `Pod` objects) and `policies` (`NetworkPolicy` objects). Pods without
/// `status.podIP` are left out. A pod to itself is always allowed.
///
/// # Errors
/// [`ModelError::WrongKind`] for a `NetworkPolicy` among the model or another kind among
/// the policies; [`ModelError::DuplicateAddress`] when two pods have one address.
pub fn evaluate(
    model: &[Object],
    policies: &[Object],
    protocol: Protocol,
    port: u16,
) -> Result<Matrix, ModelError> {
    let mut pods: Vec<PodInfo> = Vec::new();
    let mut owners: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for object in model {
        match object {
            Object::Namespace(_) => {}
            Object::Pod(pod) => {
                let Some(info) = PodInfo::from_pod(pod) else {
                    continue;
                };
                if let Some(first) = owners.get(&info.ip) {
                    return Err(ModelError::DuplicateAddress {
                        ip: info.ip,
                        first: first.clone(),
                        second: info.full_name(),
                    });
                }
                owners.insert(info.ip, info.full_name());
                pods.push(info);
            }
            Object::NetworkPolicy(_) => {
                return Err(wrong_kind(object, Input::Model));
            }
        }
    }
    if let Some(object) = policies
        .iter()
        .find(|object| !matches!(object, Object::NetworkPolicy(_)))
    {
        return Err(wrong_kind(object, Input::Policies));
    }
    let objects: Vec<Object> = model.iter().chain(policies).cloned().collect();
    let model = PolicyModel::from_objects(&objects, pods);
    let set = PolicySet::compile(&model);
    let protocol = protocol_number(protocol);
    let mut matrix = Matrix::new();
    for client in &model.pods {
        let row = model
            .pods
            .iter()
            .map(|server| {
                let allowed = set.allows(client.ip, server.ip, protocol, port);
                (server.full_name(), allowed)
            })
            .collect();
        matrix.insert(client.full_name(), row);
    }
    Ok(matrix)
}

fn wrong_kind(object: &Object, input: Input) -> ModelError {
    ModelError::WrongKind {
        object: object.to_string(),
        input,
    }
}

/// Reads the model and the policies from their files and renders the matrix for `port`
/// over `protocol` as the CLI prints it: one JSON object, pretty-printed, keys sorted.
///
/// # Errors
/// [`MatrixError`], naming the file: it cannot be read, a document is invalid, or the
/// objects do not make a model; or the port is 0.
pub fn run(
    model: &Path,
    policies: &Path,
    port: u16,
    protocol: Protocol,
) -> Result<String, MatrixError> {
    if port == 0 {
        return Err(MatrixError::Port(port));
    }
    let model_objects = read_objects(model)?;
    let policy_objects = read_objects(policies)?;
    let matrix = evaluate(&model_objects, &policy_objects, protocol, port).map_err(|source| {
        let path = match source.input() {
            Input::Model => model,
            Input::Policies => policies,
        };
        MatrixError::Model {
            path: path.display().to_string(),
            source,
        }
    })?;
    Ok(render(&matrix))
}

/// The matrix as pretty-printed JSON.
pub fn render(matrix: &Matrix) -> String {
    // A map of strings to maps of strings to booleans always serializes.
    serde_json::to_string_pretty(matrix).unwrap_or_default()
}

fn read_objects(path: &Path) -> Result<Vec<Object>, MatrixError> {
    let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read {
        path: path.display().to_string(),
        source,
    })?;
    k8s::parse_documents(&text).map_err(|source| MatrixError::Document {
        path: path.display().to_string(),
        source: Box::new(source),
    })
}
