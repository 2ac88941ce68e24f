//! Growth: read latency, bytes per result and idle memory with 1,000 and with 1,000,000 stored
//! results. The extra results are written straight into the database while the server is
//! stopped (the HTTP path would take hours); they have the shape of real finished results:
//! 1 KiB of logs, retained, in one cluster. Reads pick a random one of them each request, with
//! the read cache off, so what is measured is the database's growth — and, at the large point,
//! also with the server's default read cache, where the cluster and the caller's assignments are
//! in memory and only the result (one of so many that it is rarely cached) asks the database.

use std::time::Duration;

use anyhow::Context;

use crate::bench::Bench;
use crate::load::wrk;
use crate::reads::server_with_result;
use crate::target::Target;

pub struct GrowthPoint {
    pub stored: u64,
    /// Whether the server ran with its read cache (its default) or with `--read-cache false`.
    pub read_cache: bool,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests_per_sec: f64,
    pub bytes_per_result: f64,
    /// Resident memory after start and one warm-up read, before load.
    pub idle_rss: u64,
    pub command: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub async fn run(bench: &Bench, backend: Backend, stored: u64, read_cache: bool) -> anyhow::Result<GrowthPoint> {
    let store_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(bench.postgres_database(&format!("growth{stored}{read_cache}")).await?),
    };
    // The store alone: with the read cache, 1,000 results would all be served from memory.
    let mut args = if read_cache { vec![] } else { vec!["--read-cache", "false"] };
    if let Some(url) = &store_url {
        args.extend(["--store", url.as_str()]);
    }
    let (mut server, location) = server_with_result(bench, &format!("growth-{stored}-{read_cache}"), &args).await?;
    let launch_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let data_dir = server.data_dir.clone();
    server.stop();
    match &store_url {
        None => populate_sqlite(&data_dir.join("kubeinvoke.db"), stored - 1)?,
        Some(url) => populate_postgres(url, stored - 1).await?,
    }
    let launch = crate::target::Launch { data_dir: data_dir.clone(), args: launch_args };
    let server = Target::start(&launch).await?;
    // The populated ids are `{n:032x}`; the script asks for a random one of them each time.
    let prefix = location.split("/commandResults/").next().context("result URL")?;
    let path = prefix.split_once("://").and_then(|(_, rest)| rest.split_once('/')).context("path")?.1;
    let script = data_dir.join("../random-result.lua");
    std::fs::write(
        &script,
        format!(
            "math.randomseed(42)\nrequest = function()\n  local id = string.format(\"%032x\", math.random(1, {}))\n  return wrk.format(\"GET\", \"/{path}/commandResults/\" .. id .. \"?api-version=2024-09-01\")\nend\n",
            stored - 1
        ),
    )?;
    // One read first, so idle memory is that of a server that has served (on its new port).
    let location =
        format!("{}/{path}/commandResults/{}", server.base, location.split("/commandResults/").nth(1).context("id")?);
    server.client.get(&location).bearer_auth(&server.token).send().await?.error_for_status()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = server.memory().0;
    let load = wrk(&server.base, Some(&server.token), 8, bench.measure_for(), Some(&script)).await?;
    anyhow::ensure!(load.non_2xx == 0, "random reads failed: {} non-2xx", load.non_2xx);
    let bytes = match &store_url {
        None => crate::target::file_bytes(&data_dir, "kubeinvoke.db"),
        Some(url) => postgres_bytes(url).await?,
    };
    // What was stored is measured: give its disk back (a million results take 1.5 GB).
    drop(server);
    match &store_url {
        None => {
            for file in ["kubeinvoke.db", "kubeinvoke.db-wal", "kubeinvoke.db-shm"] {
                let _ = std::fs::remove_file(data_dir.join(file));
            }
        }
        Some(url) => bench.drop_postgres_database(url).await?,
    }
    Ok(GrowthPoint {
        stored,
        read_cache,
        p50_ms: load.p50_ms,
        p99_ms: load.p99_ms,
        requests_per_sec: load.requests_per_sec,
        bytes_per_result: bytes as f64 / stored as f64,
        idle_rss,
        command: load.command,
    })
}

fn logs() -> String {
    "x".repeat(1024)
}

/// Rows as a server leaves its results: finished, and already in the activity log
/// (`logged_state`), so the logger has nothing to catch up on while reads are measured.
fn populate_sqlite(db: &std::path::Path, extra: u64) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(db)?;
    let tx = conn.transaction()?;
    let (cluster, submitted_by): (String, String) =
        tx.query_row("SELECT cluster_uid, submitted_by FROM commands LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO commands (id, cluster_uid, state, command, submitted_at, started_at, finished_at,
                                   exit_code, logs, expires_at, submitted_by, logged_state)
             VALUES (?1, ?2, 'Succeeded', 'true', ?3, ?3, ?3, 0, ?4, 9000000000000, ?5, 'Succeeded')",
        )?;
        let logs = logs();
        let now = kubeinvoke::time::now_millis();
        for n in 1..=extra {
            insert.execute(rusqlite::params![format!("{n:032x}"), cluster, now, logs, submitted_by])?;
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

async fn populate_postgres(url: &str, extra: u64) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .execute(
            "INSERT INTO commands (id, cluster_uid, state, command, submitted_at, started_at, finished_at,
                                   exit_code, logs, expires_at, submitted_by, logged_state)
             SELECT lpad(to_hex(n), 32, '0'), c.cluster_uid, 'Succeeded', 'true', $2, $2, $2, 0, $3,
                    9000000000000, c.submitted_by, 'Succeeded'
             FROM generate_series(1, $1::bigint) AS n, (SELECT cluster_uid, submitted_by FROM commands LIMIT 1) c",
            &[&(extra as i64), &kubeinvoke::time::now_millis(), &logs()],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE commands").await?;
    Ok(())
}

async fn postgres_bytes(url: &str) -> anyhow::Result<u64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let bytes: i64 = client.query_one("SELECT pg_total_relation_size('commands')", &[]).await?.get(0);
    Ok(bytes as u64)
}
