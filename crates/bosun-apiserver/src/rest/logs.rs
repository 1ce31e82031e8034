//! `pods/<name>/log`: proxied to the kubelet of the pod's node.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::Shared;
use crate::error::{ApiResult, Status};
use crate::kinds::{self, Kind};

/// Query parameters the kubelet's log endpoint understands; others are not forwarded.
const FORWARDED: &[&str] = &[
    "follow",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "tailLines",
    "limitBytes",
];

fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Picks the container as Kubernetes does: the one named, or the only one.
pub fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> ApiResult<String> {
    let containers = names(pod.pointer("/spec/containers"));
    let inits = names(pod.pointer("/spec/initContainers"));
    let c = match requested.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => match containers.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(Status::bad_request(format!(
                    "a container name must be specified for pod {name}"
                )));
            }
            many => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                );
                if !inits.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        inits.join(" ")
                    ));
                }
                return Err(Status::bad_request(msg));
            }
        },
    };
    if !containers.contains(&c) && !inits.contains(&c) {
        return Err(Status::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    Ok(c)
}

/// `ValidatePodLogOptions`: a value that is no integer is a 400, a bad one a 422 Invalid
/// `PodLogOptions`.
pub fn validate_log_options(q: &HashMap<String, String>, name: &str) -> ApiResult<()> {
    use bosun_api::field;
    let tail = super::query::int_param(q, "tailLines")?;
    let limit = super::query::int_param(q, "limitBytes")?;
    let since_seconds = super::query::int_param(q, "sinceSeconds")?;
    let since_time = q.get("sinceTime").filter(|t| !t.is_empty());
    if let Some(t) = since_time
        && t.parse::<jiff::Timestamp>().is_err()
    {
        return Err(Status::bad_request(format!(
            "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {t:?} as \"2006\""
        )));
    }
    let mut errs = Vec::new();
    if let Some(t) = tail.filter(|t| *t < 0) {
        errs.push(field::invalid(
            "tailLines",
            t.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(b) = limit.filter(|b| *b < 1) {
        errs.push(field::invalid(
            "limitBytes",
            b.to_string(),
            "must be greater than 0",
        ));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => errs.push(field::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(s), None) if s < 1 => errs.push(field::invalid(
            "sinceSeconds",
            s.to_string(),
            "must be greater than 0",
        )),
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid("", "PodLogOptions", name, &errs))
    }
}

/// The kubelet's `host:port` from a node's status.
pub fn kubelet_address(node: &Value) -> Option<String> {
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .filter(|p| *p > 0)?;
    let addrs = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let by_type = |t: &str| {
        addrs
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|a| a.get("address").and_then(Value::as_str))
    };
    let host = by_type("InternalIP")
        .or_else(|| by_type("ExternalIP"))
        .or_else(|| by_type("Hostname"))?;
    if host.contains(':') {
        Some(format!("[{host}]:{port}"))
    } else {
        Some(format!("{host}:{port}"))
    }
}

/// The `host:port` of the kubelet of the node pod `name` is bound to, or Kubernetes' error:
/// BadRequest for a pod without a node, ServiceUnavailable for a node without an endpoint.
pub async fn pod_kubelet(s: &Arc<Shared>, pod: &Value, name: &str) -> ApiResult<String> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node_name.is_empty() {
        return Err(Status::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = s.registry.get(kinds::nodes(), "", node_name).await?;
    kubelet_address(&node).ok_or_else(|| {
        Status::unavailable(format!(
            "node {node_name} has no kubelet endpoint in its status"
        ))
    })
}

/// Serves a pod's log by proxying to its node's kubelet.
pub async fn pod_log(
    s: &Arc<Shared>,
    kind: &dyn Kind,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    validate_log_options(q, name)?;
    let pod = s.registry.get(kind, ns, name).await?;
    let container = pick_container(&pod, name, q.get("container").map(String::as_str))?;
    let addr = pod_kubelet(s, &pod, name).await?;
    let query: Vec<String> = FORWARDED
        .iter()
        .filter_map(|k| q.get(*k).map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    let url = format!(
        "http://{addr}/containerLogs/{ns}/{name}/{container}{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| Status::internal(format!("kubelet URL {url}: {e}")))?;
    let resp = s
        .kubelet_client
        .get(uri)
        .await
        .map_err(|e| Status::unavailable(format!("Get \"{url}\": {e}")))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if !status.is_success() {
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            resp.into_body(),
            MAX_ERROR_BODY,
        ))
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_else(|_| "unable to read the kubelet's answer".into());
        return Err(kubelet_error(status.as_u16(), name, body.trim()));
    }
    Ok((
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::new(resp.into_body()),
    )
        .into_response())
}

/// The kubelet's error answers are read up to this size.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A kubelet's error answer as kube-apiserver's `GenericHttpResponseChecker` turns it into a
/// `Status`: 400 keeps the kubelet's text as a BadRequest (`previous terminated container
/// "c" in pod "p" not found`), 500 is an internal error, others the generic server response
/// with the text as its cause.
pub fn kubelet_error(code: u16, pod: &str, text: &str) -> Status {
    match code {
        400 => Status::bad_request(text),
        500 => Status::internal(format!("Internal error occurred: {text}")),
        _ => {
            let (reason, message) = match code {
                404 => (
                    crate::error::reason::NOT_FOUND,
                    "the server could not find the requested resource".to_string(),
                ),
                422 => (
                    crate::error::reason::INVALID,
                    "the server rejected our request due to an error in our request".to_string(),
                ),
                429 => (
                    crate::error::reason::TOO_MANY_REQUESTS,
                    "the server has received too many requests and has asked us to try again later"
                        .to_string(),
                ),
                _ => (
                    "",
                    format!(
                        "an error on the server ({text:?}) has prevented the request from succeeding"
                    ),
                ),
            };
            Status {
                details: Some(Box::new(crate::error::Details {
                    name: pod.to_string(),
                    kind: "pods/log".to_string(),
                    causes: vec![crate::error::Cause {
                        reason: "UnexpectedServerResponse".to_string(),
                        message: text.to_string(),
                        field: String::new(),
                    }],
                    ..Default::default()
                })),
                ..Status::new(code, reason, format!("{message} ( pods/log {pod})"))
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_choice_and_errors() {
        let one = json!({"spec":{"containers":[{"name":"a"}]}});
        assert_eq!(pick_container(&one, "p", None).unwrap(), "a");
        let two = json!({"spec":{"containers":[{"name":"a"},{"name":"b"}],"initContainers":[{"name":"i"}]}});
        assert_eq!(
            pick_container(&two, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(pick_container(&two, "p", Some("i")).unwrap(), "i");
        assert_eq!(
            pick_container(&two, "p", Some("z")).unwrap_err().message,
            "container z is not valid for pod p"
        );
    }

    #[test]
    fn log_options_validated_as_kubernetes_does() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        validate_log_options(&q(&[("tailLines", "0"), ("sinceSeconds", "5")]), "p").unwrap();
        let e = validate_log_options(&q(&[("tailLines", "-5")]), "p").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                422,
                r#"PodLogOptions "p" is invalid: tailLines: Invalid value: -5: must be greater than or equal to 0"#
            )
        );
        let e = validate_log_options(&q(&[("limitBytes", "0")]), "p").unwrap_err();
        assert!(
            e.message
                .ends_with("limitBytes: Invalid value: 0: must be greater than 0")
        );
        let e = validate_log_options(
            &q(&[("sinceSeconds", "5"), ("sinceTime", "2024-01-01T00:00:00Z")]),
            "p",
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("at most one of `sinceTime` or `sinceSeconds` may be specified"),
            "{}",
            e.message
        );
        assert_eq!(
            validate_log_options(&q(&[("tailLines", "x")]), "p")
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn kubelet_errors_as_kube_apiserver_reports_them() {
        let e = kubelet_error(
            400,
            "p",
            r#"previous terminated container "c" in pod "p" not found"#,
        );
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            r#"previous terminated container "c" in pod "p" not found"#
        );
        let e = kubelet_error(404, "p", r#"pod "p" does not exist"#);
        assert_eq!((e.code, e.reason), (404, "NotFound"));
        assert_eq!(
            e.message,
            "the server could not find the requested resource ( pods/log p)"
        );
        assert_eq!(
            e.details.unwrap().causes[0].message,
            r#"pod "p" does not exist"#
        );
        assert_eq!(
            kubelet_error(500, "p", "x").message,
            "Internal error occurred: x"
        );
    }

    #[test]
    fn kubelet_address_from_node_status() {
        let n = json!({"status":{"addresses":[{"type":"Hostname","address":"n1"},{"type":"InternalIP","address":"127.0.0.1"}],
            "daemonEndpoints":{"kubeletEndpoint":{"Port":10250}}}});
        assert_eq!(kubelet_address(&n).unwrap(), "127.0.0.1:10250");
        assert!(kubelet_address(&json!({"status":{}})).is_none());
    }
}
