//! The test fixture for a real Kubernetes control plane: `scripts/dev-cluster.sh up` (etcd,
//! kube-apiserver, controller-manager, scheduler, kwok nodes and one real node), started once per test binary,
//! shared by its tests and stopped when the binary exits (the script watches our pid).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{SUB, Server};

pub struct DevCluster {
    pub state: PathBuf,
    /// A cluster-admin kubeconfig (client certificate).
    pub kubeconfig: PathBuf,
    /// Where kubectl, helm and the control plane's binaries were built.
    pub bin: PathBuf,
    /// The command runtime image imported into the real node's containerd.
    pub command_image: String,
    /// Serializes edits of the API server's authentication configuration.
    authentication: Mutex<()>,
}

static CLUSTER: OnceLock<DevCluster> = OnceLock::new();

/// The AKS AAD server application: the audience of a `clusterToken`.
const AKS_AAD_SERVER_APP: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// A principal that runs commands as itself on AAD clusters ([`DevCluster::aad_callers`]).
pub struct AadCaller {
    /// For the ARM API.
    pub arm: String,
    /// For the AKS AAD server app: what a command carries as `clusterToken`.
    pub cluster_token: String,
    /// Its username at the API server (`kubeinvoke:<oid>`).
    pub user: String,
}

/// What every command Pod's log says here: no container runs on a kwok node; kwok serves this.
pub const POD_LOG: &str = "hello from a command pod\n";

