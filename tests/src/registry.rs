//! A container registry on loopback for tests of the real pull path: Debian's
//! `docker-registry` serving plain HTTP on 127.0.0.1 (containerd's default for a loopback
//! registry), fed with `skopeo`, stopped by PID on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for, which};

/// A running registry.
pub struct LocalRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    child: Child,
    log: std::path::PathBuf,
}

impl LocalRegistry {
    /// Starts one storing under `dir`; `None` (the reason printed) without docker-registry
    /// or skopeo (`deploy/install-deps.sh --test` installs them).
    pub async fn start(dir: &Path) -> Option<LocalRegistry> {
        if which("docker-registry").is_none() || which("skopeo").is_none() {
            println!(
                "SKIP local registry: docker-registry or skopeo missing (deploy/install-deps.sh --test)"
            );
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("blobs").display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start docker-registry");
        let addr = format!("127.0.0.1:{port}");
        wait_for("the registry", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(&addr).await.is_ok()
        })
        .await;
        Some(LocalRegistry { addr, child, log })
    }

    /// Copies the OCI layout's `latest` (e.g. a private containerd's
    /// `<dir>/images/busybox`) into the registry as `<name>:<tag>`; the image reference.
    pub fn push(&self, layout: &Path, name: &str, tag: &str) -> String {
        let image = format!("{}/{name}:{tag}", self.addr);
        let copy = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{image}"))
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&copy.stderr)
        );
        image
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
