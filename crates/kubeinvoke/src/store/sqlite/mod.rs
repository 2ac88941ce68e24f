//! The embedded backend: SQLite in WAL mode, one writer connection on tokio's blocking pool and
//! a few reader connections used inline (reads are short point lookups on cached statements).
//!
//! One writer serialises writes, which SQLite does anyway; WAL lets the readers go on meanwhile.
//! `synchronous = FULL` so an acknowledged submission or result survives a power cut, not just a
//! process crash.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Row};

use super::rows::Columns;
use super::*;

mod migrations;

/// Connections that only read, beside the one writer (WAL lets them run concurrently).
const READERS: usize = 4;

#[derive(Clone)]
pub struct SqliteStore {
    /// The one writer, used on the blocking pool: a commit waits for the disk.
    conn: Arc<Mutex<Connection>>,
    /// Point lookups take microseconds, so they run inline on the calling task: hopping to the
    /// blocking pool and back cost more than the query (the profile of result reads said so).
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        migrations::migrate(&mut conn)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
                reader.pragma_update(None, "query_only", "ON")?;
                // Pages read through the mapping, not copied in by a syscall each: random reads
                // over a large database were 1.3× slower without it.
                reader.pragma_update(None, "mmap_size", 0x7fff_0000_i64)?;
                reader.busy_timeout(std::time::Duration::from_secs(5))?;
                reader.set_prepared_statement_cache_capacity(64);
                Ok(Mutex::new(reader))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(readers),
            next_reader: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// Runs a read on a free reader connection, inline.
    pub(in crate::store) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> StoreResult<T> {
        let start = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for offset in 0..self.readers.len() {
            if let Ok(reader) = self.readers[(start + offset) % self.readers.len()].try_lock() {
                return f(&reader);
            }
        }
        let reader = self.readers[start % self.readers.len()].lock().unwrap_or_else(|p| p.into_inner());
        f(&reader)
    }

    pub(in crate::store) async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(anyhow::anyhow!("store task failed: {e}")))?
    }
}

/// `query_row` through the statement cache: the same few statements run on every request.
pub(in crate::store) fn row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// The one row `sql` returns, mapped through `record`, or `None`.
pub(in crate::store) fn optional_record<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    record: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> StoreResult<Option<T>> {
    row(conn, sql, params, |r| Ok(record(r))).optional().map_err(backend)?.transpose()
}

/// Every row `sql` returns, mapped through `record`.
pub(in crate::store) fn records<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    record: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let rows = stmt.query_map(params, |r| Ok(record(r))).map_err(backend)?;
    rows.map(flatten).collect()
}

pub(in crate::store) fn backend(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        // The data directory's filesystem is full: SQLite rolled the write back, nothing is lost.
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full(e.into()),
        _ => StoreError::Backend(e.into()),
    }
}

/// A row mapped into a record, where reading the row or building the record may fail.
pub(in crate::store) fn flatten<T>(mapped: rusqlite::Result<Result<T, StoreError>>) -> Result<T, StoreError> {
    mapped.map_err(backend)?
}

/// Ids are stored as their text.
macro_rules! text_column {
    ($($id:ty),*) => {$(
        impl rusqlite::ToSql for $id {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $id {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(value).map(<$id>::from_text)
            }
        }
    )*};
}
text_column!(crate::command::CommandId, crate::store::ClusterUid);

impl Columns for Row<'_> {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.get(column).map_err(backend)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.get(column).map_err(backend)
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.get(column).map_err(backend)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.get(column).map_err(backend)
    }
    fn opt_int32(&self, column: &str) -> Result<Option<i32>, StoreError> {
        self.get(column).map_err(backend)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.get(column).map_err(backend)
    }
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(column).map_err(backend)
    }
    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        self.get(column).map_err(backend)
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    every_aggregate_is_self!();

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| row(conn, "SELECT 1", [], |_| Ok(())).map_err(backend))
    }

    fn is_shared(&self) -> bool {
        false
    }
}
