//! The kubelet's HTTP routes beside `/metrics` and `/healthz` (kubelet's `pkg/kubelet/server`):
//!
//! - `/containerLogs/{ns}/{pod}/{container}`: the container's CRI log file
//!   (`<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log`), through the pure
//!   [`logs`] core; `follow` polls the file until the client goes, the log moves to a newer
//!   attempt, the container stops or the pod is gone.
//! - `/exec/{ns}/{pod}/{container}`: asks the CRI runtime's `Exec` for a streaming URL and
//!   proxies the upgraded connection (SPDY/3.1, or a WebSocket `channel.k8s.io` up to v4) to
//!   it, bytes as they are. Without a CRI endpoint (`--container-runtime-endpoint`) it
//!   answers why.
//!
//! The pods come from the kubelet's pod watch cache ([`PodCache`], filled once the watch
//! starts).

pub mod logs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bosun_runtime::reflector::Store;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use k8s_cri::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ExecRequest, ListContainersRequest,
};
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::cri::CriClient;
use logs::{LogOptions, LogReader, LogSource, Refusal};

/// The pods the kubelet knows (its pod watch cache), set once the watch starts.
pub type PodCache = Arc<OnceLock<Store<Pod>>>;

/// How often a followed log is read again once everything was sent.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Bytes read from a log file at once.
const READ_CHUNK: usize = 32 * 1024;
/// Chunks queued towards a slow client before reading waits.
const SEND_QUEUE: usize = 16;
/// Streams (followed logs and exec sessions) served at once; more are answered 429.
const MAX_STREAMS: usize = 256;
/// How long dialling a streaming server and reading its answer may take.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// The streaming protocols containerd's streaming server speaks over WebSocket
/// (`channel.k8s.io` to `v4.channel.k8s.io`; `""` is the unversioned binary one).
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    "",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
];

/// What the routes need.
#[derive(Clone)]
pub struct ServerState {
    /// The kubelet's pods.
    pub pods: PodCache,
    /// `--pod-logs-dir`.
    pub pod_logs_dir: PathBuf,
    /// The CRI runtime for exec (`--container-runtime-endpoint`), if any.
    pub cri: Option<CriClient>,
    streams: Arc<Semaphore>,
}

