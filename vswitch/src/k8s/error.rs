//! What went wrong with a document, and where: [`DocumentError`] names the document (its
//! place in the text, or "stored object"), the object when its kind and name were read,
//! and the field path; [`Problem`] says what is wrong with that field.
#![forbid(unsafe_code)]

use std::fmt;

use crate::k8s::field::FieldError;

/// Where a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The `n`th document of a text given to [`crate::k8s::parse_documents`], counted
    /// from 1 over every `---`-separated YAML document (empty ones included) or every
    /// top-level JSON value. An object inside a `List` has its list's number; the field
    /// path then starts with `items[i]`.
    Document(usize),
    /// A record read back from the cluster store ([`crate::k8s::Object::from_record`]).
    Record,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Document(index) => write!(f, "document {index}"),
            Origin::Record => f.write_str("stored object"),
        }
    }
}

/// The object a document describes, as far as it could be read before the error: the
/// kind always, the namespace and name when the document has them as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `kind` as written (it may be one vswitch does not know).
    pub kind: String,
    /// `metadata.namespace`, `default` for a namespaced kind that leaves it out, `None`
    /// for a `Namespace` or an unknown kind without one.
    pub namespace: Option<String>,
    /// `metadata.name`, when present.
    pub name: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        match (&self.namespace, &self.name) {
            (Some(namespace), Some(name)) => write!(f, " {namespace}/{name}"),
            (None, Some(name)) => write!(f, " {name}"),
            (_, None) => Ok(()),
        }
    }
}

/// Why a text (or a stored record) does not hold valid objects.
///
/// Its message reads `document 3 (NetworkPolicy default/deny-all):
/// spec.ingress[0].ports[1].endPort: 80 is below port 8080`: the document, the object
/// when known, the field path when the problem is in one field, and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// Which document.
    pub origin: Origin,
    /// The object, when the document's kind could be read (boxed to keep the error
    /// small).
    pub object: Option<Box<ObjectRef>>,
    /// The path of the offending field (`spec.ingress[0].from[1].ipBlock.cidr`); empty
    /// when the problem is with the document as a whole (syntax, a duplicate).
    pub field: String,
    /// What is wrong.
    pub problem: Problem,
}

impl DocumentError {
    /// An error about a whole document, before any object was read from it.
    pub(crate) fn whole(origin: Origin, problem: Problem) -> DocumentError {
        DocumentError {
            origin,
            object: None,
            field: String::new(),
            problem,
        }
    }

