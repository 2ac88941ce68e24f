//! Where a run's files live: the runs directory (emptied at startup) and each run's working
//! directory and `/tmp`, created for its uid and removed before its result is stored.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directories of one run, side by side in the runs directory (0711, so neither can be
/// listed or entered but by its owner): `<runs>/<id>` (the working directory) and, unless
/// bubblewrap gives the run a tmpfs, `<runs>/<id>.tmp` for its `/tmp`. No parent of their own
/// and no unused one: on ext4 each directory costs a `mkdir` and an `rmdir` of 75-250 µs per
/// command (BENCHMARKS.md).
#[derive(Clone)]
pub(super) struct CommandDirs {
    pub home: PathBuf,
    pub tmp: Option<PathBuf>,
}

impl CommandDirs {
    pub(super) fn new(runs_dir: &Path, id: &str, with_tmp: bool) -> Self {
        CommandDirs { home: runs_dir.join(id), tmp: with_tmp.then(|| runs_dir.join(format!("{id}.tmp"))) }
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.home).chain(&self.tmp)
    }

    /// Creates both, 0700, to be handed to the run's uid.
    pub(super) fn create(&self) -> Result<(), String> {
        for dir in self.all() {
            fs::DirBuilder::new()
                .create(dir)
                .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        Ok(())
    }

    /// Gives both, and everything in them, to `uid` (and its group of the same number).
    pub(super) fn hand_to(&self, uid: u32) -> Result<(), String> {
        for dir in self.all() {
            chown_tree(dir, uid).map_err(|e| format!("handing {} to uid {uid}: {e}", dir.display()))?;
        }
        Ok(())
    }

    /// Disk blocks used under the run's directories, without following links.
    pub(super) async fn disk_usage(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            use std::os::unix::fs::MetadataExt;
            let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
            let own = meta.blocks() * 512;
            if !meta.is_dir() {
                return own;
            }
            let children = fs::read_dir(path).map(|e| e.flatten().map(|e| walk(&e.path())).sum()).unwrap_or(0);
            own + children
        }
        let dirs = self.clone();
        tokio::task::spawn_blocking(move || dirs.all().map(|d| walk(d)).sum()).await.unwrap_or(0)
    }

    /// Removes both, whatever the command did to their permissions, before the result is stored
    /// (the working directory holds the kubeconfig).
    pub(super) async fn remove(self) {
        let result = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            for dir in self.all() {
                // A command may have removed its own permissions; the server can restore them.
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
                match fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => failed.push((dir.clone(), e)),
                    _ => {}
                }
            }
            failed
        })
        .await;
        for (dir, e) in result.unwrap_or_default() {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a working directory");
        }
    }
}

/// Where working directories live: `<data-dir>/runs` when a command's own uid can reach it,
/// else a root-owned, unlistable directory under the system temp directory (data directories
/// usually sit under a private home). Emptied at startup.
pub(super) fn commands_dir_for(data_dir: &Path, is_root: bool) -> anyhow::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let inside = data_dir.join("runs");
    let dir = if !is_root || crate::files::reachable_by_anyone(&inside) {
        inside
    } else {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        data_dir.hash(&mut hasher);
        std::env::temp_dir().join(format!("kubeinvoke-runs-{:016x}", hasher.finish()))
    };
    match fs::symlink_metadata(&dir) {
        Ok(meta) => {
            let ours = meta.is_dir() && meta.uid() == rustix::process::geteuid().as_raw();
            anyhow::ensure!(ours, "{} exists and is not a directory of ours; refusing to use it", dir.display());
            fs::remove_dir_all(&dir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    fs::DirBuilder::new().mode(0o711).create(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))?;
    Ok(dir)
}

fn chown_tree(path: &Path, uid: u32) -> std::io::Result<()> {
    let owner = Some(rustix::fs::Uid::from_raw(uid));
    let group = Some(rustix::fs::Gid::from_raw(uid));
    rustix::fs::chownat(rustix::fs::CWD, path, owner, group, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_run_has_its_working_directory_and_a_tmp_beside_it_only_when_asked() {
        let runs = Path::new("/runs");
        let with = CommandDirs::new(runs, "abc", true);
        assert_eq!(with.all().collect::<Vec<_>>(), [Path::new("/runs/abc"), Path::new("/runs/abc.tmp")]);
        let without = CommandDirs::new(runs, "abc", false);
        assert_eq!(without.all().collect::<Vec<_>>(), [Path::new("/runs/abc")]);
    }

    #[tokio::test]
    async fn directories_are_private_counted_and_removed_even_after_the_command_locked_them() {
        let runs = tempfile::tempdir().unwrap();
        let dirs = CommandDirs::new(runs.path(), "run", true);
        dirs.create().unwrap();
        for dir in dirs.all() {
            assert_eq!(fs::metadata(dir).unwrap().mode() & 0o777, 0o700, "{}", dir.display());
        }
        assert!(dirs.create().is_err(), "a run's directories are never reused");
        let before = dirs.disk_usage().await;
        fs::write(dirs.home.join("big"), vec![1u8; 256 * 1024]).unwrap();
        assert!(dirs.disk_usage().await >= before + 256 * 1024);
        // The command took its own permissions away.
        fs::set_permissions(&dirs.home, fs::Permissions::from_mode(0o000)).unwrap();
        dirs.clone().remove().await;
        assert!(dirs.all().all(|d| !d.exists()));
    }

    #[test]
    fn the_runs_directory_is_emptied_and_unlistable_and_a_stranger_there_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let runs = commands_dir_for(data.path(), false).unwrap();
        assert_eq!(runs, data.path().join("runs"));
        fs::write(runs.join("leftover"), b"x").unwrap();
        let again = commands_dir_for(data.path(), false).unwrap();
        assert!(!again.join("leftover").exists(), "emptied at startup");
        assert_eq!(fs::metadata(&again).unwrap().mode() & 0o777, 0o711);
        fs::remove_dir(&again).unwrap();
        fs::write(&again, b"not a directory").unwrap();
        let refused = commands_dir_for(data.path(), false).unwrap_err().to_string();
        assert!(refused.contains("is not a directory of ours"), "{refused}");
    }
}