impl ServerState {
    /// The state for `pods`, reading logs under `pod_logs_dir` and exec'ing through `cri`.
    pub fn new(pods: PodCache, pod_logs_dir: PathBuf, cri: Option<CriClient>) -> Self {
        ServerState {
            pods,
            pod_logs_dir,
            cri,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    fn pod(&self, ns: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get()?.get(ns, name)
    }
}

/// The kubelet's routes added to `base` (the component server's).
pub fn routes(base: Router, state: ServerState) -> Router {
    let own = Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .with_state(state);
    base.merge(own)
}

/// A plain-text answer, as the kubelet's `WriteError`.
fn text(code: u16, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

fn refusal(r: Refusal) -> Response {
    text(r.code, r.message)
}

/// The log directory of one container of a pod.
pub fn container_log_dir(root: &Path, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
    root.join(format!("{ns}_{pod}_{uid}")).join(container)
}

/// The attempts with a log file in `dir` (none when it does not exist).
async fn attempts_in(dir: &Path) -> Vec<u32> {
    let mut names = Vec::new();
    if let Ok(mut rd) = tokio::fs::read_dir(dir).await {
        // Bounded: a container's directory holds one file per attempt (and rotations).
        while let Ok(Some(e)) = rd.next_entry().await {
            if names.len() >= 100_000 {
                break;
            }
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    logs::attempts_of(names)
}

async fn container_logs(
    State(st): State<ServerState>,
    UrlPath((ns, pod_name, container)): UrlPath<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let opts = match logs::log_options(&q, Timestamp::now()) {
        Ok(o) => o,
        Err(r) => return refusal(r),
    };
    let Some(pod) = st.pod(&ns, &pod_name) else {
        return text(404, format!("pod {pod_name:?} does not exist"));
    };
    if !logs::has_container(&pod, &container) {
        return text(
            404,
            format!("container {container:?} not found in pod {pod_name:?}"),
        );
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = container_log_dir(&st.pod_logs_dir, &ns, &pod_name, &uid, &container);
    let attempts = attempts_in(&dir).await;
    let status = logs::container_status(&pod, &container);
    let source = match logs::choose_log(&pod_name, &container, status, &attempts, opts.previous) {
        Ok(s) => s,
        Err(r) => return refusal(r),
    };
    // The file is opened (and the tail found) before answering, so a failure is a 400.
    let opened = match source {
        LogSource::Empty if !opts.follow => return text_ok(Body::empty()),
        LogSource::Empty => None,
        LogSource::Attempt(n) => {
            match open_at_tail(dir.join(format!("{n}.log")), opts.tail).await {
                Ok(f) => Some((n, f)),
                Err(e) => return text(400, e),
            }
        }
    };
    let permit = if opts.follow {
        match st.streams.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return text(429, "too many log streams and exec sessions at once"),
        }
    } else {
        None
    };
    let (tx, rx) = mpsc::channel::<Bytes>(SEND_QUEUE);
    let follow = Follow {
        st,
        ns,
        pod: pod_name,
        uid,
        container,
        dir,
    };
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = follow.stream(opened, opts, &tx).await {
            debug!(error = %e, "container log stream ended");
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    text_ok(Body::from_stream(body))
}

fn text_ok(body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Opens a log file positioned at the start of its last `tail` lines.
async fn open_at_tail(path: PathBuf, tail: Option<u64>) -> Result<tokio::fs::File, String> {
    let shown = path.display().to_string();
    let (file, start) = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path)
            .map_err(|e| format!("failed to open log file {shown:?}: {e}"))?;
        let start = logs::tail_start(&mut f, tail).map_err(|e| {
            format!(
                "failed to tail {} lines of log file {shown:?}: {e}",
                tail.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX))
            )
        })?;
        Ok::<_, String>((f, start))
    })
    .await
    .map_err(|e| e.to_string())??;
    let mut file = tokio::fs::File::from_std(file);
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| format!("failed to seek {start} in log file: {e}"))?;
    Ok(file)
}

/// One log request's stream: what it reads and what tells it to stop following.
struct Follow {
    st: ServerState,
    ns: String,
    pod: String,
    uid: String,
    container: String,
    dir: PathBuf,
}

impl Follow {
    /// Whether to wait for more after `attempt`'s end.
    async fn keep_following(&self, attempt: u32) -> bool {
        let attempts = attempts_in(&self.dir).await;
        let pod = self.st.pod(&self.ns, &self.pod);
        logs::keep_following(
            pod.as_deref(),
            &self.uid,
            &self.container,
            attempt,
            &attempts,
        )
    }

    /// Waits `FOLLOW_POLL`; false when the client went meanwhile.
    async fn wait(tx: &mpsc::Sender<Bytes>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => true,
            _ = tx.closed() => false,
        }
    }

    async fn stream(
        &self,
        opened: Option<(u32, tokio::fs::File)>,
        opts: LogOptions,
        tx: &mpsc::Sender<Bytes>,
    ) -> anyhow::Result<()> {
        let (attempt, mut file) = match opened {
            Some(o) => o,
            // Following a container without a log yet: wait for its first file.
            None => loop {
                if !self.keep_following(0).await || !Self::wait(tx).await {
                    return Ok(());
                }
                if let Some(n) = attempts_in(&self.dir).await.last().copied() {
                    break (
                        n,
                        open_at_tail(self.dir.join(format!("{n}.log")), opts.tail)
                            .await
                            .map_err(anyhow::Error::msg)?,
                    );
                }
            },
        };
        let mut reader = LogReader::new(&opts);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut out = Vec::new();
        // Once following ends, what was written until then is still read.
        let mut last_pass = !opts.follow;
        loop {
            let n = file.read(&mut buf).await?;
            if n > 0 {
                reader.feed(&buf[..n], &mut out);
            } else if last_pass {
                reader.finish(&mut out);
            }
            if !out.is_empty()
                && tx
                    .send(Bytes::from(std::mem::take(&mut out)))
                    .await
                    .is_err()
            {
                return Ok(());
            }
            if reader.is_done() {
                return Ok(());
            }
            if n > 0 {
                continue;
            }
            if !self.keep_following(attempt).await {
                last_pass = true;
                continue;
            }
            if !Self::wait(tx).await {
                return Ok(());
            }
        }
    }
}

