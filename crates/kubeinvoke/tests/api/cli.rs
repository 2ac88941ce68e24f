//! The kubeinvoke client CLI against a real server: exit codes, waiting, files, JSON, errors.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::harness::*;

/// The CLI with its own HOME (so its login and token cache are private to the test).
struct Cli<'a> {
    server: &'a Server,
    home: tempfile::TempDir,
}

impl<'a> Cli<'a> {
    fn logged_in(server: &'a Server) -> Self {
        Self::logged_in_as(server, &server.admin().unwrap())
    }

    fn logged_in_as(server: &'a Server, who: &Credentials) -> Self {
        let cli = Cli { server, home: tempfile::tempdir().unwrap() };
        let out = cli.run(&["login", "--app-id", &who.app_id, "--password", &who.password, "--tenant", &who.tenant]);
        assert!(out.status.success(), "login: {}", String::from_utf8_lossy(&out.stderr));
        cli
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubeinvoke"));
        command
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("KUBEINVOKE_URL", &self.server.base)
            .env("KUBEINVOKE_CA", self.server.data_dir().join("tls/ca.pem"))
            .env("KUBEINVOKE_SUBSCRIPTION", SUB);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn invoke_exits_with_the_commands_own_exit_code() {
    let s = Server::start(&["--command-timeout", "2s"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let cli = Cli::logged_in(&s);
    for code in [0, 3, 42] {
        let out = cli.run(&["invoke", "-g", "rg", "-n", "c1", "--command", &format!("echo code {code}; exit {code}")]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("code {code}\n"));
    }
    // A Failed result prints its reason and exits 125.
    let out = cli.run(&["invoke", "-g", "rg", "-n", "c1", "--command", "sleep 30"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("Failed: Timeout"), "{}", text(&out.stderr));
    // Progress goes to stderr as plain lines when it is not a terminal.
    // Running for longer than the one second between polls (Retry-After), within the 2 s timeout:
    // one poll always lands while it runs.
    let out = cli.run(&["invoke", "-g", "rg", "-n", "c1", "--command", "sleep 1.8; echo done"]);
    assert!(text(&out.stderr).contains("Running"), "{}", text(&out.stderr));
    // Errors are one line with the CloudError code; not found exits 3.
    let out = cli.run(&["invoke", "-g", "rg", "-n", "missing", "--command", "true"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: (ResourceNotFound) "), "{stderr}");
}

#[tokio::test]
async fn no_wait_then_result_and_json_output() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let cli = Cli::logged_in(&s);
    let out = cli.run(&[
        "invoke",
        "-g",
        "rg",
        "-n",
        "c1",
        "--command",
        "sleep 2; echo late; exit 7",
        "--no-wait",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    let out = cli.run(&["result", "-g", "rg", "-n", "c1", "-i", &id]);
    assert!(
        text(&out.stdout).contains("is Running") || text(&out.stdout).contains("is Accepted"),
        "{}",
        text(&out.stdout)
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = cli.run(&["result", "-g", "rg", "-n", "c1", "-i", &id, "-o", "json"]);
    assert_eq!(out.status.code(), Some(7));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["properties"]["logs"], "late\n");
    assert_eq!(result["properties"]["provisioningState"], "Succeeded");
    let out = cli.run(&["result", "-g", "rg", "-n", "c1", "-i", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test]
async fn files_and_whole_directories_are_attached() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let cli = Cli::logged_in(&s);
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("charts/app")).unwrap();
    std::fs::write(tree.path().join("charts/app/values.yaml"), "replicas: 3\n").unwrap();
    std::fs::write(tree.path().join(".env"), "hidden\n").unwrap();
    let out = cli
        .command()
        .current_dir(tree.path())
        .args(["invoke", "-g", "rg", "-n", "c1", "--command", "find . -type f | sort", "--file", "."])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "./.env\n./charts/app/values.yaml\n", "{}", text(&out.stderr));
    let single = tree.path().join("charts/app/values.yaml");
    let out = cli.run(&[
        "invoke",
        "-g",
        "rg",
        "-n",
        "c1",
        "--command",
        "cat values.yaml",
        "--file",
        single.to_str().unwrap(),
    ]);
    assert_eq!(text(&out.stdout), "replicas: 3\n");
}

#[tokio::test]
async fn clusters_and_groups_are_managed_from_the_cli() {
    let s = Server::start(&[]).await;
    let cli = Cli::logged_in(&s);
    assert!(cli.run(&["group", "create", "-n", "team", "-l", "westeurope"]).status.success());
    let listed = cli.run(&["group", "list", "-o", "json"]);
    let groups: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(groups["value"][0]["name"], "team");
    let kubeconfig = cli.home.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: a\n  cluster: {server: 'https://a.example:6443'}\n- name: b\n  cluster: {server: 'https://b.example:6443'}\ncontexts:\n- name: a\n  context: {cluster: a, user: u}\n- name: b\n  context: {cluster: b, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let out = cli.run(&[
        "cluster",
        "create",
        "-g",
        "team",
        "-n",
        "prod",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        "b",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("b.example"), "{}", text(&out.stdout));
    let shown: Value =
        serde_json::from_slice(&cli.run(&["cluster", "show", "-g", "team", "-n", "prod", "-o", "json"]).stdout)
            .unwrap();
    assert_eq!(shown["properties"]["fqdn"], "b.example");
    let list = text(&cli.run(&["cluster", "list"]).stdout);
    assert_eq!(list.trim(), "prod\tteam\tb.example");
    assert!(cli.run(&["cluster", "delete", "-g", "team", "-n", "prod"]).status.success());
    assert_eq!(cli.run(&["cluster", "show", "-g", "team", "-n", "prod"]).status.code(), Some(3));
    assert!(cli.run(&["group", "delete", "-n", "team"]).status.success());
}

#[tokio::test]
async fn unreachable_servers_and_bad_cas_are_one_clear_line() {
    let s = Server::start(&[]).await;
    let cli = Cli::logged_in(&s);
    let out = cli
        .command()
        .env("KUBEINVOKE_URL", "https://127.0.0.1:1")
        .args(["login", "--app-id", "a", "--password", "p", "--tenant", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach https://127.0.0.1:1"), "{stderr}");

    let other = Server::start(&[]).await;
    let wrong_ca = other.data_dir().join("tls/ca.pem");
    let out = cli.command().env("KUBEINVOKE_CA", &wrong_ca).args(["group", "list"]).output();
    // The cached token is still valid: the call itself must fail on the certificate.
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    let help = text(&Command::new(env!("CARGO_BIN_EXE_kubeinvoke")).arg("--help").output().unwrap().stdout);
    assert!(help.contains("Exit codes") && help.contains("125"), "{help}");
}

#[tokio::test]
async fn invoke_streams_output_live_and_logs_cancel_history_work() {
    use std::io::Read;
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let cli = Cli::logged_in(&s);
    // Live: the first line reaches our stdout while the command still runs.
    let mut child = cli
        .command()
        .args(["invoke", "-g", "rg", "-n", "c1", "--command", "echo early; sleep 3; echo late"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let started = std::time::Instant::now();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"early\n");
    assert!(started.elapsed() < std::time::Duration::from_millis(2500), "output arrived only at the end");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "late\n");
    assert!(child.wait().unwrap().success());

    // logs, cancel and history from the CLI.
    let out = cli.run(&[
        "invoke",
        "-g",
        "rg",
        "-n",
        "c1",
        "--command",
        "echo streaming; sleep 60",
        "--no-wait",
        "-o",
        "json",
    ]);
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(text(&cli.run(&["logs", "-g", "rg", "-n", "c1", "-i", &id]).stdout), "streaming\n");
    assert!(cli.run(&["cancel", "-g", "rg", "-n", "c1", "-i", &id]).status.success());
    let followed = cli.run(&["logs", "-g", "rg", "-n", "c1", "-i", &id, "-f", "--offset", "3"]);
    assert_eq!(text(&followed.stdout), "eaming\n", "follow ends when the command ends");
    let out = cli.run(&["result", "-g", "rg", "-n", "c1", "-i", &id]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("Canceled"), "{}", text(&out.stderr));
    assert_eq!(cli.run(&["cancel", "-g", "rg", "-n", "c1", "-i", &id]).status.code(), Some(5), "409 is a refusal");
    let history = text(&cli.run(&["history", "-g", "rg", "-n", "c1", "--top", "2"]).stdout);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].starts_with(&id) && lines[0].contains("Canceled") && lines[0].ends_with("echo streaming; sleep 60"),
        "{history}"
    );
    assert!(lines[1].contains("Succeeded\t0"), "{history}");
}

#[tokio::test]
async fn ctrl_c_without_a_terminal_leaves_the_command_running() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let cli = Cli::logged_in(&s);
    let child = cli
        .command()
        .args(["invoke", "-g", "rg", "-n", "c1", "--command", "sleep 5; echo survived"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = text(&out.stderr);
    let id = stderr.split("command ").nth(1).and_then(|r| r.split_whitespace().next()).expect(&stderr).to_string();
    assert!(stderr.contains("kubeinvoke cancel"), "{stderr}");
    std::thread::sleep(std::time::Duration::from_secs(5));
    let out = cli.run(&["result", "-g", "rg", "-n", "c1", "-i", &id]);
    assert_eq!(text(&out.stdout), "survived\n", "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_server_describes_its_api_including_the_extensions() {
    let s = Server::start(&[]).await;
    let spec = reply(s.client.get(format!("{}/openapi.json", s.base))).await.json();
    assert_eq!(spec["swagger"], "2.0");
    let paths = spec["paths"].as_object().unwrap();
    let mc = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerService/managedClusters/{resourceName}";
    for path in [
        "/runCommand",
        "/commandResults/{commandId}",
        "/commandResults",
        "/commandResults/{commandId}/logs",
        "/commandResults/{commandId}/cancel",
        "/runCommands",
        "/runCommands/{runCommandName}",
    ] {
        assert!(paths.contains_key(&format!("{mc}{path}")), "{path} missing");
    }
    let resource = &spec["paths"][format!("{mc}/runCommands/{{runCommandName}}")];
    assert_eq!(resource["put"]["x-ms-long-running-operation"], true);
    assert!(
        resource["delete"].is_object()
            && spec["definitions"]["RunCommandResource"]["properties"]["properties"].is_object()
    );
    assert_eq!(spec["paths"][format!("{mc}/runCommand")]["post"]["operationId"], "ManagedClusters_RunCommand");
    assert!(
        spec["definitions"]["CommandHistoryEntry"].is_object() && spec["definitions"]["RunCommandResult"].is_object()
    );
    for scope in
        ["/subscriptions/{subscriptionId}", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"]
    {
        let provider = format!("{scope}/providers/Microsoft.ContainerService");
        assert!(paths[&format!("{provider}/runCommand")]["post"].is_object(), "fan-out at {scope}");
        assert!(paths[&format!("{provider}/commandRuns")]["get"].is_object());
        assert!(paths[&format!("{provider}/commandRuns/{{runId}}")]["get"].is_object());
        assert!(paths[&format!("{provider}/commandRuns/{{runId}}/cancel")]["post"].is_object());
        assert!(paths[&format!("{provider}/commandRuns/{{runId}}/targets")]["get"].is_object());
        assert!(paths[&format!("{provider}/savedCommands/{{savedCommandName}}")]["put"].is_object());
    }
    assert!(paths[&format!("{mc}/runSavedCommand")]["post"].is_object());
    // Every reference resolves.
    let text = spec.to_string();
    for reference in text.split("\"$ref\":\"#/").skip(1).map(|rest| rest.split('"').next().unwrap()) {
        let mut node = &spec;
        for part in reference.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "unresolved $ref #/{reference}");
    }
}

#[tokio::test]
async fn readmes_first_command_starts_a_server_the_cli_finds_with_no_configuration() {
    // The README's first command, exactly as written, from the repository's root, as a newcomer
    // runs it: a server on the defaults, its data where the CLI looks by default.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let first = readme
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .nth(1)
        .and_then(|l| l.split('#').next())
        .map(str::trim)
        .unwrap();
    assert_eq!(first, "cargo run -- serve", "README starts with the command that starts the service");
    let xdg = tempfile::tempdir().unwrap();
    let data_dir = xdg.path().join("kubeinvoke");
    // A newcomer's shell: none of the variables cargo sets for this test (they would make cargo
    // rebuild what `cargo build` already built).
    let shell: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            ["PATH", "HOME", "USER", "LANG", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"].contains(&k.as_str())
        })
        .collect();
    let server = std::process::Command::new("sh")
        .args(["-c", first])
        .current_dir(&repo)
        .env_clear()
        .envs(shell)
        .env("XDG_DATA_HOME", xdg.path())
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Its whole group (sh, cargo, the server) ends with the test.
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_child(&self.0),
                rustix::process::Signal::KILL,
            );
            let _ = self.0.wait();
        }
    }
    let server = Group(server);
    // cargo may still have the binary to build on a plain checkout.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::net::TcpStream::connect("127.0.0.1:8443").is_err() || !data_dir.join("bootstrap-admin.json").exists() {
        assert!(std::time::Instant::now() < deadline, "the default server did not start (is 127.0.0.1:8443 taken?)");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kubeinvoke"))
            .args(args)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", xdg.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("KUBEINVOKE_URL")
            .env_remove("KUBEINVOKE_CA")
            .env_remove("KUBEINVOKE_SUBSCRIPTION")
            .output()
            .unwrap()
    };
    let created = run(&["group", "create", "-n", "found-it"]);
    let listed = run(&["group", "list"]);
    drop(server);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(text(&listed.stdout).contains("found-it"), "{}", text(&listed.stderr));
}

#[tokio::test]
async fn a_fan_out_from_the_cli_shows_each_clusters_output_and_exits_by_the_worst_target() {
    let s = Server::start(&["--command-timeout", "3s"]).await;
    s.create_group("fleet").await;
    for name in ["c1", "c2", "c3"] {
        let body = json!({"location": "westeurope", "tags": {"env": "prod"}, "properties": {}});
        assert!(s.put(&cluster_path("fleet", name), body).await.status.is_success());
    }
    let cli = Cli::logged_in(&s);
    let fan_out = |command: &str, extra: &[&str]| {
        let mut args = vec!["invoke", "-g", "fleet", "--tag", "env=prod", "--command", command];
        args.extend_from_slice(extra);
        cli.run(&args)
    };

    let out = fan_out("echo hello", &["--max-concurrency", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expected: String =
        ["c1", "c2", "c3"].iter().map(|c| format!("=== fleet/{c} (Succeeded, exit 0) ===\nhello\n")).collect();
    assert_eq!(text(&out.stdout), expected);
    // Progress (not a terminal): one line per target and state change.
    assert!(text(&out.stderr).contains("fleet/c2\tSucceeded, exit 0"), "{}", text(&out.stderr));

    // Every target ran, one exited non-zero: 1.
    let out = cli.run(&["invoke", "--cluster-id", "fleet/c1", "--cluster-id", "fleet/c2", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // maxErrors 0 after the first failure skips the rest: 7.
    let out = fan_out("exit 2", &["--max-concurrency", "1", "--max-errors", "0"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("=== fleet/c3 (Skipped: MaxErrorsReached"), "{}", text(&out.stdout));
    // A target that ends Failed (here its timeout): 125.
    let out = fan_out("sleep 30", &[]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("(Failed: Timeout)"), "{}", text(&out.stdout));
    // Usage errors are clap's: a cluster and a fan-out at once.
    let out = cli.run(&["invoke", "-g", "fleet", "-n", "c1", "--tag", "env=prod", "-c", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let out = fan_out("true", &["--max-concurrency", "none"]);
    assert_eq!(out.status.code(), Some(5), "a refusal by the server: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("maxConcurrency"), "{}", text(&out.stderr));

    // `runs` lists them newest first; `run -i` shows one; `--no-wait` then `run --cancel`.
    let out = cli.run(&["runs", "-g", "fleet", "-o", "json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs["value"].as_array().unwrap();
    // The --cluster-id run had no -g: it belongs to the subscription.
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0]["properties"]["command"], "sleep 30");
    let first = runs[2]["name"].as_str().unwrap();
    let out = cli.run(&["run", "-g", "fleet", "-i", first]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("fleet/c1\tSucceeded, exit 0\t"), "{}", text(&out.stdout));
    let out = fan_out("sleep 20", &["--no-wait", "-o", "json"]);
    let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["name"].as_str().unwrap().to_string();
    let out = cli.run(&["run", "-g", "fleet", "-i", &id, "--cancel"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = cli.run(&["run", "-g", "fleet", "-i", &id, "--watch"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("(Canceled"), "{}", text(&out.stdout));
    let out = cli.run(&["run", "-i", &id]);
    assert_eq!(out.status.code(), Some(3), "a group's run is not the subscription's: {}", text(&out.stderr));
}

/// A run of more targets than the server shows at once: the CLI reads the others by the run's
/// `targetsNextLink` and shows (and, with `-o json`, prints) every one of them.
#[tokio::test]
async fn the_cli_shows_every_target_of_a_run_larger_than_a_page() {
    let s = Server::start(&["--max-running", "8"]).await;
    s.create_group("fleet").await;
    for i in 0..120 {
        let body = json!({"location": "westeurope", "tags": {"env": "prod"}, "properties": {}});
        assert!(s.put(&cluster_path("fleet", &format!("c{i:03}")), body).await.status.is_success());
    }
    let cli = Cli::logged_in(&s);
    let out = cli.run(&["invoke", "-g", "fleet", "--tag", "env=prod", "-c", "echo hi", "--max-concurrency", "16"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("(Succeeded, exit 0) ===\nhi\n").count(), 120, "every target's output");
    let out = cli.run(&["runs", "-g", "fleet", "-o", "json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = runs["value"][0]["name"].as_str().unwrap().to_string();
    let out = cli.run(&["run", "-g", "fleet", "-i", &id]);
    let shown: Vec<String> =
        text(&out.stdout).lines().filter_map(|l| l.split('\t').next().map(str::to_string)).collect();
    let expected: Vec<String> = (0..120).map(|i| format!("fleet/c{i:03}")).collect();
    assert_eq!(&shown[..120], &expected[..], "{}", text(&out.stdout));
    let out = cli.run(&["run", "-g", "fleet", "-i", &id, "-o", "json"]);
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["properties"]["targets"].as_array().unwrap().len(), 120);
    assert!(run["properties"].get("targetsNextLink").is_none(), "the printed run holds every target");
}

#[tokio::test]
async fn saved_commands_from_the_cli_with_parameters_and_a_secret_from_a_file() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let cli = Cli::logged_in(&s);
    let out = cli.run(&[
        "saved",
        "create",
        "-n",
        "greet",
        "--script",
        "echo \"hello $who at $level\"; [ \"$token\" = from-file ] && echo secret-ok; exit $code",
        "--param",
        "who:string:[a-z]+",
        "--param",
        "level:enum:info,debug",
        "--param",
        "code:integer:0..9",
        "--param",
        "token:secret",
        "--timeout",
        "60",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli.run(&["saved", "list"]);
    assert!(
        text(&out.stdout).starts_with("greet\tcode:integer,level:enum,token:secret,who:string\t"),
        "{}",
        text(&out.stdout)
    );

    let secret_file = cli.home.path().join("token");
    std::fs::write(&secret_file, "from-file\n").unwrap();
    let token = format!("token=@{}", secret_file.display());
    let run = |who: &str, code: &str| {
        cli.run(&[
            "invoke",
            "-g",
            "rg",
            "-n",
            "c1",
            "--saved",
            "greet",
            "-p",
            &format!("who={who}"),
            "-p",
            "level=debug",
            "-p",
            &format!("code={code}"),
            "-p",
            &token,
        ])
    };
    let out = run("world", "3");
    assert_eq!(out.status.code(), Some(3), "the command's own exit code: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello world at debug\nsecret-ok\n");
    // A value that breaks its pattern: the server's 400 names the parameter, exit 5.
    let out = run("World; id", "0");
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stderr).contains("does not match its pattern"), "{}", text(&out.stderr));
    // Free-form options do not mix with --saved.
    let out = cli.run(&["invoke", "-g", "rg", "-n", "c1", "--saved", "greet", "--command", "id"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli.run(&["invoke", "-g", "rg", "-n", "c1", "--saved", "missing"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = cli.run(&["saved", "delete", "-n", "greet"]);
    assert!(out.status.success());
    assert_eq!(cli.run(&["saved", "show", "-n", "greet"]).status.code(), Some(3));
}

#[tokio::test]
async fn a_login_remembers_its_server_and_ca_until_a_flag_the_environment_or_another_login_says_otherwise() {
    let (a, b) = (Server::start(&[]).await, Server::start(&[]).await);
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kubeinvoke"))
            .args(args)
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("KUBEINVOKE_URL")
            .env_remove("KUBEINVOKE_CA")
            .env("KUBEINVOKE_SUBSCRIPTION", SUB)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let admin = b.admin().unwrap();
    let b_ca = b.data_dir().join("tls/ca.pem");
    let login = ["login", "--url", &b.base, "--ca", b_ca.to_str().unwrap()];
    let credentials = ["--app-id", &admin.app_id, "--password", &admin.password, "--tenant", &admin.tenant];
    let (ok, out, err) = run(&[&login[..], &credentials[..]].concat(), &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("logged in to {}", b.base)), "{out}");

    // No flag, no environment: the next command goes to the server of the login, trusting its CA.
    let (ok, out, err) = run(&["group", "create", "-n", "remembered", "-l", "westeurope"], &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(b.get(&group_path("remembered")).await.status, 200, "created on the login's server");
    assert_eq!(a.get(&group_path("remembered")).await.status, 404);
    let (ok, shown, _) = run(&["login", "--show"], &[]);
    assert!(ok);
    assert!(shown.contains(&b.base) && shown.contains("the last `kubeinvoke login`"), "{shown}");
    assert!(shown.contains(b_ca.canonicalize().unwrap().to_str().unwrap()), "{shown}");
    assert!(shown.contains(&admin.app_id), "{shown}");

    // The environment says otherwise: another server, for which there is no login.
    let a_ca = a.data_dir().join("tls/ca.pem");
    let elsewhere = [("KUBEINVOKE_URL", a.base.as_str()), ("KUBEINVOKE_CA", a_ca.to_str().unwrap())];
    let (ok, _, err) = run(&["group", "list"], &elsewhere);
    assert!(!ok);
    assert!(err.contains(&format!("not logged in to {}", a.base)), "{err}");
    let (_, shown, _) = run(&["login", "--show"], &elsewhere);
    assert!(shown.contains(&a.base) && shown.contains("KUBEINVOKE_URL"), "{shown}");

    // Another login, as a local server's bootstrap admin by its data directory: now that one.
    let a_dir = a.data_dir();
    let (ok, out, err) = run(&["login", "--url", &a.base, "--data-dir", a_dir.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["group", "create", "-n", "second", "-l", "westeurope"], &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(a.get(&group_path("second")).await.status, 200);
    assert_eq!(b.get(&group_path("second")).await.status, 404);
}

#[tokio::test]
async fn invoke_waits_for_approval_and_an_approver_lists_and_approves_by_id() {
    let s = Server::start(&[]).await;
    let policy = json!({"commandApproval": {"mode": "always", "approvers": 1, "expiresAfter": "PT1H"}});
    s.create_cluster("rg", "c1", policy).await;
    let requester = Cli::logged_in(&s);
    let waiting = requester
        .command()
        .args(["invoke", "-g", "rg", "-n", "c1", "--command", "echo approved-run; exit 3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (who, _) = crate::approvals::approver_credentials(&s, "approver").await;
    let approver = Cli::logged_in_as(&s, &who);
    // The approver sees it waiting (the requester itself never does).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let id = loop {
        let out = approver.run(&["approvals", "-o", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        if let Some(line) = text(&out.stdout).lines().next() {
            let view: Value = serde_json::from_str(line).unwrap();
            assert_eq!(view["properties"]["command"], "echo approved-run; exit 3");
            break view["name"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "nothing came to approve");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let listed = requester.run(&["approvals"]);
    assert!(text(&listed.stdout).is_empty(), "{}", text(&listed.stdout));
    assert!(text(&listed.stderr).contains("nothing waits for your approval"));
    // The requester may not approve its own; exit 4 as every refusal of rights.
    let own = requester.run(&["approve", "-g", "rg", "-n", "c1", "-i", &id, "-m", "mine"]);
    assert_eq!(own.status.code(), Some(4), "{}", text(&own.stderr));
    assert!(text(&own.stderr).contains("SelfApprovalNotAllowed"), "{}", text(&own.stderr));
    let table = approver.run(&["approvals"]);
    assert!(text(&table.stdout).contains(&id) && text(&table.stdout).contains("rg/c1"), "{}", text(&table.stdout));
    let out = approver.run(&["approve", "-i", &id, "-m", "reviewed in the change ticket"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("it runs now"), "{}", text(&out.stdout));
    let finished = waiting.wait_with_output().unwrap();
    assert_eq!(finished.status.code(), Some(3), "exit codes unchanged: {}", text(&finished.stderr));
    assert_eq!(text(&finished.stdout), "approved-run\n");
    assert!(text(&finished.stderr).contains("waiting for approval"), "{}", text(&finished.stderr));
    // Nothing waits any more, and a decision on it is refused naming why.
    let again = approver.run(&["reject", "-g", "rg", "-n", "c1", "-i", &id, "-m", "late"]);
    assert_eq!(again.status.code(), Some(5), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("CommandNotPendingApproval"), "{}", text(&again.stderr));
    let unknown = approver.run(&["approve", "-i", "0123", "-m", "x"]);
    assert_ne!(unknown.status.code(), Some(0));
    assert!(text(&unknown.stderr).contains("does not wait for your approval"), "{}", text(&unknown.stderr));
}

#[tokio::test]
async fn a_fan_out_run_is_approved_from_the_cli_as_a_whole() {
    let s = Server::start(&[]).await;
    let policy = json!({"commandApproval": {"mode": "freeFormOnly", "approvers": 1, "expiresAfter": "PT1H"}});
    s.create_cluster("rg", "c1", policy).await;
    let body = json!({"command": "echo fleet", "targets": {"clusterIds": [cluster_path("rg", "c1")]}});
    let r = s.post(&format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/runCommand"), body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let run_id = r.json()["name"].as_str().unwrap().to_string();
    let (who, _) = crate::approvals::approver_credentials(&s, "approver").await;
    let approver = Cli::logged_in_as(&s, &who);
    let out = approver.run(&["approve", "--run-id", &run_id, "-m", "fleet-wide change"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("approved run {run_id}")), "{}", text(&out.stdout));
    let watched = Cli::logged_in(&s).run(&["run", "-i", &run_id, "--watch"]);
    assert_eq!(watched.status.code(), Some(0), "{}", text(&watched.stderr));
    assert!(text(&watched.stdout).contains("fleet"), "{}", text(&watched.stdout));
}
