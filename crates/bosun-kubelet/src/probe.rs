//! Liveness, readiness and startup probes, and the container lifecycle hooks (postStart,
//! preStop), as Kubernetes' `pkg/kubelet/prober` and `pkg/kubelet/lifecycle` run them.
//!
//! - [`Params`] and [`Tracker`] are pure: a probe's settings with Kubernetes' defaults, and
//!   the worker's state machine (initial value per probe type, success and failure
//!   thresholds, "on hold" after a liveness or startup failure until a new container).
//! - [`Action`] is pure too: what one probe or hook does (exec, HTTP(S) GET, TCP connect, gRPC
//!   health check, sleep), resolved from the spec, the pod IP and the container's ports.
//! - [`run_action`] performs it once, with its timeout; exec goes through [`ContainerExec`]
//!   (CRI `ExecSync` in the kubelet).
//! - [`ProbeManager`] keeps one worker task per (container, probe type) that has a probe,
//!   records `Unhealthy` events, and wakes the pod's sync (by uid) when a result changes;
//!   the runtime asks it whether a container is ready, started, or failed its liveness probe.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::events::{Recorder, object_ref};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::{mpsc, watch};
use tracing::debug;

/// The three kinds of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeType {
    /// Restarts the container when it fails.
    Liveness,
    /// Gates the container's (and so the pod's) Ready condition.
    Readiness,
    /// Holds the other two until it succeeds once.
    Startup,
}

impl ProbeType {
    /// As events name it: `Liveness probe failed: ...`.
    pub fn title(self) -> &'static str {
        match self {
            ProbeType::Liveness => "Liveness",
            ProbeType::Readiness => "Readiness",
            ProbeType::Startup => "Startup",
        }
    }

    /// The container's probe of this type.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeType::Liveness => c.liveness_probe.as_ref(),
            ProbeType::Readiness => c.readiness_probe.as_ref(),
            ProbeType::Startup => c.startup_probe.as_ref(),
        }
    }

    /// What a container has before its first probe: liveness passes, readiness fails,
    /// startup is unknown (kubelet's `worker.initialValue`).
    pub fn initial(self) -> ProbeResult {
        match self {
            ProbeType::Liveness => ProbeResult::Success,
            ProbeType::Readiness => ProbeResult::Failure,
            ProbeType::Startup => ProbeResult::Unknown,
        }
    }
}

/// The outcome of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Passed.
    Success,
    /// Failed.
    Failure,
    /// Not known yet.
    Unknown,
}

/// A probe's settings, with Kubernetes' defaults for what the spec leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10).
    pub period: Duration,
    /// `timeoutSeconds` (1).
    pub timeout: Duration,
    /// `successThreshold` (1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64, min: u64) -> Duration {
    Duration::from_secs(
        v.and_then(|s| u64::try_from(s).ok())
            .unwrap_or(default)
            .max(min),
    )
}

fn count(v: Option<i32>, default: u32) -> u32 {
    v.and_then(|s| u32::try_from(s).ok())
        .filter(|s| *s > 0)
        .unwrap_or(default)
}

