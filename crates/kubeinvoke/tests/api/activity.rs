//! The activity log and event subscriptions, end to end: `kubeinvoke audit verify` against a log
//! tampered with directly in the database (either backend), and webhook deliveries that retry
//! while the receiver fails, survive a SIGKILL of the server, and dead-letter after their budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::harness::*;

fn audit(s: &Server, verb: &str) -> (i32, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kubeinvoke"));
    command.args(["audit", verb, "--data-dir"]).arg(s.data_dir());
    if let Some(url) = s.store_url() {
        command.args(["--store", url]);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn events_logged(s: &Server, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.count("SELECT COUNT(*) FROM activity_log").await < at_least {
        assert!(Instant::now() < deadline, "the activity log never reached {at_least} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn audit_verify_names_the_first_event_changed_removed_or_reordered() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    s.run("echo one").await;
    s.create_cluster("rg", "c2", json!({})).await;
    events_logged(&s, 7).await;
    let (code, out) = audit(&s, "verify");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("the activity log is intact:"), "{out}");

    // Changed: one byte more in event 3.
    s.execute("UPDATE activity_log SET content = content || ' ' WHERE seq = 3").await;
    let (code, out) = audit(&s, "verify");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 3 (") && out.contains("was changed"), "{out}");
    s.execute("UPDATE activity_log SET content = rtrim(content) WHERE seq = 3").await;
    assert_eq!(audit(&s, "verify").0, 0, "restored");

    // Reordered: events 2 and 3 swap places.
    let swap = "UPDATE activity_log SET seq = -1 WHERE seq = 2; UPDATE activity_log SET seq = 2 WHERE seq = 3; UPDATE activity_log SET seq = 3 WHERE seq = -1;";
    s.execute(swap).await;
    let (code, out) = audit(&s, "verify");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 2 (") && out.contains("does not follow the event before it"), "{out}");
    s.execute(swap).await;
    assert_eq!(audit(&s, "verify").0, 0, "swapped back");

    // Removed: event 4 is deleted; event 5 no longer follows anything.
    s.execute("DELETE FROM activity_log WHERE seq = 4").await;
    let (code, out) = audit(&s, "verify");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 5 (") && out.contains("(seq 3)"), "{out}");

    // Export writes one JSON line per event.
    let (code, out) = audit(&s, "export");
    assert_eq!(code, 0);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 6 && lines.iter().all(|l| l["event"]["eventDataId"].is_string()), "{out}");
}

/// An HTTPS webhook receiver with a CA of its own: answers the handshake, records what it gets,
/// and fails with 500 while told to.
struct Receiver {
    url: String,
    ca: std::path::PathBuf,
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// (event id, type, status answered)
    seen: Arc<Mutex<Vec<(String, String, u16)>>>,
    _dir: tempfile::TempDir,
}

impl Receiver {
    async fn start() -> Receiver {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.clone().self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            leaf.pem().into_bytes(),
            leaf_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (fail, record) = (failing.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::options(|headers: HeaderMap| async move {
                let origin = headers.get("webhook-request-origin").cloned().unwrap();
                (StatusCode::OK, [("webhook-allowed-origin", origin)])
            })
            .post(move |body: String| {
                let (fail, record) = (fail.clone(), record.clone());
                async move {
                    let event: Value = serde_json::from_str(&body).unwrap();
                    let status = if fail.load(std::sync::atomic::Ordering::SeqCst) { 500 } else { 200 };
                    let id = event["id"].as_str().unwrap().to_string();
                    record.lock().unwrap().push((id, event["type"].as_str().unwrap().to_string(), status));
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum_server::from_tcp_rustls(listener, tls).unwrap().serve(app.into_make_service()).await.unwrap();
        });
        Receiver { url: format!("https://127.0.0.1:{port}/hook"), ca, failing, seen, _dir: dir }
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Successful deliveries per event id.
    fn delivered(&self) -> HashMap<String, (String, usize)> {
        let mut counts: HashMap<String, (String, usize)> = HashMap::new();
        for (id, kind, status) in self.seen.lock().unwrap().iter() {
            let entry = counts.entry(id.clone()).or_insert((kind.clone(), 0));
            if *status == 200 {
                entry.1 += 1;
            }
        }
        counts
    }

    fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn subscription_path(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.EventGrid/eventSubscriptions/{name}?api-version=2022-06-15"
    )
}

fn subscription_body(url: &str, extra: Value) -> Value {
    let mut properties = json!({
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}},
        "eventDeliverySchema": "CloudEventSchemaV1_0",
    });
    for (k, v) in extra.as_object().unwrap() {
        properties[k] = v.clone();
    }
    json!({ "properties": properties })
}

async fn wait_until(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deliveries_retry_while_the_receiver_fails_and_survive_a_sigkill() {
    let receiver = Receiver::start().await;
    let ca = receiver.ca.display().to_string();
    let s = Server::start(&["--event-ca", &ca, "--event-allow-private-networks"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let r = s.put(&subscription_path("all-events"), subscription_body(&receiver.url, json!({}))).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // The receiver fails: the command's events are retried, none is lost.
    receiver.fail(true);
    let location = s.submit("rg", "c1", json!({"command": "true"})).await;
    s.wait(&location).await;
    wait_until("two failed attempts", 30, || receiver.attempts() >= 2).await;
    assert!(receiver.delivered().values().all(|(_, ok)| *ok == 0));

    // SIGKILL between the command's end and its delivery; the receiver recovers meanwhile.
    let path = location[location.find("/subscriptions/").unwrap()..].to_string();
    let s = s.restart().await;
    receiver.fail(false);
    wait_until("all three events delivered", 60, || {
        receiver.delivered().values().filter(|(_, ok)| *ok > 0).count() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = receiver.delivered();
    let mut kinds: Vec<&str> = delivered.values().map(|(kind, _)| kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Microsoft.ContainerService.CommandAccepted",
            "Microsoft.ContainerService.CommandFinished",
            "Microsoft.ContainerService.CommandStarted"
        ]
    );
    assert!(delivered.values().all(|(_, ok)| *ok == 1), "each event arrived once: {delivered:?}");
    assert_eq!(s.get(&path).await.status, 200);

    // A subscription whose endpoint keeps failing dead-letters after its budget, visibly.
    let r = s.put(&subscription_path("dead-end"), subscription_body(&receiver.url, json!({"retryPolicy": {"maxDeliveryAttempts": 2, "eventTimeToLiveInMinutes": 60}, "filter": {"includedEventTypes": ["Microsoft.ContainerService.CommandFinished"]}}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    receiver.fail(true);
    let location = s.submit("rg", "c1", json!({"command": "true"})).await;
    s.wait(&location).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = s.get(&subscription_path("dead-end")).await.json();
        if shown["properties"]["deliveryStatus"]["deadLettered"] == 1 {
            assert!(
                shown["properties"]["deliveryStatus"]["lastError"].as_str().unwrap().contains("answered 500"),
                "{shown}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {shown}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn webhook_endpoints_must_be_https_and_pass_the_handshake() {
    let s = Server::start(&["--event-allow-private-networks"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let r = s.put(&subscription_path("plain"), subscription_body("http://127.0.0.1:9/hook", json!({}))).await;
    r.assert_error(400, "InvalidParameter");
    assert_eq!(r.json()["error"]["target"], "properties.destination.properties.endpointUrl");
    // An https endpoint whose certificate the server does not trust fails the handshake.
    let receiver = Receiver::start().await;
    let r = s.put(&subscription_path("untrusted"), subscription_body(&receiver.url, json!({}))).await;
    assert!(r.assert_error(400, "InvalidParameter").contains("handshake failed"), "{}", r.text);
    let r = s
        .put(
            &subscription_path("schema"),
            subscription_body(&receiver.url, json!({"eventDeliverySchema": "EventGridSchema"})),
        )
        .await;
    assert_eq!(r.json()["error"]["target"], "properties.eventDeliverySchema", "{}", r.text);
    let r = s
        .put(
            &subscription_path("types"),
            subscription_body(&receiver.url, json!({"filter": {"includedEventTypes": ["Nope"]}})),
        )
        .await;
    assert_eq!(r.json()["error"]["target"], "properties.filter.includedEventTypes", "{}", r.text);
}

#[tokio::test]
async fn writes_and_refusals_are_in_the_activity_log_with_their_caller() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let reader = s.create_principal("log-reader", Some(("Reader", &format!("/subscriptions/{SUB}"))));
    let token = s.token_for(&reader, "https://management.azure.com/.default").await;
    let run = format!("{}/runCommand", cluster_path("rg", "c1"));
    send_as(&s, &token, reqwest::Method::POST, &run, Some(json!({"command": "id"})))
        .await
        .assert_error(403, "AuthorizationFailed");
    let anonymous = s.client.post(s.url(&run)).json(&json!({"command": "id"}));
    assert_eq!(reply(anonymous).await.status, 401);

    let since = "2000-01-01T00:00:00Z";
    let list = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01&$filter=eventTimestamp%20ge%20{since}%20and%20resourceGroupName%20eq%20'rg'"
    );
    let events = s.get(&list).await.json()["value"].as_array().unwrap().clone();
    let find = |status: &str, sub_status: &str| {
        events.iter().find(|e| e["status"]["value"] == status && e["subStatus"]["value"] == sub_status).cloned()
    };
    let forbidden = find("Failed", "Forbidden").expect("the 403 is logged");
    assert_eq!(forbidden["caller"], reader.app_id.as_str());
    assert_eq!(forbidden["operationName"]["value"], "Microsoft.ContainerService/managedClusters/runcommand/action");
    let unauthorized = find("Failed", "Unauthorized").expect("the 401 is logged");
    assert_eq!(unauthorized["caller"], "", "no caller is known without a valid token");
    let written = events
        .iter()
        .find(|e| e["operationName"]["value"] == "Microsoft.ContainerService/managedClusters/write")
        .expect("the cluster's creation is logged");
    assert_eq!(written["status"]["value"], "Succeeded");
    assert_eq!(written["resourceId"], cluster_path("rg", "c1"));
    // The log is read with read rights on the subscription: a principal without any is refused.
    let nobody = s.create_principal("log-nobody", None);
    let nobody = s.token_for(&nobody, "https://management.azure.com/.default").await;
    send_as(&s, &nobody, reqwest::Method::GET, &list, None).await.assert_error(403, "AuthorizationFailed");
    // A filter the API does not know is a 400 naming $filter.
    let bad = list.replace("resourceGroupName", "level");
    let message = s.get(&bad).await.assert_error(400, "InvalidParameter");
    assert!(message.contains("is not supported"), "{message}");
}
