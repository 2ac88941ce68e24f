//! Operability: metrics after a known workload, graceful stop, JSON logs (the audit trail), and
//! the configuration file's precedence.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// `name{labels} value` lines of a Prometheus exposition, keyed by `name{labels}`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    all.iter()
        .filter(|(key, _)| key.starts_with(&format!("{name}{{")) || key.as_str() == name)
        .filter(|(key, _)| labels.iter().all(|(k, v)| key.contains(&format!("{k}=\"{v}\""))))
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test]
async fn metrics_count_a_known_workload() {
    if !bubblewrap_here() {
        return;
    }
    let s = Server::start(&["--command-timeout", "1s"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    for command in ["true", "exit 3", "sleep 5"] {
        let location = s.submit("rg", "c1", json!({"command": command})).await;
        s.wait(&location).await;
    }
    s.get(&cluster_path("rg", "missing")).await;
    let text = reply(s.client.get(format!("{}/metrics", s.base))).await.text;
    let all = samples(&text);
    assert_eq!(sample(&all, "kubeinvoke_commands_total", &[("state", "Succeeded")]), 2.0, "{text}");
    assert_eq!(sample(&all, "kubeinvoke_commands_total", &[("state", "Failed")]), 1.0, "{text}");
    let run_route = ("route", "{cluster}/runCommand");
    assert_eq!(sample(&all, "kubeinvoke_http_requests_total", &[run_route, ("status", "202")]), 3.0, "{text}");
    assert_eq!(sample(&all, "kubeinvoke_http_requests_total", &[("route", "{cluster}"), ("status", "404")]), 1.0);
    assert!(!text.contains("missing"), "labels carry route templates, never names");
    assert_eq!(sample(&all, "kubeinvoke_command_duration_seconds_count", &[]), 3.0, "{text}");
    assert!(sample(&all, "kubeinvoke_http_request_duration_seconds_bucket", &[run_route, ("le", "+Inf")]) >= 3.0);
    assert_eq!(sample(&all, "kubeinvoke_queue_depth", &[]), 0.0);
    assert_eq!(sample(&all, "kubeinvoke_commands_running", &[]), 0.0);
    assert_eq!(sample(&all, "kubeinvoke_executor_isolation", &[("mode", "bubblewrap")]), 1.0);
}

#[tokio::test]
async fn sigterm_lets_short_commands_finish_and_stops_long_ones() {
    let mut s = Server::start(&["--shutdown-grace", "2s", "--max-running", "4"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let short = s.submit("rg", "c1", json!({"command": "sleep 1; echo finished in grace"})).await;
    let long = s.submit("rg", "c1", json!({"command": "sleep 60"})).await;
    s.wait_for_state(&long, "Running").await;
    s.wait_for_state(&short, "Running").await;
    let status = s.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit 0 after a graceful stop: {status:?}");
    assert!(s.command_processes().is_empty(), "{}", s.command_processes());
    let s = s.restart().await;
    let rebase = |l: &str| format!("{}/{}", s.base, l.splitn(4, '/').nth(3).unwrap());
    let short = s.get(&rebase(&short)).await.json();
    assert_eq!(short["properties"]["provisioningState"], "Succeeded");
    assert_eq!(short["properties"]["logs"], "finished in grace\n");
    let long = s.get(&rebase(&long)).await.json();
    assert_eq!(long["properties"]["provisioningState"], "Failed");
    assert_eq!(long["properties"]["reason"], "ServerShutdown", "nothing is left in progress: {long}");
}

#[tokio::test]
async fn json_logs_are_an_audit_trail_without_secrets() {
    let s = Server::start(&["--log-format", "json"]).await;
    let (_, kubeconfig) = kubeconfig_for("https://203.0.113.9:6443");
    s.create_cluster("rg", "c1", json!({"kubeconfig": kubeconfig})).await;
    let location = s.submit("rg", "c1", json!({"command": "echo audited"})).await;
    s.wait(&location).await;
    let id = location.split("/commandResults/").nth(1).unwrap().split('?').next().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.server_log();
    let lines: Vec<Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let request =
        lines.iter().find(|l| l["message"] == "request" && l["route"] == "{cluster}/runCommand").expect("request line");
    for field in ["method", "status", "elapsed_ms", "request_id", "correlation_id"] {
        assert!(!request[field].is_null(), "{field} missing: {request}");
    }
    let admin = s.admin().unwrap();
    for event in ["command accepted", "command started", "command finished"] {
        let line = lines
            .iter()
            .find(|l| l["message"] == event && l["command_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no {event:?}"));
        assert!(line["principal"].as_str().unwrap().contains(&admin.app_id), "{event}: {line}");
    }
    let finished = lines.iter().find(|l| l["message"] == "command finished").unwrap();
    assert_eq!(finished["state"], "Succeeded");
    assert_eq!(finished["exit_code"], 0);
    // On PostgreSQL, the store URL's password is a secret too (the banner shows the URL redacted).
    let store_password = s.store_url().and_then(|u| u.split_once("://")?.1.split_once('@')?.0.split_once(':'));
    let store_password = store_password.map(|(_, password)| password.to_string()).unwrap_or_default();
    assert_eq!(on_postgres(), !store_password.is_empty(), "the PostgreSQL run uses a password");
    for secret in [s.token.as_str(), admin.password.as_str(), kubeconfig.as_str(), "not-a-real-token"]
        .into_iter()
        .chain([store_password.as_str()].into_iter().filter(|p| !p.is_empty()))
    {
        assert!(!log.contains(secret) && !s.banner.contains(secret), "a secret reached the log");
    }
}

async fn retry_after(s: &Server) -> String {
    s.create_cluster("rg", "c1", json!({})).await;
    let r = s.post(&format!("{}/runCommand", cluster_path("rg", "c1")), json!({"command": "true"})).await;
    r.header("retry-after").unwrap().to_string()
}

#[tokio::test]
async fn flags_beat_environment_beat_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "url = \"https://ignored-by-serve\"\n[serve]\nretry-after = 7\nmax-running = 2\n").unwrap();
    let config = file.to_str().unwrap();
    let from_file = Server::start(&["--config", config]).await;
    assert_eq!(retry_after(&from_file).await, "7");
    let from_env = Server::start_with_env(&["--config", config], &[("KUBEINVOKE_RETRY_AFTER", "5")]).await;
    assert_eq!(retry_after(&from_env).await, "5");
    let from_flag =
        Server::start_with_env(&["--config", config, "--retry-after", "3"], &[("KUBEINVOKE_RETRY_AFTER", "5")]).await;
    assert_eq!(retry_after(&from_flag).await, "3");
    std::fs::write(&file, "[serve]\nno-such-setting = 1\n").unwrap();
    let refused = Server::start_refused(&["--config", config], &[]);
    assert!(refused.contains("no-such-setting"), "{refused}");
}

/// The console's ES modules are served by name with the page's strict policy; the module route
/// reaches nothing else (no other name, no path out of the console, not the server's files).
#[tokio::test]
async fn the_consoles_modules_are_served_by_name_and_nothing_else() {
    let s = Server::start(&[]).await;
    let page = s.client.get(format!("{}/console", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"src="/console/console.js""#), "{page}");
    let entry = s.client.get(format!("{}/console/console.js", s.base)).send().await.unwrap();
    assert_eq!(entry.status(), 200);
    let policy = entry.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let entry = entry.text().await.unwrap();
    for module in ["api.js", "ansi.js", "approvals.js", "zip.js"] {
        assert!(entry.contains(&format!("\"./{module}\"")), "console.js imports {module}");
        let r = s.client.get(format!("{}/console/{module}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{module}");
        assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8");
        assert!(r.text().await.unwrap().contains("export "), "{module} is a module");
    }
    for hostile in ["wire.ts", "..%2f..%2fCargo.toml", "%2e%2e%2fserver.log", "console.js%00", "style.css.js"] {
        let r = s.client.get(format!("{}/console/{hostile}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{hostile}");
    }
}