impl Params {
    /// The settings of `probe` used as a `kind` probe.
    pub fn of(probe: &Probe, kind: ProbeType) -> Params {
        let success = match kind {
            ProbeType::Readiness => count(probe.success_threshold, 1),
            ProbeType::Liveness | ProbeType::Startup => 1,
        };
        Params {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: success,
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// One probe worker's state (kubelet's `worker`: `lastResult`, `resultRun`, `onHold`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    kind: ProbeType,
    params: Params,
    /// The result the kubelet acts on.
    pub result: ProbeResult,
    last: Option<ProbeResult>,
    run: u32,
    on_hold: bool,
}

impl Tracker {
    /// A worker for a new container.
    pub fn new(kind: ProbeType, params: Params) -> Tracker {
        Tracker {
            kind,
            params,
            result: kind.initial(),
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// Whether it waits for a new container (after a liveness or startup failure).
    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// Records one probe's outcome; returns the new acted-on result when it changed.
    pub fn observe(&mut self, outcome: ProbeResult) -> Option<ProbeResult> {
        if self.on_hold {
            return None;
        }
        if self.last == Some(outcome) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(outcome);
            self.run = 1;
        }
        if (outcome == ProbeResult::Failure && self.run < self.params.failure_threshold)
            || (outcome == ProbeResult::Success && self.run < self.params.success_threshold)
        {
            return None;
        }
        let before = self.result;
        self.result = outcome;
        if outcome == ProbeResult::Failure
            && matches!(self.kind, ProbeType::Liveness | ProbeType::Startup)
        {
            // The container will be restarted: stop probing it (kubelet's onHold).
            self.on_hold = true;
            self.run = 0;
        }
        (before != outcome).then_some(outcome)
    }
}

/// What one probe or hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container (`ExecSync`); exit code 0 passes.
    Exec(Vec<String>),
    /// `GET url` with `headers`; a status in 200..400 passes.
    Http {
        /// `http://host:port/path`.
        url: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// Connect to `host:port`.
    Tcp(String),
    /// The gRPC health service at `http://host:port`, for `service`.
    Grpc {
        /// `http://host:port`.
        endpoint: String,
        /// The service name ("" for the server as a whole).
        service: String,
    },
    /// Wait this long (the `sleep` hook).
    Sleep(Duration),
    /// The spec cannot be run: why.
    Invalid(String),
}

/// A port of the container: a number, or the name of one of its ports.
fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port number: {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<i32>() {
                return resolve_port(&IntOrString::Int(n), c);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", c.name))
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn http_action(h: &HTTPGetAction, pod_ip: &str, c: &Container) -> Action {
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Action::Invalid(format!("unsupported scheme: {:?}", scheme.to_uppercase()));
    }
    let port = match resolve_port(&h.port, c) {
        Ok(p) => p,
        Err(e) => return Action::Invalid(e),
    };
    let host = h
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_ip);
    let path = h.path.as_deref().unwrap_or("");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Action::Http {
        url: format!("{scheme}://{}{path}", host_port(host, port)),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    }
}

fn tcp_action(t: &TCPSocketAction, pod_ip: &str, c: &Container) -> Action {
    match resolve_port(&t.port, c) {
        Ok(p) => Action::Tcp(host_port(
            t.host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or(pod_ip),
            p,
        )),
        Err(e) => Action::Invalid(e),
    }
}

fn exec_action(e: &ExecAction) -> Action {
    match e.command.as_deref() {
        Some(cmd) if !cmd.is_empty() => Action::Exec(cmd.to_vec()),
        _ => Action::Invalid("exec: no command".into()),
    }
}

fn grpc_action(g: &GRPCAction, pod_ip: &str) -> Action {
    match u16::try_from(g.port).ok().filter(|p| *p > 0) {
        Some(p) => Action::Grpc {
            endpoint: format!("http://{}", host_port(pod_ip, p)),
            service: g.service.clone().unwrap_or_default(),
        },
        None => Action::Invalid(format!("invalid port number: {}", g.port)),
    }
}

/// What `probe` does for container `c` of a pod at `pod_ip`.
pub fn probe_action(probe: &Probe, pod_ip: &str, c: &Container) -> Action {
    if let Some(e) = &probe.exec {
        exec_action(e)
    } else if let Some(h) = &probe.http_get {
        http_action(h, pod_ip, c)
    } else if let Some(t) = &probe.tcp_socket {
        tcp_action(t, pod_ip, c)
    } else if let Some(g) = &probe.grpc {
        grpc_action(g, pod_ip)
    } else {
        Action::Invalid("missing probe handler".into())
    }
}

/// What a lifecycle hook does for container `c` of a pod at `pod_ip`.
pub fn hook_action(h: &LifecycleHandler, pod_ip: &str, c: &Container) -> Action {
    if let Some(e) = &h.exec {
        exec_action(e)
    } else if let Some(g) = &h.http_get {
        http_action(g, pod_ip, c)
    } else if let Some(t) = &h.tcp_socket {
        tcp_action(t, pod_ip, c)
    } else if let Some(s) = &h.sleep {
        Action::Sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)))
    } else {
        Action::Invalid("missing lifecycle handler".into())
    }
}

