//! Kubernetes' `Status`: the object a failed request answers with (kind `Status`, `status:
//! Failure`, a reason, an HTTP code, details with the object's name, group, resource and
//! field causes), and its construction for each failure, with Kubernetes' messages.
//!
//! The transport of a `Status` (an HTTP response, or a gRPC status carrying the same JSON) is
//! the apiserver's; this module only builds it.

use serde_json::{Value, json};

use crate::field::{FieldError, invalid_message};
use crate::resources::Resource;

/// The `reason`s of a failed `Status` (Kubernetes' `metav1.StatusReason`) that Bosun
/// answers with.
pub mod reason {
    /// The object (or the path) does not exist (404).
    pub const NOT_FOUND: &str = "NotFound";
    /// A create of a name that exists (409).
    pub const ALREADY_EXISTS: &str = "AlreadyExists";
    /// The object changed since the version the write was based on, or a precondition failed (409).
    pub const CONFLICT: &str = "Conflict";
    /// The object (or a patch, or request options) fails validation (422).
    pub const INVALID: &str = "Invalid";
    /// The request itself is malformed (400).
    pub const BAD_REQUEST: &str = "BadRequest";
    /// The operation is not allowed on this object (403).
    pub const FORBIDDEN: &str = "Forbidden";
    /// The verb is not served on the resource (405).
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    /// The version asked for is compacted away: list again (410).
    pub const EXPIRED: &str = "Expired";
    /// The request or the object is too large (413).
    pub const REQUEST_ENTITY_TOO_LARGE: &str = "RequestEntityTooLarge";
    /// The body's content type is not served (415).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UnsupportedMediaType";
    /// No acceptable response type is served (406).
    pub const NOT_ACCEPTABLE: &str = "NotAcceptable";
    /// A watcher too slow to keep up: resume from the last version received (429).
    pub const TOO_MANY_REQUESTS: &str = "TooManyRequests";
    /// The server failed (500).
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// The store (or a kubelet) cannot be reached (503).
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
    /// The store did not answer in time; a write may or may not have happened (504).
    pub const TIMEOUT: &str = "Timeout";

    /// Every reason above, to recognise one in a `Status` read back.
    pub const ALL: &[&str] = &[
        NOT_FOUND,
        ALREADY_EXISTS,
        CONFLICT,
        INVALID,
        BAD_REQUEST,
        FORBIDDEN,
        METHOD_NOT_ALLOWED,
        EXPIRED,
        REQUEST_ENTITY_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        NOT_ACCEPTABLE,
        TOO_MANY_REQUESTS,
        INTERNAL_ERROR,
        SERVICE_UNAVAILABLE,
        TIMEOUT,
    ];
}

/// One cause of an `Invalid` error (a field error).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, ...
    pub reason: String,
    /// The message without the field.
    pub message: String,
    /// The field path, e.g. `spec.containers[0].image`.
    pub field: String,
}

/// A failed API request: everything its `Status` object says.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...; empty for an unclassified error.
    pub reason: &'static str,
    /// Human-readable message; kubectl prints it after "Error from server (Reason): ".
    pub message: String,
    /// `details`: name, group, kind (the plural resource name, as Kubernetes sets it), causes.
    pub details: Option<Box<Details>>,
}

/// `Status.details`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Details {
    /// Object name.
    pub name: String,
    /// API group.
    pub group: String,
    /// Resource (Kubernetes puts the plural resource name here) or kind.
    pub kind: String,
    /// Field causes.
    pub causes: Vec<Cause>,
    /// Seconds after which to retry, when set.
    pub retry_after_seconds: Option<u32>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for Status {}

fn details(res: &Resource, name: &str) -> Option<Box<Details>> {
    Some(Box::new(Details {
        name: name.to_string(),
        group: res.group.to_string(),
        kind: res.plural.to_string(),
        ..Details::default()
    }))
}

/// The `Status` causes of field errors (Kubernetes' `Cause` per `field.Error`).
pub fn causes(errors: &[FieldError]) -> Vec<Cause> {
    errors
        .iter()
        .map(|e| Cause {
            reason: e.reason().to_string(),
            message: e.message(),
            field: e.field.clone(),
        })
        .collect()
}

impl Status {
    /// A failure with this code, reason and message and no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Status {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for an object.
    pub fn not_found(res: &Resource, name: &str) -> Self {
        Status {
            details: details(res, name),
            ..Self::new(
                404,
                reason::NOT_FOUND,
                format!("{} \"{}\" not found", res.qualified(), name),
            )
        }
    }

    /// 404 for a path that names nothing served.
    pub fn no_route() -> Self {
        Self::new(
            404,
            reason::NOT_FOUND,
            "the server could not find the requested resource",
        )
    }

