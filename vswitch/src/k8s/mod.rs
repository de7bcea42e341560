//! Kubernetes objects as vswitch reads them: `Namespace`, `Pod` and
//! `networking.k8s.io/v1` `NetworkPolicy`, from the YAML or JSON that `vswitchctl apply`,
//! `vswitchctl delete` and `vswitchctl policy matrix` are given, and to and from the
//! cluster store's [`ObjectRecord`]s.
//!
//! [`parse_documents`] is the one way in from text: it splits the text into documents
//! (see `document.rs`), flattens `List`s, and validates every object as the Kubernetes API
//! server would (names, labels, selectors, ports, CIDRs), all or nothing. Fields vswitch
//! does not use are ignored, so `kubectl get -o yaml` output reads as it is; fields it
//! uses must have the right type. Every error names the document, the object and the
//! field ([`DocumentError`]).
//!
//! Invariants of the types here: every [`Object`] was validated (or built by code that
//! keeps the same rules); [`Object::to_record`] writes a document that
//! [`Object::from_record`] (and [`parse_documents`]) read back to an equal object.
#![forbid(unsafe_code)]

mod document;
mod error;
mod field;
mod meta;
mod namespace;
mod network_policy;
mod pod;
mod port;
mod selector;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::store::{ObjectKey, ObjectKind, ObjectRecord};

pub use error::{DocumentError, ObjectRef, Origin, Problem};
pub use meta::{Labels, ObjectMeta, DEFAULT_NAMESPACE};
pub use namespace::Namespace;
pub use network_policy::{
    IpBlock, NetworkPolicy, NetworkPolicySpec, Peer, PolicyPort, PolicyRule, PolicyType, PortMatch,
};
pub use pod::{Container, ContainerPort, Pod};
pub use port::Protocol;
pub use selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

use document::Item;
use field::{Field, FieldPath, Read};

/// One validated object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A `v1` `Namespace`.
    Namespace(Namespace),
    /// A `v1` `Pod`.
    Pod(Pod),
    /// A `networking.k8s.io/v1` `NetworkPolicy`.
    NetworkPolicy(NetworkPolicy),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Namespace(_) => ObjectKind::Namespace,
            Object::Pod(_) => ObjectKind::Pod,
            Object::NetworkPolicy(_) => ObjectKind::NetworkPolicy,
        }
    }

    /// The object's name, namespace (empty for a `Namespace`) and labels.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(namespace) => &namespace.metadata,
            Object::Pod(pod) => &pod.metadata,
            Object::NetworkPolicy(policy) => &policy.metadata,
        }
    }

    /// The key the cluster store files the object under.
    pub fn key(&self) -> ObjectKey {
        let metadata = self.metadata();
        ObjectKey {
            kind: self.kind(),
            namespace: metadata.namespace.clone(),
            name: metadata.name.clone(),
        }
    }

    /// The object as a normalized Kubernetes document: `apiVersion`, `kind`, the
    /// metadata and spec fields vswitch keeps (defaults filled in, e.g. protocol `TCP`),
    /// and for a pod `status.podIP`. [`parse_documents`] reads it back unchanged.
    pub fn to_document(&self) -> Value {
        match self {
            Object::Namespace(namespace) => namespace.encode(),
            Object::Pod(pod) => pod.encode(),
            Object::NetworkPolicy(policy) => policy.encode(),
        }
    }

    /// The record the cluster store keeps: [`Object::key`] and [`Object::to_document`].
    pub fn to_record(&self) -> ObjectRecord {
        ObjectRecord {
            key: self.key(),
            document: self.to_document(),
        }
    }

    /// Reads a record back from the cluster store, validating its document again.
    ///
    /// # Errors
    /// [`DocumentError`] (with [`Origin::Record`]) when the document is not a valid
    /// object, or when it describes another object than the record's key.
    pub fn from_record(record: &ObjectRecord) -> Result<Object, DocumentError> {
        let item = Item {
            index: 0,
            value: &record.document,
            path: FieldPath::root(),
            implied: None,
        };
        let object = decode_item(&item, Origin::Record)?;
        if object.key() != record.key {
            return Err(DocumentError {
                origin: Origin::Record,
                object: Some(Box::new(object.object_ref())),
                field: String::new(),
                problem: Problem::RecordKeyMismatch {
                    key: describe_key(&record.key),
                },
            });
        }
        Ok(object)
    }

    /// How messages name the object.
    fn object_ref(&self) -> ObjectRef {
        let metadata = self.metadata();
        ObjectRef {
            kind: kind_name(self.kind()).to_owned(),
            namespace: (!metadata.namespace.is_empty()).then(|| metadata.namespace.clone()),
            name: Some(metadata.name.clone()),
        }
    }
}

