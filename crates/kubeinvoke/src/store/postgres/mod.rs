//! The scale-out backend: PostgreSQL through a deadpool of tokio-postgres connections, shared by
//! any number of replicas.
//!
//! Replicas agree through the database alone: claims take the oldest `Accepted` row with
//! `FOR UPDATE SKIP LOCKED`, so two replicas never claim the same command; a claimed command
//! carries its owner's lease, which the owner renews and any replica may declare lost once it
//! runs out. Submissions `NOTIFY` a channel every replica `LISTEN`s on. All SQL takes input
//! through bound parameters only.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::rows::Columns;
use super::*;

mod migrations;

/// The channel submissions are announced on.
pub(in crate::store) const WORK_CHANNEL: &str = "kubeinvoke_work";

/// How long a connection may go without the database acknowledging it before it counts as lost.
const DEAD_PEER: Duration = Duration::from_secs(4);

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and applies pending
    /// migrations under an advisory lock, so replicas starting together do not race.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url).context("parsing the --store PostgreSQL URL")?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        if config.get_application_name().is_none() {
            config.application_name("kubeinvoke");
        }
        // A database that stalls must not stall requests: they fail with 503 instead.
        config.options("-c statement_timeout=15000");
        // A database the network lost (packets dropped, no reset) must not either: the kernel
        // gives up a connection whose data stays unacknowledged for a few seconds, and probes
        // idle ones, so a partition is an error (503) at once rather than a hang of minutes,
        // and the pool reconnects when the link heals.
        config.tcp_user_timeout(DEAD_PEER);
        config.keepalives(true).keepalives_idle(DEAD_PEER).keepalives_interval(Duration::from_secs(1));
        config.keepalives_retries(3);
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .context("building the PostgreSQL connection pool")?;
        let store = PostgresStore { pool, config };
        let mut client = store.pool.get().await.with_context(|| format!("connecting to {}", redact(url)))?;
        migrations::migrate(&mut client).await?;
        Ok(store)
    }

    pub(in crate::store) async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Keeps one connection listening for submissions; reconnects after a database restart and
    /// wakes the dispatcher then too, since announcements made meanwhile were lost.
    async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    backoff = Duration::from_millis(200);
                    let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    let listening = async {
                        if let Err(e) = client.batch_execute(&format!("LISTEN {WORK_CHANNEL}")).await {
                            tracing::warn!(error = %e, "LISTEN failed");
                        }
                        wake.notify_one();
                        std::future::pending::<()>().await
                    };
                    let forward = async {
                        use futures_util::StreamExt;
                        let mut messages = std::pin::pin!(messages);
                        while let Some(message) = messages.next().await {
                            match message {
                                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "the work-notification connection failed; reconnecting");
                                    return;
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = listening => {}
                        _ = forward => {}
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot listen for work yet"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Queries through statements prepared once per connection (deadpool's statement cache): a
/// plain `query(&str)` prepares an unnamed statement first, a second round trip on every call.
/// SQL built at run time must come from a small fixed set of shapes, since each is cached.
pub(in crate::store) trait CachedQueries {
    async fn prepared(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error>;
    async fn query_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, tokio_postgres::Error>;
    async fn query_one_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, tokio_postgres::Error>;
    async fn query_opt_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>;
    async fn execute_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, tokio_postgres::Error>;
}

/// One implementation for a pooled connection and a transaction on one.
macro_rules! cached_queries {
    ($($client:ty),+) => {$(
        impl CachedQueries for $client {
            async fn prepared(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
                self.prepare_cached(sql).await
            }
            async fn query_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, tokio_postgres::Error> {
                self.query(&self.prepare_cached(sql).await?, params).await
            }
            async fn query_one_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, tokio_postgres::Error> {
                self.query_one(&self.prepare_cached(sql).await?, params).await
            }
            async fn query_opt_cached(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, tokio_postgres::Error> {
                self.query_opt(&self.prepare_cached(sql).await?, params).await
            }
            async fn execute_cached(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, tokio_postgres::Error> {
                self.execute(&self.prepare_cached(sql).await?, params).await
            }
        }
    )+};
}

cached_queries!(Object, deadpool_postgres::ClientWrapper, deadpool_postgres::Transaction<'_>);

/// The URL without its password, for logs and the banner.
pub(super) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_string(),
        },
        None => "<unparsable URL>".into(),
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_error(e),
        PoolError::Timeout(_) => StoreError::Unavailable(anyhow::anyhow!("no database connection within the timeout")),
        other => StoreError::Backend(other.into()),
    }
}

/// Connection trouble (refused, closed, shutting down, too many clients) and a transaction the
/// database rolled back to break a deadlock or a serialization conflict (40P01, 40001) are
/// `Unavailable`: the request may succeed later. Anything else the database refused is a
/// backend error.
pub(in crate::store) fn db_error(e: tokio_postgres::Error) -> StoreError {
    // 53100 disk_full: the server could not extend a file; the transaction was rolled back.
    if e.as_db_error().is_some_and(|db| db.code().code() == "53100") {
        return StoreError::Full(e.into());
    }
    let transient = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || matches!(code, "53300" | "57014" | "40P01" | "40001")
        }
        None => {
            let text = e.to_string();
            !(text.starts_with("error deserializing") || text.starts_with("error serializing"))
        }
    };
    if transient { StoreError::Unavailable(e.into()) } else { StoreError::Backend(e.into()) }
}

/// Maps every row through `record`.
pub(in crate::store) fn records<T>(rows: &[Row], record: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(record).collect()
}

impl Columns for Row {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn opt_int32(&self, column: &str) -> Result<Option<i32>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column).map_err(db_error)
    }
}

/// Ids are stored as their text.
macro_rules! text_column {
    ($($id:ty),*) => {$(
        impl tokio_postgres::types::ToSql for $id {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $id {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                String::from_sql(ty, raw).map(<$id>::from_text)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <String as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    )*};
}
text_column!(crate::command::CommandId, crate::store::ClusterUid);

#[async_trait::async_trait]
impl Store for PostgresStore {
    every_aggregate_is_self!();

    async fn ping(&self) -> StoreResult<()> {
        let client = self.client().await?;
        client.query_one("SELECT 1", &[]).await.map_err(db_error)?;
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn notify_new_work(&self, wake: Arc<Notify>) {
        tokio::spawn(Self::listen(self.config.clone(), wake));
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(redact("postgres://ki:s3cret@db:5432/ki"), "postgres://ki@db:5432/ki");
        assert_eq!(redact("postgres://ki@db/ki"), "postgres://ki@db/ki");
        assert_eq!(redact("postgres://db/ki"), "postgres://db/ki");
        assert_eq!(redact("p@ss"), "<unparsable URL>");
    }
}
