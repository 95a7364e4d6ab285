//! Crash-safe file output: write a temp file next to the target, fsync, then rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temp files of concurrent writes within one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the temp file unless disarmed (on every error path).
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Write `bytes` to `path` via a temp file in the same directory + fsync + rename, so a
/// crash never leaves a half-written output. If `path` exists and `!overwrite`, fails with
/// [`io::ErrorKind::AlreadyExists`]. The temp file is removed on any error.
///
/// Without `overwrite` the final step is a hard link (which fails if `path` appeared in the
/// meantime) where the filesystem supports it, so an existing file is never clobbered.
///
/// An existing `path` that is not a regular file (a device such as `/dev/null`, a FIFO, a
/// directory) is refused even with `overwrite`: renaming over it would replace the node
/// itself. Temp files that an earlier, killed write to the same `path` left behind (our
/// naming, with the id of a process that no longer runs) are removed first.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> io::Result<()> {
    check_target(path, overwrite)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    remove_stale_temps(&dir, &name.to_string_lossy());
    let tmp = dir.join(format!(
        "{}{}.{}",
        temp_prefix(&name.to_string_lossy()),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file: File = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let mut guard = TempGuard(Some(tmp.clone()));
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    if overwrite {
        fs::rename(&tmp, path)?;
        guard.0 = None;
    } else {
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            // No hard links here (some network/FAT filesystems): fall back to rename.
            Err(_) => fs::rename(&tmp, path)?,
        }
    }
    drop(guard); // removes the temp name left after linking

    // Make the rename itself durable; not all platforms can open a directory, so best effort.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Refuses an existing `path` without `overwrite`, and an existing non-regular file always.
/// (A symbolic link is judged by what it points to; renaming replaces the link itself.)
pub fn check_target(path: &Path, overwrite: bool) -> io::Result<()> {
    let Ok(meta) = path.symlink_metadata() else {
        return Ok(());
    };
    if !overwrite {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", path.display()),
        ));
    }
    let target = fs::metadata(path).unwrap_or(meta);
    if !target.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} exists and is not a regular file ({}); medinr only replaces regular files",
                path.display(),
                if target.is_dir() {
                    "a directory"
                } else {
                    "a device, FIFO or socket"
                }
            ),
        ));
    }
    Ok(())
}

/// Start of the temp names for a target named `name`: `.NAME.tmp.` (then `PID.N`).
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp.")
}

/// Removes `.NAME.tmp.PID.N` files in `dir` whose process is gone (a write killed before its
/// rename). Only where process ids can be checked (`/proc`); best effort, errors ignored.
fn remove_stale_temps(dir: &Path, name: &str) {
    let proc_dir = Path::new("/proc/self");
    if !proc_dir.exists() {
        return;
    }
    let prefix = temp_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, counter)) = rest.split_once('.') else {
            continue;
        };
        let ours = pid.parse::<u32>().is_ok() && counter.parse::<u64>().is_ok();
        if ours
            && !Path::new("/proc").join(pid).exists()
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect()
    }

    #[test]
    fn writes_and_respects_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"one", false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        let err = write_atomic(&p, b"two", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn stale_temp_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        // Pid 0 never names a user process; our own pid is alive.
        let stale = dir.path().join(".out.bin.tmp.0.7");
        let live = dir
            .path()
            .join(format!(".out.bin.tmp.{}.99", std::process::id()));
        let other = dir.path().join(".other.bin.tmp.0.1");
        for f in [&stale, &live, &other] {
            fs::write(f, b"x").unwrap();
        }
        write_atomic(&p, b"one", false).unwrap();
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn non_regular_targets_are_refused_even_with_overwrite() {
        let err = write_atomic(Path::new("/dev/null"), b"x", true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[test]
    fn error_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // Target is an existing directory: rename onto it fails.
        let target = dir.path().join("sub");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"x").unwrap();
        assert!(write_atomic(&target, b"data", true).is_err());
        assert!(leftovers(dir.path()).is_empty());
        // Missing directory: nothing created.
        assert!(write_atomic(&dir.path().join("no/such/file"), b"d", true).is_err());
    }
}
