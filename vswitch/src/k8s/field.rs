//! Reading a JSON document field by field while keeping the path to each field, so every
//! error names the field it is about (`spec.ingress[0].ports[1].endPort`).
//!
//! Absent fields and fields set to `null` read the same (Kubernetes treats `null` as
//! absent); fields vswitch does not know are never looked at, so they are ignored.
#![forbid(unsafe_code)]

use std::fmt;

use serde_json::{Map, Value};

use crate::k8s::error::Problem;

/// The path from a document's root to one field: `metadata.labels["app.kubernetes.io/name"]`,
/// `items[2].spec.containers[0].ports[1].name`. Empty at the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    /// The document's root.
    pub(crate) fn root() -> FieldPath {
        FieldPath(String::new())
    }

    /// The member `key` of the mapping at this path. Keys that are not plain identifiers
    /// (label keys with dots and slashes) are written in brackets.
    pub(crate) fn key(&self, key: &str) -> FieldPath {
        let plain = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let mut path = self.0.clone();
        if plain {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        } else {
            path.push('[');
            path.push_str(&Value::String(key.to_owned()).to_string());
            path.push(']');
        }
        FieldPath(path)
    }

    /// The `index`th element of the list at this path.
    pub(crate) fn index(&self, index: usize) -> FieldPath {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// The path as text.
    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A problem at a field path, before the document it is in is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// Where.
    pub(crate) path: FieldPath,
    /// What.
    pub(crate) problem: Problem,
}

/// The result of reading a field.
pub(crate) type Read<T> = Result<T, FieldError>;

/// How a JSON value's type reads in a message.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// One present, non-null field: its value and its path.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    /// The value.
    pub(crate) value: &'a Value,
    /// Where it is.
    pub(crate) path: FieldPath,
}

impl<'a> Field<'a> {
    /// The field at the root of a document.
    pub(crate) fn root(value: &'a Value, path: FieldPath) -> Field<'a> {
        Field { value, path }
    }

    /// An error about this field.
    pub(crate) fn error(&self, problem: Problem) -> FieldError {
        FieldError {
            path: self.path.clone(),
            problem,
        }
    }

    fn wrong_type(&self, expected: &'static str) -> FieldError {
        self.error(Problem::WrongType {
            expected,
            found: type_name(self.value),
        })
    }

    /// The field as a string.
    pub(crate) fn str(&self) -> Read<&'a str> {
        self.value
            .as_str()
            .ok_or_else(|| self.wrong_type("a string"))
    }

    /// The field as a mapping.
    pub(crate) fn object(&self) -> Read<Object<'a>> {
        match self.value {
            Value::Object(map) => Ok(Object {
                map,
                path: self.path.clone(),
            }),
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    /// The elements of the field, a list.
    pub(crate) fn list(&self) -> Read<Vec<Field<'a>>> {
        match self.value {
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Field {
                    value,
                    path: self.path.index(i),
                })
                .collect()),
            _ => Err(self.wrong_type("a list")),
        }
    }

    /// The field as a port number, 1..=65535.
    pub(crate) fn port_number(&self) -> Read<u16> {
        let Value::Number(number) = self.value else {
            return Err(self.wrong_type("an integer"));
        };
        if number.is_f64() {
            return Err(self.wrong_type("an integer"));
        }
        number
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
            .ok_or_else(|| {
                self.error(Problem::PortOutOfRange {
                    value: number.to_string(),
                })
            })
    }
}

/// A mapping field: reads its members by key.
#[derive(Debug, Clone)]
pub(crate) struct Object<'a> {
    map: &'a Map<String, Value>,
    path: FieldPath,
}

impl<'a> Object<'a> {
    /// An error about the member `key` (present or not).
    pub(crate) fn error_at(&self, key: &str, problem: Problem) -> FieldError {
        FieldError {
            path: self.path.key(key),
            problem,
        }
    }

    /// The member `key`, or `None` when it is absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<Field<'a>> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(Field {
                value,
                path: self.path.key(key),
            }),
        }
    }

    /// The member `key`, which must be present.
    pub(crate) fn require(&self, key: &str) -> Read<Field<'a>> {
        self.get(key)
            .ok_or_else(|| self.error_at(key, Problem::Missing))
    }

    /// The member `key` as a mapping, if present.
    pub(crate) fn opt_object(&self, key: &str) -> Read<Option<Object<'a>>> {
        self.get(key).map(|field| field.object()).transpose()
    }

    /// The elements of the list `key`; none when it is absent.
    pub(crate) fn list(&self, key: &str) -> Read<Vec<Field<'a>>> {
        self.get(key)
            .map_or_else(|| Ok(Vec::new()), |field| field.list())
    }

    /// The members of the mapping, with their values as fields.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&'a str, Field<'a>)> + '_ {
        self.map.iter().map(|(key, value)| {
            (
                key.as_str(),
                Field {
                    value,
                    path: self.path.key(key),
                },
            )
        })
    }
}

/// Builds a JSON mapping from `(key, value)` pairs, for writing documents back out.
pub(crate) fn mapping<const N: usize>(entries: [(&str, Option<Value>); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in entries {
        if let Some(value) = value {
            map.insert(key.to_owned(), value);
        }
    }
    Value::Object(map)
}
