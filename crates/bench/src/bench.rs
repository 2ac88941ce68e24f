//! What every scenario shares: where to put data directories, how long to measure, and the
//! PostgreSQL server to use. (Servers share the default command uid range: uids are leased
//! host-wide.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::target::{Launch, Target};

pub struct Bench {
    pub work: PathBuf,
    pub quick: bool,
    /// A PostgreSQL URL without a database, whose role may create databases.
    pub postgres: Option<String>,
    next_dir: AtomicU32,
}

impl Bench {
    pub fn new(work: PathBuf, quick: bool, postgres: Option<String>) -> Self {
        Bench { work, quick, postgres, next_dir: AtomicU32::new(0) }
    }

    /// How long one load measurement runs.
    pub fn measure_for(&self) -> Duration {
        if self.quick { Duration::from_secs(3) } else { Duration::from_secs(10) }
    }

    /// A fresh data directory for a server.
    pub fn launch(&self, name: &str, args: &[&str]) -> Launch {
        let n = self.next_dir.fetch_add(1, Ordering::Relaxed);
        Launch {
            data_dir: self.work.join(format!("{n:02}-{name}")).join("data"),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub async fn start(&self, name: &str, args: &[&str]) -> anyhow::Result<Target> {
        Target::start(&self.launch(name, args)).await
    }

    /// A new database on the benchmark's PostgreSQL server.
    pub async fn postgres_database(&self, name: &str) -> anyhow::Result<String> {
        let database = format!("kibench_{name}_{}", std::process::id());
        let admin = self.postgres_admin().await?;
        // Generated names only: no user input reaches this statement.
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await?;
        admin.batch_execute(&format!("CREATE DATABASE {database}")).await?;
        Ok(format!("{}/{database}", self.postgres_base()?))
    }

    /// Drops a database [`Bench::postgres_database`] made: a million results take 1.5 GB.
    pub async fn drop_postgres_database(&self, url: &str) -> anyhow::Result<()> {
        let database = url.rsplit('/').next().filter(|d| d.starts_with("kibench_")).context("a benchmark database")?;
        self.postgres_admin().await?.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await?;
        Ok(())
    }

    fn postgres_base(&self) -> anyhow::Result<&str> {
        self.postgres.as_deref().ok_or_else(|| anyhow::anyhow!("no PostgreSQL configured"))
    }

    async fn postgres_admin(&self) -> anyhow::Result<tokio_postgres::Client> {
        let url = format!("{}/postgres", self.postgres_base()?);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}
