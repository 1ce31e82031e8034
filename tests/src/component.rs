//! A control-plane component (`bosun controller-manager`, `scheduler`, `kubelet`) as a child
//! process of a test: started with `--apiserver` and its own `--port`, logging to a file,
//! signalled and stopped by PID, its `/metrics` read over loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{bosun_bin, free_port, http_get, wait_for};

/// One `bosun <subcommand>` process, killed (after SIGCONT, should it be stopped) on drop.
pub struct Component {
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// The port of its `/metrics` and `/healthz`.
    pub port: u16,
}

impl Component {
    /// `bosun <subcommand> --apiserver <apiserver> --port <free port> <extra>`, started now
    /// with `env` set, logging to `<dir>/<name>.log`.
    pub fn start(
        dir: &Path,
        name: &str,
        subcommand: &str,
        apiserver: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Component {
        let port = free_port();
        let mut args: Vec<String> = vec![
            subcommand.into(),
            "--apiserver".into(),
            apiserver.into(),
            format!("--port={port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Component {
            child: None,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: dir.join(format!("{name}.log")),
            port,
        };
        c.spawn();
        c
    }

    /// Starts the process again with the same arguments (after [`Component::kill9`] or an
    /// exit), appending to the same log.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bosun_bin())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start bosun {}: {e}", self.args[0]));
        self.child = Some(child);
    }

    /// Waits until its `/healthz` port accepts connections.
    pub async fn wait_listening(&self, within: Duration) {
        let addr = format!("127.0.0.1:{}", self.port);
        wait_for(
            &format!("bosun {}'s port", self.args[0]),
            within,
            || async { tokio::net::TcpStream::connect(&addr).await.is_ok() },
        )
        .await;
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` ("STOP", "CONT", "TERM", ...) by PID.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .status();
        }
    }

    /// SIGKILL, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status if it exits within `within`.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        self.wait_exit(within)
    }

    /// The exit status, if it exits within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Its `/metrics` text, or `None` while nothing answers on its port.
    pub async fn metrics(&self) -> Option<String> {
        let addr = format!("127.0.0.1:{}", self.port);
        tokio::net::TcpStream::connect(&addr).await.ok()?;
        let (code, body) = http_get(&format!("http://{addr}/metrics")).await;
        (code == 200).then_some(body)
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill9();
    }
}

/// The sum of the samples of `series` (a metric name, or a name with some of its labels,
/// `name{a="b"}`) in Prometheus text; 0 when there is none.
pub fn metric_sum(text: &str, series: &str) -> f64 {
    let (name, labels) = match series.split_once('{') {
        Some((n, l)) => (n, l.trim_end_matches('}')),
        None => (series, ""),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (line_labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once('}')?,
                None => ("", rest),
            };
            let value = value.strip_prefix(' ')?;
            let wanted = labels.split(',').filter(|p| !p.is_empty());
            let has_all = wanted
                .clone()
                .all(|p| line_labels.split(',').any(|q| q == p));
            has_all.then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn sums_the_samples_of_one_series() {
        let text = "# HELP a x\na{r=\"x\",k=\"1\"} 2\na{r=\"y\"} 3\na_total 7\na 1\n";
        assert_eq!(metric_sum(text, "a"), 6.0);
        assert_eq!(metric_sum(text, "a{r=\"x\"}"), 2.0);
        assert_eq!(metric_sum(text, "a_total"), 7.0);
        assert_eq!(metric_sum(text, "b"), 0.0);
    }
}
