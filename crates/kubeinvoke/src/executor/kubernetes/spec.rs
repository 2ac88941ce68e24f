//! The objects a command becomes in its cluster: a Pod `command-<id>` and a Secret of the same
//! name holding what the Pod needs (the context zip, and the caller's kubeconfig when the
//! command acts as the caller). Pure functions, so the spec is easy to check.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource, SecurityContext, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::executor::Job;

/// The label every object of a command carries: how the sweeper finds leftovers.
pub const COMMAND_ID_LABEL: &str = "kubeinvoke.io/command-id";
pub(super) const CONTAINER: &str = "user-command";
const WORKDIR: &str = "/command";
const INPUT: &str = "/kubeinvoke";
/// `HOME`, an emptyDir of its own: helm and kubectl write their caches there (the root
/// filesystem is read-only).
const HOME: &str = "/home/command";

/// What every command Pod of a server gets (flags `--k8s-*`).
#[derive(Debug, Clone)]
pub struct PodTemplate {
    pub namespace: String,
    /// Must hold bash, kubectl and helm (and unzip or python3 to unpack files).
    pub image: String,
    /// Used when the command does not act as the caller; `None`: the namespace's default.
    pub service_account: Option<String>,
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    /// The uid (and gid) every container runs as: never root.
    pub run_as_user: i64,
}

impl Default for PodTemplate {
    /// As AKS runs commands (docs/contract.md §8).
    fn default() -> Self {
        PodTemplate {
            namespace: "aks-command".into(),
            image: "mcr.microsoft.com/aks/command/runtime".into(),
            service_account: None,
            cpu_request: "200m".into(),
            memory_request: "500Mi".into(),
            cpu_limit: "500m".into(),
            memory_limit: "1Gi".into(),
            tolerations: Vec::new(),
            node_selector: BTreeMap::new(),
            run_as_user: 1000,
        }
    }
}

pub fn object_name(command_id: &str) -> String {
    format!("command-{command_id}")
}

fn labels(command_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (COMMAND_ID_LABEL.to_string(), command_id.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "kubeinvoke".to_string()),
    ])
}

/// The service account a command Pod runs as: the saved command's `runAs`, else the server's
/// (`--k8s-service-account`), and none when the command carries an identity of its own.
fn service_account(job: &Job, template: &PodTemplate) -> Option<String> {
    if job.as_caller {
        return None;
    }
    job.service_account.clone().or_else(|| template.service_account.clone())
}

/// The command's Pod. The init container unpacks the context zip (with whichever of unzip,
/// python3 or busybox the image has) into the working directory the command starts in.
pub fn command_pod(job: &Job, template: &PodTemplate) -> Pod {
    let name = object_name(job.id.as_str());
    let writable =
        |volume: &str, path: &str| VolumeMount { name: volume.into(), mount_path: path.into(), ..Default::default() };
    let mounts = vec![
        writable("work", WORKDIR),
        writable("home", HOME),
        writable("tmp", "/tmp"),
        VolumeMount { name: "input".into(), mount_path: INPUT.into(), read_only: Some(true), ..Default::default() },
    ];
    let unpack = Container {
        name: "unpack".into(),
        image: Some(template.image.clone()),
        command: Some(vec!["sh".into(), "-c".into(), UNPACK_SCRIPT.into()]),
        working_dir: Some(WORKDIR.into()),
        volume_mounts: Some(mounts.clone()),
        security_context: Some(locked_down()),
        ..Default::default()
    };
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(memory.into()))])
    };
    let mut env = vec![EnvVar { name: "HOME".into(), value: Some(HOME.into()), ..Default::default() }];
    // Parameters come from the command's Secret, so their values never appear in the Pod.
    for (name, _) in &job.environment {
        env.push(EnvVar {
            name: name.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: object_name(job.id.as_str()),
                    key: format!("{PARAMETER_PREFIX}{name}"),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if job.as_caller {
        env.push(EnvVar {
            name: "KUBECONFIG".into(),
            value: Some(format!("{INPUT}/kubeconfig")),
            ..Default::default()
        });
    }
    let command = Container {
        name: CONTAINER.into(),
        image: Some(template.image.clone()),
        command: Some(vec!["bash".into(), "-c".into(), job.command.clone()]),
        working_dir: Some(WORKDIR.into()),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&template.cpu_request, &template.memory_request)),
            limits: Some(quantities(&template.cpu_limit, &template.memory_limit)),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        security_context: Some(locked_down()),
        ..Default::default()
    };
    let empty_dir = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(template.namespace.clone()),
            labels: Some(labels(job.id.as_str())),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(job.limits.timeout.as_secs().max(1) as i64),
            // A service account token only when one was configured for commands (or the saved
            // command runs as one); acting as the caller (or as a runAs user), none at all: only
            // that identity's own credential, in the command's Secret.
            automount_service_account_token: Some(service_account(job, template).is_some()),
            service_account_name: service_account(job, template),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(template.run_as_user),
                run_as_group: Some(template.run_as_user),
                fs_group: Some(template.run_as_user),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            init_containers: (!job.context.is_empty()).then(|| vec![unpack]),
            containers: vec![command],
            volumes: Some(vec![
                empty_dir("work"),
                empty_dir("home"),
                empty_dir("tmp"),
                Volume {
                    name: "input".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(name),
                        default_mode: Some(0o444),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            tolerations: (!template.tolerations.is_empty()).then(|| template.tolerations.clone()),
            node_selector: (!template.node_selector.is_empty()).then(|| template.node_selector.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

/// What Pod Security `restricted` asks of every container (and Gatekeeper's and Kyverno's usual
/// policies): no root, no privilege escalation, no capabilities, the runtime's seccomp profile, a
/// read-only root filesystem (the writable places are the emptyDirs).
fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }
}

/// Secret keys of parameters (apart from `context.zip` and `kubeconfig`).
const PARAMETER_PREFIX: &str = "param.";

const UNPACK_SCRIPT: &str = "set -e
zip=/kubeinvoke/context.zip
if command -v unzip >/dev/null 2>&1; then unzip -q \"$zip\"
elif command -v python3 >/dev/null 2>&1; then python3 -m zipfile -e \"$zip\" .
else busybox unzip -q \"$zip\"; fi";

/// The Secret the Pod mounts, owned by the Pod so the cluster deletes it with the Pod.
pub fn command_secret(job: &Job, template: &PodTemplate, pod_uid: &str) -> Secret {
    let name = object_name(job.id.as_str());
    let mut data = BTreeMap::new();
    if !job.context.is_empty() {
        data.insert("context.zip".to_string(), ByteString(job.context.clone()));
    }
    if let (true, Some(kubeconfig)) = (job.as_caller, &job.kubeconfig) {
        data.insert("kubeconfig".to_string(), ByteString(kubeconfig.clone()));
    }
    for (name, value) in &job.environment {
        data.insert(format!("{PARAMETER_PREFIX}{name}"), ByteString(value.clone().into_bytes()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(template.namespace.clone()),
            labels: Some(labels(job.id.as_str())),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name,
                uid: pod_uid.to_string(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}
