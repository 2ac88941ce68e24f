//! A FAKE Kubernetes API server — a test fixture, not a Kubernetes implementation.
//!
//! The real control plane (`scripts/dev-cluster.sh`, `tests/cluster`) shows everything it can:
//! scheduling, admission, exit codes, logs, ImagePullBackoff, deadlines, cleanup, garbage
//! collection, and on its real node (`tests/cluster/node.rs`) real containers: live output,
//! OOMKilled, eviction, cancel. What stays here is what no real part can be made to do on cue: a
//! Pod deleted by someone else under a running command, a name already taken (409), an
//! unreachable API server, the sweeper's view of leftovers planted by a crashed replica, and an
//! exact scripted output to check masking against. For those this serves, over real HTTP, exactly the subset the Kubernetes executor uses: namespaces (get,
//! create), Secrets and Pods (create, get, list by label, watch, delete) and Pod logs (plain and
//! `follow`). It follows the API's documented conventions: `Status` bodies with `reason` and
//! `code` for 404/409/400, a cluster-wide `resourceVersion` bumped on every change, watch
//! streams of newline-delimited `{"type","object"}` events from a given version, `fieldSelector`
//! `metadata.name=` and `labelSelector` (key or key=value), deleting a Pod deletes the Secrets it
//! owns (the garbage collector), and logs of a container that has not started are a 400.
//!
//! Pods do not run: each follows a scripted lifecycle chosen by the test (matched against the
//! command text), changing its status the way the kubelet and scheduler would report it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How a scripted Pod behaves once created.
#[derive(Debug, Clone)]
pub enum Lifecycle {
    /// Runs for `run_for`, printing `logs`, then exits with `code`.
    Exit { code: i32, logs: String, run_for: Duration },
    /// The image cannot be pulled: waiting `ErrImagePull`, then `ImagePullBackOff`, forever.
    ImagePullBackOff,
    /// The scheduler finds no node: `PodScheduled=False`, forever.
    Unschedulable { message: String },
    /// Runs, prints `logs`, then is killed for its memory limit (exit 137, `OOMKilled`).
    OomKilled { logs: String },
    /// Runs, then the node evicts it (phase `Failed`, reason `Evicted`).
    Evicted { message: String },
    /// Runs, then someone deletes it.
    DeletedWhileRunning { logs: String },
    /// Runs until deleted.
    RunUntilDeleted { logs: String },
    /// `activeDeadlineSeconds` passes: phase `Failed`, reason `DeadlineExceeded`.
    DeadlineExceeded,
}

type Key = (String, String);

#[derive(Default)]
struct Cluster {
    version: u64,
    namespaces: BTreeMap<String, Value>,
    pods: BTreeMap<Key, Value>,
    secrets: BTreeMap<Key, Value>,
    /// Every pod event, in order (watches replay from a version).
    pod_events: Vec<(u64, String, Value)>,
    /// (command text contains, lifecycle), first match wins.
    scripts: Vec<(String, Lifecycle)>,
    /// Pods as received on create, before the fake touched them.
    created_pods: Vec<Value>,
    created_secrets: Vec<Value>,
    /// Logs revealed so far, by pod.
    logs: HashMap<Key, String>,
}

