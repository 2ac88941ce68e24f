//! What a suite needs from the machine beyond a Rust toolchain. On a plain `cargo test` a test
//! whose needs are missing is left out, and the terminal says once per suite which and why;
//! under `scripts/test.sh`, which sets `KUBEINVOKE_TEST_EVERY_SUITE=1` after installing
//! everything, a missing need fails the test instead, so CI never passes a suite it did not run.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Mutex;

/// Whether the tests of `suite` may run: `missing` is `None`, or names what is missing.
#[must_use]
pub fn runs(suite: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else { return true };
    if std::env::var_os("KUBEINVOKE_TEST_EVERY_SUITE").is_some_and(|v| v == "1") {
        panic!("{suite} cannot run here: {why} (scripts/test.sh must run every suite)");
    }
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if REPORTED.lock().unwrap().insert(suite.to_string()) {
        // Straight to the terminal: the test harness captures only the print macros.
        let _ = writeln!(std::io::stderr(), "note: left out {suite}: {why}; ./scripts/test.sh installs and runs it");
    }
    false
}

/// The programs of `programs` that are not on PATH, as a reason; `None` when all are.
pub fn programs(programs: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|program| !std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .collect();
    (!missing.is_empty()).then(|| format!("{} not installed", missing.join(", ")))
}

/// `None` as root; else the reason a suite that must be root cannot run.
pub fn root() -> Option<String> {
    (!rustix::process::geteuid().is_root()).then(|| "it must run as root".to_string())
}

/// The first reason of several, if any.
pub fn all(reasons: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let reasons: Vec<String> = reasons.into_iter().flatten().collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}