/// The outcome of an exec in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code.
    pub exit_code: i32,
    /// stdout then stderr.
    pub output: String,
}

/// A boxed future, so that [`ContainerExec`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs a command in a container (CRI `ExecSync` in the kubelet).
pub trait ContainerExec: Send + Sync + 'static {
    /// Runs `cmd` in container `id` (the CRI id), giving up after `timeout`.
    fn exec_sync<'a>(
        &'a self,
        id: &'a str,
        cmd: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, String>>;
}

impl ContainerExec for crate::cri::CriClient {
    fn exec_sync<'a>(
        &'a self,
        id: &'a str,
        cmd: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, String>> {
        Box::pin(async move {
            let req = k8s_cri::v1::ExecSyncRequest {
                container_id: id.to_string(),
                cmd: cmd.to_vec(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            };
            let mut rt = self.runtime.clone();
            let mut request = tonic::Request::new(req);
            // The runtime's own timeout, plus room for the call.
            request.set_timeout(timeout + Duration::from_secs(2));
            match rt.exec_sync(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let mut output = String::from_utf8_lossy(&r.stdout).into_owned();
                    output.push_str(&String::from_utf8_lossy(&r.stderr));
                    Ok(ExecOutput {
                        exit_code: r.exit_code,
                        output,
                    })
                }
                Err(s) if s.code() == tonic::Code::DeadlineExceeded => Err(format!(
                    "command {cmd:?} timed out after {}s",
                    timeout.as_secs()
                )),
                Err(s) => Err(s.message().to_string()),
            }
        })
    }
}

/// The longest probe output kept for events and hook errors (kubelet keeps 10 KiB).
const MAX_OUTPUT: usize = 10 * 1024;

fn cut(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The client of httpGet probes and hooks: HTTP, and HTTPS without verifying the server's
/// certificate, as Kubernetes' prober (`InsecureSkipVerify`); no connection is kept.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A new [`HttpClient`].
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    // ring's provider is deprecated for its lack of post-quantum key exchange, which a
    // health check does not need; the alternative (aws-lc-rs) needs cmake to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring's provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipCertificateCheck(provider)))
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https)
}

/// Accepts any server certificate (a probe checks health, not identity, and pods' serving
/// certificates are rarely issued for their IPs); the handshake's signatures are still
/// checked against the certificate's key.
#[derive(Debug)]
struct SkipCertificateCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Runs `action` once in container `container_id`; the result and its message (the
/// output, or why it failed). `Unknown` is a probe that could not be run at all.
pub async fn run_action(
    exec: &dyn ContainerExec,
    http: &HttpClient,
    container_id: &str,
    action: &Action,
    timeout: Duration,
) -> (ProbeResult, String) {
    match action {
        Action::Exec(cmd) => match exec.exec_sync(container_id, cmd, timeout).await {
            Ok(o) if o.exit_code == 0 => (ProbeResult::Success, cut(o.output)),
            Ok(o) => (ProbeResult::Failure, cut(o.output)),
            Err(e) => (ProbeResult::Failure, e),
        },
        Action::Http { url, headers } => {
            let mut req = hyper::Request::get(url.as_str())
                .header(hyper::header::USER_AGENT, "kube-probe/1.33")
                .header(hyper::header::ACCEPT, "*/*");
            for (k, v) in headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = match req.body(Empty::new()) {
                Ok(r) => r,
                Err(e) => return (ProbeResult::Failure, format!("Get {url:?}: {e}")),
            };
            match tokio::time::timeout(timeout, http.request(req)).await {
                Err(_) => (
                    ProbeResult::Failure,
                    format!(
                        "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                    ),
                ),
                Ok(Err(e)) => (
                    ProbeResult::Failure,
                    format!("Get {url:?}: {}", connect_error(&e, url)),
                ),
                Ok(Ok(resp)) => {
                    let code = resp.status().as_u16();
                    // Read (a bounded part of) the body, as the prober does for its message.
                    let body = tokio::time::timeout(timeout, resp.into_body().collect())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|b| cut(String::from_utf8_lossy(&b.to_bytes()).into_owned()))
                        .unwrap_or_default();
                    if (200..400).contains(&code) {
                        (ProbeResult::Success, body)
                    } else {
                        (
                            ProbeResult::Failure,
                            format!("HTTP probe failed with statuscode: {code}"),
                        )
                    }
                }
            }
        }
        Action::Tcp(addr) => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await
            {
                Ok(Ok(_)) => (ProbeResult::Success, String::new()),
                Ok(Err(e)) => (ProbeResult::Failure, dial_error(addr, &e)),
                Err(_) => (
                    ProbeResult::Failure,
                    format!("dial tcp {addr}: i/o timeout"),
                ),
            }
        }
        Action::Grpc { endpoint, service } => grpc_check(endpoint, service, timeout).await,
        Action::Sleep(d) => {
            tokio::time::sleep(*d).await;
            (ProbeResult::Success, String::new())
        }
        Action::Invalid(why) => (ProbeResult::Unknown, why.clone()),
    }
}

