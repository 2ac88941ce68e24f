//! Files that hold secrets: created with mode 0600 (directories 0700) from the first byte.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).with_context(|| {
        use std::os::unix::fs::MetadataExt;
        let ours = rustix::process::geteuid().as_raw();
        match fs::metadata(dir) {
            // A mounted volume someone else owns (a Kubernetes emptyDir is root's): say what to do.
            Ok(meta) if meta.uid() != ours => format!(
                "securing {} (mode 0700): it belongs to uid {}, not to this process (uid {}); \
                 use a directory of its own, e.g. a subdirectory of that volume",
                dir.display(),
                meta.uid(),
                ours
            ),
            _ => format!("securing {}", dir.display()),
        }
    })
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Whether any user can reach `path`: every directory above it is searchable by others.
pub(crate) fn reachable_by_anyone(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors().skip(1).all(|dir| fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0))
}
