//! A private containerd for a test (`bosun_up::containerd`): its own temp data dir, socket,
//! CNI network, bridge name, pod CIDR and cgroup root, so that tests and the development
//! instance never collide; the busybox and pause images imported; on drop (a passing test's
//! or a panicking one's, during unwinding) every sandbox is stopped and removed through CRI
//! within a bound, containerd stopped by PID and the host cleaned
//! (`bosun_up::containerd::cleanup_host`: shims and pod processes left killed by PID, mounts
//! under its dir undone, bridge, host-local allocations, libcni cache, iptables leftovers,
//! cgroup dirs), and then its temp dir removed.
//!
//! containerd's child lives on a runtime of its own thread, so that a test on any runtime
//! (or none) can start and drop it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use bosun_up::containerd::{Containerd, missing, present};
pub use bosun_up::containerd::{CriClient, Settings, cri};

/// The `--eviction-hard` of the tests' real kubelets: the default's memory threshold, and
/// disk pressure only below 1% free. The default's 10% is a share of the whole disk, and a
/// shared CI disk has been seen to hover around it (its free space is set from outside), so
/// that the test's node took the disk-pressure taint and left pods Pending. As kind does for
/// its nodes, the tests keep that threshold out of what they test; the kubelet's unit tests
/// cover the thresholds.
pub const EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<1%";

/// Why a containerd test cannot run on this machine (not root, tools missing), or `None`.
pub fn skip_reason() -> Option<String> {
    let gone = missing(present);
    if !gone.is_empty() {
        return Some(bosun_up::containerd::missing_message(&gone));
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some("containerd runs pods only as root".into());
    }
    None
}

/// Names for one private instance: unique in this process (a counter) and across processes
/// (the PID): network, bridge (15 characters at most), a /16 pod range in 10.100-10.199
/// (the development instance has 10.89, `bosun up` 10.88) and a cgroup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The CNI network.
    pub network: String,
    /// The CNI bridge.
    pub bridge: String,
    /// The pod CIDR.
    pub pod_cidr: String,
    /// The pods' cgroup parent (the kubelet's --cgroup-root).
    pub cgroup_root: String,
}

/// Fresh [`Names`].
pub fn names() -> Names {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let tag = format!("{}{n}", pid % 100_000);
    Names {
        network: format!("bosun-test-{tag}"),
        bridge: format!("bt{tag}"),
        pod_cidr: format!("10.{}.0.0/16", 100 + (pid + n * 37) % 100),
        cgroup_root: format!("/bosun-test-{tag}"),
    }
}

/// A containerd of a test's own, stopped and cleaned up on drop.
pub struct PrivateContainerd {
    /// Its CRI endpoint (`unix:///...`), the kubelet's --container-runtime-endpoint.
    pub endpoint: String,
    /// Its settings (dir, network, bridge, pod CIDR).
    pub settings: Settings,
    /// The cgroup root its pods go under (removed at the end).
    pub cgroup_root: String,
    /// containerd's PID.
    pub pid: u32,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<Vec<String>>>,
    /// Removed last, once nothing is mounted under it.
    dir: Option<tempfile::TempDir>,
}

impl PrivateContainerd {
    /// Starts one with the images imported; `None`, with the reason printed, when containerd
    /// cannot run here. Panics when it can but fails to start.
    pub fn start() -> Option<PrivateContainerd> {
        if let Some(why) = skip_reason() {
            println!("SKIP private containerd: {why}");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let n = names();
        let settings = Settings::new(
            dir.path(),
            &n.network,
            &n.bridge,
            n.pod_cidr.parse().expect("pod CIDR"),
        );
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u32, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let s = settings.clone();
        let cgroup_root = n.cgroup_root.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let c = match Containerd::start(s, &cgroup_root).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Vec::new();
                    }
                };
                if let Err(e) = c.import_images().await {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return c.shutdown(&cgroup_root).await;
                }
                let _ = ready_tx.send(Ok(c.pid().unwrap_or(0)));
                // Until the test drops it (or its sender goes away).
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                c.shutdown(&cgroup_root).await
            })
        });
        let pid = match ready_rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                let _ = thread.join();
                panic!("private containerd: {e}");
            }
            Err(_) => panic!("private containerd: its thread ended"),
        };
        Some(PrivateContainerd {
            endpoint: settings.endpoint(),
            settings,
            cgroup_root: n.cgroup_root,
            pid,
            stop: Some(stop_tx),
            thread: Some(thread),
            dir: Some(dir),
        })
    }

    /// A CRI connection to it.
    pub fn client(&self) -> CriClient {
        CriClient::connect(&self.endpoint, std::time::Duration::from_secs(30)).expect("CRI")
    }

    /// Its temp dir (containerd's dir is `containerd` in it), removed at the end.
    pub fn dir(&self) -> &std::path::Path {
        self.settings.dir.parent().unwrap_or(&self.settings.dir)
    }

    /// Removes its sandboxes, stops it, cleans the host and removes its dir; what could not
    /// be cleaned.
    pub fn stop(mut self) -> Vec<String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Vec<String> {
        drop(self.stop.take());
        let mut problems = match self.thread.take().map(JoinHandle::join) {
            None => Vec::new(),
            Some(Ok(p)) => p,
            Some(Err(_)) => vec!["its thread panicked".into()],
        };
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                problems.push(format!("remove {}: {e}", path.display()));
            }
        }
        problems
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        for p in self.shutdown() {
            eprintln!("private containerd cleanup: {p}");
        }
    }
}

impl std::fmt::Debug for PrivateContainerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateContainerd")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.pid)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_differ_and_fit() {
        let (a, b) = (names(), names());
        assert_ne!(a.network, b.network);
        assert_ne!(a.bridge, b.bridge);
        assert!(a.bridge.len() <= 15 && b.bridge.len() <= 15, "{a:?}");
        assert!(a.pod_cidr.starts_with("10.1"), "{a:?}");
    }
}
