//! A small filesystem of the test's own (a size-capped tmpfs), to fill while a server uses it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Whether this machine lets a test mount one (root); else the reason, for `prerequisites`.
    pub fn missing() -> Option<String> {
        crate::prerequisites::all([crate::prerequisites::root(), crate::prerequisites::programs(&["mount"])])
    }

    /// Mounts a tmpfs of `bytes` at `at` (created if missing).
    pub fn mount(at: &Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let options = format!("size={bytes},mode=0755");
        let output = Command::new("mount").args(["-t", "tmpfs", "-o", &options, "tmpfs"]).arg(at).output().unwrap();
        assert!(output.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&output.stderr));
        SmallDisk { at: at.to_path_buf() }
    }

    /// Fills what is left with one file (its path returned), until the disk says it is full.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.at.join("filler");
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let block = vec![0x5au8; 1 << 20];
        let mut small = false;
        loop {
            let chunk = if small { &block[..4096] } else { &block[..] };
            match file.write_all(chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull && !small => small = true,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return path,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }

    /// Free bytes on it.
    pub fn free(&self) -> u64 {
        let stats = rustix::fs::statvfs(&self.at).unwrap();
        stats.f_bavail * stats.f_frsize
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process of the test's may still hold a file open on it.
        let _ = Command::new("umount").arg("-l").arg(&self.at).output();
    }
}