/// Go's wording for a failed dial: `dial tcp 10.88.0.5:8080: connect: connection refused`.
fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::HostUnreachable => "no route to host".to_string(),
        std::io::ErrorKind::NetworkUnreachable => "network is unreachable".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: connect: {what}")
}

fn connect_error(e: &hyper_util::client::legacy::Error, url: &str) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let addr = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .and_then(|r| r.split('/').next())
                .unwrap_or(url);
            return dial_error(addr, io);
        }
        src = s.source();
    }
    e.to_string()
}

async fn grpc_check(endpoint: &str, service: &str, timeout: Duration) -> (ProbeResult, String) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.to_string()) {
        Ok(e) => e.timeout(timeout).connect_timeout(timeout),
        Err(e) => return (ProbeResult::Failure, e.to_string()),
    };
    let channel = match channel.connect().await {
        Ok(c) => c,
        Err(e) => {
            return (
                ProbeResult::Failure,
                format!(
                    "timeout: failed to connect service {:?} within {}s: {e}",
                    endpoint.trim_start_matches("http://"),
                    timeout.as_secs()
                ),
            );
        }
    };
    let mut client = HealthClient::new(channel);
    match client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
    {
        Ok(r) => {
            let status = r.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                (ProbeResult::Success, String::new())
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("UNKNOWN");
                (
                    ProbeResult::Failure,
                    format!("service unhealthy (responded with {name:?})"),
                )
            }
        }
        Err(s) => (
            ProbeResult::Failure,
            format!("rpc error: code = {:?} desc = {}", s.code(), s.message()),
        ),
    }
}

/// Runs a lifecycle hook; `Err` carries Kubernetes' message for the
/// `FailedPostStartHook` / `FailedPreStopHook` event.
pub async fn run_hook(
    exec: &dyn ContainerExec,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    pod_ip: &str,
    handler: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    let action = hook_action(handler, pod_ip, c);
    let http = http_client();
    let (result, msg) = run_action(exec, &http, container_id, &action, timeout).await;
    if result == ProbeResult::Success {
        return Ok(());
    }
    let pod_name = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    Err(match &action {
        Action::Exec(cmd) => format!(
            "Exec lifecycle hook ({cmd:?}) for Container {:?} in Pod {pod_name:?} failed - error: {msg}",
            c.name
        ),
        Action::Http { url, .. } => format!(
            "HTTP lifecycle hook ({url}) for Container {:?} in Pod {pod_name:?} failed - error: {msg}",
            c.name
        ),
        _ => msg,
    })
}

/// A container the runtime runs, as the probe manager needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its name in the spec.
    pub name: String,
    /// Its CRI id.
    pub id: String,
    /// When it started.
    pub started_at: Timestamp,
}

