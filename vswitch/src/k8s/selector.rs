//! Label selectors (`metav1.LabelSelector`): `matchLabels` and `matchExpressions`, and
//! whether a set of labels matches.
//!
//! Semantics are Kubernetes': every `matchLabels` entry and every expression must hold;
//! `In` needs the key present with one of the values, `NotIn` holds when the key is
//! absent or its value is none of them, `Exists` / `DoesNotExist` test the key alone.
//! The empty selector (`{}`) matches everything. Whether a selector may be absent, and
//! what absence means, is for the object that holds it to say (see
//! [`crate::k8s::Peer`]).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::k8s::error::Problem;
use crate::k8s::field::{mapping, Field, Read};
use crate::k8s::meta::{decode_labels, encode_labels, label_key, label_value, Labels};

/// A label selector. The default is the empty selector, which matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// `matchLabels`: each key must be present with this value.
    pub match_labels: Labels,
    /// `matchExpressions`: each must hold.
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the key's value is tested.
    pub operator: SelectorOperator,
    /// The values, non-empty for `In` and `NotIn`, empty for `Exists` and
    /// `DoesNotExist`.
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorOperator {
    /// The key is present and its value is one of the values.
    In,
    /// The key is absent, or its value is none of the values.
    NotIn,
    /// The key is present.
    Exists,
    /// The key is absent.
    DoesNotExist,
}

impl SelectorOperator {
    /// The operator as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SelectorOperator::In => "In",
            SelectorOperator::NotIn => "NotIn",
            SelectorOperator::Exists => "Exists",
            SelectorOperator::DoesNotExist => "DoesNotExist",
        }
    }
}

impl fmt::Display for SelectorOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SelectorOperator {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Self, Problem> {
        match text {
            "In" => Ok(SelectorOperator::In),
            "NotIn" => Ok(SelectorOperator::NotIn),
            "Exists" => Ok(SelectorOperator::Exists),
            "DoesNotExist" => Ok(SelectorOperator::DoesNotExist),
            other => Err(Problem::UnknownOperator {
                operator: other.to_owned(),
            }),
        }
    }
}

impl LabelSelector {
    /// True for the empty selector (no `matchLabels`, no `matchExpressions`), which
    /// matches every set of labels.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// True when `labels` satisfy every `matchLabels` entry and every expression.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self
                .match_expressions
                .iter()
                .all(|requirement| requirement.matches(labels))
    }

    /// Reads a selector, validating keys, values and operators.
    pub(crate) fn decode(field: &Field<'_>) -> Read<LabelSelector> {
        let object = field.object()?;
        let match_labels = decode_labels(object.get("matchLabels"))?;
        let match_expressions = object
            .list("matchExpressions")?
            .iter()
            .map(LabelSelectorRequirement::decode)
            .collect::<Read<Vec<_>>>()?;
        Ok(LabelSelector {
            match_labels,
            match_expressions,
        })
    }

    /// The selector as JSON (`{}` when empty).
    pub(crate) fn encode(&self) -> Value {
        mapping([
            (
                "matchLabels",
                (!self.match_labels.is_empty()).then(|| encode_labels(&self.match_labels)),
            ),
            (
                "matchExpressions",
                (!self.match_expressions.is_empty()).then(|| {
                    Value::Array(
                        self.match_expressions
                            .iter()
                            .map(LabelSelectorRequirement::encode)
                            .collect(),
                    )
                }),
            ),
        ])
    }
}

impl LabelSelectorRequirement {
    /// True when `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }

    fn decode(field: &Field<'_>) -> Read<LabelSelectorRequirement> {
        let object = field.object()?;
        let key_field = object.require("key")?;
        let key = key_field.str()?;
        label_key(key).map_err(|reason| {
            key_field.error(Problem::InvalidLabelKey {
                key: key.to_owned(),
                reason,
            })
        })?;
        let operator_field = object.require("operator")?;
        let operator: SelectorOperator = operator_field
            .str()?
            .parse()
            .map_err(|problem| operator_field.error(problem))?;
        let mut values = Vec::new();
        for value_field in object.list("values")? {
            let value = value_field.str()?;
            label_value(value).map_err(|reason| {
                value_field.error(Problem::InvalidLabelValue {
                    value: value.to_owned(),
                    reason,
                })
            })?;
            values.push(value.to_owned());
        }
        match operator {
            SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
                return Err(object.error_at(
                    "values",
                    Problem::ValuesRequired {
                        operator: operator.as_str(),
                    },
                ))
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !values.is_empty() => {
                return Err(object.error_at(
                    "values",
                    Problem::ValuesForbidden {
                        operator: operator.as_str(),
                    },
                ))
            }
            _ => {}
        }
        Ok(LabelSelectorRequirement {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    fn encode(&self) -> Value {
        mapping([
            ("key", Some(Value::String(self.key.clone()))),
            (
                "operator",
                Some(Value::String(self.operator.as_str().to_owned())),
            ),
            (
                "values",
                (!self.values.is_empty()).then(|| {
                    Value::Array(self.values.iter().cloned().map(Value::String).collect())
                }),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator,
                values: values.iter().map(|v| (*v).to_owned()).collect(),
            }],
        }
    }

    #[test]
    fn semantics_table() {
        use SelectorOperator::*;
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        // (selector, labels, expected)
        let table: Vec<(LabelSelector, &Labels, bool)> = vec![
            (LabelSelector::default(), &web, true),
            (LabelSelector::default(), &none, true),
            (expression("app", In, &["web", "api"]), &web, true),
            (expression("app", In, &["web", "api"]), &db, false),
            (expression("app", In, &["web"]), &none, false),
            (expression("app", NotIn, &["web"]), &web, false),
            (expression("app", NotIn, &["web"]), &db, true),
            (expression("app", NotIn, &["web"]), &none, true),
            (expression("tier", Exists, &[]), &web, true),
            (expression("tier", Exists, &[]), &db, false),
            (expression("tier", DoesNotExist, &[]), &web, false),
            (expression("tier", DoesNotExist, &[]), &db, true),
            (
                LabelSelector {
                    match_labels: labels(&[("app", "web")]),
                    match_expressions: Vec::new(),
                },
                &web,
                true,
            ),
            (
                LabelSelector {
                    match_labels: labels(&[("app", "web"), ("tier", "back")]),
                    match_expressions: Vec::new(),
                },
                &web,
                false,
            ),
            (
                LabelSelector {
                    match_labels: labels(&[("app", "web")]),
                    match_expressions: expression("tier", DoesNotExist, &[]).match_expressions,
                },
                &web,
                false,
            ),
        ];
        for (i, (selector, labels, expected)) in table.iter().enumerate() {
            assert_eq!(
                selector.matches(labels),
                *expected,
                "row {i}: {selector:?} on {labels:?}"
            );
        }
        assert!(LabelSelector::default().is_empty());
        assert!(!expression("a", Exists, &[]).is_empty());
    }
}
