//! Container log rotation, as the kubelet's container log manager does it
//! (`pkg/kubelet/logs/container_log_manager.go`): a running container's log file that has grown
//! past `--container-log-max-size` is renamed to `<file>.<YYYYMMDD-HHMMSS>`, the runtime is told
//! to reopen it (CRI `ReopenContainerLog`), and of the renamed files only the newest
//! `--container-log-max-files` - 1 are kept, so a container's logs take at most about
//! max-size x max-files on disk. Renamed files are not compressed.

use std::path::{Path, PathBuf};

/// When a log file is rotated, and how many files a container keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Bytes past which the current file is rotated.
    pub max_size: u64,
    /// Files kept per container, the current one included (at least 2).
    pub max_files: usize,
}

impl Default for LogRotation {
    /// The kubelet's defaults: 10Mi, 5 files.
    fn default() -> Self {
        LogRotation {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// The name a rotated log file gets: `<log>.<YYYYMMDD-HHMMSS>` (UTC), the kubelet's format.
pub fn rotated_path(log: &Path, now: jiff::Timestamp) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{}", now.strftime("%Y%m%d-%H%M%S")));
    PathBuf::from(name)
}

/// Of the rotated files of one log (`<log>.<stamp>`, any order), those to delete so that
/// `max_files` files remain with the current one: the oldest.
pub fn to_remove(mut rotated: Vec<PathBuf>, max_files: usize) -> Vec<PathBuf> {
    rotated.sort();
    let keep = max_files.saturating_sub(1);
    let excess = rotated.len().saturating_sub(keep);
    rotated.truncate(excess);
    rotated
}

/// The rotated files of `log` present on disk.
pub fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Vec::new();
    };
    let mut prefix = name.to_owned();
    prefix.push(".");
    let prefix = prefix.to_string_lossy().into_owned();
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `log` has grown past the limit.
pub fn needs_rotation(log: &Path, limits: LogRotation) -> bool {
    std::fs::metadata(log).is_ok_and(|m| m.len() > limits.max_size)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_file_is_named_after_the_time_of_its_rotation() {
        let t: jiff::Timestamp = "2026-12-07T16:05:09Z".parse().unwrap();
        assert_eq!(
            rotated_path(Path::new("/var/log/pods/ns_p_u/app/0.log"), t),
            PathBuf::from("/var/log/pods/ns_p_u/app/0.log.20261207-160509")
        );
    }

    #[test]
    fn the_oldest_rotated_files_go_beyond_the_limit() {
        let p = |s: &str| PathBuf::from(format!("0.log.{s}"));
        let files = vec![
            p("20261207-160509"),
            p("20261207-155959"),
            p("20261207-160519"),
            p("20261207-160001"),
        ];
        assert_eq!(
            to_remove(files.clone(), 3),
            vec![p("20261207-155959"), p("20261207-160001")]
        );
        assert_eq!(to_remove(files.clone(), 5), Vec::<PathBuf>::new());
        assert_eq!(
            to_remove(files, 1).len(),
            4,
            "only the current file is kept"
        );
    }

    #[test]
    fn only_the_logs_own_rotated_files_are_found_and_size_decides() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(&log, vec![b'x'; 100]).unwrap();
        for f in [
            "0.log.20261207-160509",
            "0.log.20261207-160519",
            "1.log",
            "1.log.20261207-160509",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let mut found = rotated_files(&log);
        found.sort();
        assert_eq!(
            found,
            vec![
                dir.path().join("0.log.20261207-160509"),
                dir.path().join("0.log.20261207-160519")
            ]
        );
        let limits = |max_size| LogRotation {
            max_size,
            max_files: 2,
        };
        assert!(needs_rotation(&log, limits(99)));
        assert!(!needs_rotation(&log, limits(100)));
        assert!(!needs_rotation(&dir.path().join("gone.log"), limits(0)));
    }
}