pub struct FakeApiServer {
    pub url: String,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    cluster: Mutex<Cluster>,
    pod_events: broadcast::Sender<(u64, String, Value)>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    pub async fn start() -> FakeApiServer {
        let state =
            Arc::new(Shared { cluster: Mutex::new(Cluster::default()), pod_events: broadcast::channel(1024).0 });
        let app = Router::new()
            .route("/api/v1/namespaces", axum::routing::post(create_namespace))
            .route("/api/v1/namespaces/{ns}", get(get_namespace))
            .route("/api/v1/namespaces/{ns}/pods", get(list_or_watch_pods).post(create_pod))
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod).delete(delete_pod))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .route("/api/v1/namespaces/{ns}/secrets", get(list_secrets).post(create_secret))
            .route("/api/v1/namespaces/{ns}/secrets/{name}", get(get_secret).delete(delete_secret))
            .fallback(|| async {
                status(StatusCode::NOT_FOUND, "NotFound", "the fake serves only what the executor uses")
            })
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeApiServer { url, state, task }
    }

    /// Pods whose command contains `pattern` follow `lifecycle` (default: exit 0, no output).
    pub fn script(&self, pattern: &str, lifecycle: Lifecycle) {
        self.state.cluster.lock().unwrap().scripts.push((pattern.to_string(), lifecycle));
    }

    /// A kubeconfig for this server.
    pub fn kubeconfig(&self) -> Vec<u8> {
        kubeconfig_for(&self.url)
    }

    pub fn created_pods(&self) -> Vec<Value> {
        self.state.cluster.lock().unwrap().created_pods.clone()
    }

    pub fn created_secrets(&self) -> Vec<Value> {
        self.state.cluster.lock().unwrap().created_secrets.clone()
    }

    pub fn pod_names(&self) -> Vec<String> {
        self.state.cluster.lock().unwrap().pods.keys().map(|(_, n)| n.clone()).collect()
    }

    pub fn secret_names(&self) -> Vec<String> {
        self.state.cluster.lock().unwrap().secrets.keys().map(|(_, n)| n.clone()).collect()
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.state.cluster.lock().unwrap().namespaces.keys().cloned().collect()
    }

    /// Puts a Pod (and its Secret) there as if someone else, or an earlier crash, left it.
    pub fn plant(&self, namespace: &str, name: &str, command_id: &str) {
        let labels = json!({"kubeinvoke.io/command-id": command_id});
        let mut cluster = self.state.cluster.lock().unwrap();
        cluster.namespaces.entry(namespace.to_string()).or_insert_with(|| json!({"metadata": {"name": namespace}}));
        let version = bump(&mut cluster);
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
            "uid": uuid::Uuid::new_v4().to_string(), "resourceVersion": version.to_string(), "labels": labels},
            "spec": {"containers": [{"name": "other", "image": "busybox"}]}, "status": {"phase": "Running"}});
        cluster.pods.insert((namespace.into(), name.into()), pod);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace,
            "uid": uuid::Uuid::new_v4().to_string(), "resourceVersion": version.to_string(), "labels": labels}, "data": {}});
        cluster.secrets.insert((namespace.into(), name.into()), secret);
    }
}

pub fn kubeconfig_for(url: &str) -> Vec<u8> {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
    )
    .into_bytes()
}

fn bump(cluster: &mut Cluster) -> u64 {
    cluster.version += 1;
    cluster.version
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

/// A refusal, as a `Status` once it is sent.
struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        status(self.code, self.reason, &self.message)
    }
}

fn not_found(kind: &str, name: &str) -> Response {
    status(StatusCode::NOT_FOUND, "NotFound", &format!("{kind} \"{name}\" not found"))
}

fn created(object: Value) -> Response {
    (StatusCode::CREATED, axum::Json(object)).into_response()
}

/// Gives an incoming object the fields the API server owns.
fn admit(object: &mut Value, namespace: &str, version: u64) -> Result<String, Refusal> {
    let name = object["metadata"]["name"].as_str().map(str::to_string);
    let Some(name) = name else {
        return Err(Refusal {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: "metadata.name: Required value".into(),
        });
    };
    object["metadata"]["namespace"] = json!(namespace);
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["resourceVersion"] = json!(version.to_string());
    object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    Ok(name)
}

async fn get_namespace(State(s): State<Arc<Shared>>, Path(ns): Path<String>) -> Response {
    match s.cluster.lock().unwrap().namespaces.get(&ns) {
        Some(namespace) => axum::Json(namespace.clone()).into_response(),
        None => not_found("namespaces", &ns),
    }
}

async fn create_namespace(State(s): State<Arc<Shared>>, axum::Json(mut body): axum::Json<Value>) -> Response {
    let mut cluster = s.cluster.lock().unwrap();
    let version = bump(&mut cluster);
    let name = match admit(&mut body, "", version) {
        Ok(name) => name,
        Err(refusal) => return refusal.into_response(),
    };
    if cluster.namespaces.contains_key(&name) {
        return status(StatusCode::CONFLICT, "AlreadyExists", &format!("namespaces \"{name}\" already exists"));
    }
    body["metadata"].as_object_mut().unwrap().remove("namespace");
    body["status"] = json!({"phase": "Active"});
    cluster.namespaces.insert(name, body.clone());
    created(body)
}

