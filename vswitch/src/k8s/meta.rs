//! `metadata`: the name, namespace and labels every object has, and the Kubernetes rules
//! for names, label keys and label values.
//!
//! The rules are those of the Kubernetes API server: a `Namespace` name (and any
//! `metadata.namespace`) is a DNS-1123 label, a `Pod` or `NetworkPolicy` name a DNS-1123
//! subdomain; a label key is an optional DNS-1123 subdomain prefix and `/` before a name
//! of at most 63 characters; a label value is empty or such a name.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde_json::Value;

use crate::k8s::error::Problem;
use crate::k8s::field::{mapping, Field, Object, Read};

/// Labels: key to value, in key order.
pub type Labels = BTreeMap<String, String>;

/// The namespace of a namespaced object whose `metadata.namespace` is absent or empty.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The longest DNS-1123 label (and label name or value).
const MAX_LABEL_LEN: usize = 63;
/// The longest DNS-1123 subdomain.
const MAX_SUBDOMAIN_LEN: usize = 253;

/// The part of `metadata` vswitch keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` ([`DEFAULT_NAMESPACE`] when left out); empty for a
    /// `Namespace`, which has none.
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: Labels,
}

/// Which rule an object's name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A cluster-wide object (a `Namespace`): its name is a DNS-1123 label and it has no
    /// namespace (a `metadata.namespace` is ignored, as the API server does).
    Cluster,
    /// A namespaced object: its name is a DNS-1123 subdomain, its namespace a label.
    Namespaced,
}

impl ObjectMeta {
    /// Reads `metadata` of the object `object`.
    pub(crate) fn decode(object: &Object<'_>, scope: Scope) -> Read<ObjectMeta> {
        let meta = object.require("metadata")?.object()?;
        let name = match meta.get("name") {
            Some(field) => {
                let name = field.str()?;
                let rule = match scope {
                    Scope::Cluster => dns1123_label(name),
                    Scope::Namespaced => dns1123_subdomain(name),
                };
                rule.map_err(|reason| {
                    field.error(Problem::InvalidName {
                        value: name.to_owned(),
                        reason,
                    })
                })?;
                name.to_owned()
            }
            None if meta.get("generateName").is_some() => {
                return Err(meta.error_at("name", Problem::GenerateName))
            }
            None => return Err(meta.error_at("name", Problem::Missing)),
        };
        let namespace = match scope {
            Scope::Cluster => String::new(),
            Scope::Namespaced => match meta.get("namespace") {
                Some(field) => {
                    let namespace = field.str()?;
                    if namespace.is_empty() {
                        DEFAULT_NAMESPACE.to_owned()
                    } else {
                        dns1123_label(namespace).map_err(|reason| {
                            field.error(Problem::InvalidName {
                                value: namespace.to_owned(),
                                reason,
                            })
                        })?;
                        namespace.to_owned()
                    }
                }
                None => DEFAULT_NAMESPACE.to_owned(),
            },
        };
        let labels = decode_labels(meta.get("labels"))?;
        Ok(ObjectMeta {
            name,
            namespace,
            labels,
        })
    }

    /// `metadata` as JSON.
    pub(crate) fn encode(&self) -> Value {
        mapping([
            ("name", Some(Value::String(self.name.clone()))),
            (
                "namespace",
                (!self.namespace.is_empty()).then(|| Value::String(self.namespace.clone())),
            ),
            (
                "labels",
                (!self.labels.is_empty()).then(|| encode_labels(&self.labels)),
            ),
        ])
    }
}

/// Reads a label map (`metadata.labels`, a selector's `matchLabels`), validating every
/// key and value. Absent reads as empty.
pub(crate) fn decode_labels(field: Option<Field<'_>>) -> Read<Labels> {
    let mut labels = Labels::new();
    let Some(field) = field else {
        return Ok(labels);
    };
    for (key, value) in field.object()?.members() {
        label_key(key).map_err(|reason| {
            value.error(Problem::InvalidLabelKey {
                key: key.to_owned(),
                reason,
            })
        })?;
        let text = value.str()?;
        label_value(text).map_err(|reason| {
            value.error(Problem::InvalidLabelValue {
                value: text.to_owned(),
                reason,
            })
        })?;
        labels.insert(key.to_owned(), text.to_owned());
    }
    Ok(labels)
}

