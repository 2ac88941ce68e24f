//! Command uids leased host-wide: a uid runs exactly one command on the whole host at a time,
//! whichever kubeinvoke server runs it, so commands cannot signal, trace or read one another and
//! `RLIMIT_NPROC` counts each command's processes alone.
//!
//! A lease is an exclusive `flock` on `<lock dir>/<uid>`, taken before the uid is used and let go
//! only once every process of the uid is gone. The kernel drops the lock when its holder dies, so a
//! crashed server never strands a uid; whoever takes the uid next first kills what the dead holder's
//! commands left behind. A holder that saw the uid empty writes [`RELEASED`] into the file before
//! letting go, so the next taker skips that scan of `/proc` (issue #20). Nothing here ever touches a uid whose lock it does not hold, which is what
//! lets any number of servers share the default range on one host.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use rustix::process::{Pid, Signal};

/// Where the lock files live unless told otherwise: host-wide, and emptied by a reboot (when no
/// command process can be left either).
pub(crate) const DEFAULT_LOCK_DIR: &str = "/run/kubeinvoke/uids";
/// How long a lease waits for the processes of its uid to die after SIGKILL before it gives up
/// the uid for good (a process stuck in the kernel): a uid is never handed on while in use.
const DEATH_WAIT: Duration = Duration::from_secs(10);
/// How often a server with every uid of the range taken looks again.
const RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub(crate) enum UidLeaseError {
    #[error("cannot prepare the uid lock directory {dir}: {source}")]
    Directory { dir: PathBuf, source: std::io::Error },
    #[error(
        "the uid lock directory {0} must be a directory owned by root and writable by no one else; \
         refusing to share uids through it"
    )]
    Unsafe(PathBuf),
    #[error("the uid range {first}+{count} is empty or runs past the largest uid")]
    Range { first: u32, count: u32 },
}

/// The range of uids this server may use, shared with every other server on the host.
/// The lock file's content once its last holder saw the uid without processes.
const RELEASED: &[u8] = b"released: no process left\n";

/// Whether taking a free uid looks for processes a dead holder left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeftoverCheck {
    /// Always (the orphan sweep: it found processes of the uid).
    Always,
    /// Unless the last holder released the uid after seeing it empty.
    UnlessReleased,
}

/// Whether the lock file (held by us) says its last holder left the uid empty.
fn released_clean(file: &File) -> std::io::Result<bool> {
    let mut content = [0u8; RECORD_LEN + 1];
    let read = std::os::unix::fs::FileExt::read_at(file, &mut content, 0)?;
    Ok(content[..read].trim_ascii_end() == RELEASED.trim_ascii_end())
}

/// Every record in a lock file has this length (padded with spaces), so replacing one is a single
/// write at offset 0 without truncating the file: no metadata change for the filesystem to journal.
const RECORD_LEN: usize = 128;

/// Replaces the lock file's record with `text` (cut to [`RECORD_LEN`]).
fn write_record(file: &File, text: &[u8]) -> std::io::Result<()> {
    let mut record = [b' '; RECORD_LEN];
    let kept = text.len().min(RECORD_LEN - 1);
    record[..kept].copy_from_slice(&text[..kept]);
    record[RECORD_LEN - 1] = b'\n';
    std::os::unix::fs::FileExt::write_all_at(file, &record, 0)?;
    // Only files of another length (older versions, a new empty file) change size.
    if file.metadata()?.len() != RECORD_LEN as u64 {
        file.set_len(RECORD_LEN as u64)?;
    }
    Ok(())
}

pub(crate) struct UidLeases {
    dir: PathBuf,
    first: u32,
    count: u32,
    /// Where the next search starts, so one server does not keep probing the uids it just freed.
    next: AtomicU32,
    /// Uids this process released empty, most recent last: taken first, since their lock files
    /// say so and spare the taker a scan of `/proc`.
    released: Released,
}

type Released = Arc<std::sync::Mutex<Vec<u32>>>;

/// One uid held by one command. Dropping it kills the uid's processes and, once they are gone,
/// lets the uid go (on a thread of its own: it may wait).
pub(crate) struct UidLease {
    uid: u32,
    lock: Option<File>,
    released: Released,
}

impl UidLeases {
    pub(crate) fn open(dir: &Path, first: u32, count: u32) -> Result<Arc<Self>, UidLeaseError> {
        if count == 0 || first.checked_add(count).is_none() {
            return Err(UidLeaseError::Range { first, count });
        }
        let failed = |source| UidLeaseError::Directory { dir: dir.to_path_buf(), source };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
        let meta = fs::symlink_metadata(dir).map_err(failed)?;
        if !meta.is_dir() || meta.uid() != 0 || meta.permissions().mode() & 0o022 != 0 {
            return Err(UidLeaseError::Unsafe(dir.to_path_buf()));
        }
        let start = std::process::id() % count;
        Ok(Arc::new(UidLeases {
            dir: dir.to_path_buf(),
            first,
            count,
            next: AtomicU32::new(start),
            released: Released::default(),
        }))
    }