/// (pod uid, container id, probe type).
type WorkerKey = (String, String, ProbeType);

#[derive(Debug)]
struct Worker {
    tracker: Tracker,
    stop: watch::Sender<bool>,
}

/// The probe workers of every pod of a node.
pub struct ProbeManager {
    exec: Arc<dyn ContainerExec>,
    recorder: Recorder,
    wake: mpsc::UnboundedSender<String>,
    workers: Arc<Mutex<HashMap<WorkerKey, Worker>>>,
    http: HttpClient,
}

impl std::fmt::Debug for ProbeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeManager")
            .field("workers", &self.workers.lock().len())
            .finish()
    }
}

/// Workers a node keeps at most (three per container of 110 pods with a few containers
/// each); past it, new containers are not probed and count as passing.
const MAX_WORKERS: usize = 4096;

impl ProbeManager {
    /// A manager that runs commands through `exec`, records `Unhealthy` events with
    /// `recorder`, and sends a pod's uid on `wake` when one of its results changes.
    pub fn new(
        exec: Arc<dyn ContainerExec>,
        recorder: Recorder,
        wake: mpsc::UnboundedSender<String>,
    ) -> Arc<ProbeManager> {
        Arc::new(ProbeManager {
            exec,
            recorder,
            wake,
            workers: Arc::new(Mutex::new(HashMap::new())),
            http: http_client(),
        })
    }

    /// Brings the workers of `pod` in line with its running containers: starts one per
    /// probe of a container not yet probed, stops those of containers no longer running.
    /// A pod being deleted keeps only its readiness workers (kubelet stops liveness and
    /// startup probing then).
    pub fn sync(self: &Arc<Self>, pod: &Arc<Pod>, pod_ip: &str, running: &[Running]) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
        let mut wanted: Vec<(WorkerKey, Params, Action, Running)> = Vec::new();
        for c in containers {
            let Some(r) = running.iter().find(|r| r.name == c.name) else {
                continue;
            };
            for kind in [
                ProbeType::Startup,
                ProbeType::Liveness,
                ProbeType::Readiness,
            ] {
                if deleting && kind != ProbeType::Readiness {
                    continue;
                }
                if let Some(p) = kind.of(c) {
                    wanted.push((
                        (uid.clone(), r.id.clone(), kind),
                        Params::of(p, kind),
                        probe_action(p, pod_ip, c),
                        r.clone(),
                    ));
                }
            }
        }
        let mut workers = self.workers.lock();
        workers.retain(|k, w| {
            let keep = k.0 != uid || wanted.iter().any(|(wk, ..)| wk == k);
            if !keep {
                let _ = w.stop.send(true);
            }
            keep
        });
        for (key, params, action, container) in wanted {
            if workers.contains_key(&key) || workers.len() >= MAX_WORKERS {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            workers.insert(
                key.clone(),
                Worker {
                    tracker: Tracker::new(key.2, params),
                    stop,
                },
            );
            let me = Arc::clone(self);
            let pod = Arc::clone(pod);
            tokio::spawn(async move {
                me.work(key, params, action, container, pod, stopped).await;
            });
        }
    }

    /// Stops every worker of pod `uid`.
    pub fn remove_pod(&self, uid: &str) {
        self.workers.lock().retain(|k, w| {
            if k.0 == uid {
                let _ = w.stop.send(true);
                false
            } else {
                true
            }
        });
    }

    fn result(&self, uid: &str, id: &str, kind: ProbeType) -> Option<ProbeResult> {
        self.workers
            .lock()
            .get(&(uid.to_string(), id.to_string(), kind))
            .map(|w| w.tracker.result)
    }

    /// Whether the container has started: its startup probe passed (or it has none).
    pub fn started(&self, uid: &str, container_id: &str, c: &Container) -> bool {
        c.startup_probe.is_none()
            || self.result(uid, container_id, ProbeType::Startup) == Some(ProbeResult::Success)
    }