    /// 409 on create of an existing name.
    pub fn already_exists(res: &Resource, name: &str) -> Self {
        Status {
            details: details(res, name),
            ..Self::new(
                409,
                reason::ALREADY_EXISTS,
                format!("{} \"{}\" already exists", res.qualified(), name),
            )
        }
    }

    /// 409 when the object changed since the version the client sent.
    pub fn conflict(res: &Resource, name: &str) -> Self {
        Self::conflict_msg(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 with a specific reason text.
    pub fn conflict_msg(res: &Resource, name: &str, why: &str) -> Self {
        Status {
            details: details(res, name),
            ..Self::new(
                409,
                reason::CONFLICT,
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {}",
                    res.qualified(),
                    name,
                    why
                ),
            )
        }
    }

    /// 422 Invalid for field errors of the object `name` of `kind` in `group` (or of request
    /// options such as `ListOptions` in `meta.k8s.io`): the message is
    /// `Kind.group "name" is invalid: <errors>` (one error as is, several bracketed, repeats
    /// once), the causes are the errors, and the details name the group and kind.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Status {
            details: Some(Box::new(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: kind.to_string(),
                causes: causes(errors),
                retry_after_seconds: None,
            })),
            ..Self::new(
                422,
                reason::INVALID,
                invalid_message(&qualified, name, errors),
            )
        }
    }

    /// 422 Invalid for field errors of an object of `res` (see [`Status::invalid`]).
    pub fn invalid_object(res: &Resource, name: &str, errors: &[FieldError]) -> Self {
        Self::invalid(res.group, res.kind, name, errors)
    }

    /// The same error with `details.group` and `details.kind` replaced.
    pub fn with_details_kind(mut self, group: &str, kind: &str) -> Self {
        let d = self.details.get_or_insert_with(Box::default);
        d.group = group.to_string();
        d.kind = kind.to_string();
        self
    }

    /// 422 for a patch that cannot be applied to the object.
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(422, reason::INVALID, message)
    }

    /// 422 for a JSON patch whose operations fail. Kubernetes answers these with a generic
    /// server response, whose message drops the reason; Bosun keeps it as the one cause.
    pub fn patch_failed(why: impl Into<String>) -> Self {
        Status {
            details: Some(Box::new(Details {
                causes: vec![Cause {
                    reason: String::new(),
                    message: why.into(),
                    field: String::new(),
                }],
                ..Details::default()
            })),
            ..Self::new(
                422,
                reason::INVALID,
                "the server rejected our request due to an error in our request",
            )
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, reason::BAD_REQUEST, message)
    }

    /// 403.
    pub fn forbidden(res: &Resource, name: &str, why: &str) -> Self {
        Status {
            details: details(res, name),
            ..Self::new(
                403,
                reason::FORBIDDEN,
                format!("{} \"{}\" is forbidden: {}", res.qualified(), name, why),
            )
        }
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, reason::METHOD_NOT_ALLOWED, message)
    }

    /// 410: the requested version has been compacted away; the client must re-list.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, reason::EXPIRED, message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, reason::REQUEST_ENTITY_TOO_LARGE, message)
    }

    /// 415.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, reason::UNSUPPORTED_MEDIA_TYPE, message)
    }

    /// 406.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, reason::NOT_ACCEPTABLE, message)
    }

    /// 429: a watch client that could not keep up; resume from the last version received.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Status {
            details: Some(Box::new(Details {
                retry_after_seconds: Some(1),
                ..Details::default()
            })),
            ..Self::new(429, reason::TOO_MANY_REQUESTS, message)
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, reason::INTERNAL_ERROR, message)
    }

    /// 503: the store is unreachable or the kubelet cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, reason::SERVICE_UNAVAILABLE, message)
    }

    /// 504: the store did not answer in time (the write may or may not have happened).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, reason::TIMEOUT, message)
    }

    /// The `Status` object, as kube-apiserver encodes it (empty fields left out).
    pub fn to_json(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty()
            && let Some(o) = s.as_object_mut()
        {
            o.remove("reason");
        }
        if let Some(d) = &self.details {
            let mut dj = serde_json::Map::new();
            if !d.name.is_empty() {
                dj.insert("name".into(), json!(d.name));
            }
            if !d.group.is_empty() {
                dj.insert("group".into(), json!(d.group));
            }
            if !d.kind.is_empty() {
                dj.insert("kind".into(), json!(d.kind));
            }
            if !d.causes.is_empty() {
                dj.insert(
                    "causes".into(),
                    Value::Array(
                        d.causes
                            .iter()
                            .map(|c| {
                                // Kubernetes omits a cause's empty fields.
                                let mut cj = serde_json::Map::new();
                                for (k, v) in [
                                    ("reason", &c.reason),
                                    ("message", &c.message),
                                    ("field", &c.field),
                                ] {
                                    if !v.is_empty() {
                                        cj.insert(k.into(), json!(v));
                                    }
                                }
                                Value::Object(cj)
                            })
                            .collect(),
                    ),
                );
            }
            if let Some(r) = d.retry_after_seconds {
                dj.insert("retryAfterSeconds".into(), json!(r));
            }
            s["details"] = Value::Object(dj);
        }
        s
    }

    /// A failure `Status` read back from its JSON (as a client receives it), or `None` when
    /// the JSON is not one. A reason Bosun does not answer with reads as "".
    pub fn from_json(v: &Value) -> Option<Status> {
        if v.get("kind").and_then(Value::as_str) != Some("Status")
            || v.get("status").and_then(Value::as_str) != Some("Failure")
        {
            return None;
        }
        let text = |o: &Value, k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let got = v.get("reason").and_then(Value::as_str).unwrap_or_default();
        let details = v.get("details").filter(|d| d.is_object()).map(|d| {
            Box::new(Details {
                name: text(d, "name"),
                group: text(d, "group"),
                kind: text(d, "kind"),
                causes: d
                    .get("causes")
                    .and_then(Value::as_array)
                    .map(|cs| {
                        cs.iter()
                            .map(|c| Cause {
                                reason: text(c, "reason"),
                                message: text(c, "message"),
                                field: text(c, "field"),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                retry_after_seconds: d
                    .get("retryAfterSeconds")
                    .and_then(Value::as_u64)
                    .and_then(|r| u32::try_from(r).ok()),
            })
        });
        Some(Status {
            code: v
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500),
            reason: reason::ALL
                .iter()
                .copied()
                .find(|r| *r == got)
                .unwrap_or(""),
            message: text(v, "message"),
            details,
        })
    }
}

/// The result type of API operations.
pub type Result<T> = std::result::Result<T, Status>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{forbidden, invalid, required};
    use crate::resources::{DEPLOYMENTS, PODS};

    #[test]
    fn not_found_json_matches_kubernetes() {
        assert_eq!(
            Status::not_found(&DEPLOYMENTS, "web").to_json(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"deployments.apps \"web\" not found","reason":"NotFound",
                "details":{"name":"web","group":"apps","kind":"deployments"},"code":404})
        );
    }

    #[test]
    fn invalid_renders_message_causes_and_details() {
        let errs = [
            required("spec.containers[0].image", ""),
            invalid(
                "spec.replicas",
                "-1".into(),
                "must be greater than or equal to 0",
            ),
            required("spec.containers[0].image", ""),
        ];
        let s = Status::invalid_object(&PODS, "web", &errs);
        assert_eq!((s.code, s.reason), (422, "Invalid"));
        assert_eq!(
            s.message,
            "Pod \"web\" is invalid: [spec.containers[0].image: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]"
        );
        let j = s.to_json();
        assert_eq!(j["details"]["kind"], "Pod");
        assert!(j["details"].get("group").is_none(), "empty group left out");
        assert_eq!(
            j["details"]["causes"][1],
            json!({"reason":"FieldValueInvalid","field":"spec.replicas",
                "message":"Invalid value: -1: must be greater than or equal to 0"})
        );
        let o = Status::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[forbidden("resourceVersionMatch", "not here")],
        );
        assert_eq!(
            o.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: not here"
        );
        let d = o.with_details_kind("apps", "Deployment");
        let d = d.details.as_deref().cloned().unwrap_or_default();
        assert_eq!((d.group.as_str(), d.kind.as_str()), ("apps", "Deployment"));
        assert_eq!(d.causes.len(), 1);
    }

    #[test]
    fn unclassified_and_retry_after() {
        let j = Status::new(418, "", "teapot").to_json();
        assert!(j.get("reason").is_none());
        assert!(j.get("details").is_none());
        let j = Status::too_many_requests("slow").to_json();
        assert_eq!(j["details"], json!({"retryAfterSeconds": 1}));
        assert_eq!(j["reason"], "TooManyRequests");
        let j = Status::patch_failed("op 0 failed").to_json();
        assert_eq!(
            j["details"],
            json!({"causes": [{"message": "op 0 failed"}]})
        );
        assert_eq!(
            Status::conflict(&PODS, "a").to_string(),
            "Conflict (409): Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn a_status_reads_back_from_its_json() {
        let errs = [required("spec.containers[0].image", "")];
        for s in [
            Status::not_found(&DEPLOYMENTS, "web"),
            Status::invalid_object(&PODS, "p", &errs),
            Status::too_many_requests("slow"),
            Status::patch_failed("op 0 failed"),
            Status::conflict(&PODS, "a"),
        ] {
            assert_eq!(Status::from_json(&s.to_json()), Some(s));
        }
        let mut odd = Status::internal("x").to_json();
        odd["reason"] = json!("SomethingNew");
        assert_eq!(Status::from_json(&odd).map(|s| s.reason), Some(""));
        assert_eq!(Status::from_json(&json!({"kind": "Pod"})), None);
        let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success"});
        assert_eq!(Status::from_json(&ok), None);
    }
}
