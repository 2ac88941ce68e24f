//! Reading a command Pod's status: has it ended, and how.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::spec::CONTAINER;

/// How a command's Pod ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEnd {
    /// The command container terminated with this exit code; `oom` when the kernel killed it
    /// for exceeding its memory limit.
    Exited { code: i32, oom: bool },
    /// `activeDeadlineSeconds` (the command's timeout) passed.
    DeadlineExceeded,
    /// The cluster gave up on the Pod; the text is the result's `reason`.
    Failed(String),
}

/// Waiting reasons that mean the image will not come.
const IMAGE_PULL_FAILURES: [&str; 4] = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"];

/// The end of `pod`, if it has ended; `waited` is how long it has existed, and a Pod still not
/// scheduled after `start_deadline` counts as failed with the scheduler's message.
pub fn judge(pod: &Pod, waited: Duration, start_deadline: Duration) -> Option<PodEnd> {
    let status = pod.status.as_ref()?;
    let command = status.container_statuses.iter().flatten().find(|c| c.name == CONTAINER);
    let terminated = command.and_then(|c| c.state.as_ref()?.terminated.as_ref());
    // Evicted (the Eviction API, preemption, a taint, the node's pressure): the cluster marks the
    // Pod as a disruption target before it stops it, so the command ends now, naming why, rather
    // than as the exit code of the signal that follows.
    let disrupted = status.conditions.iter().flatten().find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    if let Some(condition) = disrupted
        && terminated.is_none_or(|t| t.exit_code != 0)
    {
        let why = with_message(condition.reason.as_deref().unwrap_or("DisruptionTarget"), condition.message.as_deref());
        return Some(PodEnd::Failed(format!("Evicted: {why}")));
    }
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if phase == "Failed" && status.reason.as_deref() == Some("DeadlineExceeded") {
        return Some(PodEnd::DeadlineExceeded);
    }
    if let Some(terminated) = terminated {
        // The kubelet kills the container when `activeDeadlineSeconds` passes and may report the
        // kill before the Pod's `DeadlineExceeded`: a kill at or past the deadline is the timeout.
        if terminated.exit_code != 0 && ran_past_deadline(pod, terminated) {
            return Some(PodEnd::DeadlineExceeded);
        }
        let oom = terminated.reason.as_deref() == Some("OOMKilled");
        return Some(PodEnd::Exited { code: terminated.exit_code, oom });
    }
    if phase == "Failed" {
        return Some(match status.reason.as_deref() {
            Some(reason) => PodEnd::Failed(with_message(reason, status.message.as_deref())),
            None => match failed_init(status.init_container_statuses.as_deref().unwrap_or_default()) {
                Some(init) => PodEnd::Failed(init),
                None => PodEnd::Failed(with_message("PodFailed", status.message.as_deref())),
            },
        });
    }
    if phase == "Succeeded" {
        return Some(PodEnd::Exited { code: 0, oom: false });
    }
    let all = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in all {
        let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
        if waiting.and_then(|w| w.reason.as_deref()).is_some_and(|r| IMAGE_PULL_FAILURES.contains(&r)) {
            // Azure's spelling of the reason.
            return Some(PodEnd::Failed("ImagePullBackoff".into()));
        }
    }
    if let Some(init) = failed_init(status.init_container_statuses.as_deref().unwrap_or_default()) {
        return Some(PodEnd::Failed(init));
    }
    let unscheduled = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(condition) = unscheduled
        && waited >= start_deadline
    {
        let reason = condition.reason.as_deref().unwrap_or("Unschedulable");
        return Some(PodEnd::Failed(with_message(reason, condition.message.as_deref())));
    }
    None
}

/// Whether the container ended at or after the Pod's `activeDeadlineSeconds`, counted from the
/// Pod's start as the kubelet counts it.
fn ran_past_deadline(pod: &Pod, terminated: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> bool {
    let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
    let started = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
    match (deadline, started, terminated.finished_at.as_ref()) {
        (Some(deadline), Some(started), Some(finished)) => finished.0.as_second() - started.0.as_second() >= deadline,
        _ => false,
    }
}

/// The container is running (or done), so its logs can be read.
pub(super) fn started(pod: &Pod) -> bool {
    let command = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER));
    command.and_then(|c| c.state.as_ref()).is_some_and(|s| s.running.is_some() || s.terminated.is_some())
}

/// An init container (unpacking the files) that failed: the command never ran.
fn failed_init(statuses: &[ContainerStatus]) -> Option<String> {
    statuses.iter().find_map(|c| {
        let terminated = c.state.as_ref()?.terminated.as_ref()?;
        (terminated.exit_code != 0).then(|| {
            format!(
                "StartFailed: unpacking the files failed in init container {:?} (exit {})",
                c.name, terminated.exit_code
            )
        })
    })
}

fn with_message(reason: &str, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{reason}: {message}"),
        None => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "command-x"}, "status": status})).unwrap()
    }

    #[test]
    fn reads_each_way_a_pod_ends() {
        let long = Duration::from_secs(600);
        let short = Duration::ZERO;
        let exited = pod(serde_json::json!({"phase": "Failed", "containerStatuses": [
            {"name": "user-command", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}));
        assert_eq!(judge(&exited, short, long), Some(PodEnd::Exited { code: 3, oom: false }));
        let oom = pod(serde_json::json!({"phase": "Failed", "containerStatuses": [
            {"name": "user-command", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}));
        assert_eq!(judge(&oom, short, long), Some(PodEnd::Exited { code: 137, oom: true }));
        let pull = pod(serde_json::json!({"phase": "Pending", "containerStatuses": [
            {"name": "user-command", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}));
        assert_eq!(judge(&pull, short, long), Some(PodEnd::Failed("ImagePullBackoff".into())));
        let unscheduled = pod(serde_json::json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 node(s) had untolerated taint"}]}));
        assert_eq!(judge(&unscheduled, short, long), None, "still within the start deadline");
        assert_eq!(
            judge(&unscheduled, long, short),
            Some(PodEnd::Failed("Unschedulable: 0/3 nodes are available: 3 node(s) had untolerated taint".into()))
        );
        let evicted = pod(
            serde_json::json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
        );
        assert_eq!(
            judge(&evicted, short, long),
            Some(PodEnd::Failed("Evicted: The node was low on resource: memory.".into()))
        );
        let disrupted = pod(serde_json::json!({"phase": "Running", "conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}],
            "containerStatuses": [{"name": "user-command", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
             "state": {"running": {}}}]}));
        assert_eq!(
            judge(&disrupted, short, long),
            Some(PodEnd::Failed("Evicted: EvictionByEvictionAPI: Eviction API: evicting".into())),
            "evicted, not the exit code of the SIGTERM that follows"
        );
        let deadline = pod(serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded"}));
        assert_eq!(judge(&deadline, short, long), Some(PodEnd::DeadlineExceeded));
        let running = pod(serde_json::json!({"phase": "Running", "containerStatuses": [
            {"name": "user-command", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
             "state": {"running": {}}}]}));
        assert_eq!(judge(&running, long, short), None);
        assert!(started(&running));
    }
}