/// Why a WebSocket upgrade is refused, when it is one that the runtime's streaming server
/// does not speak (kubectl >= 1.30 asks `v5.channel.k8s.io` first and, on a non-101 answer,
/// falls back to SPDY/3.1, which every kubectl speaks).
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
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty()
        || offered
            .iter()
            .any(|p| WEBSOCKET_PROTOCOLS.contains(&p.as_str()))
    {
        return None;
    }
    Some(format!(
        "requested protocol(s) are not supported: {offered:?}; supports {:?} over WebSocket, and SPDY/3.1",
        &WEBSOCKET_PROTOCOLS[1..]
    ))
}

/// The stream options of an exec request (remotecommand's `NewOptions`): flags are `1`;
/// a TTY has no separate stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr.
    pub stderr: bool,
    /// Allocate a TTY.
    pub tty: bool,
}

/// Parses the kubelet's exec query as the apiserver writes it (`command=..&command=..&
/// input=1&output=1&error=1&tty=1`).
pub fn exec_options(pairs: &[(String, String)]) -> Result<ExecOptions, String> {
    let flag = |k: &str| pairs.iter().any(|(kk, v)| kk == k && v == "1");
    let tty = flag("tty");
    let o = ExecOptions {
        command: pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag("input"),
        stdout: flag("output"),
        stderr: flag("error") && !tty,
        tty,
    };
    if !o.stdin && !o.stdout && !o.stderr {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    Ok(o)
}

async fn exec(
    State(st): State<ServerState>,
    UrlPath((ns, pod_name, container)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    let (mut parts, _body) = req.into_parts();
    if let Some(why) = websocket_refusal(&parts.headers) {
        return text(400, why);
    }
    let pairs: Vec<(String, String)> =
        match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            Ok(Query(p)) => p,
            Err(e) => return text(400, e.body_text()),
        };
    let opts = match exec_options(&pairs) {
        Ok(o) => o,
        Err(e) => return text(400, e),
    };
    let Some(pod) = st.pod(&ns, &pod_name) else {
        return text(404, "pod does not exist");
    };
    let Some(cri) = st.cri.clone() else {
        // No ": " in it: kubectl reads an error body as YAML before taking it as text.
        return text(
            500,
            "exec needs a container runtime, and this kubelet has none (--container-runtime-endpoint); hollow pods run no processes",
        );
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let id = match running_container(&cri, &uid, &container).await {
        Ok(Some(id)) => id,
        Ok(None) => return text(500, format!("container not found ({container:?})")),
        Err(e) => return grpc_error(&e),
    };
    let resp = cri
        .runtime
        .clone()
        .exec(ExecRequest {
            container_id: id,
            cmd: opts.command,
            tty: opts.tty,
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
        })
        .await;
    let url = match resp {
        Ok(r) => r.into_inner().url,
        Err(e) => return grpc_error(&e),
    };
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return text(
            500,
            format!("the runtime's streaming URL {url:?} does not parse"),
        );
    };
    let (Some(authority), Some(path)) = (uri.authority(), uri.path_and_query()) else {
        return text(
            500,
            format!("the runtime's streaming URL {url:?} has no host"),
        );
    };
    if uri.scheme_str() != Some("http") {
        return text(
            500,
            format!("the runtime's streaming URL {url:?}: only plain http is supported"),
        );
    }
    let Ok(permit) = st.streams.clone().try_acquire_owned() else {
        return text(429, "too many log streams and exec sessions at once");
    };
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    match proxy_upgrade(
        parts.method.clone(),
        &parts.headers,
        on_upgrade,
        authority.as_str(),
        path.as_str(),
        permit,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => text(500, e),
    }
}

/// The newest running container `name` of the pod `uid`, found by the CRI labels.
async fn running_container(
    cri: &CriClient,
    uid: &str,
    name: &str,
) -> Result<Option<String>, tonic::Status> {
    let filter = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        label_selector: HashMap::from([
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ("io.kubernetes.container.name".to_string(), name.to_string()),
        ]),
        ..Default::default()
    };
    let list = cri
        .runtime
        .clone()
        .list_containers(ListContainersRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner();
    Ok(list
        .containers
        .into_iter()
        .max_by_key(|c| c.created_at)
        .map(|c| c.id))
}

/// A CRI error as the kubelet's streaming `WriteError` answers it.
fn grpc_error(e: &tonic::Status) -> Response {
    let code = match e.code() {
        tonic::Code::NotFound => 404,
        tonic::Code::ResourceExhausted => 429,
        _ => 500,
    };
    text(
        code,
        format!("rpc error: code = {:?} desc = {}", e.code(), e.message()),
    )
}

/// Sends the request (method and headers as received, the upgrade headers included) to
/// `authority` + `path`; a `101 Switching Protocols` answer is relayed and the two upgraded
/// connections are joined byte for byte until both ends close; any other answer is
/// returned as it is.
pub async fn proxy_upgrade(
    method: Method,
    headers: &HeaderMap,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    authority: &str,
    path: &str,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response, String> {
    let dial = async {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("dial {authority}: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("connect to {authority}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut b = axum::http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            if k != header::HOST && k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
                b = b.header(k, v);
            }
        }
        let req = b
            .header(header::HOST, authority)
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        send.send_request(req)
            .await
            .map_err(|e| format!("request to {authority}: {e}"))
    };
    let resp = tokio::time::timeout(UPGRADE_TIMEOUT, dial)
        .await
        .map_err(|_| format!("{authority} did not answer within {UPGRADE_TIMEOUT:?}"))??;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(resp.map(Body::new));
    }
    let Some(client_side) = on_upgrade else {
        return Err("the request cannot be upgraded".into());
    };
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers() {
        answer = answer.header(k, v);
    }
    let answer = answer.body(Body::empty()).map_err(|e| e.to_string())?;
    let target = authority.to_string();
    tokio::spawn(async move {
        let _permit = permit;
        let (client, server) = tokio::join!(client_side, hyper::upgrade::on(resp));
        match (client, server) {
            (Ok(c), Ok(s)) => {
                let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut s).await {
                    debug!(%target, error = %e, "upgraded stream ended");
                }
            }
            (c, s) => warn!(
                %target,
                client = ?c.err(),
                server = ?s.err(),
                "upgrade failed"
            ),
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exec_query_as_remotecommand_reads_it() {
        let o = exec_options(&pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "exit 3"),
            ("output", "1"),
            ("error", "1"),
        ]))
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        // A TTY merges stderr into stdout.
        let o = exec_options(&pairs(&[("input", "1"), ("error", "1"), ("tty", "1")])).unwrap();
        assert!(o.stdin && o.tty && !o.stderr);
        assert_eq!(
            exec_options(&pairs(&[("command", "ls"), ("output", "true")])).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
    }

    fn ws(protocols: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if !protocols.is_empty() {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(protocols).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_websockets_the_runtime_cannot_speak_are_refused() {
        // kubectl >= 1.30: v5 only, refused so that it falls back to SPDY.
        let why = websocket_refusal(&ws("v5.channel.k8s.io")).unwrap();
        assert!(why.contains("v5.channel.k8s.io"), "{why}");
        assert!(websocket_refusal(&ws("v5.channel.k8s.io, v4.channel.k8s.io")).is_none());
        assert!(websocket_refusal(&ws("base64.channel.k8s.io")).is_none());
        assert!(websocket_refusal(&ws("")).is_none());
        let mut spdy = HeaderMap::new();
        spdy.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(websocket_refusal(&spdy).is_none());
        assert!(websocket_refusal(&HeaderMap::new()).is_none());
    }
}
