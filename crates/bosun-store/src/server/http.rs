//! What the client port answers besides the etcd services: etcd's `/health`, and gRPC's
//! answers to calls of services and methods it does not serve.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bosun_proto::etcdserverpb::AlarmType;

use super::Replica;

/// etcd's `/health` (3.5): unhealthy while an alarm is raised (unless `?exclude=<ALARM>`
/// names it), while there is no leader, or when a read fails; `?serializable=true` checks
/// this member alone (no leader needed, a local read). 200 with the JSON when healthy; 503
/// with the JSON as Go's `http.Error` writes it otherwise.
pub async fn health(replica: &Replica, query: Option<String>) -> Response {
    let mut excluded = Vec::new();
    let mut serializable = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "exclude" if !v.is_empty() => excluded.push(v.into_owned()),
            "serializable" => serializable = v == "true",
            _ => {}
        }
    }
    let reason = unhealthy(replica, &excluded, serializable).await;
    match reason {
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "{\"health\":\"true\",\"reason\":\"\"}",
        )
            .into_response(),
        Some(reason) => {
            tracing::warn!(reason = %reason, "serving /health false");
            let body = serde_json::json!({ "health": "false", "reason": reason });
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                format!("{body}\n"),
            )
                .into_response()
        }
    }
}

/// Why the member is unhealthy, in etcd's words; `None` when it is healthy.
async fn unhealthy(replica: &Replica, excluded: &[String], serializable: bool) -> Option<String> {
    for a in replica.shared.alarms() {
        let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
        if excluded.iter().any(|e| e == name) {
            continue;
        }
        return Some(
            match AlarmType::try_from(a.alarm) {
                Ok(AlarmType::Nospace) => "ALARM NOSPACE",
                Ok(AlarmType::Corrupt) => "ALARM CORRUPT",
                _ => "ALARM UNKNOWN",
            }
            .to_string(),
        );
    }
    if !serializable && !replica.has_leader() {
        return Some("RAFT NO LEADER".into());
    }
    let read = if serializable {
        Ok(())
    } else {
        replica.read_barrier().await
    };
    match read.and_then(|()| {
        replica
            .shared
            .mvcc
            .range(&bosun_proto::etcdserverpb::RangeRequest {
                key: b"health".to_vec(),
                keys_only: true,
                limit: 1,
                ..Default::default()
            })
    }) {
        Ok(_) => None,
        Err(e) => Some(format!("RANGE ERROR:{e}")),
    }
}

/// A gRPC call (content type `application/grpc...`) of a service or method not served gets
/// grpc-go's answer, as from etcd: UNIMPLEMENTED with "unknown service S", "unknown method M
/// for service S", or "malformed method name" for a path that names no method; never an HTTP
/// error or a route of the HTTP endpoints. `services` are the services served.
pub async fn grpc_unknown(services: &[&str], req: Request, next: Next) -> Response {
    if !crate::listen::is_grpc(req.headers()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let full = path.strip_prefix('/').unwrap_or(&path);
    let Some((service, method)) = full.rsplit_once('/') else {
        return unimplemented(format!("malformed method name: {path:?}"));
    };
    let (service, method) = (service.to_string(), method.to_string());
    let resp = next.run(req).await;
    // The router and the generated services answer an unknown route with a bare
    // UNIMPLEMENTED; anything with a message is a handler's own answer.
    let bare = resp.headers().get("grpc-status") == Some(&HeaderValue::from_static("12"))
        && !resp.headers().contains_key("grpc-message");
    if !bare {
        return resp;
    }
    if services.contains(&service.as_str()) {
        unimplemented(format!("unknown method {method} for service {service}"))
    } else {
        unimplemented(format!("unknown service {service}"))
    }
}

fn unimplemented(msg: String) -> Response {
    tonic::Status::unimplemented(msg)
        .into_http::<axum::body::Body>()
        .into_response()
}