impl fmt::Display for Object {
    /// `Pod default/web`, `Namespace prod`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.object_ref().fmt(f)
    }
}

/// How Kubernetes spells a kind.
pub fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Namespace => Namespace::KIND,
        ObjectKind::Pod => Pod::KIND,
        ObjectKind::NetworkPolicy => NetworkPolicy::KIND,
    }
}

/// A key as messages write it: `NetworkPolicy default/deny-all`, `Namespace prod`.
pub fn describe_key(key: &ObjectKey) -> String {
    if key.namespace.is_empty() {
        format!("{} {}", kind_name(key.kind), key.name)
    } else {
        format!("{} {}/{}", kind_name(key.kind), key.namespace, key.name)
    }
}

/// Parses every document of `text` (YAML or JSON; `---` separated; `List`s flattened),
/// validating each. All or nothing: the first invalid document fails the whole text.
/// A text with no documents (empty, or only comments) gives no objects.
///
/// # Errors
/// [`DocumentError`] for the first document, in text order, that is not valid YAML or
/// JSON, is not a valid object, or repeats an object (same kind, namespace and name) of
/// an earlier one.
pub fn parse_documents(text: &str) -> Result<Vec<Object>, DocumentError> {
    let split = document::split(text);
    let mut objects = Vec::new();
    let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
    for raw in &split.documents {
        for item in document::flatten(raw)? {
            let origin = Origin::Document(item.index);
            let object = decode_item(&item, origin)?;
            let key = object.key();
            if let Some(first) = seen.get(&key) {
                return Err(DocumentError {
                    origin,
                    object: Some(Box::new(object.object_ref())),
                    field: item.path.into_string(),
                    problem: Problem::Duplicate {
                        first: first.clone(),
                    },
                });
            }
            seen.insert(key, item.location());
            objects.push(object);
        }
    }
    match split.error {
        Some(error) => Err(error),
        None => Ok(objects),
    }
}

/// Decodes one item into an object, naming the object in any error.
fn decode_item(item: &Item<'_>, origin: Origin) -> Result<Object, DocumentError> {
    decode_value(item).map_err(|error| {
        DocumentError::at(
            origin,
            document::peek_object_ref(item.value, item.implied),
            error,
        )
    })
}

fn decode_value(item: &Item<'_>) -> Read<Object> {
    let root = Field::root(item.value, item.path.clone());
    if !root.value.is_object() {
        return Err(document::not_an_object(&root));
    }
    let object = root.object()?;
    let kind = match object.get("kind") {
        Some(field) => field.str()?,
        None => match item.implied {
            Some(implied) => implied.kind,
            None => return Err(object.error_at("kind", Problem::Missing)),
        },
    };
    let kind = match kind {
        "Namespace" => ObjectKind::Namespace,
        "Pod" => ObjectKind::Pod,
        "NetworkPolicy" => ObjectKind::NetworkPolicy,
        other => {
            return Err(object.error_at(
                "kind",
                Problem::UnknownKind {
                    kind: other.to_owned(),
                },
            ))
        }
    };
    let expected_version = match kind {
        ObjectKind::Namespace => Namespace::API_VERSION,
        ObjectKind::Pod => Pod::API_VERSION,
        ObjectKind::NetworkPolicy => NetworkPolicy::API_VERSION,
    };
    let version = match object.get("apiVersion") {
        Some(field) => field.str()?,
        None => match item.implied {
            Some(implied) if implied.kind == kind_name(kind) => implied.api_version,
            _ => return Err(object.error_at("apiVersion", Problem::Missing)),
        },
    };
    if version != expected_version {
        return Err(object.error_at(
            "apiVersion",
            Problem::WrongApiVersion {
                kind: kind_name(kind),
                found: version.to_owned(),
                expected: expected_version,
            },
        ));
    }
    Ok(match kind {
        ObjectKind::Namespace => Object::Namespace(Namespace::decode(&object)?),
        ObjectKind::Pod => Object::Pod(Pod::decode(&object)?),
        ObjectKind::NetworkPolicy => Object::NetworkPolicy(NetworkPolicy::decode(&object)?),
    })
}
