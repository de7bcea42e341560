//! Splitting a text into documents: YAML (one document, or several separated by `---`)
//! or JSON (one value, or several one after another), and flattening `List`s into their
//! items.
//!
//! A text whose first character (after white space) is `{` or `[` is read as JSON first,
//! and as YAML when it is not JSON (a YAML flow mapping); anything else is YAML. YAML is
//! turned into JSON values: anchors and aliases are expanded, merge keys (`<<`) applied,
//! number and boolean mapping keys turned into strings (as `kubectl` does); tags have no
//! JSON equivalent and are refused. Empty documents (a trailing `---`, a comment alone)
//! are skipped but still counted, so document numbers match what a reader counts.
//!
//! A `List` (`apiVersion: v1`, what `kubectl get -o yaml` prints) contributes its
//! `items`, in order, each with its own `kind`; a typed list (`PodList`, `NamespaceList`,
//! `NetworkPolicyList`, what the API server returns) may leave its items' `apiVersion`
//! and `kind` out. Lists may nest.
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::Value;

use crate::k8s::error::{DocumentError, ObjectRef, Origin, Problem};
use crate::k8s::field::{type_name, Field, FieldError, FieldPath, Read};
use crate::k8s::namespace::Namespace;
use crate::k8s::network_policy::NetworkPolicy;
use crate::k8s::pod::Pod;

/// The apiVersion of `List`.
const LIST_API_VERSION: &str = "v1";

/// One top-level document of a text, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawDocument {
    /// Its number in the text, from 1.
    pub(crate) index: usize,
    /// Its content (never null: empty documents are left out).
    pub(crate) value: Value,
}

/// The `apiVersion` and `kind` a typed list gives its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Implied {
    /// `apiVersion`.
    pub(crate) api_version: &'static str,
    /// `kind`.
    pub(crate) kind: &'static str,
}

/// One object-to-be: a document, or an item of a `List` in one.
#[derive(Debug, Clone)]
pub(crate) struct Item<'a> {
    /// The number of the top-level document it is in.
    pub(crate) index: usize,
    /// Its content.
    pub(crate) value: &'a Value,
    /// Its path inside the document: empty for a document, `items[i]` for a list item.
    pub(crate) path: FieldPath,
    /// What its list implies when it leaves out `apiVersion` and `kind`.
    pub(crate) implied: Option<Implied>,
}

impl Item<'_> {
    /// Where the item is, as a reader would look for it: `document 2`,
    /// `document 1 items[3]`.
    pub(crate) fn location(&self) -> String {
        if self.path == FieldPath::root() {
            format!("document {}", self.index)
        } else {
            format!("document {} {}", self.index, self.path)
        }
    }
}

/// The documents of a text, up to the first one that does not parse.
#[derive(Debug)]
pub(crate) struct Split {
    /// The non-empty documents before the first error, in order.
    pub(crate) documents: Vec<RawDocument>,
    /// The first document that is not valid YAML (or JSON), or that uses YAML with no
    /// JSON equivalent; the documents after it are not read.
    pub(crate) error: Option<DocumentError>,
}

/// Splits `text` into its non-empty documents.
pub(crate) fn split(text: &str) -> Split {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if matches!(text.trim_start().chars().next(), Some('{' | '[')) {
        let json = split_json(text);
        if json.error.is_none() {
            return json;
        }
        let yaml = split_yaml(text);
        return if yaml.error.is_none() { yaml } else { json };
    }
    split_yaml(text)
}

fn split_json(text: &str) -> Split {
    let mut documents = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (i, value) in stream.enumerate() {
        let index = i + 1;
        match value {
            Ok(Value::Null) => {}
            Ok(value) => documents.push(RawDocument { index, value }),
            Err(error) => {
                let problem = Problem::Json(error.to_string());
                return Split {
                    documents,
                    error: Some(DocumentError::whole(Origin::Document(index), problem)),
                };
            }
        }
    }
    Split {
        documents,
        error: None,
    }
}

fn split_yaml(text: &str) -> Split {
    let mut documents = Vec::new();
    // After a syntax error the YAML stream repeats the error forever: stop at the first.
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        match yaml_document(document, Origin::Document(index)) {
            Ok(Value::Null) => {}
            Ok(value) => documents.push(RawDocument { index, value }),
            Err(error) => {
                return Split {
                    documents,
                    error: Some(error),
                }
            }
        }
    }
    Split {
        documents,
        error: None,
    }
}

/// Reads one YAML document as JSON.
fn yaml_document(
    document: serde_norway::Deserializer<'_>,
    origin: Origin,
) -> Result<Value, DocumentError> {
    let yaml_error =
        |error: serde_norway::Error| DocumentError::whole(origin, Problem::Yaml(error.to_string()));
    let mut yaml = serde_norway::Value::deserialize(document).map_err(yaml_error)?;
    yaml.apply_merge().map_err(yaml_error)?;
    yaml_to_json(yaml, &FieldPath::root()).map_err(|error| DocumentError::at(origin, None, error))
}