fn require_namespace(cluster: &Cluster, ns: &str) -> Result<(), Refusal> {
    if cluster.namespaces.contains_key(ns) {
        Ok(())
    } else {
        Err(Refusal {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: format!("namespaces \"{ns}\" not found"),
        })
    }
}

fn matches_labels(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return true };
    selector.split(',').all(|term| {
        let labels = &object["metadata"]["labels"];
        match term.split_once('=') {
            Some((key, value)) => labels[key.trim()] == value.trim(),
            None => !labels[term.trim()].is_null(),
        }
    })
}

fn matches_fields(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else { return true };
    selector.split(',').all(|term| match term.split_once('=') {
        Some(("metadata.name", name)) => object["metadata"]["name"] == name,
        Some(("metadata.namespace", ns)) => object["metadata"]["namespace"] == ns,
        _ => false,
    })
}

fn list(kind: &str, items: Vec<Value>, version: u64) -> Response {
    axum::Json(json!({"apiVersion": "v1", "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": version.to_string()}, "items": items}))
    .into_response()
}

async fn create_pod(
    State(s): State<Arc<Shared>>,
    Path(ns): Path<String>,
    axum::Json(mut pod): axum::Json<Value>,
) -> Response {
    let (name, lifecycle, snapshot) = {
        let mut cluster = s.cluster.lock().unwrap();
        if let Err(refusal) = require_namespace(&cluster, &ns) {
            return refusal.into_response();
        }
        cluster.created_pods.push(pod.clone());
        let version = bump(&mut cluster);
        let name = match admit(&mut pod, &ns, version) {
            Ok(name) => name,
            Err(refusal) => return refusal.into_response(),
        };
        if cluster.pods.contains_key(&(ns.clone(), name.clone())) {
            return status(StatusCode::CONFLICT, "AlreadyExists", &format!("pods \"{name}\" already exists"));
        }
        pod["status"] = json!({"phase": "Pending"});
        let command = pod["spec"]["containers"][0]["command"].to_string();
        let lifecycle = cluster
            .scripts
            .iter()
            .find(|(pattern, _)| command.contains(pattern.as_str()))
            .map(|(_, l)| l.clone())
            .unwrap_or(Lifecycle::Exit { code: 0, logs: String::new(), run_for: Duration::from_millis(50) });
        cluster.pods.insert((ns.clone(), name.clone()), pod.clone());
        cluster.pod_events.push((version, "ADDED".into(), pod.clone()));
        let _ = s.pod_events.send((version, "ADDED".into(), pod.clone()));
        (name, lifecycle, pod)
    };
    tokio::spawn(play(s.clone(), (ns, name), lifecycle));
    created(snapshot)
}

/// Changes a pod's status as the kubelet would; false when the pod is gone.
fn update(s: &Shared, key: &Key, change: impl FnOnce(&mut Value)) -> bool {
    let mut cluster = s.cluster.lock().unwrap();
    let version = bump(&mut cluster);
    let Some(pod) = cluster.pods.get_mut(key) else { return false };
    change(pod);
    pod["metadata"]["resourceVersion"] = json!(version.to_string());
    let pod = pod.clone();
    cluster.pod_events.push((version, "MODIFIED".into(), pod.clone()));
    let _ = s.pod_events.send((version, "MODIFIED".into(), pod));
    true
}

fn container(state: Value) -> Value {
    json!([{"name": "user-command", "image": "img", "imageID": "", "ready": state.get("running").is_some(),
        "restartCount": 0, "state": state}])
}

fn running(pod: &mut Value) {
    pod["status"] = json!({"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": container(json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}}))});
}

