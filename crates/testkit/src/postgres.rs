//! The suite's PostgreSQL server: a fresh database per test server, dropped afterwards.

/// The server a run on PostgreSQL uses (`KUBEINVOKE_TEST_POSTGRES`, a URL without a database),
/// or `None` when the suite runs on SQLite.
pub fn test_postgres() -> Option<String> {
    std::env::var("KUBEINVOKE_TEST_POSTGRES").ok().filter(|v| !v.is_empty())
}

/// Whether this run's servers keep their state in PostgreSQL.
pub fn on_postgres() -> bool {
    test_postgres().is_some()
}

/// A new, empty database on the test PostgreSQL server for one test, so every test starts from
/// nothing as it does on SQLite, dropped when the test is done with it: a run makes hundreds, and
/// left behind they fill the disk.
pub struct TestDatabase {
    /// The server's URL, without a database.
    base: String,
    name: String,
}

impl TestDatabase {
    pub async fn create(base: &str) -> TestDatabase {
        let name = format!("ki_{}", uuid::Uuid::new_v4().simple());
        let client = postgres_client(&format!("{base}/postgres")).await;
        // A database name cannot be a bound parameter; this one is generated here, never user input.
        // FILE_COPY copies the template's files instead of writing all of them to the WAL.
        client.batch_execute(&format!("CREATE DATABASE {name} STRATEGY FILE_COPY")).await.expect("CREATE DATABASE");
        TestDatabase { base: base.to_string(), name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = format!("{}/postgres", self.base);
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs on the test's runtime, which cannot wait on a future: a thread of its own.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test database {} left behind: {e}", self.name),
            Err(_) => eprintln!("test database {} left behind: the dropping thread panicked", self.name),
        }
    }
}

/// A connection to a test database (its driver task runs in the background).
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}
