//! A real `kubeinvoke serve` process (through [`crate::launch`]) with its own data directory and,
//! on a PostgreSQL run, its own database; requests to it as the bootstrap admin or another caller.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::fixtures::*;
use crate::network::TestHost;
use crate::postgres::*;

pub struct Server {
    child: Option<Child>,
    pub base: String,
    /// What the server printed at startup.
    pub banner: String,
    /// The small filesystem its data directory is on, if any: unmounted before `root` goes.
    small_disk: Option<crate::small_disk::SmallDisk>,
    root: TempDir,
    args: Vec<String>,
    ca: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// This server's process ids, of every start on this data directory (the newest last).
    pids: Vec<u32>,
    pub client: reqwest::Client,
    /// An ARM token of the bootstrap admin (Owner at `/`), from the server's own issuer.
    pub token: String,
    /// The database made for this server on a PostgreSQL run, dropped after the server stops.
    database: Option<TestDatabase>,
    /// The test host it runs on, if not this host's loopback.
    host: Option<TestHost>,
}

/// Where a server runs: on a test network's host (else this host's loopback), its data
/// directory on a small filesystem of its own (else the test's temporary directory).
#[derive(Default, Clone)]
pub struct Placement {
    pub host: Option<TestHost>,
    pub disk_bytes: Option<u64>,
}

/// A service principal's credentials, as in `bootstrap-admin.json`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub app_id: String,
    pub password: String,
    pub tenant: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a CloudError with this status and code, returning its message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "body: {}", self.text);
        body["error"]["message"].as_str().expect("message").to_string()
    }
}

impl Server {
    pub async fn start(extra: &[&str]) -> Server {
        Self::start_trusting(extra, None).await
    }

    /// Starts a server whose certificate chains to `ca` (default: the CA it generates).
    pub async fn start_trusting(extra: &[&str], ca: Option<PathBuf>) -> Server {
        let root = tempfile::tempdir().expect("tempdir");
        Self::launch(root, extra.iter().map(|s| s.to_string()).collect(), ca, Vec::new(), Vec::new(), None).await
    }

    /// Starts a server whose data directory is a filesystem of `bytes` (a tmpfs), for tests that
    /// fill it.
    pub async fn start_on_small_disk(extra: &[&str], bytes: u64) -> Server {
        Self::start_placed(extra, Placement { host: None, disk_bytes: Some(bytes) }).await
    }

    /// The small filesystem of [`Server::start_on_small_disk`].
    pub fn small_disk(&self) -> &crate::small_disk::SmallDisk {
        self.small_disk.as_ref().expect("started on a small disk")
    }

    /// Starts a server on a test network's host, its clients reaching it at the host's address.
    pub async fn start_on_host(extra: &[&str], host: &TestHost) -> Server {
        Self::start_placed(extra, Placement { host: Some(host.clone()), disk_bytes: None }).await
    }

    /// Starts a server where `placement` says.
    pub async fn start_placed(extra: &[&str], placement: Placement) -> Server {
        let root = tempfile::tempdir().expect("tempdir");
        let disk =
            placement.disk_bytes.map(|bytes| crate::small_disk::SmallDisk::mount(&root.path().join("data"), bytes));
        let args = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Self::launch_on(root, args, None, Vec::new(), Vec::new(), None, placement.host).await;
        server.small_disk = disk;
        server
    }