/// Converts a YAML value to JSON; `path` names it in errors.
fn yaml_to_json(yaml: serde_norway::Value, path: &FieldPath) -> Read<Value> {
    use serde_norway::Value as Yaml;
    let unsupported = |what: String| FieldError {
        path: path.clone(),
        problem: Problem::UnsupportedYaml(what),
    };
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| unsupported(format!("{n} is not a finite number")))?
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &path.index(i)))
                .collect::<Read<Vec<_>>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut map = serde_json::Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    other => {
                        return Err(unsupported(format!(
                            "a mapping key must be a string, not {}",
                            yaml_type_name(&other)
                        )))
                    }
                };
                let value = yaml_to_json(value, &path.key(&key))?;
                map.insert(key, value);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => {
            return Err(unsupported(format!(
                "the YAML tag `{}` is not supported: remove it",
                tagged.tag
            )))
        }
    })
}

fn yaml_type_name(yaml: &serde_norway::Value) -> &'static str {
    use serde_norway::Value as Yaml;
    match yaml {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// The items of `document`, lists flattened, in order.
///
/// # Errors
/// A list with a wrong or missing `apiVersion`, or without `items`.
pub(crate) fn flatten(document: &RawDocument) -> Result<Vec<Item<'_>>, DocumentError> {
    let mut items = Vec::new();
    let item = Item {
        index: document.index,
        value: &document.value,
        path: FieldPath::root(),
        implied: None,
    };
    flatten_into(item, &mut items)?;
    Ok(items)
}

fn flatten_into<'a>(item: Item<'a>, out: &mut Vec<Item<'a>>) -> Result<(), DocumentError> {
    let kind = item
        .value
        .get("kind")
        .and_then(Value::as_str)
        .or(item.implied.map(|implied| implied.kind));
    let Some(ListKind {
        kind: list_kind_name,
        api_version: list_api_version,
        implied,
    }) = kind.and_then(list_kind)
    else {
        out.push(item);
        return Ok(());
    };
    let origin = Origin::Document(item.index);
    let object_ref = Some(ObjectRef {
        kind: list_kind_name.to_owned(),
        namespace: None,
        name: None,
    });
    let fail = |error: FieldError| DocumentError::at(origin, object_ref.clone(), error);
    let list = Field::root(item.value, item.path.clone())
        .object()
        .map_err(fail)?;
    let version = list
        .require("apiVersion")
        .and_then(|f| f.str())
        .map_err(fail)?;
    if version != list_api_version {
        return Err(fail(list.error_at(
            "apiVersion",
            Problem::WrongApiVersion {
                kind: list_kind_name,
                found: version.to_owned(),
                expected: list_api_version,
            },
        )));
    }
    for element in list
        .require("items")
        .and_then(|items| items.list())
        .map_err(fail)?
    {
        flatten_into(
            Item {
                index: item.index,
                value: element.value,
                path: element.path,
                implied,
            },
            out,
        )?;
    }
    Ok(())
}

/// A kind of list.
struct ListKind {
    /// Its kind.
    kind: &'static str,
    /// Its apiVersion.
    api_version: &'static str,
    /// What it implies for its items.
    implied: Option<Implied>,
}

/// The list kind `kind` names, if any.
fn list_kind(kind: &str) -> Option<ListKind> {
    let typed = |kind: &'static str, api_version: &'static str, item_kind: &'static str| ListKind {
        kind,
        api_version,
        implied: Some(Implied {
            api_version,
            kind: item_kind,
        }),
    };
    match kind {
        "List" => Some(ListKind {
            kind: "List",
            api_version: LIST_API_VERSION,
            implied: None,
        }),
        "NamespaceList" => Some(typed(
            "NamespaceList",
            Namespace::API_VERSION,
            Namespace::KIND,
        )),
        "PodList" => Some(typed("PodList", Pod::API_VERSION, Pod::KIND)),
        "NetworkPolicyList" => Some(typed(
            "NetworkPolicyList",
            NetworkPolicy::API_VERSION,
            NetworkPolicy::KIND,
        )),
        _ => None,
    }
}

/// What a reader should call the object an item describes, as far as it can be read.
pub(crate) fn peek_object_ref(value: &Value, implied: Option<Implied>) -> Option<ObjectRef> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .or(implied.map(|implied| implied.kind))?;
    let meta = value.get("metadata");
    let text = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let namespace = match kind {
        "Namespace" => None,
        "Pod" | "NetworkPolicy" => Some(
            text("namespace").unwrap_or_else(|| crate::k8s::meta::DEFAULT_NAMESPACE.to_owned()),
        ),
        _ => text("namespace"),
    };
    Some(ObjectRef {
        kind: kind.to_owned(),
        namespace,
        name: text("name"),
    })
}

/// The error for an item that is not a mapping.
pub(crate) fn not_an_object(field: &Field<'_>) -> FieldError {
    field.error(Problem::NotAnObject {
        found: type_name(field.value),
    })
}
