//! The Kubernetes executor: each command runs as a Pod in the cluster it targets, as AKS runs
//! them (docs/contract.md §8). The cluster schedules and isolates it, the cluster's RBAC applies, and
//! the server only orchestrates through the cluster's API with kube-rs:
//!
//! namespace (ensured) → Pod `command-<id>` → Secret `command-<id>` owned by the Pod (files,
//! caller's kubeconfig) → watch the Pod to its end → its logs (capped) → delete both.
//!
//! Whatever happens, the Pod and the Secret are deleted; if even that fails, the Secret goes
//! with the Pod (owner reference) and the sweeper removes Pods of commands no longer running.

mod client;
mod logs;
pub(crate) mod run_as;
mod spec;
mod status;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};

pub use spec::{COMMAND_ID_LABEL, PodTemplate, command_pod, command_secret, object_name};
pub use status::{PodEnd, judge};

use super::masking::SecretMask;
use super::output::CappedLog;
use super::{Executor, Isolation, Job, Leftover, StopReason, StopSignal};
use crate::command::{CommandId, FailureReason, Outcome};
use crate::kubeconfig::ClusterAccess;
use client::{PodError, access_of, client_for};

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub template: PodTemplate,
    /// How long a Pod may wait to be scheduled and started before the command fails.
    pub start_deadline: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig { template: PodTemplate::default(), start_deadline: Duration::from_secs(300) }
    }
}

pub struct KubernetesExecutor {
    config: KubernetesConfig,
    /// How to reach the clusters this process ran commands on, for the sweeper: only what the
    /// allow-list kept of their kubeconfigs.
    clusters: Mutex<HashMap<String, ClusterAccess>>,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

/// How the watch of a Pod ended.
enum Watched {
    Ended(PodEnd),
    Stopped(StopReason),
    /// Deleted by someone else before it finished.
    Deleted,
    /// Longer than the command's timeout plus the start deadline: the cluster did not end it.
    Overdue,
}

impl KubernetesExecutor {
    pub fn new(config: KubernetesConfig) -> Self {
        KubernetesExecutor { config, clusters: Mutex::new(HashMap::new()) }
    }

    fn remember(&self, access: &ClusterAccess) -> String {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        digest.update(access.server.to_string());
        digest.update([0]);
        digest.update(access.token.as_deref().unwrap_or_default());
        if let Some(identity) = &access.client_identity {
            digest.update(&identity.certificate_pem);
        }
        let place = hex(&digest.finalize()[..8]);
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).insert(place.clone(), access.clone());
        place
    }

