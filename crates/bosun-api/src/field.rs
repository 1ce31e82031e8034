//! Field errors, as apimachinery's `field.Error`: what is wrong with which field of an
//! object, with Kubernetes' texts, and the one rendering of a list of them into the message
//! of a 422 Invalid `Status` (see [`crate::status::Status::invalid`]).
//!
//! Bad values are pre-rendered the way Go's `field.Error` renders them (`%q` for strings,
//! `%v` for numbers, `%#v` for maps and structs), so messages match what kubectl prints.

use std::collections::BTreeSet;
use std::fmt;

use crate::names::go_quote;

/// One field-level validation error, as Kubernetes' `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `spec.containers[0].image`.
    pub field: String,
    /// What is wrong with the field.
    pub kind: ErrorKind,
    /// Human readable explanation (may be empty).
    pub detail: String,
}

/// The kind of a field error; values are pre-rendered as kube renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A required value is missing.
    Required,
    /// The value is malformed; holds the rendered bad value.
    Invalid(String),
    /// The value is not one of an enumeration; holds the rendered bad value
    /// and the supported values.
    NotSupported(String, Vec<String>),
    /// The value is not allowed in the current context.
    Forbidden,
    /// The value collides with another; holds the rendered value.
    Duplicate(String),
    /// The value exceeds the given length in bytes.
    TooLong(usize),
    /// A list has too many items.
    TooMany,
}

impl FieldError {
    /// The `reason` of the status cause (`FieldValueRequired`, ...).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid(_) => "FieldValueInvalid",
            ErrorKind::NotSupported(..) => "FieldValueNotSupported",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::Duplicate(_) => "FieldValueDuplicate",
            ErrorKind::TooLong(_) => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
        }
    }

    /// The message without the field, as Go's `ErrorBody()`.
    pub fn message(&self) -> String {
        let mut s = match &self.kind {
            ErrorKind::Required => "Required value".to_string(),
            ErrorKind::Invalid(v) => format!("Invalid value: {v}"),
            ErrorKind::NotSupported(v, _) => format!("Unsupported value: {v}"),
            ErrorKind::Forbidden => "Forbidden".to_string(),
            ErrorKind::Duplicate(v) => format!("Duplicate value: {v}"),
            ErrorKind::TooLong(_) => "Too long".to_string(),
            ErrorKind::TooMany => "Too many".to_string(),
        };
        let detail = match &self.kind {
            ErrorKind::NotSupported(_, valid) if self.detail.is_empty() => supported_detail(valid),
            ErrorKind::TooLong(max) if self.detail.is_empty() => too_long_detail(*max),
            _ => self.detail.clone(),
        };
        if !detail.is_empty() {
            s.push_str(": ");
            s.push_str(&detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

fn supported_detail(valid: &[String]) -> String {
    if valid.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
    format!("supported values: {}", quoted.join(", "))
}

fn too_long_detail(max: usize) -> String {
    let unit = if max == 1 { "byte" } else { "bytes" };
    format!("may not be more than {max} {unit}")
}

/// `field.Required`: a required value is missing.
pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        kind: ErrorKind::Required,
        detail: detail.to_string(),
    }
}

/// `field.Invalid` with a value already rendered as Go renders it.
pub fn invalid(field: impl Into<String>, value: String, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        kind: ErrorKind::Invalid(value),
        detail: detail.to_string(),
    }
}

/// `field.Invalid` with a string value (rendered with `%q`).
pub fn invalid_str(field: impl Into<String>, value: &str, detail: &str) -> FieldError {
    invalid(field, go_quote(value), detail)
}

/// `field.NotSupported`: the value is not one of `valid`.
pub fn not_supported(field: impl Into<String>, value: &str, valid: &[&str]) -> FieldError {
    let valid: Vec<String> = valid.iter().map(|v| v.to_string()).collect();
    FieldError {
        field: field.into(),
        detail: supported_detail(&valid),
        kind: ErrorKind::NotSupported(go_quote(value), valid),
    }
}

/// `field.Forbidden`.
pub fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        kind: ErrorKind::Forbidden,
        detail: detail.to_string(),
    }
}

/// `field.Duplicate` with a value already rendered.
pub fn duplicate(field: impl Into<String>, value: String) -> FieldError {
    FieldError {
        field: field.into(),
        kind: ErrorKind::Duplicate(value),
        detail: String::new(),
    }
}

/// `field.TooLong`: longer than `max` bytes.
pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
    FieldError {
        field: field.into(),
        kind: ErrorKind::TooLong(max),
        detail: too_long_detail(max),
    }
}

/// kube's `NewInvalid` status message, e.g.
/// `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`.
/// Identical messages are reported once; several errors are bracketed.
pub fn invalid_message(kind_dot_group: &str, name: &str, errors: &[FieldError]) -> String {
    let mut seen = BTreeSet::new();
    let mut msgs = Vec::new();
    for e in errors {
        let m = e.to_string();
        if seen.insert(m.clone()) {
            msgs.push(m);
        }
    }
    let head = format!("{kind_dot_group} {} is invalid", go_quote(name));
    match msgs.len() {
        0 => head,
        1 => format!("{head}: {}", msgs[0]),
        _ => format!("{head}: [{}]", msgs.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_renders_as_kubernetes() {
        let cases = [
            (required("a", ""), "FieldValueRequired", "a: Required value"),
            (
                invalid_str("a", "x\"y", "bad"),
                "FieldValueInvalid",
                "a: Invalid value: \"x\\\"y\": bad",
            ),
            (
                not_supported("p", "Zzz", &["A", "B"]),
                "FieldValueNotSupported",
                "p: Unsupported value: \"Zzz\": supported values: \"A\", \"B\"",
            ),
            (
                forbidden("f", "no"),
                "FieldValueForbidden",
                "f: Forbidden: no",
            ),
            (
                duplicate("d", "\"x\"".into()),
                "FieldValueDuplicate",
                "d: Duplicate value: \"x\"",
            ),
            (
                too_long("t", 1),
                "FieldValueTooLong",
                "t: Too long: may not be more than 1 byte",
            ),
        ];
        for (e, reason, text) in cases {
            assert_eq!((e.reason(), e.to_string().as_str()), (reason, text));
        }
        let many = FieldError {
            field: "l".into(),
            kind: ErrorKind::TooMany,
            detail: String::new(),
        };
        assert_eq!(many.message(), "Too many");
    }

    #[test]
    fn one_message_for_many_errors() {
        let a = required("a", "");
        assert_eq!(invalid_message("Pod", "p", &[]), "Pod \"p\" is invalid");
        assert_eq!(
            invalid_message("Pod", "p", &[a.clone(), a.clone()]),
            "Pod \"p\" is invalid: a: Required value"
        );
        assert_eq!(
            invalid_message("Lease.coordination.k8s.io", "l", &[a, forbidden("b", "x")]),
            "Lease.coordination.k8s.io \"l\" is invalid: [a: Required value, b: Forbidden: x]"
        );
    }
}
