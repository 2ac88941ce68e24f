//! Test hosts on a network the test owns: a database host and replica hosts, each a network
//! namespace of its own (`ip netns`), joined by veth pairs, so a test can cut a real link while
//! real processes use it — the partition a replica meets in production, not a stopped process.
//!
//! ```text
//!   test process (root namespace)                     database host
//!     10.N.k+1.1 ── client link k ── replica k        bridge br0 10.N.0.1
//!     10.N.0.254 ──────────────┐     10.N.k+1.2        │
//!                              └────── database link k ┤  (replica k at 10.N.0.(10+k))
//! ```
//!
//! Each replica reaches the database only over its database link and its clients only over its
//! client link; no host has a default route, so a cut link is a black hole (packets dropped,
//! nothing refused), as a partition is. The test process reaches both (its own port on the
//! bridge, for setting up databases).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where marker files name the process that owns each network, so a crashed run's are removed.
const OWNERS: &str = "/run/kubeinvoke-test-networks";

/// One network of hosts; dropping it deletes them (processes still inside lose their links).
pub struct TestNetwork {
    /// The second octet of every address here (`10.N.…`), unique on the machine.
    n: u32,
    replicas: usize,
}

/// A host on a [`TestNetwork`]: where a process runs (`netns`) and the address others reach it at.
#[derive(Clone, Debug)]
pub struct TestHost {
    pub netns: String,
    pub address: String,
}

impl TestNetwork {
    /// A database host and `replicas` replica hosts, where the machine allows (root, `ip`); else
    /// `None`, the test left out (`prerequisites`).
    pub fn create_if_possible(replicas: usize) -> Option<TestNetwork> {
        let missing =
            crate::prerequisites::all([crate::prerequisites::root(), crate::prerequisites::programs(&["ip"])]);
        crate::prerequisites::runs("the network-partition tests", missing).then(|| Self::create(replicas))
    }

