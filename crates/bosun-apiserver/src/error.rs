//! API errors: a failed request is a Kubernetes [`Status`] (built by `bosun-api`), sent
//! over REST as the HTTP code and the `Status` JSON, and over gRPC as a gRPC code with the
//! same JSON in the status details. Store errors become the `Status` Kubernetes would answer.

pub use bosun_api::status::{Cause, Details, Status, reason};

/// The result type of API operations.
pub type ApiResult<T> = Result<T, Status>;

/// The error for a failed store call.
pub fn from_store(e: bosun_client::Error) -> Status {
    use bosun_client::Error as E;
    match e {
        E::Compacted { .. } => Status::expired(e.to_string()),
        E::Timeout { .. } => Status::timeout(format!("store: {e}")),
        E::Unavailable { .. } | E::NoLeader => Status::unavailable(format!("store: {e}")),
        E::RequestTooLarge => Status::too_large(format!("Request entity too large: store: {e}")),
        // The store's gRPC layer refuses a message above its limit before reading it.
        E::Other { code, ref message }
            if matches!(
                code,
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ) && (message.contains("message length too large")
                || message.contains("larger than max")) =>
        {
            Status::too_large(format!("Request entity too large: store: {message}"))
        }
        other => Status::internal(format!("store: {other}")),
    }
}

/// The gRPC status of an API error: the code by HTTP status, the `Status` JSON in the
/// details.
pub fn to_grpc(e: &Status) -> tonic::Status {
    use tonic::Code;
    let code = match e.code {
        400 | 422 => Code::InvalidArgument,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 | 406 | 415 => Code::Unimplemented,
        409 if e.reason == reason::ALREADY_EXISTS => Code::AlreadyExists,
        409 => Code::Aborted,
        410 => Code::OutOfRange,
        413 | 429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    };
    let body = serde_json::to_vec(&e.to_json()).unwrap_or_default();
    tonic::Status::with_details(code, e.message.clone(), body.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_api::resources::by_plural;
    use serde_json::{Value, json};

    #[test]
    fn not_found_status_matches_kubernetes() {
        let Some(d) = by_plural("deployments") else {
            panic!("deployments served")
        };
        let s = Status::not_found(d, "web").to_json();
        assert_eq!(
            s,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"deployments.apps \"web\" not found","reason":"NotFound",
                "details":{"name":"web","group":"apps","kind":"deployments"},"code":404})
        );
        let g = to_grpc(&Status::not_found(d, "web"));
        assert_eq!(g.code(), tonic::Code::NotFound);
        let back: Value = serde_json::from_slice(g.details()).unwrap_or_default();
        assert_eq!(back, s);
    }

    #[test]
    fn conflict_message() {
        let Some(p) = by_plural("pods") else {
            panic!("pods served")
        };
        let e = Status::conflict(p, "a");
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(to_grpc(&e).code(), tonic::Code::Aborted);
        assert_eq!(
            to_grpc(&Status::already_exists(p, "a")).code(),
            tonic::Code::AlreadyExists
        );
    }
}