    /// Whether the container is ready: started, and its readiness probe passed (or it has
    /// none).
    pub fn ready(&self, uid: &str, container_id: &str, c: &Container) -> bool {
        self.started(uid, container_id, c)
            && (c.readiness_probe.is_none()
                || self.result(uid, container_id, ProbeType::Readiness)
                    == Some(ProbeResult::Success))
    }

    /// Whether the container's liveness probe failed, and whether its startup probe failed
    /// (either means: kill it, and restart it per the pod's restartPolicy).
    pub fn failed(&self, uid: &str, container_id: &str) -> (bool, bool) {
        (
            self.result(uid, container_id, ProbeType::Liveness) == Some(ProbeResult::Failure),
            self.result(uid, container_id, ProbeType::Startup) == Some(ProbeResult::Failure),
        )
    }

    async fn work(
        self: Arc<Self>,
        key: WorkerKey,
        params: Params,
        action: Action,
        container: Running,
        pod: Arc<Pod>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let (uid, id, kind) = key.clone();
        let name = container.name;
        // Not before initialDelaySeconds after the container started.
        let since = Timestamp::now()
            .duration_since(container.started_at)
            .unsigned_abs();
        let mut next = tokio::time::Instant::now() + params.initial_delay.saturating_sub(since);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
            next += params.period;
            let gate = {
                let w = self.workers.lock();
                let Some(me) = w.get(&key) else { return };
                if me.tracker.on_hold() {
                    continue;
                }
                // Liveness and readiness wait for the startup probe; startup stops once
                // it passed.
                let startup = w
                    .get(&(uid.clone(), id.clone(), ProbeType::Startup))
                    .map(|s| s.tracker.result);
                match (kind, startup) {
                    (ProbeType::Startup, Some(ProbeResult::Success)) => false,
                    (ProbeType::Startup, _) | (_, None | Some(ProbeResult::Success)) => true,
                    _ => false,
                }
            };
            if !gate {
                continue;
            }
            let (outcome, msg) =
                run_action(&*self.exec, &self.http, &id, &action, params.timeout).await;
            if outcome != ProbeResult::Success {
                let (reason, what) = if outcome == ProbeResult::Unknown {
                    ("Unhealthy", "errored")
                } else {
                    ("Unhealthy", "failed")
                };
                self.recorder.warning(
                    &container_ref(&pod, &name),
                    reason,
                    format!("{} probe {what}: {msg}", kind.title()),
                );
            }
            let changed = {
                let mut w = self.workers.lock();
                let Some(me) = w.get_mut(&key) else { return };
                if outcome == ProbeResult::Unknown {
                    None
                } else {
                    me.tracker.observe(outcome)
                }
            };
            if let Some(r) = changed {
                debug!(pod = %uid, container = %id, ?kind, ?r, "probe result changed");
                let _ = self.wake.send(uid.clone());
            }
        }
    }
}

