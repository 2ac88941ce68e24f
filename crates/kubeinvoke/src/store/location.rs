//! Where the store lives: the embedded SQLite file or a PostgreSQL URL shared by replicas.

/// The database behind the store.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `kubeinvoke.db` in the data directory: one process.
    Sqlite,
    /// A PostgreSQL URL: any number of replicas.
    Postgres(String),
}

impl std::str::FromStr for StoreLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("sqlite") {
            Ok(StoreLocation::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(StoreLocation::Postgres(text.to_string()))
        } else {
            Err("expected `sqlite` or a postgres://user:password@host:port/database URL".into())
        }
    }
}

impl std::fmt::Display for StoreLocation {
    /// Never shows a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite => f.write_str("sqlite"),
            StoreLocation::Postgres(url) => f.write_str(&super::postgres::redact(url)),
        }
    }
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
