//! The exit journal: the exit code and output of a command that ran to its end, written beside
//! its live output the moment its executor knows them (before the run's cleanup and before the
//! result is stored) and removed once the result is stored.
//!
//! A replica killed in between — during the cleanup, or while `record` retries against a store that is down — would
//! otherwise come back and end the command `Interrupted`, although it ran to its end. On start it
//! stores what the journal says instead; when another replica has meanwhile called the command
//! lost, the end becomes that row's late report (`LostThenReported`), as after a partition.
//!
//! Written without fsync: it guards against the death of the process, which leaves the page cache
//! intact, not against the loss of the machine (after that the command reads `Interrupted`).
//! Only runs that ended by themselves are journaled: a run that was stopped did not reach its end,
//! and `Interrupted` says no less than what happened.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::command::CommandId;
use crate::executor::ExitNotice;

/// The journal's file suffix, beside each command's `{id}.log`.
const SUFFIX: &str = ".exit";

/// One journaled end: the command, its exit code and its logs as the result keeps them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Exit {
    pub(super) id: CommandId,
    pub(super) exit_code: i32,
    pub(super) logs: String,
}

/// The journal in a replica's outputs directory.
#[derive(Clone)]
pub(super) struct ExitJournal {
    dir: PathBuf,
}

impl ExitJournal {
    pub(super) fn new(dir: &Path) -> Self {
        ExitJournal { dir: dir.to_path_buf() }
    }

    fn path(&self, id: &CommandId) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// Writes the end of `id` (the exit code on the first line, the logs after it), mode 0600
    /// like the output it repeats. Best effort: a full disk costs only the recovery it enables.
    pub(super) fn write(&self, id: &CommandId, exit_code: i32, logs: &str) {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.path(id))
            .and_then(|mut file| file.write_all(format!("{exit_code}\n{logs}").as_bytes()));
        if let Err(e) = written {
            tracing::warn!(command_id = %id, error = %e, "the end of a command could not be journaled before it is stored");
        }
    }

    /// What the executor running `id` tells of its end: written here at once, before the run's
    /// cleanup (the sandbox's end, the uid's release), which can take seconds under load.
    pub(super) fn notice(&self, id: &CommandId) -> ExitNotice {
        let (journal, id) = (self.clone(), id.clone());
        ExitNotice::new(move |exit_code, logs| journal.write(&id, exit_code, logs))
    }

    /// Forgets the end of `id` once the store holds it (or nothing more can be done with it).
    pub(super) fn remove(&self, id: &CommandId) {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(command_id = %id, error = %e, "removing a journaled command end failed"),
        }
    }

    /// The ends a previous life of this replica journaled and did not get to store. A file that
    /// does not parse (cut short by a full disk) is removed: its command reads `Interrupted`.
    pub(super) fn unstored(&self) -> Vec<Exit> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut exits = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else { continue };
            let id = CommandId::from_text(id);
            match std::fs::read_to_string(entry.path()).ok().as_deref().and_then(parse) {
                Some((exit_code, logs)) => exits.push(Exit { id, exit_code, logs: logs.to_string() }),
                None => {
                    tracing::warn!(command_id = %id, "a journaled command end is unreadable; the command reads Interrupted");
                    self.remove(&id);
                }
            }
        }
        exits.sort_by(|a, b| a.id.cmp(&b.id));
        exits
    }
}

/// `"{exit_code}\n{logs}"` back into its parts.
fn parse(text: &str) -> Option<(i32, &str)> {
    let (code, logs) = text.split_once('\n')?;
    Some((code.parse().ok()?, logs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_written_is_found_until_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ExitJournal::new(dir.path());
        let id = CommandId::generate();
        journal.write(&id, 3, "line one\nline two\n");
        std::fs::write(dir.path().join(format!("{id}.log")), "live output").unwrap();
        let mode = std::fs::metadata(journal.path(&id)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        assert_eq!(
            journal.unstored(),
            vec![Exit { id: id.clone(), exit_code: 3, logs: "line one\nline two\n".into() }]
        );
        journal.remove(&id);
        assert_eq!(journal.unstored(), vec![]);
        assert!(dir.path().join(format!("{id}.log")).exists(), "the live output is not the journal's");
    }

    #[test]
    fn an_end_cut_short_is_dropped_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ExitJournal::new(dir.path());
        std::fs::write(dir.path().join("abc.exit"), "1").unwrap();
        std::fs::write(dir.path().join("def.exit"), "x\nlogs").unwrap();
        assert_eq!(journal.unstored(), vec![]);
        assert!(!dir.path().join("abc.exit").exists() && !dir.path().join("def.exit").exists());
    }
}
