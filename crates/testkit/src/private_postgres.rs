//! A private PostgreSQL server for one test: its own data directory, address and port, so a test
//! can stop and restart it without disturbing the suite's shared server, or serve it where a
//! cluster's Pods reach it. The real PostgreSQL binaries, run as the `postgres` user (initdb and
//! postgres refuse to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub struct PrivatePostgres {
    dir: TempDir,
    pub port: u16,
    bin: PathBuf,
    address: String,
    password: Option<String>,
    /// The network namespace it runs in (a [`crate::network::TestHost`]), if not the test's own.
    netns: Option<String>,
}

impl PrivatePostgres {
    /// [`PrivatePostgres::start`] where it can run (root, Debian's PostgreSQL binaries); else
    /// `None`, the test left out (`support/prerequisites.rs`).
    pub fn start_if_possible() -> Option<PrivatePostgres> {
        let binaries = (!Path::new("/usr/lib/postgresql").is_dir())
            .then(|| "PostgreSQL's server binaries (/usr/lib/postgresql) are not installed".to_string());
        let missing = crate::prerequisites::all([crate::prerequisites::root(), binaries]);
        crate::prerequisites::runs("the tests on private PostgreSQL servers", missing).then(Self::start)
    }

    /// On loopback, a free port, trusting every local connection.
    pub fn start() -> PrivatePostgres {
        Self::init("127.0.0.1", crate::ports::free_port(), None, &[], None)
    }

    /// On a test network's database host, with a password, reachable from its replicas.
    pub fn start_on_host(network: &crate::network::TestNetwork, password: &str) -> PrivatePostgres {
        let host = network.database();
        Self::init(&host.address, 5432, Some(password), &[&network.replica_network()], Some(host.netns))
    }

    /// On `address:port`, with a password, and reachable from the networks `clients` (CIDRs).
    pub fn start_on(address: &str, port: u16, password: &str, clients: &[&str]) -> PrivatePostgres {
        Self::init(address, port, Some(password), clients, None)
    }

    fn init(
        address: &str,
        port: u16,
        password: Option<&str>,
        clients: &[&str],
        netns: Option<String>,
    ) -> PrivatePostgres {
        let bin = newest_bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the PostgreSQL directory");
        let pg = PrivatePostgres {
            dir,
            port,
            bin,
            address: address.to_string(),
            password: password.map(str::to_string),
            netns,
        };
        let data = pg.data();
        let mut initdb = vec!["-D", data.to_str().unwrap(), "-U", "postgres", "--no-sync", "-E", "UTF8"];
        let password_file = pg.dir.path().join("password");
        let password_flag = format!("--pwfile={}", password_file.display());
        match password {
            None => initdb.extend(["-A", "trust"]),
            Some(password) => {
                std::fs::write(&password_file, password).unwrap();
                std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
                initdb.extend(["-A", "scram-sha-256", &password_flag]);
            }
        }
        pg.as_postgres("initdb", &initdb);
        let method = if password.is_some() { "scram-sha-256" } else { "trust" };
        let hba: String = std::iter::once(format!("{address}/32"))
            .chain(clients.iter().map(|c| c.to_string()))
            .map(|network| format!("host all all {network} {method}\n"))
            .collect();
        let mut file = std::fs::OpenOptions::new().append(true).open(data.join("pg_hba.conf")).unwrap();
        std::io::Write::write_all(&mut file, hba.as_bytes()).unwrap();
        pg.resume();
        pg
    }

    /// `postgres://postgres[:password]@<address>:<port>` (no database).
    pub fn base_url(&self) -> String {
        let password = self.password.as_ref().map(|p| format!(":{p}")).unwrap_or_default();
        format!("postgres://postgres{password}@{}:{}", self.address, self.port)
    }

    pub async fn create_database(&self, name: &str) -> String {
        let client = crate::harness::postgres_client(&format!("{}/postgres", self.base_url())).await;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        format!("{}/{name}", self.base_url())
    }

    /// Stops the server at once, dropping every connection (`pg_ctl stop -m fast`).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display(),
            self.address
        );
        self.pg_ctl(&["start", "-o", &options, "-l", self.dir.path().join("server.log").to_str().unwrap()]);
    }

    /// The server's log, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let mut all = vec!["-D", data.to_str().unwrap(), "-w"];
        all.extend_from_slice(args);
        self.as_postgres("pg_ctl", &all);
    }

    fn as_postgres(&self, program: &str, args: &[&str]) {
        let output = self
            .runuser()
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("runuser");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl PrivatePostgres {
    /// `runuser`, inside this server's network namespace when it has one.
    fn runuser(&self) -> Command {
        match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, "runuser"]);
                command
            }
            None => Command::new("runuser"),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .runuser()
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "stop", "-m", "immediate"])
            .output();
    }
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("the postgres user exists")
    };
    (id("-u"), id("-g"))
}

/// `/usr/lib/postgresql/<newest>/bin`, where Debian keeps initdb and pg_ctl.
fn newest_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version directory");
    root.join(newest.to_string()).join("bin")
}