    /// A field error of the document at `origin`, about `object`.
    pub(crate) fn at(
        origin: Origin,
        object: Option<ObjectRef>,
        error: FieldError,
    ) -> DocumentError {
        DocumentError {
            origin,
            object: object.map(Box::new),
            field: error.path.into_string(),
            problem: error.problem,
        }
    }
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for DocumentError {}

/// What is wrong with a document or one of its fields. Each message is written to follow
/// the field path in a [`DocumentError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The text is not YAML (the parser's message, with line and column).
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// The text looked like JSON (it starts with `{` or `[`) but is neither valid JSON
    /// nor valid YAML; the JSON parser's message, with line and column.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The YAML uses something with no JSON equivalent.
    #[error("{0}")]
    UnsupportedYaml(String),
    /// A document (or a `List` item) is not a mapping.
    #[error("expected a Kubernetes object (a mapping with apiVersion, kind and metadata), found {found}")]
    NotAnObject {
        /// What was found instead (`a list`, `a string`...).
        found: &'static str,
    },
    /// A required field is absent (or null).
    #[error("required, but missing")]
    Missing,
    /// `metadata.generateName` without `metadata.name`.
    #[error("required, but missing: generateName is not supported, give the object a fixed name")]
    GenerateName,
    /// A field has the wrong JSON type.
    #[error("expected {expected}, found {found}{}", quote_hint(.expected, .found))]
    WrongType {
        /// What the field must be (`a string`, `an integer`...).
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A `kind` vswitch does not handle.
    #[error("unknown kind `{kind}`: vswitch takes Namespace, Pod and NetworkPolicy objects, alone or in a List")]
    UnknownKind {
        /// The kind as written.
        kind: String,
    },
    /// The `apiVersion` does not match the kind.
    #[error("`{found}` is not the apiVersion of {kind}: write `apiVersion: {expected}`")]
    WrongApiVersion {
        /// The kind.
        kind: &'static str,
        /// The apiVersion as written.
        found: String,
        /// The apiVersion this kind has.
        expected: &'static str,
    },
    /// A name or namespace breaks the Kubernetes naming rules.
    #[error("`{value}` is not a valid name: {reason}")]
    InvalidName {
        /// The name as written.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A label (or selector) key breaks the Kubernetes rules for label keys.
    #[error("`{key}` is not a valid label key: {reason}")]
    InvalidLabelKey {
        /// The key as written.
        key: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A label (or selector) value breaks the Kubernetes rules for label values.
    #[error("`{value}` is not a valid label value: {reason}")]
    InvalidLabelValue {
        /// The value as written.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A `matchExpressions` operator that does not exist.
    #[error("unknown operator `{operator}`: use In, NotIn, Exists or DoesNotExist")]
    UnknownOperator {
        /// The operator as written.
        operator: String,
    },
    /// `In` or `NotIn` without values.
    #[error("operator {operator} needs at least one value")]
    ValuesRequired {
        /// `In` or `NotIn`.
        operator: &'static str,
    },
    /// `Exists` or `DoesNotExist` with values.
    #[error("operator {operator} takes no values: remove them")]
    ValuesForbidden {
        /// `Exists` or `DoesNotExist`.
        operator: &'static str,
    },
    /// A protocol other than TCP, UDP and SCTP.
    #[error("unknown protocol `{protocol}`: use TCP, UDP or SCTP")]
    UnknownProtocol {
        /// The protocol as written.
        protocol: String,
    },
    /// A port number outside 1..=65535.
    #[error("{value} is not a port number: it must be 1 to 65535")]
    PortOutOfRange {
        /// The number as written.
        value: String,
    },
    /// A port name that is not an IANA service name.
    #[error("`{name}` is not a valid port name: {reason}")]
    InvalidPortName {
        /// The name as written.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// Two ports of one container with the same name.
    #[error("`{name}` already names another port of this container")]
    DuplicatePortName {
        /// The name.
        name: String,
    },
    /// Two containers of one pod with the same name.
    #[error("`{name}` already names another container of this pod")]
    DuplicateContainerName {
        /// The name.
        name: String,
    },
    /// `endPort` without `port`.
    #[error("endPort needs a numeric port beside it")]
    EndPortWithoutPort,
    /// `endPort` with a named `port`.
    #[error("endPort cannot go with the named port `{port}`: give port as a number")]
    EndPortWithNamedPort {
        /// The named port.
        port: String,
    },
    /// `endPort` below `port`.
    #[error("{end_port} is below port {port}")]
    EndPortBelowPort {
        /// The endPort.
        end_port: u16,
        /// The port.
        port: u16,
    },
    /// A `policyTypes` entry other than `Ingress` and `Egress`.
    #[error("unknown policy type `{policy_type}`: use Ingress or Egress")]
    UnknownPolicyType {
        /// The entry as written.
        policy_type: String,
    },
    /// More than two `policyTypes`.
    #[error("lists {count} policy types, but there are only two: Ingress and Egress")]
    TooManyPolicyTypes {
        /// How many were listed.
        count: usize,
    },
    /// A peer with none of podSelector, namespaceSelector and ipBlock.
    #[error("a peer needs podSelector, namespaceSelector or ipBlock")]
    EmptyPeer,
    /// A peer with ipBlock and a selector.
    #[error(
        "ipBlock cannot share a peer with podSelector or namespaceSelector: make them two peers"
    )]
    IpBlockWithSelector,
    /// A CIDR that does not parse.
    #[error("`{value}` is not an IPv4 CIDR (expected A.B.C.D/N)")]
    InvalidCidr {
        /// The CIDR as written.
        value: String,
    },
    /// An IPv6 address or CIDR.
    #[error("`{value}` is IPv6, but the vswitch pod network is IPv4 only")]
    Ipv6NotSupported {
        /// The address or CIDR as written.
        value: String,
    },
    /// An address that does not parse.
    #[error("`{value}` is not an IPv4 address")]
    InvalidIp {
        /// The address as written.
        value: String,
    },
    /// An `except` block outside the `cidr`.
    #[error("{except} is not inside cidr {cidr}")]
    ExceptOutsideCidr {
        /// The except block.
        except: String,
        /// The ipBlock's cidr.
        cidr: String,
    },
    /// An `except` block as large as (or larger than) the `cidr`.
    #[error(
        "{except} is not smaller than cidr {cidr}: an except block must be a strict subset of it"
    )]
    ExceptNotSmaller {
        /// The except block.
        except: String,
        /// The ipBlock's cidr.
        cidr: String,
    },
    /// The same object (kind, namespace, name) twice in one text.
    #[error("the same object is already defined by {first}")]
    Duplicate {
        /// Where it was first defined (`document 2`, `document 1 items[3]`).
        first: String,
    },
    /// A stored record whose key does not match its document.
    #[error("the record is stored under {key}, but its document describes another object")]
    RecordKeyMismatch {
        /// The record's key, as `Kind namespace/name`.
        key: String,
    },
}

/// The hint added to a type error when a scalar needs quoting to be a string.
fn quote_hint(expected: &str, found: &str) -> &'static str {
    if expected == "a string" && (found == "a number" || found == "a boolean") {
        " (quote it in YAML, e.g. \"1\" or \"true\")"
    } else {
        ""
    }
}
