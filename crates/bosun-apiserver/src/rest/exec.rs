//! `pods/<name>/exec`: the upgraded connection (SPDY/3.1, or a WebSocket the runtime
//! speaks) proxied to the kubelet of the pod's node, as kube-apiserver's
//! `UpgradeAwareHandler` does. Bytes pass as they are; the kubelet proxies them on to the
//! container runtime's streaming server.
//!
//! A WebSocket asking only `v5.channel.k8s.io` (kubectl >= 1.30) is refused with a 400
//! before anything else: containerd 1.6 speaks at most v4, and on a non-101 answer kubectl
//! falls back to SPDY, which every kubectl speaks (ARCHITECTURE.md says why this and not a
//! WebSocket bridge).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use super::logs::{pick_container, pod_kubelet};
use super::{error_response, parse_path};
use crate::Shared;
use crate::error::{ApiResult, Status};
use crate::kinds;

/// The WebSocket protocols containerd's streaming server speaks (`""`: unversioned).
const WEBSOCKET_PROTOCOLS: &[&str] = &[
    "",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
];

/// How long dialling the kubelet and reading its answer may take.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// Exec sessions proxied at once. An upgraded connection leaves the listener's accounting
/// (`--max-connections`) once hyper hands it over, so it is bounded here; more get 429.
const MAX_SESSIONS: usize = 1024;
static SESSIONS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_SESSIONS);

/// Serves `pods/<name>/exec` ahead of the other resource paths (it needs the whole request,
/// to take its connection over); everything else goes on.
pub async fn intercept(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let target = match parse_path(req.uri().path()) {
        Ok(Ok(t)) if t.sub == "exec" && t.name.is_some() => t,
        _ => return next.run(req).await,
    };
    s.metrics.request(req.method().as_str());
    let ns = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    match pod_exec(&s, target.kind, &ns, &name, req).await {
        Ok(r) => r,
        Err(e) => {
            s.metrics.error(e.code);
            error_response(&e)
        }
    }
}

/// Why a WebSocket upgrade is refused: it asks only protocols the runtime does not speak.
pub fn websocket_refusal(headers: &HeaderMap) -> Option<String> {
    let is_ws = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        });
    if !is_ws {
        return None;
    }
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() || offered.iter().any(|p| WEBSOCKET_PROTOCOLS.contains(p)) {
        return None;
    }
    Some(format!(
        "websocket protocol(s) {offered:?} are not supported: the container runtime streams {:?} over WebSocket, and SPDY/3.1",
        &WEBSOCKET_PROTOCOLS[1..]
    ))
}

