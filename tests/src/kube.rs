//! Harness for the apiserver: a `bosun apiserver` process over a store, a kubeconfig for it,
//! and real kubectl binaries (1.32 and Debian's 1.20) to drive it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bosun_bin, free_port};

/// A running `bosun apiserver`, stopped by PID on drop.
#[derive(Debug)]
pub struct Apiserver {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// A kubeconfig pointing at it.
    pub kubeconfig: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Apiserver {
    /// Starts an apiserver over the store `endpoints` (comma-separated URLs) with `extra`
    /// options, and waits until `/readyz` answers.
    pub async fn start(dir: &Path, endpoints: &str, extra: &[&str]) -> Apiserver {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.join("apiserver.log");
        let child = Command::new(bosun_bin())
            .args(["apiserver", "--etcd-servers", endpoints, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start bosun apiserver");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&url)).unwrap();
        let a = Apiserver {
            url,
            kubeconfig,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, out) = curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/readyz", a.url),
            ]);
            if code == 0 && out.trim() == "200" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "apiserver not ready; log:\n{}",
                a.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; its status, or `None`
    /// if it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        crate::sigterm_and_wait(&mut self.child, within)
    }

    /// The apiserver's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if crate::sigterm_and_wait(&mut self.child, Duration::from_secs(10)).is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubeconfig for a plain-HTTP server.
pub fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {url}\n  name: bosun\ncontexts:\n- context:\n    cluster: bosun\n    user: admin\n  name: bosun\ncurrent-context: bosun\nusers:\n- name: admin\n  user: {{}}\n"
    )
}

/// Runs curl; returns its exit code and stdout.
pub fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl").args(args).output().expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Sends one request with curl, the body (if any) on its stdin: the HTTP status (0 when
/// no response came) and the response body.
pub fn http(method: &str, url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if !content_type.is_empty() {
        c.args(["-H", &format!("Content-Type: {content_type}")]);
    }
    if !body.is_empty() {
        c.args(["--data-binary", "@-"]);
    }
    let mut child = c
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// POSTs a JSON body (`data` is passed to `--data-binary`, so `@path` reads a file): curl's exit
/// code and the response body.
pub fn curl_post_json(url: &str, data: &str) -> (i32, String) {
    curl(&[
        "-s",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        data,
        url,
    ])
}

/// One kubectl binary.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The binary.
    pub bin: PathBuf,
    /// Its version, `1.32` or `1.20` (`default` for /usr/bin/kubectl's dispatcher).
    pub version: &'static str,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

/// The output of one kubectl run.
#[derive(Debug)]
pub struct Out {
    /// Exit code.
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Out {
    /// Stdout, asserting success.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "kubectl failed: {}{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Stderr, asserting failure.
    pub fn err(&self) -> &str {
        assert_ne!(
            self.code, 0,
            "kubectl succeeded unexpectedly: {}",
            self.stdout
        );
        &self.stderr
    }
}

/// kubectl 1.32: the versioned binary of the Google Cloud SDK's dispatcher when present (the
/// dispatcher at /usr/bin/kubectl would pick the version by the server's), else
/// /usr/bin/kubectl. `None` (with the reason printed) when neither exists.
pub fn kubectl_132(a: &Apiserver, dir: &Path) -> Option<Kubectl> {
    let versioned = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.32");
    let bin = if versioned.is_file() {
        versioned
    } else if Path::new("/usr/bin/kubectl").is_file() {
        PathBuf::from("/usr/bin/kubectl")
    } else {
        println!(
            "SKIP kubectl 1.32: neither /usr/lib/google-cloud-sdk/bin/kubectl.1.32 nor /usr/bin/kubectl exists"
        );
        return None;
    };
    Some(Kubectl::new(bin, "1.32", a, dir))
}

/// kubectl 1.32 (as [`kubectl_132`] finds it) with the kubeconfig at `kubeconfig`, for a
/// cluster the test did not start itself (`bosun up`'s).
pub fn kubectl_132_with(kubeconfig: &Path, dir: &Path) -> Option<Kubectl> {
    let versioned = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.32");
    let bin = if versioned.is_file() {
        versioned
    } else if Path::new("/usr/bin/kubectl").is_file() {
        PathBuf::from("/usr/bin/kubectl")
    } else {
        println!(
            "SKIP kubectl 1.32: neither {} nor /usr/bin/kubectl exists",
            versioned.display()
        );
        return None;
    };
    let cache = dir.join("kube-cache-1.32");
    std::fs::create_dir_all(&cache).unwrap();
    Some(Kubectl {
        bin,
        version: "1.32",
        kubeconfig: kubeconfig.to_path_buf(),
        cache,
    })
}

/// /usr/bin/kubectl as a user runs it, when it is not the binary [`kubectl_132`] found: on this
/// kind of machine the Google Cloud SDK dispatcher, which runs the kubectl matching the
/// server's version.
pub fn kubectl_default(a: &Apiserver, dir: &Path) -> Option<Kubectl> {
    let bin = PathBuf::from("/usr/bin/kubectl");
    let versioned = Path::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.32");
    if !bin.is_file() || !versioned.is_file() {
        return None;
    }
    Some(Kubectl::new(bin, "default", a, dir))
}

/// Debian's kubectl 1.20, extracted by `deploy/install-deps.sh --test`.
pub fn kubectl_120(a: &Apiserver, dir: &Path) -> Option<Kubectl> {
    let bin = PathBuf::from("/opt/bosun/kubectl-1.20/usr/bin/kubectl");
    if !bin.is_file() {
        println!(
            "SKIP kubectl 1.20: {} missing (deploy/install-deps.sh --test extracts it)",
            bin.display()
        );
        return None;
    }
    Some(Kubectl::new(bin, "1.20", a, dir))
}

impl Kubectl {
    fn new(bin: PathBuf, version: &'static str, a: &Apiserver, dir: &Path) -> Kubectl {
        let cache = dir.join(format!("kube-cache-{version}"));
        std::fs::create_dir_all(&cache).unwrap();
        Kubectl {
            bin,
            version,
            kubeconfig: a.kubeconfig.clone(),
            cache,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--cache-dir={}", self.cache.display()))
            .arg("--request-timeout=20s")
            .args(args)
            .env("HOME", self.cache.parent().unwrap_or(Path::new("/tmp")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs kubectl with `args`, feeding `stdin`.
    pub fn run_with(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = self.command(args).spawn().expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl with `args`.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, "")
    }

    /// Starts kubectl in the background (e.g. `get -w`), its stdout going to a file.
    pub fn spawn(&self, args: &[&str], out: &Path) -> Background {
        let mut c = self.command(args);
        c.stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null());
        Background {
            child: c.spawn().expect("run kubectl"),
            out: out.to_path_buf(),
        }
    }
}

/// A kubectl running in the background, stopped by PID on drop.
#[derive(Debug)]
pub struct Background {
    child: Child,
    out: PathBuf,
}

impl Background {
    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Its exit status, once it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