impl DevCluster {
    /// The binary's cluster, started on first use; `None` where it cannot run (the test is left
    /// out, saying what is missing).
    pub fn shared() -> Option<&'static DevCluster> {
        let node_tools = ["containerd", "containerd-shim-runc-v2", "runc", "socat", "nsenter", "ip", "ctr"];
        let missing = crate::prerequisites::all([
            crate::prerequisites::root(),
            crate::prerequisites::programs(&["go", "openssl", "python3"]),
            crate::prerequisites::programs(&node_tools),
            crate::prerequisites::programs(&["kubectl", "helm"]),
        ]);
        if !crate::prerequisites::runs("the real cluster tests (tests/cluster)", missing) {
            return None;
        }
        Some(CLUSTER.get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let state = std::env::temp_dir().join(format!("kubeinvoke-dev-cluster-{}", std::process::id()));
            let started = Instant::now();
            let output = Command::new(repo.join("scripts/dev-cluster.sh"))
                .arg("up")
                .arg(&state)
                .env("KUBEINVOKE_DEV_CLUSTER_OWNER", std::process::id().to_string())
                .output()
                .expect("running scripts/dev-cluster.sh");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "scripts/dev-cluster.sh up failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let kubeconfig = stdout
                .lines()
                .find_map(|l| l.strip_prefix("KUBECONFIG="))
                .expect("dev-cluster.sh prints KUBECONFIG=<path>")
                .into();
            let bin = std::fs::read_to_string(state.join("bin")).unwrap().trim().into();
            let command_image = stdout
                .lines()
                .find_map(|l| l.strip_prefix("COMMAND_IMAGE="))
                .expect("dev-cluster.sh prints COMMAND_IMAGE=<ref>")
                .to_string();
            Self::write_pod_log(&state);
            eprintln!("dev cluster up in {:.1} s at {}", started.elapsed().as_secs_f64(), state.display());
            DevCluster { state, kubeconfig, bin, command_image, authentication: Mutex::new(()) }
        }))
    }

    /// Runs kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl")).arg("--kubeconfig").arg(&self.kubeconfig).args(args).output().unwrap()
    }

    /// kubectl as the cluster admin that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies a manifest as the cluster admin.
    pub fn apply(&self, manifest: &str) {
        let path = self.state.join(format!("manifest-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, manifest).unwrap();
        self.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// The admin kubeconfig, base64, as a cluster's `properties.kubeconfig`.
    pub fn kubeconfig_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&self.kubeconfig).unwrap())
    }

    /// Writes what every command Pod's log says (kwok serves the file, in the CRI log format).
    fn write_pod_log(state: &Path) {
        let text: String = POD_LOG.lines().map(|l| format!("2026-01-01T00:00:00.000000000Z stdout F {l}\n")).collect();
        std::fs::write(state.join("pod.log"), text).unwrap();
    }

    /// Makes the API server trust JWTs of `issuer` (its discovery document and keys fetched over
    /// HTTPS trusting `ca_pem`) for `audience`; usernames are `kubeinvoke:<oid>`.
    pub fn trust_issuer(&self, issuer: &str, ca_pem: &str, audience: &str) {
        let _edit = self.authentication.lock().unwrap();
        let path = self.state.join("authentication.yaml");
        let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let entry: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
            "issuer:\n  url: {issuer}\n  audiences: [{audience}]\n  certificateAuthority: |\n{}\nclaimMappings:\n  username:\n    claim: oid\n    prefix: 'kubeinvoke:'\n",
            ca_pem.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
        ))
        .unwrap();
        let jwt = config.get_mut("jwt").unwrap().as_sequence_mut().unwrap();
        // The API server takes a new configuration only when every issuer in it answers: those
        // of servers that have stopped (earlier tests') go, or the reload would fail for good.
        jwt.retain(|existing| existing["issuer"]["url"].as_str().is_some_and(issuer_answers));
        jwt.push(entry);
        // In place (not a rename): the API server watches this file and reloads it.
        std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    }

    /// Waits until `token` authenticates at the API server (after [`trust_issuer`], once the
    /// API server reloaded its configuration and fetched the issuer's keys); its username.
    pub fn wait_until_authenticated(&self, token: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            // No kubeconfig: its client certificate would authenticate before the token.
            let server =
                format!("https://127.0.0.1:{}", std::fs::read_to_string(self.state.join("api-port")).unwrap().trim());
            let out = Command::new(self.bin.join("kubectl"))
                .args(["--kubeconfig", "/dev/null", "--server", &server, "--token", token])
                .arg("--certificate-authority")
                .arg(self.state.join("pki/ca.crt"))
                .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the API server never accepted the token: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.state.join("logs/kube-apiserver.log"))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("jwt") || l.contains("authentication") || l.contains("oidc"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Makes the API server trust `s`'s built-in issuer for the AKS AAD server app, and creates
    /// principals `names` that may run commands on every cluster of the subscription: each with
    /// its ARM token, its `clusterToken` and the username the API server knows it by.
    pub async fn aad_callers(&self, s: &Server, names: [&str; 2]) -> [AadCaller; 2] {
        let admin = s.admin().unwrap();
        let issuer = format!("{}/{}/v2.0", s.base, admin.tenant);
        let ca = std::fs::read_to_string(s.data_dir().join("tls/ca.pem")).unwrap();
        self.trust_issuer(&issuer, &ca, AKS_AAD_SERVER_APP);
        let subscription = format!("/subscriptions/{SUB}");
        let runner = Some(("Azure Kubernetes Service Cluster Admin Role", subscription.as_str()));
        let mut callers = Vec::new();
        for name in names {
            let principal = s.create_principal(name, runner);
            let cluster_token = s.token_for(&principal, &format!("{AKS_AAD_SERVER_APP}/.default")).await;
            let arm = s.token_for(&principal, "https://management.azure.com/.default").await;
            let user = self.wait_until_authenticated(&cluster_token);
            callers.push(AadCaller { arm, cluster_token, user });
        }
        callers.try_into().unwrap_or_else(|_| unreachable!("two names, two callers"))
    }

    /// Lets `user` get and list Pods in `namespace` (made here), and nothing else.
    pub fn let_read_pods(&self, namespace: &str, user: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: pod-reader, namespace: {namespace}}}\n\
             rules:\n- {{apiGroups: [''], resources: [pods], verbs: [get, list]}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reads-pods, namespace: {namespace}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}\n\
             subjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: '{user}'}}\n"
        ));
    }

    /// Polls until `check` holds (a condition seen through the API), or fails naming `what`.
    pub fn eventually(&self, what: &str, within: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !check() {
            assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether the server of an issuer URL (`https://127.0.0.1:<port>/…`) still accepts connections.
fn issuer_answers(url: &str) -> bool {
    let authority = url.trim_start_matches("https://").split('/').next().unwrap_or_default();
    authority
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|address| std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok())
}