async fn play(s: Arc<Shared>, key: Key, lifecycle: Lifecycle) {
    let step = Duration::from_millis(50);
    tokio::time::sleep(step).await;
    let reveal = |logs: &str| {
        s.cluster.lock().unwrap().logs.insert(key.clone(), logs.to_string());
    };
    match lifecycle {
        Lifecycle::Exit { code, logs, run_for } => {
            reveal(&logs);
            update(&s, &key, running);
            tokio::time::sleep(run_for).await;
            update(&s, &key, |pod| {
                let reason = if code == 0 { "Completed" } else { "Error" };
                pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
                pod["status"]["containerStatuses"] =
                    container(json!({"terminated": {"exitCode": code, "reason": reason}}));
            });
        }
        Lifecycle::ImagePullBackOff => {
            for reason in ["ErrImagePull", "ImagePullBackOff"] {
                update(&s, &key, |pod| {
                    pod["status"]["containerStatuses"] =
                        container(json!({"waiting": {"reason": reason, "message": "Back-off pulling image \"img\""}}));
                });
                tokio::time::sleep(step).await;
            }
        }
        Lifecycle::Unschedulable { message } => {
            update(&s, &key, |pod| {
                pod["status"]["conditions"] =
                    json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]);
            });
        }
        Lifecycle::OomKilled { logs } => {
            reveal(&logs);
            update(&s, &key, running);
            tokio::time::sleep(step).await;
            update(&s, &key, |pod| {
                pod["status"]["phase"] = json!("Failed");
                pod["status"]["containerStatuses"] =
                    container(json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}));
            });
        }
        Lifecycle::Evicted { message } => {
            update(&s, &key, running);
            tokio::time::sleep(step).await;
            update(&s, &key, |pod| {
                pod["status"] = json!({"phase": "Failed", "reason": "Evicted", "message": message});
            });
        }
        Lifecycle::DeletedWhileRunning { logs } => {
            reveal(&logs);
            update(&s, &key, running);
            tokio::time::sleep(step * 2).await;
            remove_pod(&s, &key);
        }
        Lifecycle::RunUntilDeleted { logs } => {
            reveal(&logs);
            update(&s, &key, running);
        }
        Lifecycle::DeadlineExceeded => {
            update(&s, &key, running);
            tokio::time::sleep(step).await;
            update(&s, &key, |pod| {
                pod["status"] = json!({"phase": "Failed", "reason": "DeadlineExceeded",
                    "message": "Pod was active on the node longer than the specified deadline"});
            });
        }
    }
}

/// Deletes a pod, tells watchers, and deletes the Secrets it owns (the garbage collector).
fn remove_pod(s: &Shared, key: &Key) -> Option<Value> {
    let mut cluster = s.cluster.lock().unwrap();
    let version = bump(&mut cluster);
    let mut pod = cluster.pods.remove(key)?;
    pod["metadata"]["resourceVersion"] = json!(version.to_string());
    pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:09Z");
    cluster.pod_events.push((version, "DELETED".into(), pod.clone()));
    let _ = s.pod_events.send((version, "DELETED".into(), pod.clone()));
    let uid = pod["metadata"]["uid"].clone();
    cluster.secrets.retain(|_, secret| {
        !secret["metadata"]["ownerReferences"].as_array().is_some_and(|owners| owners.iter().any(|o| o["uid"] == uid))
    });
    Some(pod)
}

async fn get_pod(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>) -> Response {
    match s.cluster.lock().unwrap().pods.get(&(ns, name.clone())) {
        Some(pod) => axum::Json(pod.clone()).into_response(),
        None => not_found("pods", &name),
    }
}

async fn delete_pod(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>) -> Response {
    match remove_pod(&s, &(ns, name.clone())) {
        Some(pod) => axum::Json(pod).into_response(),
        None => not_found("pods", &name),
    }
}

async fn list_or_watch_pods(
    State(s): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let labels = query.get("labelSelector");
    let fields = query.get("fieldSelector");
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_pods(s, ns, query.clone()).await;
    }
    let cluster = s.cluster.lock().unwrap();
    let items = cluster
        .pods
        .iter()
        .filter(|((n, _), pod)| *n == ns && matches_labels(pod, labels) && matches_fields(pod, fields))
        .map(|(_, pod)| pod.clone())
        .collect();
    list("Pod", items, cluster.version)
}

