//! Test harness: start real `bosun store` members and real etcd on loopback, wait for them,
//! stop them by PID.

#![allow(clippy::unwrap_used)]

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

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Finds an executable on PATH.
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
    extra: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts a single-member server with its data in `dir` and waits until it serves.
    pub async fn start(kind: Kind, dir: &Path, extra: &[&str]) -> Server {
        let name = "m1".to_string();
        let mut s = Server {
            kind,
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir: dir.join("data"),
            log: dir.join(format!("{name}.log")),
            name,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.spawn();
        s.wait_ready().await;
        s
    }

    /// The endpoint without scheme, as etcdctl takes it.
    pub fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }

    fn spawn(&mut self) {
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
            &format!("{}={}", self.name, self.peer_url),
            "--initial-cluster-state",
            "new",
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
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM (by PID) and waits for it to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Starts the process again on the same data, ports and options.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
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
