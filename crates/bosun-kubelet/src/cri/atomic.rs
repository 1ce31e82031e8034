//! Kubernetes' `AtomicWriter` for configMap, secret, projected and downwardAPI-like volumes:
//! the files live in a hidden `..<time>` directory; `..data` is a symlink to it, swapped
//! with one rename; each top-level name is a symlink through `..data`. A container reading
//! the volume sees the old set of files or the new one, never a mix, and a changed ConfigMap
//! reaches a running pod.

use std::io;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;

use super::sources::File;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Whether the volume at `dir` holds exactly `files` (contents and modes) now.
fn same(dir: &Path, files: &[File]) -> bool {
    let data = dir.join(DATA);
    if !data.exists() {
        return false;
    }
    let mut count = 0;
    if !count_files(&data, &mut count) || count != files.len() {
        return false;
    }
    files.iter().all(|f| {
        let p = data.join(&f.path);
        std::fs::read(&p).is_ok_and(|d| d == f.data)
            && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode)
    })
}

/// Counts the regular files under `dir`; false when it cannot be read.
fn count_files(dir: &Path, count: &mut usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                if !count_files(&e.path(), count) {
                    return false;
                }
            }
            Ok(_) => *count += 1,
            Err(_) => return false,
        }
    }
    true
}

/// The first component of a relative path.
fn top(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Writes `files` into the volume at `dir` (which exists) unless it holds them already;
/// true when it changed. Paths must be relative, without `..` components, and their first
/// component must not start with `..` (those names are the writer's).
pub fn write(dir: &Path, files: &[File]) -> io::Result<bool> {
    if let Some(f) = files
        .iter()
        .find(|f| top(&f.path).starts_with("..") || f.path.split('/').any(|c| c == ".."))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {:?} is reserved or leaves the volume", f.path),
        ));
    }
    if same(dir, files) {
        return Ok(false);
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let fresh = dir.join(&stamp);
    std::fs::create_dir(&fresh)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755))?;
    for f in files {
        let p = fresh.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &f.data)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    // The visible names: one symlink per top-level name, through ..data.
    let tops: std::collections::BTreeSet<&str> = files.iter().map(|f| top(&f.path)).collect();
    for t in &tops {
        let link = dir.join(t);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(t), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(name.as_str()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str, mode: u32) -> File {
        File {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn files_are_swapped_whole_and_only_when_they_change() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let v1 = [
            file("mode", "fast", 0o644),
            file("conf/app.conf", "a=1", 0o600),
        ];
        assert!(write(dir, &v1).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("mode")).unwrap(), "fast");
        assert_eq!(
            std::fs::read_to_string(dir.join("conf/app.conf")).unwrap(),
            "a=1"
        );
        assert_eq!(
            std::fs::read_link(dir.join("mode")).unwrap(),
            Path::new("..data/mode")
        );
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        // The same files again: nothing is written.
        assert!(!write(dir, &v1).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA)).unwrap(), first);
        // A mode change is a change.
        let v1b = [
            file("mode", "fast", 0o400),
            file("conf/app.conf", "a=1", 0o600),
        ];
        assert!(write(dir, &v1b).unwrap());

        // A new value and a key gone: the old directory and the old name go.
        let v2 = [file("mode", "slow", 0o644), file("level", "3", 0o644)];
        assert!(write(dir, &v2).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("mode")).unwrap(), "slow");
        assert_eq!(std::fs::read_to_string(dir.join("level")).unwrap(), "3");
        let n = names(dir);
        assert!(!n.contains(&"conf".to_string()), "{n:?}");
        assert_eq!(
            n.iter().filter(|x| x.starts_with("..2")).count(),
            1,
            "one timestamped directory: {n:?}"
        );
        assert!(n.contains(&DATA.to_string()) && !n.contains(&DATA_TMP.to_string()));

        // Everything gone (an optional source deleted).
        assert!(write(dir, &[]).unwrap());
        assert_eq!(
            names(dir).iter().filter(|x| !x.starts_with("..")).count(),
            0
        );
        assert!(write(dir, &[file("..data", "x", 0o644)]).is_err());
        assert!(write(dir, &[file("a/../../x", "x", 0o644)]).is_err());
    }
}
