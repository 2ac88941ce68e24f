//! SQL written once for both dialects.
//!
//! Statements that only differ in how they number their parameters are written with
//! PostgreSQL's `$n`; SQLite reads the same numbers as `?n` (both bind by position). Statements
//! that differ in more than that (row locks, `RETURNING` tricks) stay in their backend's file.

use std::sync::OnceLock;

/// One statement for both backends.
pub(super) struct Sql {
    text: &'static str,
    sqlite: OnceLock<String>,
}

impl Sql {
    /// `text` must not hold a `$` other than its parameters (no dollar quoting, no `$` in literals).
    pub(super) const fn new(text: &'static str) -> Self {
        Sql { text, sqlite: OnceLock::new() }
    }

    pub(super) fn postgres(&self) -> &'static str {
        self.text
    }

    /// The statement with `?n` parameters, converted once per process.
    pub(super) fn sqlite(&self) -> &str {
        self.sqlite.get_or_init(|| self.text.replace('$', "?"))
    }
}

#[cfg(test)]
mod tests {
    use super::Sql;

    #[test]
    fn sqlite_reads_the_same_parameter_numbers() {
        static STATEMENT: Sql = Sql::new("UPDATE t SET a = $2 WHERE id = $1 AND b = $10");
        assert_eq!(STATEMENT.postgres(), "UPDATE t SET a = $2 WHERE id = $1 AND b = $10");
        assert_eq!(STATEMENT.sqlite(), "UPDATE t SET a = ?2 WHERE id = ?1 AND b = ?10");
    }
}
