//! `v1` `Namespace`: vswitch keeps its name and labels, which NetworkPolicy
//! `namespaceSelector`s match.
#![forbid(unsafe_code)]

use serde_json::Value;

use crate::k8s::field::{mapping, Object, Read};
use crate::k8s::meta::{ObjectMeta, Scope};

/// A `Namespace`. Its [`ObjectMeta::namespace`] is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Name and labels.
    pub metadata: ObjectMeta,
}

impl Namespace {
    /// The `apiVersion` of a `Namespace`.
    pub const API_VERSION: &'static str = "v1";
    /// The `kind`.
    pub const KIND: &'static str = "Namespace";

    /// Reads a `Namespace` document (`apiVersion` and `kind` already checked).
    pub(crate) fn decode(object: &Object<'_>) -> Read<Namespace> {
        Ok(Namespace {
            metadata: ObjectMeta::decode(object, Scope::Cluster)?,
        })
    }

    /// The document as JSON.
    pub(crate) fn encode(&self) -> Value {
        mapping([
            (
                "apiVersion",
                Some(Value::String(Self::API_VERSION.to_owned())),
            ),
            ("kind", Some(Value::String(Self::KIND.to_owned()))),
            ("metadata", Some(self.metadata.encode())),
        ])
    }
}