    async fn ensure_namespace(&self, client: &Client) -> Result<(), PodError> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let name = &self.config.template.namespace;
        if namespaces.get_opt(name).await?.is_some() {
            return Ok(());
        }
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Watches the Pod until it ends, is stopped or deleted; starts following its logs once the
    /// command container runs.
    async fn watch(
        &self,
        pods: &Api<Pod>,
        created: Pod,
        limits_timeout: Duration,
        stop: &mut StopSignal,
        on_start: &mut (dyn FnMut() + Send),
    ) -> Result<Watched, PodError> {
        let name = created.name_any();
        let began = Instant::now();
        let overdue = limits_timeout + self.config.start_deadline + Duration::from_secs(60);
        let mut version = created.resource_version().unwrap_or_default();
        let mut latest = created;
        let mut unreachable_since: Option<Instant> = None;
        let mut started = false;
        loop {
            if !started && status::started(&latest) {
                started = true;
                on_start();
            }
            if let Some(end) = judge(&latest, began.elapsed(), self.config.start_deadline) {
                return Ok(Watched::Ended(end));
            }
            if began.elapsed() > overdue {
                return Ok(Watched::Overdue);
            }
            let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(60);
            let events = match pods.watch(&params, &version).await {
                Ok(events) => {
                    unreachable_since = None;
                    events
                }
                Err(e) if matches!(e, kube::Error::Api(_)) => return Err(e.into()),
                Err(e) => {
                    // A restarting API server: keep trying for a while before giving up.
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(60) {
                        return Err(e.into());
                    }
                    tokio::select! {
                        reason = stop.stopped() => return Ok(Watched::Stopped(reason)),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let mut events = events.boxed();
            loop {
                let event = tokio::select! {
                    reason = stop.stopped() => return Ok(Watched::Stopped(reason)),
                    // Wakes up now and then: the start deadline passes without any event.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if judge(&latest, began.elapsed(), self.config.start_deadline).is_some() || began.elapsed() > overdue {
                            break;
                        }
                        continue;
                    }
                    event = events.try_next() => event,
                };
                match event {
                    Ok(Some(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                        version = pod.resource_version().unwrap_or(version);
                        latest = pod;
                        if !started && status::started(&latest) {
                            started = true;
                            on_start();
                        }
                        if judge(&latest, began.elapsed(), self.config.start_deadline).is_some() {
                            break;
                        }
                    }
                    Ok(Some(WatchEvent::Deleted(pod))) => {
                        latest = pod;
                        return Ok(match judge(&latest, began.elapsed(), self.config.start_deadline) {
                            Some(end) => Watched::Ended(end),
                            None => Watched::Deleted,
                        });
                    }
                    Ok(Some(WatchEvent::Bookmark(bookmark))) => version = bookmark.metadata.resource_version,
                    Ok(Some(WatchEvent::Error(status))) => {
                        // 410 Gone: our version is too old; read the Pod afresh and watch from there.
                        if status.code == 410 {
                            match pods.get_opt(&name).await? {
                                Some(pod) => {
                                    version = pod.resource_version().unwrap_or_default();
                                    latest = pod;
                                }
                                None => return Ok(Watched::Deleted),
                            }
                        }
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    async fn run_in_cluster(&self, job: &Job, stop: &mut StopSignal) -> Result<Outcome, PodError> {
        let access = access_of(job.server_kubeconfig())?;
        let client = client_for(&access)?;
        let _place = self.remember(&access);
        self.ensure_namespace(&client).await?;
        let template = &self.config.template;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &template.namespace);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &template.namespace);
        let name = object_name(job.id.as_str());
        let created = match pods.create(&PostParams::default(), &command_pod(job, template)).await {
            Ok(pod) => pod,
            // Never adopt a Pod someone else made: it could run anything.
            Err(e) if is_status(&e, 409) => {
                return Ok(failed(
                    FailureReason::Cluster(format!(
                        "PodAlreadyExists: a Pod {name} already exists in {}",
                        template.namespace
                    )),
                    String::new(),
                ));
            }
            // Admission (Pod Security, a ValidatingAdmissionPolicy, Gatekeeper, Kyverno) or RBAC
            // refused the Pod: the command ends now with the cluster's own words, not after the
            // start deadline.
            Err(kube::Error::Api(status)) if matches!(status.code, 400 | 403 | 422) => {
                let why = PodError::from(kube::Error::Api(status)).to_string();
                return Ok(failed(FailureReason::Cluster(format!("PodRejected: {why}")), String::new()));
            }
            Err(e) => return Err(e.into()),
        };
        let outcome = self.run_created(job, stop, &pods, &secrets, created).await;
        if let Ok(Outcome::Exited { exit_code, logs }) = &outcome {
            // Told before the Pod and its Secret are deleted, which needs the cluster to answer.
            job.exited(*exit_code, logs);
        }
        self.clean_up(&pods, &secrets, &name).await;
        outcome
    }

    async fn run_created(
        &self,
        job: &Job,
        stop: &mut StopSignal,
        pods: &Api<Pod>,
        secrets: &Api<Secret>,
        created: Pod,
    ) -> Result<Outcome, PodError> {
        let uid = created.uid().unwrap_or_default();
        match secrets.create(&PostParams::default(), &command_secret(job, &self.config.template, &uid)).await {
            Ok(_) => {}
            // Left by an earlier, interrupted attempt of this very command: replace it.
            Err(e) if is_status(&e, 409) => {
                secrets.delete(&object_name(job.id.as_str()), &DeleteParams::default()).await?;
                secrets.create(&PostParams::default(), &command_secret(job, &self.config.template, &uid)).await?;
            }
            Err(e) => return Err(e.into()),
        }
        let mut follower: Option<logs::Follower> = None;
        let name = created.name_any();
        let cap = job.limits.max_output_bytes;
        let watched = {
            let mut on_start = || {
                if follower.is_none() {
                    let mask = SecretMask::new(&job.masked);
                    follower = Some(logs::Follower::start(pods.clone(), name.clone(), job.output.clone(), cap, mask));
                }
            };
            self.watch(pods, created, job.limits.timeout, stop, &mut on_start).await?
        };
        // A Pod that ended is read whole. One we stop is deleted now, which ends its stream
        // after the output so far.
        let ended = matches!(watched, Watched::Ended(_));
        if !ended {
            let _ = pods.delete(&name, &DeleteParams::background()).await;
        }
        let output = match follower {
            Some(follower) if ended => follower.finish_ended(pods, &name, cap).await,
            Some(follower) => follower.finish_stopped(&name).await,
            None => logs::Output { bytes: Vec::new(), may_be_cut: false },
        };
        let mut log = CappedLog::new(job.limits.log_cap);
        log.push(&SecretMask::new(&job.masked).mask_all(&output.bytes));
        let cut_note =
            output.may_be_cut.then_some("the log stream did not end with the container: the output may end early");
        let note = |own: Option<String>| -> Option<String> {
            match (own, cut_note) {
                (Some(own), Some(cut)) => Some(format!("{own}; {cut}")),
                (own, cut) => own.or(cut.map(str::to_string)),
            }
        };
        if let Watched::Ended(PodEnd::Exited { code, oom }) = watched {
            let own = oom.then(|| {
                format!(
                    "the container was OOMKilled: it exceeded its memory limit of {}",
                    self.config.template.memory_limit
                )
            });
            let exit_code = if oom { 137 } else { code };
            return Ok(Outcome::Exited { exit_code, logs: log.finish(note(own).as_deref()) });
        }
        let (reason, own) = match watched {
            Watched::Ended(PodEnd::Exited { .. }) => unreachable!("an exit is returned above"),
            Watched::Ended(PodEnd::DeadlineExceeded) | Watched::Overdue => (
                FailureReason::Timeout,
                Some(format!(
                    "the command timed out after {} and its Pod was stopped",
                    humantime::format_duration(job.limits.timeout)
                )),
            ),
            Watched::Ended(PodEnd::Failed(reason)) => (FailureReason::Cluster(reason), None),
            Watched::Deleted => {
                (FailureReason::Cluster("PodDeleted: the Pod was deleted before the command finished".into()), None)
            }
            Watched::Stopped(StopReason::Cancel(by)) => {
                let own = format!("canceled by {by}; the Pod was deleted");
                (FailureReason::Canceled(by), Some(own))
            }
            Watched::Stopped(StopReason::Shutdown) => (
                FailureReason::ServerShutdown,
                Some("the server shut down before the command finished; the Pod was deleted".into()),
            ),
            Watched::Stopped(StopReason::Fenced) => (
                FailureReason::WorkerLost,
                Some("this replica lost the database and could not renew its lease; the Pod was deleted".into()),
            ),
        };
        Ok(failed(reason, log.finish(note(own).as_deref())))
    }

    /// Deletes the Pod and the Secret; already gone is fine.
    async fn clean_up(&self, pods: &Api<Pod>, secrets: &Api<Secret>, name: &str) {
        let background = DeleteParams::background();
        for attempt in 0..3 {
            let pod = pods.delete(name, &background).await;
            let secret = secrets.delete(name, &background).await;
            if gone(&pod) && gone(&secret) {
                return;
            }
            if attempt == 2 {
                tracing::warn!(pod = name, "could not delete the command's Pod or Secret; the sweeper will retry");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn access_for(&self, place: &str) -> Option<ClusterAccess> {
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).get(place).cloned()
    }
}

/// Deleted now, or not there in the first place.
fn gone<T>(result: &Result<T, kube::Error>) -> bool {
    result.as_ref().is_ok() || result.as_ref().is_err_and(|e| is_status(e, 404))
}

fn failed(reason: FailureReason, logs: String) -> Outcome {
    Outcome::Failed { reason, logs }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Executor for KubernetesExecutor {
    async fn run(&self, job: Job, mut stop: StopSignal) -> Outcome {
        match self.run_in_cluster(&job, &mut stop).await {
            Ok(outcome) => outcome,
            Err(PodError::Unusable(e)) => {
                failed(FailureReason::InvalidClusterSetting(format!("properties.kubeconfig: {e}")), String::new())
            }
            Err(e) => failed(FailureReason::StartFailed(e.to_string()), String::new()),
        }
    }

    fn isolation(&self) -> Isolation {
        Isolation::KubernetesPod
    }

    async fn leftovers(&self) -> Vec<Leftover> {
        let clusters: Vec<(String, ClusterAccess)> = self
            .clusters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut found = Vec::new();
        for (place, access) in clusters {
            let Ok(client) = client_for(&access) else { continue };
            let namespace = &self.config.template.namespace;
            let labelled = ListParams::default().labels(COMMAND_ID_LABEL);
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let secrets: Api<Secret> = Api::namespaced(client, namespace);
            let mut ids: Vec<String> = Vec::new();
            if let Ok(list) = pods.list(&labelled).await {
                ids.extend(list.items.iter().filter_map(|p| p.labels().get(COMMAND_ID_LABEL).cloned()));
            }
            if let Ok(list) = secrets.list(&labelled).await {
                ids.extend(list.items.iter().filter_map(|s| s.labels().get(COMMAND_ID_LABEL).cloned()));
            }
            ids.sort();
            ids.dedup();
            found.extend(
                ids.into_iter().map(|id| Leftover { command_id: CommandId::from_text(id), place: place.clone() }),
            );
        }
        found
    }

    async fn remove_leftover(&self, leftover: &Leftover) {
        let Some(access) = self.access_for(&leftover.place) else { return };
        let Ok(client) = client_for(&access) else { return };
        let namespace = &self.config.template.namespace;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client, namespace);
        tracing::info!(command_id = %leftover.command_id, "sweeping the Pod and Secret of a command that no longer runs");
        self.clean_up(&pods, &secrets, &object_name(leftover.command_id.as_str())).await;
    }
}
