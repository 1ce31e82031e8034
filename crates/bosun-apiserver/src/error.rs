//! API errors as Kubernetes `Status` objects, for REST (HTTP status + JSON body) and gRPC
//! (a gRPC code + the same JSON in the status details).

use serde_json::{Value, json};

use crate::resources::Resource;

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

/// A failed API request: everything needed to build its `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
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

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(res: &Resource, name: &str) -> Option<Box<Details>> {
    Some(Box::new(Details {
        name: name.to_string(),
        group: res.group.to_string(),
        kind: res.plural.to_string(),
        ..Details::default()
    }))
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for an object.
    pub fn not_found(res: &Resource, name: &str) -> Self {
        ApiError {
            details: details(res, name),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{}\" not found", res.qualified(), name),
            )
        }
    }

    /// 404 for a path that names nothing served.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 on create of an existing name.
    pub fn already_exists(res: &Resource, name: &str) -> Self {
        ApiError {
            details: details(res, name),
            ..Self::new(
                409,
                "AlreadyExists",
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
        ApiError {
            details: details(res, name),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {}",
                    res.qualified(),
                    name,
                    why
                ),
            )
        }
    }

    /// 422 with field causes; `message` is the full "Kind \"name\" is invalid: ..." text.
    pub fn invalid(res: &Resource, name: &str, message: String, causes: Vec<Cause>) -> Self {
        Self::invalid_kind(res.group, res.kind, name, message, causes)
    }

    /// 422 with field causes for any kind (request options such as `ListOptions` too).
    pub fn invalid_kind(
        group: &str,
        kind: &str,
        name: &str,
        message: String,
        causes: Vec<Cause>,
    ) -> Self {
        ApiError {
            details: Some(Box::new(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: kind.to_string(),
                causes,
                retry_after_seconds: None,
            })),
            ..Self::new(422, "Invalid", message)
        }
    }

    /// 422 for a patch that cannot be applied to the object.
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 422 for a JSON patch whose operations fail. Kubernetes answers these with a generic
    /// server response, whose message drops the reason; Bosun keeps it as the one cause.
    pub fn patch_failed(why: impl Into<String>) -> Self {
        ApiError {
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
                "Invalid",
                "the server rejected our request due to an error in our request",
            )
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403.
    pub fn forbidden(res: &Resource, name: &str, why: &str) -> Self {
        ApiError {
            details: details(res, name),
            ..Self::new(
                403,
                "Forbidden",
                format!("{} \"{}\" is forbidden: {}", res.qualified(), name, why),
            )
        }
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 410: the requested version has been compacted away; the client must re-list.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    /// 415.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 406.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 429: a watch client that could not keep up; resume from the last version received.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        ApiError {
            details: Some(Box::new(Details {
                retry_after_seconds: Some(1),
                ..Details::default()
            })),
            ..Self::new(429, "TooManyRequests", message)
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 503: the store is unreachable or the kubelet cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504: the store did not answer in time (the write may or may not have happened).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The error for a failed store call.
    pub fn from_store(e: bosun_client::Error) -> Self {
        use bosun_client::Error as E;
        match e {
            E::Compacted { .. } => Self::expired(e.to_string()),
            E::Timeout { .. } => Self::timeout(format!("store: {e}")),
            E::Unavailable { .. } | E::NoLeader => Self::unavailable(format!("store: {e}")),
            E::RequestTooLarge => Self::too_large(format!("Request entity too large: store: {e}")),
            // The store's gRPC layer refuses a message above its limit before reading it.
            E::Other { code, ref message }
                if matches!(
                    code,
                    tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
                ) && (message.contains("message length too large")
                    || message.contains("larger than max")) =>
            {
                Self::too_large(format!("Request entity too large: store: {message}"))
            }
            other => Self::internal(format!("store: {other}")),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
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

    /// The gRPC status: code by HTTP status, the `Status` JSON in the details.
    pub fn to_grpc(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self.code {
            400 | 422 => Code::InvalidArgument,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            405 | 406 | 415 => Code::Unimplemented,
            409 if self.reason == "AlreadyExists" => Code::AlreadyExists,
            409 => Code::Aborted,
            410 => Code::OutOfRange,
            413 | 429 => Code::ResourceExhausted,
            503 => Code::Unavailable,
            504 => Code::DeadlineExceeded,
            _ => Code::Internal,
        };
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        tonic::Status::with_details(code, self.message.clone(), body.into())
    }
}

/// The result type of API operations.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_plural;

    #[test]
    fn not_found_status_matches_kubernetes() {
        let Some(d) = by_plural("deployments") else {
            panic!("deployments served")
        };
        let s = ApiError::not_found(d, "web").to_status();
        assert_eq!(
            s,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"deployments.apps \"web\" not found","reason":"NotFound",
                "details":{"name":"web","group":"apps","kind":"deployments"},"code":404})
        );
        let g = ApiError::not_found(d, "web").to_grpc();
        assert_eq!(g.code(), tonic::Code::NotFound);
        let back: Value = serde_json::from_slice(g.details()).unwrap_or_default();
        assert_eq!(back, s);
    }

    #[test]
    fn conflict_message() {
        let Some(p) = by_plural("pods") else {
            panic!("pods served")
        };
        let e = ApiError::conflict(p, "a");
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(e.to_grpc().code(), tonic::Code::Aborted);
        assert_eq!(
            ApiError::already_exists(p, "a").to_grpc().code(),
            tonic::Code::AlreadyExists
        );
    }
}
