//! Test harness: start real `bosun store` members, real etcd and `bosun apiserver` on loopback,
//! wait for them, stop them by PID; run real etcdctl and kubectl.

#![allow(clippy::unwrap_used)]

pub mod bench;
pub mod checker;
pub mod component;
pub mod containerd;
pub mod history;
pub mod kube;
pub mod objects;
pub mod registry;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the `bosun` binary is: `$BOSUN_BIN`, or next to the test executable's directory.
pub fn bosun_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BOSUN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/bosun
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("bosun");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build --workspace --bins) or set BOSUN_BIN",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Taken below the kernel's ephemeral port range: a port from that range, free when checked,
/// can be given to an outgoing connection's local end before the server binds it ("Address
/// already in use"). Successive calls in one process never return the same port; processes
/// start at different offsets.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low < LOW + 1_000 {
        // No room below the ephemeral range: let the kernel pick.
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
    }
    let span = ephemeral_low - LOW;
    let start = std::process::id().wrapping_mul(97) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(LOW + (start + n) % span).expect("port below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{ephemeral_low}");
}

/// Finds an executable on PATH.
/// Sends SIGTERM to `child` (by PID) and waits up to `within` for it to exit: its exit
/// status, or `None` while it still runs (the caller decides what then).
pub fn sigterm_and_wait(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Polls `cond` until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`wait_for`], and a timeout's panic carries what `explain` says then (e.g.
/// [`nodes_report`], so that a node under DiskPressure is named rather than a bare timeout).
pub async fn wait_for_explained<F, Fut, E, EFut>(
    what: &str,
    timeout: Duration,
    mut cond: F,
    explain: E,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
    E: FnOnce() -> EFut,
    EFut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; {}", explain().await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node's conditions and taints ([`objects::node_summary`]), one line each.
pub async fn nodes_report(client: &bosun_api_client::ApiClient) -> String {
    use bosun_api_client::k8s_openapi::api::core::v1::Node;
    match client
        .list::<Node>("", &bosun_api_client::ListParams::default())
        .await
    {
        Ok(l) if l.items.is_empty() => "no nodes".into(),
        Ok(l) => l
            .items
            .iter()
            .map(objects::node_summary)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("listing the nodes failed: {e}"),
    }
}

/// An HTTP/1.1 GET of `url` (`http://host:port/path?query`): the status code and the body.
pub async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

/// Runs etcdctl against `ep` with `args`, feeding `stdin`; returns exit code, stdout, stderr.
pub fn etcdctl(ep: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    // A watch runs until stopped: give it two seconds to print what it replays.
    let mut cmd = if args.first() == Some(&"watch") {
        let mut c = Command::new("timeout");
        c.args(["2", "etcdctl"]);
        c
    } else {
        Command::new("etcdctl")
    };
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={ep}"))
        .args(["--dial-timeout=5s", "--command-timeout=10s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run etcdctl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Which server implementation a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bosun,
    Etcd,
}

/// A server process on loopback: one `bosun store` member or one etcd member.
#[derive(Debug)]
pub struct Server {
    pub kind: Kind,
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    /// `--initial-cluster` and `--initial-cluster-state` this member starts with.
    pub initial_cluster: String,
    pub initial_state: String,
    extra: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts a single-member server with its data in `dir` and waits until it serves.
    pub async fn start(kind: Kind, dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server::new(kind, dir, "m1", extra);
        s.initial_cluster = format!("{}={}", s.name, s.peer_url);
        s.spawn();
        s.wait_ready().await;
        s
    }

    /// A member named `name` with fresh loopback ports and its data under `dir/<name>`; not
    /// started. Set `initial_cluster` (and `initial_state`) before [`Server::spawn`].
    pub fn new(kind: Kind, dir: &Path, name: &str, extra: &[&str]) -> Server {
        Server {
            kind,
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            name: name.to_string(),
            initial_cluster: String::new(),
            initial_state: "new".into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    /// The process ID while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Reaps the process if it has exited by itself, returning its exit status.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let st = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(st)
    }

    /// Whether the process has been started and not stopped by the harness.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the process by PID.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .status();
        }
    }

    /// The endpoint without scheme, as etcdctl takes it.
    pub fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }

    /// Starts the process (without waiting for it to serve).
    pub fn spawn(&mut self) {
        let bin = match self.kind {
            Kind::Bosun => bosun_bin(),
            Kind::Etcd => which("etcd").expect("etcd on PATH"),
        };
        let mut cmd = Command::new(bin);
        if self.kind == Kind::Bosun {
            cmd.arg("store");
        }
        cmd.args([
            "--name",
            &self.name,
            "--data-dir",
            self.data_dir.to_str().unwrap(),
            "--listen-client-urls",
            &self.client_url,
            "--advertise-client-urls",
            &self.client_url,
            "--listen-peer-urls",
            &self.peer_url,
            "--initial-advertise-peer-urls",
            &self.peer_url,
            "--initial-cluster",
            &self.initial_cluster,
            "--initial-cluster-state",
            &self.initial_state,
        ]);
        cmd.args(&self.extra);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        cmd.stdout(Stdio::null()).stderr(log).stdin(Stdio::null());
        self.child = Some(cmd.spawn().expect("spawn server"));
    }

    /// Waits until the server answers a linearizable read.
    pub async fn wait_ready(&self) {
        let url = self.client_url.clone();
        let log = self.log.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) =
                bosun_proto::etcdserverpb::kv_client::KvClient::connect(url.clone()).await
            {
                let req = bosun_proto::etcdserverpb::RangeRequest {
                    key: b"health".to_vec(),
                    ..Default::default()
                };
                if c.range(req).await.is_ok() {
                    return;
                }
            }
            if Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("server at {url} not ready in 30s; log:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process with SIGKILL (by PID) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A paused process dies on SIGKILL too; continuing it first keeps the reap prompt.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM (by PID) and waits for it to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        if let Some(st) = sigterm_and_wait(&mut c, Duration::from_secs(15)) {
            return Some(st);
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Sends SIGTERM (by PID) and waits up to `limit` for the process to exit: its exit status
    /// and how long it took, or `None` (after a SIGKILL) when it was still running at `limit`.
    pub fn terminate_within(
        &mut self,
        limit: Duration,
    ) -> (Option<std::process::ExitStatus>, Duration) {
        let Some(mut c) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        let start = Instant::now();
        if let Some(st) = sigterm_and_wait(&mut c, limit) {
            return (Some(st), start.elapsed());
        }
        let _ = c.kill();
        let _ = c.wait();
        (None, start.elapsed())
    }

    /// Starts the process again on the same data, ports and options.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
    }

    /// Removes the member's data directory (the process must be stopped).
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "wipe a running member");
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The targets a conformance run covers: Bosun always, etcd when its binary is installed.
pub fn targets() -> Vec<Kind> {
    let mut v = vec![Kind::Bosun];
    if which("etcd").is_some() {
        v.push(Kind::Etcd);
    } else {
        println!("etcd not installed: conformance runs against bosun only");
    }
    v
}

/// A cluster of members of one kind on loopback.
#[derive(Debug)]
pub struct Cluster {
    pub kind: Kind,
    pub members: Vec<Server>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Cluster {
    /// Compacts the store's history up to its current revision, as kube-apiserver's
    /// compactor does: watches and continue tokens from older versions then get 410.
    /// Returns that revision.
    pub async fn compact_to_head(&self) -> i64 {
        let client = bosun_client::Client::connect(
            self.client_urls(),
            bosun_client::ConnectOptions::default(),
        )
        .await
        .unwrap();
        let head = client
            .get("x", bosun_client::GetOptions::new())
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
        client.compact(head, true).await.unwrap();
        head
    }

    /// Starts `n` members named m1..mn with `--initial-cluster` naming all of them, and waits
    /// until every member answers a linearizable read.
    pub async fn start(kind: Kind, dir: &Path, n: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster::start_with(kind, dir, n, |_| {
            extra.iter().map(|s| s.to_string()).collect()
        })
        .await;
        c.extra = extra.iter().map(|s| s.to_string()).collect();
        c
    }

    /// Like [`Cluster::start`], with options per member: `extra(i)` for member i (0-based).
    pub async fn start_with(
        kind: Kind,
        dir: &Path,
        n: usize,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Cluster {
        let mut members: Vec<Server> = (0..n)
            .map(|i| {
                let mut s = Server::new(kind, dir, &format!("m{}", i + 1), &[]);
                s.extra = extra(i);
                s
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial.clone();
            m.spawn();
        }
        for m in &members {
            m.wait_ready().await;
        }
        Cluster {
            kind,
            members,
            dir: dir.to_path_buf(),
            extra: Vec::new(),
        }
    }

    /// Client URLs of all members.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Endpoints of all members without scheme, comma-separated, as etcdctl --endpoints takes
    /// them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Server::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the member that leads, asked of the running members (each reports the
    /// leader it knows; a majority must agree).
    pub async fn leader(&self) -> Option<usize> {
        let mut votes = std::collections::HashMap::<u64, usize>::new();
        let mut ids = std::collections::HashMap::<u64, usize>::new();
        for (i, m) in self.members.iter().enumerate() {
            if !m.is_running() {
                continue;
            }
            let Ok(Ok(mut c)) = tokio::time::timeout(
                Duration::from_secs(1),
                bosun_proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(
                    m.client_url.clone(),
                ),
            )
            .await
            else {
                continue;
            };
            let req = bosun_proto::etcdserverpb::StatusRequest {};
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), c.status(req)).await {
                let r = r.into_inner();
                if let Some(h) = r.header {
                    ids.insert(h.member_id, i);
                }
                if r.leader != 0 {
                    *votes.entry(r.leader).or_default() += 1;
                }
            }
        }
        let (leader, n) = votes.into_iter().max_by_key(|(_, n)| *n)?;
        if n * 2 > self.members.len() {
            ids.get(&leader).copied()
        } else {
            None
        }
    }

    /// Waits until a majority agrees on a leader and returns its index.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new member, not yet started, set up to join this cluster once added with
    /// `member add`: its `--initial-cluster` names the running members and itself, with state
    /// `existing`.
    pub fn new_member(&self, name: &str) -> Server {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut s = Server::new(self.kind, &self.dir, name, &extra);
        let mut initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        initial.push(format!("{}={}", s.name, s.peer_url));
        s.initial_cluster = initial.join(",");
        s.initial_state = "existing".into();
        s
    }
}