/// `?watch=true`: the events after `resourceVersion`, then live ones, until `timeoutSeconds`.
async fn watch_pods(s: Arc<Shared>, ns: String, query: HashMap<String, String>) -> Response {
    let since: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout = Duration::from_secs(query.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(300));
    let labels = query.get("labelSelector").cloned();
    let fields = query.get("fieldSelector").cloned();
    // Subscribe before reading the history, so no event falls in between.
    let mut live = s.pod_events.subscribe();
    let replay: Vec<(u64, String, Value)> =
        s.cluster.lock().unwrap().pod_events.iter().filter(|(v, _, _)| *v > since).cloned().collect();
    let wanted = move |pod: &Value| {
        pod["metadata"]["namespace"] == ns.as_str()
            && matches_labels(pod, labels.as_ref())
            && matches_fields(pod, fields.as_ref())
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut last = since;
        let line = |kind: &str, pod: &Value| format!("{}\n", json!({"type": kind, "object": pod}));
        for (version, kind, pod) in replay {
            last = version;
            if wanted(&pod) && sender.send(Ok(line(&kind, &pod))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                event = live.recv() => match event {
                    Ok((version, kind, pod)) if version > last => {
                        last = version;
                        if wanted(&pod) && sender.send(Ok(line(&kind, &pod))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(receiver));
    ([("content-type", "application/json")], body).into_response()
}

fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// `…/log`: 400 until the container started; with `follow`, open until the pod ends.
async fn pod_log(
    State(s): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = (ns, name.clone());
    let logs = {
        let cluster = s.cluster.lock().unwrap();
        let Some(pod) = cluster.pods.get(&key) else { return not_found("pods", &name) };
        let state = &pod["status"]["containerStatuses"][0]["state"];
        if state.get("running").is_none() && state.get("terminated").is_none() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("container \"user-command\" in pod \"{name}\" is waiting to start: ContainerCreating"),
            );
        }
        cluster.logs.get(&key).cloned().unwrap_or_default()
    };
    let mut logs = logs.into_bytes();
    if let Some(limit) = query.get("limitBytes").and_then(|v| v.parse::<usize>().ok()) {
        logs.truncate(limit);
    }
    if query.get("follow").is_none_or(|f| f != "true") {
        return ([("content-type", "text/plain")], logs).into_response();
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    tokio::spawn(async move {
        let _ = sender.send(Ok(String::from_utf8_lossy(&logs).into_owned())).await;
        // Open while the container runs, as a real follow is.
        loop {
            let done = {
                let cluster = s.cluster.lock().unwrap();
                match cluster.pods.get(&key) {
                    None => true,
                    Some(pod) => {
                        pod["status"]["containerStatuses"][0]["state"].get("terminated").is_some()
                            || pod["status"]["phase"] == "Failed"
                    }
                }
            };
            if done || sender.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    ([("content-type", "text/plain")], Body::from_stream(tokio_stream_from(receiver))).into_response()
}

async fn create_secret(
    State(s): State<Arc<Shared>>,
    Path(ns): Path<String>,
    axum::Json(mut secret): axum::Json<Value>,
) -> Response {
    let mut cluster = s.cluster.lock().unwrap();
    if let Err(refusal) = require_namespace(&cluster, &ns) {
        return refusal.into_response();
    }
    cluster.created_secrets.push(secret.clone());
    let version = bump(&mut cluster);
    let name = match admit(&mut secret, &ns, version) {
        Ok(name) => name,
        Err(refusal) => return refusal.into_response(),
    };
    if cluster.secrets.contains_key(&(ns.clone(), name.clone())) {
        return status(StatusCode::CONFLICT, "AlreadyExists", &format!("secrets \"{name}\" already exists"));
    }
    cluster.secrets.insert((ns, name), secret.clone());
    created(secret)
}

async fn get_secret(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>) -> Response {
    match s.cluster.lock().unwrap().secrets.get(&(ns, name.clone())) {
        Some(secret) => axum::Json(secret.clone()).into_response(),
        None => not_found("secrets", &name),
    }
}

async fn delete_secret(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut cluster = s.cluster.lock().unwrap();
    bump(&mut cluster);
    match cluster.secrets.remove(&(ns, name.clone())) {
        Some(secret) => axum::Json(secret).into_response(),
        None => not_found("secrets", &name),
    }
}

async fn list_secrets(
    State(s): State<Arc<Shared>>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let cluster = s.cluster.lock().unwrap();
    let items = cluster
        .secrets
        .iter()
        .filter(|((n, _), secret)| *n == ns && matches_labels(secret, query.get("labelSelector")))
        .map(|(_, secret)| secret.clone())
        .collect();
    list("Secret", items, cluster.version)
}