    /// Starts a server with extra environment variables (for example a PATH without bwrap).
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let root = tempfile::tempdir().expect("tempdir");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::launch(root, extra.iter().map(|s| s.to_string()).collect(), None, env, Vec::new(), None).await
    }

    /// Runs `serve` expecting it to refuse to start; returns what it printed.
    pub fn start_refused(extra: &[&str], env: &[(&str, &str)]) -> String {
        let root = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(root.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubeinvoke");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server started although it should have refused");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "the server exited successfully although it should have refused");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        stderr
    }

    /// The bootstrap admin's credentials (absent when the built-in issuer is off).
    pub fn admin(&self) -> Option<Credentials> {
        let text = std::fs::read_to_string(self.data_dir().join("bootstrap-admin.json")).ok()?;
        Some(serde_json::from_str(&text).expect("bootstrap file is JSON"))
    }

    /// Client credentials against the server's own token endpoint.
    pub async fn token_for(&self, who: &Credentials, scope: &str) -> String {
        crate::launch::token(&self.client, &self.base, who, scope).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `kubeinvoke sp create` on this server's data directory, with a role at a scope if given.
    pub fn create_principal(&self, name: &str, role: Option<(&str, &str)>) -> Credentials {
        let mut command = Command::new(binary());
        command.args(["sp", "create", "--name", name]).args(self.admin_args());
        if let Some((role, scope)) = role {
            command.args(["--role", role, "--scope", scope]);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "sp create: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("sp create prints JSON credentials")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server process's resident memory, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        crate::launch::status_bytes(self.pid(), "VmRSS:") / 1024
    }

    async fn launch(
        root: TempDir,
        args: Vec<String>,
        ca: Option<PathBuf>,
        env: Vec<(String, String)>,
        pids: Vec<u32>,
        database: Option<TestDatabase>,
    ) -> Server {
        Self::launch_on(root, args, ca, env, pids, database, None).await
    }

    async fn launch_on(
        root: TempDir,
        args: Vec<String>,
        ca: Option<PathBuf>,
        env: Vec<(String, String)>,
        mut pids: Vec<u32>,
        mut database: Option<TestDatabase>,
        host: Option<TestHost>,
    ) -> Server {
        let mut args = args;
        if !args.iter().any(|a| a == "--store")
            && let Some(base) = test_postgres()
        {
            let fresh = TestDatabase::create(&base).await;
            args.extend(["--store".to_string(), fresh.url()]);
            database = Some(fresh);
        }
        let data_dir = root.path().join("data");
        let log = root.path().join("server.log");
        let mut server_env = vec![
            (SERVER_ONLY_VAR.to_string(), "must-not-leak".to_string()),
            ("KUBEINVOKE_LOG".to_string(), "info".to_string()),
        ];
        server_env.extend(env.iter().cloned());
        let launch = crate::launch::Launch {
            data_dir: &data_dir,
            args: &args,
            env: &server_env,
            log: &log,
            host: host.as_ref(),
        };
        let started = crate::launch::start(launch).await.unwrap_or_else(|e| panic!("{e:#}"));
        let (child, base, banner) = (started.child, started.base, started.banner);
        pids.push(child.id());
        let client = if base.starts_with("http://") {
            reqwest::Client::new()
        } else {
            client_for(ca.as_deref().unwrap_or(&data_dir.join("tls/ca.pem")))
        };
        let mut server = Server {
            child: Some(child),
            base,
            banner,
            small_disk: None,
            root,
            args,
            ca,
            env,
            pids,
            client,
            token: String::new(),
            database,
            host,
        };
        let issuer_off = server.args.windows(2).any(|w| w[0] == "--builtin-issuer" && w[1] == "false");
        if let Some(admin) = server.admin().filter(|_| !issuer_off) {
            server.token = server.token_for(&admin, "https://management.azure.com/.default").await;
        }
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The PostgreSQL URL this server keeps its state in, if not SQLite.
    pub fn store_url(&self) -> Option<&str> {
        self.args.windows(2).find(|w| w[0] == "--store").map(|w| w[1].as_str())
    }

    /// The flags that point `kubeinvoke sp` at this server's state.
    pub fn admin_args(&self) -> Vec<String> {
        let mut args = vec!["--data-dir".to_string(), self.data_dir().display().to_string()];
        if let Some(url) = self.store_url() {
            args.extend(["--store".to_string(), url.to_string()]);
        }
        args
    }

    /// Changes this server's database behind its back (rows an older version or a hand edit left).
    pub async fn execute(&self, sql: &str) {
        match self.store_url() {
            None => {
                let db = rusqlite::Connection::open(self.data_dir().join("kubeinvoke.db")).unwrap();
                db.busy_timeout(Duration::from_secs(5)).unwrap();
                db.execute_batch(sql).unwrap();
            }
            Some(url) => postgres_client(url).await.batch_execute(sql).await.unwrap(),
        }
    }

    /// Runs one SQL query returning a single integer against this server's database.
    pub async fn count(&self, sql: &str) -> i64 {
        match self.store_url() {
            None => {
                let db = rusqlite::Connection::open(self.data_dir().join("kubeinvoke.db")).unwrap();
                db.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Some(url) => postgres_client(url).await.query_one(sql, &[]).await.unwrap().get(0),
        }
    }

    /// The token-signing key (PKCS#8 PEM): a file on SQLite, a shared setting on PostgreSQL.
    pub async fn signing_key_pem(&self) -> Vec<u8> {
        match self.store_url() {
            None => std::fs::read(self.data_dir().join("signing-key.pem")).unwrap(),
            Some(url) => postgres_client(url)
                .await
                .query_one("SELECT value FROM settings WHERE name = 'signing-key'", &[])
                .await
                .unwrap()
                .get(0),
        }
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits (at most `within`) for the process to exit; returns its exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default()
    }

    /// Starts a new process on the same data directory and flags.
    pub async fn restart(mut self) -> Server {
        self.kill9();
        let root = std::mem::replace(&mut self.root, tempfile::tempdir().unwrap());
        let args = std::mem::take(&mut self.args);
        let env = std::mem::take(&mut self.env);
        let (pids, database, host) = (std::mem::take(&mut self.pids), self.database.take(), self.host.take());
        let small_disk = self.small_disk.take();
        let mut server = Self::launch_on(root, args, self.ca.take(), env, pids, database, host).await;
        server.small_disk = small_disk;
        server
    }

    /// `path` plus `?api-version=2024-09-01` unless the path has a query already.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else if path.contains('?') {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?api-version={API}", self.base)
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        reply(self.request(method, path, body)).await
    }

    /// A request that may fail to connect (a server being killed), for tests that expect it.
    pub fn request(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn create_group(&self, group: &str) {
        let r = self.put(&group_path(group), json!({"location": "westeurope"})).await;
        assert!(r.status.is_success(), "creating group: {}", r.text);
    }

    /// Creates the group (if needed) and a cluster with these properties.
    pub async fn create_cluster(&self, group: &str, name: &str, properties: Value) -> Value {
        self.create_group(group).await;
        let r = self.put(&cluster_path(group, name), json!({"location": "westeurope", "properties": properties})).await;
        assert!(r.status.is_success(), "creating cluster: {}", r.text);
        r.json()
    }

    /// Submits a command and returns the `Location` to poll.
    pub async fn submit(&self, group: &str, name: &str, body: Value) -> String {
        let r = self.post(&format!("{}/runCommand", cluster_path(group, name)), body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "runCommand: {}", r.text);
        r.header("location").expect("Location").to_string()
    }

    /// Polls a result until it is 200, as fast as the test likes.
    pub async fn wait(&self, location: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(location).await;
            match r.status.as_u16() {
                200 => return r.json(),
                202 => {}
                other => panic!("polling {location}: {other} {}", r.text),
            }
            assert!(Instant::now() < deadline, "command did not finish: {}", r.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a shell line on a fresh cluster and returns the finished result.
    pub async fn run(&self, command: &str) -> Value {
        self.create_cluster("rg", "c1", json!({})).await;
        let location = self.submit("rg", "c1", json!({"command": command, "context": ""})).await;
        self.wait(&location).await
    }

    /// Processes on the host under the uids this server leased to its commands (`ps` output,
    /// empty when none). Every server on the host shares the uid range; the host-wide lease file
    /// of a uid names the server process that took it last.
    pub fn command_processes(&self) -> String {
        let uids = uids_leased_by(&self.pids);
        if uids.is_empty() {
            return String::new();
        }
        let out = std::process::Command::new("ps")
            .args(["-o", "pid=,stat=,uid=,args=", "-u", &uids.join(",")])
            .output()
            .unwrap();
        // Zombies are dead already: a process-table entry until the host's init reaps the orphan.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.split_whitespace().nth(1).is_none_or(|stat| !stat.starts_with('Z')))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls until the result is in the given in-progress state.
    pub async fn wait_for_state(&self, location: &str, state: &str) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.get(location).await;
            if r.status == StatusCode::ACCEPTED && r.json()["properties"]["provisioningState"] == state {
                return r;
            }
            assert!(Instant::now() < deadline, "never reached {state}: {}", r.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The `kubeinvoke` binary under test.
pub fn binary() -> PathBuf {
    crate::launch::kubeinvoke_binary().unwrap_or_else(|e| panic!("{e:#}"))
}

pub async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request failed");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Reply { status, headers, text }
}

pub fn client_for(ca: &Path) -> reqwest::Client {
    crate::launch::https_client(ca).and_then(|b| Ok(b.build()?)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A request with another caller's token.
pub async fn send_as(s: &Server, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut request = s.client.request(method, s.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    reply(request).await
}