/// `PodExecOptions` from the query, as the apiserver's parameter codec reads them, and
/// the kubelet's query for them (`command` repeated, `input`/`output`/`error`/`tty` = 1).
pub fn kubelet_exec_query(pairs: &[(String, String)]) -> (Option<String>, Vec<String>, String) {
    // Convert_Slice_string_To_bool: the first value; "0" and "false" are false.
    let flag = |k: &str| {
        pairs
            .iter()
            .find(|(kk, _)| kk == k)
            .is_some_and(|(_, v)| v != "0" && !v.eq_ignore_ascii_case("false"))
    };
    let container = pairs
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.clone());
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let mut q: Vec<String> = command
        .iter()
        .map(|c| format!("command={}", urlencode(c)))
        .collect();
    for (api, kubelet) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        if flag(api) {
            q.push(format!("{kubelet}=1"));
        }
    }
    (container, command, q.join("&"))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn pod_exec(
    s: &Arc<Shared>,
    kind: &'static dyn kinds::Kind,
    ns: &str,
    name: &str,
    req: Request,
) -> ApiResult<Response> {
    let (mut parts, _body) = req.into_parts();
    if parts.method != Method::GET && parts.method != Method::POST {
        return Err(Status::method_not_allowed(format!(
            "{} is not supported on pods/exec: use GET or POST",
            parts.method
        )));
    }
    if let Some(why) = websocket_refusal(&parts.headers) {
        return Err(Status::bad_request(why));
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map_err(|e| Status::bad_request(e.body_text()))?;
    let (requested, _command, query) = kubelet_exec_query(&pairs);
    let pod = s.registry.get(kind, ns, name).await?;
    let container = pick_container(&pod, name, requested.as_deref())?;
    let addr = pod_kubelet(s, &pod, name).await?;
    let Ok(permit) = SESSIONS.try_acquire() else {
        return Err(Status::new(
            429,
            crate::error::reason::TOO_MANY_REQUESTS,
            format!("too many exec sessions at once (at most {MAX_SESSIONS})"),
        ));
    };
    let path = format!("/exec/{ns}/{name}/{container}?{query}");
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    proxy_upgrade(
        parts.method.clone(),
        &parts.headers,
        on_upgrade,
        &addr,
        &path,
        permit,
    )
    .await
    .map_err(|e| Status::unavailable(format!("error dialing backend: {e}")))
}

/// Sends the request (method and headers as received, upgrade headers included) to the
/// kubelet; a `101` is relayed and both upgraded connections joined byte for byte until
/// both ends close; any other answer goes back as it is.
async fn proxy_upgrade(
    method: Method,
    headers: &HeaderMap,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    authority: &str,
    path: &str,
    permit: tokio::sync::SemaphorePermit<'static>,
) -> Result<Response, String> {
    let dial = async {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("dial tcp {authority}: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut b = axum::http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            // The kubelet gets no credentials of the client's.
            if k != header::HOST
                && k != header::CONTENT_LENGTH
                && k != header::TRANSFER_ENCODING
                && k != header::AUTHORIZATION
            {
                b = b.header(k, v);
            }
        }
        let req = b
            .header(header::HOST, authority)
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        send.send_request(req).await.map_err(|e| e.to_string())
    };
    let resp = tokio::time::timeout(UPGRADE_TIMEOUT, dial)
        .await
        .map_err(|_| format!("{authority}: no answer within {UPGRADE_TIMEOUT:?}"))??;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(resp.map(Body::new));
    }
    let Some(client_side) = on_upgrade else {
        return Err("the client's connection cannot be upgraded".into());
    };
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers() {
        answer = answer.header(k, v);
    }
    let answer = answer.body(Body::empty()).map_err(|e| e.to_string())?;
    let kubelet = authority.to_string();
    tokio::spawn(async move {
        let _permit = permit;
        let (client, server) = tokio::join!(client_side, hyper::upgrade::on(resp));
        match (client, server) {
            (Ok(c), Ok(s)) => {
                let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut s).await {
                    debug!(%kubelet, error = %e, "exec stream ended");
                }
            }
            (c, s) => warn!(%kubelet, client = ?c.err(), server = ?s.err(), "exec upgrade failed"),
        }
    });
    Ok(answer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exec_options_become_the_kubelets_query() {
        let (c, cmd, q) = kubelet_exec_query(&pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo a&b; exit 3"),
            ("container", "c"),
            ("stdin", "true"),
            ("stdout", "true"),
            ("stderr", "false"),
            ("tty", "0"),
        ]));
        assert_eq!(c.as_deref(), Some("c"));
        assert_eq!(cmd.len(), 3);
        assert_eq!(
            q,
            "command=sh&command=-c&command=echo%20a%26b%3B%20exit%203&input=1&output=1"
        );
        let (c, _, q) =
            kubelet_exec_query(&pairs(&[("command", "ls"), ("stdout", ""), ("tty", "1")]));
        assert_eq!((c, q.as_str()), (None, "command=ls&output=1&tty=1"));
    }

    #[test]
    fn websocket_v5_alone_is_refused_so_kubectl_falls_back_to_spdy() {
        let ws = |p: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
            h
        };
        assert!(websocket_refusal(&ws("v5.channel.k8s.io")).is_some());
        assert!(websocket_refusal(&ws("v5.channel.k8s.io,v4.channel.k8s.io")).is_none());
        let mut spdy = HeaderMap::new();
        spdy.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(websocket_refusal(&spdy).is_none());
    }
}