/// The pod's reference for an event about one of its containers (`spec.containers{name}`
/// as the kubelet's events carry it).
pub fn container_ref(pod: &Pod, container: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    let mut r = object_ref(pod);
    r.field_path = Some(format!("spec.containers{{{container}}}"));
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader, SleepAction};

    use super::*;

    fn params(success: u32, failure: u32) -> Params {
        Params {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_are_kubernetes_ones() {
        let p = Params::of(&Probe::default(), ProbeType::Readiness);
        assert_eq!(p.period, Duration::from_secs(10));
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert_eq!(p.initial_delay, Duration::ZERO);
        assert_eq!((p.success_threshold, p.failure_threshold), (1, 3));
        let probe = Probe {
            success_threshold: Some(3),
            period_seconds: Some(0),
            ..Probe::default()
        };
        assert_eq!(
            Params::of(&probe, ProbeType::Liveness).success_threshold,
            1,
            "liveness always needs one success"
        );
        assert_eq!(
            Params::of(&probe, ProbeType::Readiness).success_threshold,
            3
        );
        assert_eq!(
            Params::of(&probe, ProbeType::Readiness).period,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn initial_values() {
        assert_eq!(
            Tracker::new(ProbeType::Liveness, params(1, 3)).result,
            ProbeResult::Success
        );
        assert_eq!(
            Tracker::new(ProbeType::Readiness, params(1, 3)).result,
            ProbeResult::Failure
        );
        assert_eq!(
            Tracker::new(ProbeType::Startup, params(1, 3)).result,
            ProbeResult::Unknown
        );
    }

    #[test]
    fn readiness_thresholds() {
        let mut t = Tracker::new(ProbeType::Readiness, params(2, 3));
        assert_eq!(t.observe(ProbeResult::Success), None, "one success of two");
        assert_eq!(t.observe(ProbeResult::Success), Some(ProbeResult::Success));
        assert_eq!(t.observe(ProbeResult::Success), None, "no change");
        assert_eq!(t.observe(ProbeResult::Failure), None);
        assert_eq!(
            t.observe(ProbeResult::Success),
            None,
            "a success resets the run"
        );
        assert_eq!(t.observe(ProbeResult::Failure), None);
        assert_eq!(t.observe(ProbeResult::Failure), None);
        assert_eq!(t.observe(ProbeResult::Failure), Some(ProbeResult::Failure));
        assert!(!t.on_hold(), "readiness keeps probing");
        assert_eq!(t.observe(ProbeResult::Success), None);
        assert_eq!(t.observe(ProbeResult::Success), Some(ProbeResult::Success));
    }

    #[test]
    fn liveness_failure_holds_until_a_new_container() {
        let mut t = Tracker::new(ProbeType::Liveness, params(1, 2));
        assert_eq!(t.observe(ProbeResult::Failure), None);
        assert_eq!(t.observe(ProbeResult::Failure), Some(ProbeResult::Failure));
        assert!(t.on_hold());
        assert_eq!(t.observe(ProbeResult::Success), None, "on hold");
        assert_eq!(t.result, ProbeResult::Failure);
    }

    #[test]
    fn startup_success_then_stays() {
        let mut t = Tracker::new(ProbeType::Startup, params(1, 3));
        assert_eq!(t.observe(ProbeResult::Failure), None);
        assert_eq!(t.observe(ProbeResult::Success), Some(ProbeResult::Success));
    }

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }
    }

    #[test]
    fn actions_resolve_ports_hosts_and_paths() {
        let c = container();
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("healthz".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-A".into(),
                    value: "b".into(),
                }]),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_action(&probe, "10.88.0.5", &c),
            Action::Http {
                url: "http://10.88.0.5:8080/healthz".into(),
                headers: vec![("X-A".into(), "b".into())]
            }
        );
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(81),
                host: Some("127.0.0.1".into()),
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_action(&probe, "10.88.0.5", &c),
            Action::Tcp("127.0.0.1:81".into())
        );
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nope".into()),
                host: None,
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_action(&probe, "10.88.0.5", &c),
            Action::Invalid("couldn't find port: nope in web".into())
        );
        let probe = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["cat".into(), "/tmp/healthy".into()]),
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_action(&probe, "", &c),
            Action::Exec(vec!["cat".into(), "/tmp/healthy".into()])
        );
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(443),
                scheme: Some("HTTPS".into()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_action(&probe, "10.0.0.1", &c),
            Action::Http {
                url: "https://10.0.0.1:443/".into(),
                headers: vec![]
            }
        );
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(443),
                scheme: Some("FTP".into()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_action(&probe, "10.0.0.1", &c),
            Action::Invalid("unsupported scheme: \"FTP\"".into())
        );
        let hook = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 2 }),
            ..LifecycleHandler::default()
        };
        assert_eq!(
            hook_action(&hook, "", &c),
            Action::Sleep(Duration::from_secs(2))
        );
    }

    struct FakeExec(i32, &'static str);

    impl ContainerExec for FakeExec {
        fn exec_sync<'a>(
            &'a self,
            _id: &'a str,
            _cmd: &'a [String],
            _timeout: Duration,
        ) -> BoxFuture<'a, Result<ExecOutput, String>> {
            Box::pin(async move {
                Ok(ExecOutput {
                    exit_code: self.0,
                    output: self.1.into(),
                })
            })
        }
    }

    #[tokio::test]
    async fn run_actions_against_real_sockets() {
        let http = http_client();
        let exec = FakeExec(1, "cat: can't open '/tmp/healthy'");
        let (r, msg) = run_action(
            &exec,
            &http,
            "id",
            &Action::Exec(vec!["cat".into()]),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            (r, msg.as_str()),
            (ProbeResult::Failure, "cat: can't open '/tmp/healthy'")
        );

        // A port nothing listens on: refused, with Go's wording.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = l.local_addr().unwrap();
        drop(l);
        let (r, msg) = run_action(
            &exec,
            &http,
            "id",
            &Action::Tcp(closed.to_string()),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(r, ProbeResult::Failure);
        assert_eq!(
            msg,
            format!("dial tcp {closed}: connect: connection refused")
        );

        // A tiny HTTP server answering 200 then 500.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                let body = "ok";
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let action = Action::Http {
            url: format!("http://{addr}/"),
            headers: vec![],
        };
        let (r, msg) = run_action(&exec, &http, "id", &action, Duration::from_secs(2)).await;
        assert_eq!((r, msg.as_str()), (ProbeResult::Success, "ok"));
        let (r, msg) = run_action(&exec, &http, "id", &action, Duration::from_secs(2)).await;
        assert_eq!(
            (r, msg.as_str()),
            (
                ProbeResult::Failure,
                "HTTP probe failed with statuscode: 500"
            )
        );
        assert_refused(&http, "http").await;
    }

    /// A GET over `scheme` to a port nothing listens on fails with Go's wording: the URL,
    /// then the address without the scheme.
    async fn assert_refused(http: &HttpClient, scheme: &str) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = l.local_addr().unwrap();
        drop(l);
        let url = format!("{scheme}://{closed}/");
        let action = Action::Http {
            url: url.clone(),
            headers: vec![],
        };
        let exec = FakeExec(0, "");
        let (r, msg) = run_action(&exec, http, "id", &action, Duration::from_secs(1)).await;
        assert_eq!(r, ProbeResult::Failure);
        assert_eq!(
            msg,
            format!("Get \"{url}\": dial tcp {closed}: connect: connection refused")
        );
    }

    /// An HTTPS server with a self-signed certificate (testdata/probe-tls.*): the probe
    /// passes without verifying it, and reads the status as over HTTP.
    #[tokio::test]
    async fn https_probes_skip_certificate_verification() {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let cert =
            CertificateDer::from_pem_slice(include_bytes!("testdata/probe-tls.crt")).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/probe-tls.key")).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut s = acceptor.accept(tcp).await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"GET /healthz HTTP/1.1"));
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 7\r\nconnection: close\r\n\r\nhealthy"
                );
                s.write_all(resp.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
            }
        });
        let http = http_client();
        let exec = FakeExec(0, "");
        let action = Action::Http {
            url: format!("https://{addr}/healthz"),
            headers: vec![],
        };
        let (r, msg) = run_action(&exec, &http, "id", &action, Duration::from_secs(5)).await;
        assert_eq!((r, msg.as_str()), (ProbeResult::Success, "healthy"));
        let (r, msg) = run_action(&exec, &http, "id", &action, Duration::from_secs(5)).await;
        assert_eq!(
            (r, msg.as_str()),
            (
                ProbeResult::Failure,
                "HTTP probe failed with statuscode: 503"
            )
        );
        assert_refused(&http, "https").await;
        // HTTPS to a server that speaks plain HTTP fails the probe, not the kubelet.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = plain.accept().await.unwrap();
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let (r, _) = run_action(
            &exec,
            &http,
            "id",
            &Action::Http {
                url: format!("https://{plain_addr}/"),
                headers: vec![],
            },
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r, ProbeResult::Failure);
    }
}