    pub fn create(replicas: usize) -> TestNetwork {
        remove_abandoned();
        let n = claim_octet();
        let network = TestNetwork { n, replicas };
        let db = network.database().netns;
        ip(&["netns", "add", &db]);
        ip(&["-n", &db, "link", "set", "lo", "up"]);
        ip(&["-n", &db, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &db, "addr", "add", &format!("10.{n}.0.1/24"), "dev", "br0"]);
        ip(&["-n", &db, "link", "set", "br0", "up"]);
        // The test process's own port on the bridge.
        let (mine, port) = (format!("ki{n}t"), format!("ki{n}tp"));
        ip(&["link", "add", &mine, "type", "veth", "peer", "name", &port]);
        network.join_bridge(&port);
        ip(&["addr", "add", &format!("10.{n}.0.254/24"), "dev", &mine]);
        ip(&["link", "set", &mine, "up"]);
        for k in 0..replicas {
            let host = network.replica(k).netns;
            ip(&["netns", "add", &host]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
            // Client link: the test process at .1, the replica at .2 of 10.N.k+1.0/24.
            let (root_end, replica_end) = (network.client_link(k), format!("ki{n}c{k}p"));
            ip(&["link", "add", &root_end, "type", "veth", "peer", "name", &replica_end]);
            ip(&["link", "set", &replica_end, "netns", &host, "name", "clients"]);
            ip(&["addr", "add", &format!("10.{n}.{}.1/24", k + 1), "dev", &root_end]);
            ip(&["link", "set", &root_end, "up"]);
            ip(&["-n", &host, "addr", "add", &format!("{}/24", network.replica(k).address), "dev", "clients"]);
            ip(&["-n", &host, "link", "set", "clients", "up"]);
            // Database link: a port on the database host's bridge.
            let (replica_end, bridge_port) = (format!("ki{n}d{k}"), network.database_link(k));
            ip(&["link", "add", &replica_end, "type", "veth", "peer", "name", &bridge_port]);
            network.join_bridge(&bridge_port);
            ip(&["link", "set", &replica_end, "netns", &host, "name", "database"]);
            ip(&["-n", &host, "addr", "add", &format!("10.{n}.0.{}/24", 10 + k), "dev", "database"]);
            ip(&["-n", &host, "link", "set", "database", "up"]);
        }
        network
    }

    /// The database host; PostgreSQL listens on its address.
    pub fn database(&self) -> TestHost {
        TestHost { netns: format!("ki{}db", self.n), address: format!("10.{}.0.1", self.n) }
    }

    /// Replica host `k`, at the address its clients use.
    pub fn replica(&self, k: usize) -> TestHost {
        assert!(k < self.replicas, "replica {k} of {}", self.replicas);
        TestHost { netns: format!("ki{}r{k}", self.n), address: format!("10.{}.{}.2", self.n, k + 1) }
    }

    /// Where the database sees replicas connect from (for `pg_hba.conf`).
    pub fn replica_network(&self) -> String {
        format!("10.{}.0.0/24", self.n)
    }

    /// Cuts (`false`) or restores (`true`) replica `k`'s link to the database host: its port on
    /// the bridge goes down, so what the replica sends there is dropped.
    pub fn database_link_up(&self, k: usize, up: bool) {
        ip(&["-n", &self.database().netns, "link", "set", &self.database_link(k), if up { "up" } else { "down" }]);
    }

    /// Cuts or restores replica `k`'s link to its clients (the test process); it keeps the database.
    pub fn client_link_up(&self, k: usize, up: bool) {
        ip(&["link", "set", &self.client_link(k), if up { "up" } else { "down" }]);
    }

    fn client_link(&self, k: usize) -> String {
        format!("ki{}c{k}", self.n)
    }

    fn database_link(&self, k: usize) -> String {
        format!("ki{}b{k}", self.n)
    }

    fn join_bridge(&self, port: &str) {
        let db = self.database().netns;
        ip(&["link", "set", port, "netns", &db]);
        ip(&["-n", &db, "link", "set", port, "master", "br0"]);
        ip(&["-n", &db, "link", "set", port, "up"]);
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        remove(self.n);
    }
}

/// A free second octet: unused by any address on the machine and by any live test's network.
fn claim_octet() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::fs::create_dir_all(OWNERS).expect("creating the test networks' marker directory");
    let addresses =
        String::from_utf8_lossy(&Command::new("ip").args(["-o", "addr"]).output().unwrap().stdout).to_string();
    let start = std::process::id() % 50;
    loop {
        let n = 150 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 100;
        let marker = std::path::Path::new(OWNERS).join(n.to_string());
        if addresses.contains(&format!(" 10.{n}.")) {
            continue;
        }
        let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&marker);
        if let Ok(mut file) = created {
            std::io::Write::write_all(&mut file, std::process::id().to_string().as_bytes()).unwrap();
            return n;
        }
    }
}

/// Deletes the networks of test processes that are gone (a run that was killed).
fn remove_abandoned() {
    let Ok(markers) = std::fs::read_dir(OWNERS) else { return };
    for marker in markers.flatten() {
        let owner = std::fs::read_to_string(marker.path()).unwrap_or_default();
        let alive = std::path::Path::new(&format!("/proc/{}", owner.trim())).exists();
        if let (false, Ok(n)) = (alive, marker.file_name().to_string_lossy().parse::<u32>()) {
            remove(n);
        }
    }
}

/// Removes network `n`'s hosts and links, and its marker.
fn remove(n: u32) {
    let listed = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let prefix = format!("ki{n}");
    for line in String::from_utf8_lossy(&listed).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.strip_prefix(&prefix).is_some_and(|rest| rest == "db" || rest.starts_with('r')) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
    // A veth pair goes with either end; the test's own port may be left in the root namespace.
    let _ = Command::new("ip").args(["link", "del", &format!("ki{n}t")]).output();
    let _ = std::fs::remove_file(std::path::Path::new(OWNERS).join(n.to_string()));
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}