/// A label map as JSON.
pub(crate) fn encode_labels(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect(),
    )
}

/// Checks a DNS-1123 label (a `Namespace` name): 1 to 63 lowercase letters, digits and
/// `-`, starting and ending with a letter or digit. The error says which rule breaks.
pub(crate) fn dns1123_label(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    if text.len() > MAX_LABEL_LEN {
        return Err(format!(
            "it is {} characters long, more than {MAX_LABEL_LEN}",
            text.len()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(format!(
            "it holds {c:?}, but only lowercase letters, digits and '-' are allowed"
        ));
    }
    alnum_ends(text, "a lowercase letter or digit")
}

/// Checks a DNS-1123 subdomain (a `Pod` or `NetworkPolicy` name, a label key prefix): at
/// most 253 characters, dot-separated DNS-1123 labels.
pub(crate) fn dns1123_subdomain(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    if text.len() > MAX_SUBDOMAIN_LEN {
        return Err(format!(
            "it is {} characters long, more than {MAX_SUBDOMAIN_LEN}",
            text.len()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!(
            "it holds {c:?}, but only lowercase letters, digits, '-' and '.' are allowed"
        ));
    }
    for part in text.split('.') {
        if part.is_empty() {
            return Err("it starts or ends with '.' or has two dots in a row".to_owned());
        }
        alnum_ends(part, "a lowercase letter or digit").map_err(|_| {
            "each dot-separated part must start and end with a lowercase letter or digit".to_owned()
        })?;
    }
    Ok(())
}

/// Checks a label key: `[prefix/]name`, the prefix a DNS-1123 subdomain, the name 1 to 63
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub(crate) fn label_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Err("the prefix before '/' is empty".to_owned());
            }
            dns1123_subdomain(prefix).map_err(|reason| {
                format!("its prefix `{prefix}` is not a DNS subdomain: {reason}")
            })?;
            if name.contains('/') {
                return Err("it holds more than one '/'".to_owned());
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("the name part is empty".to_owned());
    }
    qualified_name(name)
}

/// Checks a label value: empty, or 1 to 63 letters, digits, `-`, `_` and `.`, starting
/// and ending with a letter or digit.
pub(crate) fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    qualified_name(value)
}

/// The name part of a label key, or a non-empty label value.
fn qualified_name(text: &str) -> Result<(), String> {
    if text.len() > MAX_LABEL_LEN {
        return Err(format!(
            "it is {} characters long, more than {MAX_LABEL_LEN}",
            text.len()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        return Err(format!(
            "it holds {c:?}, but only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    alnum_ends(text, "a letter or digit")
}

/// Checks that `text` (non-empty, ASCII) starts and ends with an alphanumeric character.
fn alnum_ends(text: &str, what: &str) -> Result<(), String> {
    let ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if ok(text.as_bytes().first()) && ok(text.as_bytes().last()) {
        Ok(())
    } else {
        Err(format!("it must start and end with {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "web-1", "0abc", &"a".repeat(63)] {
            assert_eq!(dns1123_label(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        for good in ["a.b", "web-1.example.com", "x"] {
            assert_eq!(dns1123_subdomain(good), Ok(()), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a.-b", "A", &"a".repeat(254)] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "kubernetes.io/metadata.name",
            "A_b.c-D",
            "x/y",
        ] {
            assert_eq!(label_key(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/app",
            "a/",
            "a/b/c",
            "Foo.com/x",
            "-app",
            "app!",
            &"a".repeat(64),
        ] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        for good in ["", "v1", "1.2.3", "a_B-c"] {
            assert_eq!(label_value(good), Ok(()), "{good}");
        }
        for bad in ["-v", "v ", "a/b", &"a".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }
}