    /// Ends what commands of dead servers left running: every uid of the range that has processes
    /// but whose lease nobody holds is taken, cleared and let go again. Uids leased by a live
    /// server are never touched. Returns how many uids were cleared.
    pub(crate) fn sweep_orphans(&self) -> usize {
        let busy = uids_with_processes(self.first..self.first + self.count);
        let mut cleared = 0;
        for uid in busy {
            match self.try_take(uid, "sweeping processes of a dead server", LeftoverCheck::Always) {
                Ok(Some(lease)) => {
                    lease.end();
                    cleared += 1;
                }
                Ok(None) => {} // leased by a live server: its commands
                Err(e) => tracing::warn!(uid, error = %e, "could not check a command uid's lease"),
            }
        }
        if cleared > 0 {
            tracing::warn!(cleared, "ended processes that commands of a dead server left running");
        }
        cleared
    }

    /// Waits until some uid of the range is free on the whole host and takes it for `holder`
    /// (written into the lock file, so `cat <lock dir>/<uid>` says who runs what).
    pub(crate) async fn acquire(self: &Arc<Self>, holder: &str) -> std::io::Result<UidLease> {
        let mut warned = false;
        loop {
            let (leases, holder) = (self.clone(), holder.to_string());
            let taken = tokio::task::spawn_blocking(move || leases.try_acquire(&holder))
                .await
                .map_err(std::io::Error::other)??;
            if let Some(lease) = taken {
                return Ok(lease);
            }
            if !warned {
                tracing::warn!(
                    first = self.first,
                    count = self.count,
                    "every command uid of the range is in use on this host; waiting for one"
                );
                warned = true;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One pass over the range; `None` when every uid is held.
    fn try_acquire(&self, holder: &str) -> std::io::Result<Option<UidLease>> {
        while let Some(uid) = self.pop_released() {
            // Another server may have taken it since: then the range is searched as usual.
            if let Some(lease) = self.try_take(uid, holder, LeftoverCheck::UnlessReleased)? {
                return Ok(Some(lease));
            }
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for step in 0..self.count {
            let uid = self.first + (start.wrapping_add(step) % self.count);
            if let Some(lease) = self.try_take(uid, holder, LeftoverCheck::UnlessReleased)? {
                self.next.store(uid - self.first + 1, Ordering::Relaxed);
                return Ok(Some(lease));
            }
        }
        Ok(None)
    }

    fn pop_released(&self) -> Option<u32> {
        self.released.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop()
    }

    fn try_take(&self, uid: u32, holder: &str, check: LeftoverCheck) -> std::io::Result<Option<UidLease>> {
        let path = self.dir.join(uid.to_string());
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // A lock file that is a symlink is refused rather than followed.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        // Free, but a holder that died may have left processes: they go before the uid is reused.
        // A holder that saw the uid empty said so in the file; a sweep checks all the same.
        if (check == LeftoverCheck::Always || !released_clean(&file)?) && !kill_until_gone(uid) {
            tracing::error!(uid, "processes of a free command uid do not die; leaving the uid unused");
            std::mem::forget(file);
            return Ok(None);
        }
        write_record(&file, format!("pid {}\n{holder}\n", std::process::id()).as_bytes())?;
        tracing::debug!(uid, holder, "command uid leased");
        Ok(Some(UidLease { uid, lock: Some(file), released: self.released.clone() }))
    }
}

impl UidLease {
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// Kills every process of the uid, waits until they are gone, then lets the uid go.
    pub(crate) async fn release(self) {
        let _ = tokio::task::spawn_blocking(move || self.end()).await;
    }

    /// Lets the uid go without looking for its processes: for a caller that knows none is left
    /// (a command whose PID namespace ended; see `local.rs`).
    pub(crate) async fn release_empty(mut self) {
        let (uid, lock, released) = (self.uid, self.lock.take(), self.released.clone());
        let _ = tokio::task::spawn_blocking(move || let_go(uid, lock, &released)).await;
    }

    fn end(mut self) {
        end_lease(self.uid, self.lock.take(), &self.released);
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let (uid, released) = (self.uid, self.released.clone());
            std::thread::spawn(move || end_lease(uid, Some(lock), &released));
        }
    }
}

fn end_lease(uid: u32, lock: Option<File>, released: &Released) {
    if kill_until_gone(uid) {
        let_go(uid, lock, released);
    } else {
        tracing::error!(uid, "processes of a command uid do not die; the uid stays leased until they do");
        std::mem::forget(lock);
    }
}

/// Marks the lock file of an empty uid [`RELEASED`] and unlocks it.
fn let_go(uid: u32, lock: Option<File>, released: &Released) {
    let Some(file) = lock else { return };
    // Best effort: without the mark the next taker checks for leftovers itself.
    let marked = write_record(&file, RELEASED);
    drop(file); // closing the file lets the uid go
    if marked.is_ok() {
        let mut released = released.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        released.retain(|&u| u != uid);
        released.push(uid);
    }
}

/// Kills every process of `uid` (processes that left the process group with setsid too) and
/// waits until none is left; `false` if some still live after [`DEATH_WAIT`].
pub(crate) fn kill_until_gone(uid: u32) -> bool {
    let deadline = Instant::now() + DEATH_WAIT;
    loop {
        let alive = processes_of(uid);
        if alive.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        for pid in alive {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills every process of `uid` without waiting (a running command's end, before its output is drained).
pub(crate) fn kill_uid(uid: u32) {
    for pid in processes_of(uid) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}

/// Live processes whose real uid is `uid` (zombies are dead already and are left to their reaper).
fn processes_of(uid: u32) -> Vec<Pid> {
    live_processes().filter(|(_, owner)| *owner == uid).map(|(pid, _)| pid).collect()
}

/// The uids in `range` that have live processes, each once.
fn uids_with_processes(range: std::ops::Range<u32>) -> std::collections::BTreeSet<u32> {
    live_processes().map(|(_, uid)| uid).filter(|uid| range.contains(uid)).collect()
}

/// Every live process and its real uid, from `/proc`.
fn live_processes() -> impl Iterator<Item = (Pid, u32)> {
    fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid = Pid::from_raw(entry.file_name().to_str()?.parse::<i32>().ok()?)?;
        let status = fs::read_to_string(entry.path().join("status")).ok()?;
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let real_uid = field("Uid:")?.split_whitespace().next()?.parse::<u32>().ok()?;
        let zombie = field("State:").is_some_and(|s| s.starts_with('Z'));
        (!zombie).then_some((pid, real_uid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(count: u32) -> (tempfile::TempDir, Arc<UidLeases>) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("uids");
        // Runs as any user: unit tests check the locking, not the ownership rule.
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let leases =
            UidLeases { dir, first: 3_900_000_000, count, next: AtomicU32::new(0), released: Released::default() };
        (root, Arc::new(leases))
    }

    #[test]
    fn a_uid_is_held_by_one_lease_at_a_time_even_within_one_process() {
        let (_root, pool) = leases(2);
        let a = pool.try_acquire("a").unwrap().unwrap();
        let b = pool.try_acquire("b").unwrap().unwrap();
        assert_ne!(a.uid(), b.uid());
        assert!(pool.try_acquire("c").unwrap().is_none(), "both uids are held");
        let freed = a.uid();
        a.end();
        let c = pool.try_acquire("c").unwrap().expect("the released uid is free again");
        assert_eq!(c.uid(), freed);
        let text = fs::read_to_string(pool.dir.join(freed.to_string())).unwrap();
        assert!(text.contains(&format!("pid {}", std::process::id())) && text.contains('c'), "{text}");
    }

    #[test]
    fn a_uid_released_empty_says_so_and_is_taken_first() {
        let (_root, leases) = leases(5);
        let lease = leases.try_acquire("first").unwrap().expect("a free uid");
        let path = leases.dir.join(lease.uid().to_string());
        let file = File::open(&path).unwrap();
        assert!(!released_clean(&file).unwrap(), "a held lease names its holder");
        let record = fs::read_to_string(&path).unwrap();
        assert_eq!(record.len(), RECORD_LEN, "one fixed-length record");
        assert_eq!(record.lines().next(), Some(format!("pid {}", std::process::id()).as_str()));
        assert_eq!(record.lines().nth(1), Some("first"));
        // A holder that dies keeps its "pid … holder" content: the next taker checks for leftovers.
        lease.end();
        assert!(released_clean(&file).unwrap(), "the holder saw the uid empty");
        // The range would offer the next uid; the one released empty comes first.
        let again = leases.try_acquire("second").unwrap().expect("a free uid");
        assert_eq!(again.uid(), path.file_name().unwrap().to_str().unwrap().parse::<u32>().unwrap());
        assert!(!released_clean(&file).unwrap());
    }

    #[test]
    fn a_lock_directory_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = UidLeases::open(root.path(), 61000, 8).err().expect("refused");
        assert!(matches!(err, UidLeaseError::Unsafe(_)), "{err}");
    }

    #[test]
    fn a_range_past_the_largest_uid_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = UidLeases::open(root.path(), u32::MAX - 1, 8).err().unwrap();
        assert!(matches!(err, UidLeaseError::Range { .. }), "{err}");
    }
}
