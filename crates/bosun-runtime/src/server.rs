//! The component server: every Bosun component (controller-manager, scheduler, kubelet) serves
//! `/metrics` (Prometheus text format), `/healthz`, `/livez` and `/readyz` on a port of its
//! own, as Kubernetes' components do (kube-controller-manager on 10257, kube-scheduler on
//! 10259, the kubelet's healthz on 10248).
//!
//! Health is a set of named checks that the component's tasks set and clear
//! ([`Health::set`]); `/healthz` answers 200 `ok` when every check passes, and 500 naming the
//! failing ones otherwise (`?verbose` lists every check, as Kubernetes' healthz does).
//! `/readyz` also waits for [`Health::set_ready`] (caches synced, for example).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::info;

/// Named health checks and readiness, shared by a component's tasks and its server.
#[derive(Debug, Default)]
pub struct Health {
    checks: Mutex<BTreeMap<String, Result<(), String>>>,
    ready: Mutex<bool>,
}

impl Health {
    /// A new set of checks, none registered, not ready.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Records the outcome of check `name` (registered on first use).
    pub fn set(&self, name: &str, outcome: Result<(), String>) {
        self.checks.lock().insert(name.to_owned(), outcome);
    }

    /// Marks the component ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        *self.ready.lock() = ready;
    }

    /// Whether every check passes.
    pub fn healthy(&self) -> bool {
        self.checks.lock().values().all(Result::is_ok)
    }

    /// Kubernetes' healthz report: one `[+]name ok` or `[-]name failed: reason` line per
    /// check, then `healthz check passed` or `healthz check failed`.
    fn report(&self, what: &str, extra: Option<(&str, bool)>) -> (bool, String) {
        let checks = self.checks.lock();
        let mut ok = true;
        let mut out = String::new();
        let mut line = |name: &str, outcome: Result<(), &str>| match outcome {
            Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => {
                ok = false;
                out.push_str(&format!("[-]{name} failed: {reason}\n"));
            }
        };
        for (name, outcome) in checks.iter() {
            line(name, outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
        if let Some((name, passed)) = extra {
            line(name, if passed { Ok(()) } else { Err("not yet") });
        }
        out.push_str(&format!(
            "{what} check {}\n",
            if ok { "passed" } else { "failed" }
        ));
        (ok, out)
    }
}

/// What the server shows: the metrics registry (filled by the component before it serves)
/// and the health checks.
#[derive(Debug, Clone)]
pub struct Served {
    /// Metrics, encoded on each scrape.
    pub registry: Arc<RwLock<Registry>>,
    /// Health checks and readiness.
    pub health: Arc<Health>,
}

/// `?verbose`: list every check even when all pass.
#[derive(Debug, serde::Deserialize)]
struct Verbose {
    verbose: Option<String>,
}

fn health_response(served: &Served, what: &str, ready_too: bool, verbose: bool) -> Response {
    let ready = *served.health.ready.lock();
    let extra = ready_too.then_some(("ready", ready));
    let (ok, report) = served.health.report(what, extra);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = if ok && !verbose {
        "ok".to_owned()
    } else {
        report
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn metrics(State(served): State<Served>) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &served.registry.read()) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// The router of the component server, for tests and for components that add routes.
pub fn router(served: Served) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(
                |State(s): State<Served>, Query(q): Query<Verbose>| async move {
                    health_response(&s, "healthz", false, q.verbose.is_some())
                },
            ),
        )
        .route(
            "/livez",
            get(
                |State(s): State<Served>, Query(q): Query<Verbose>| async move {
                    health_response(&s, "livez", false, q.verbose.is_some())
                },
            ),
        )
        .route(
            "/readyz",
            get(
                |State(s): State<Served>, Query(q): Query<Verbose>| async move {
                    health_response(&s, "readyz", true, q.verbose.is_some())
                },
            ),
        )
        .with_state(served)
}

/// Serves `router` on `addr` until `shutdown` becomes true.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the component server on {addr}"))?;
    info!(%addr, "serving /metrics and /healthz");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
        .context("serve /metrics and /healthz")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let resp = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_follows_the_checks_and_readiness() {
        let health = Health::new();
        let mut registry = Registry::default();
        let syncs = Counter::<u64>::default();
        registry.register("syncs", "Syncs done", syncs.clone());
        syncs.inc();
        let router = router(Served {
            registry: Arc::new(RwLock::new(registry)),
            health: health.clone(),
        });

        assert_eq!(
            get(&router, "/healthz").await,
            (StatusCode::OK, "ok".into())
        );
        let (code, body) = get(&router, "/readyz").await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("[-]ready failed: not yet"), "{body}");

        health.set_ready(true);
        health.set("leader-election", Err("lease renewal failed".into()));
        let (code, body) = get(&router, "/healthz").await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            body.contains("[-]leader-election failed: lease renewal failed"),
            "{body}"
        );
        assert!(body.ends_with("healthz check failed\n"), "{body}");

        health.set("leader-election", Ok(()));
        assert_eq!(get(&router, "/readyz").await, (StatusCode::OK, "ok".into()));
        let (_, verbose) = get(&router, "/healthz?verbose").await;
        assert_eq!(
            verbose,
            "[+]leader-election ok\nhealthz check passed\n".to_owned()
        );

        let (code, metrics) = get(&router, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(metrics.contains("syncs_total 1"), "{metrics}");
    }
}
