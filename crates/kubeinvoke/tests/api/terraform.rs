//! Terraform drives kubeinvoke, offline: the README's own Terraform file (docs/terraform/main.tf)
//! applied with the azapi provider — a resource group, a cluster and a run command resource whose
//! output becomes a Terraform output — then a second plan without drift, a changed script run
//! again, a failing script failing the apply, and everything destroyed.
//!
//! Terraform and azapi are built from the Go module proxy by `scripts/build-terraform.sh`, which
//! `scripts/test.sh` runs and names in `KUBEINVOKE_TERRAFORM` (its `terraform` and `mirror/`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::*;

const MAIN_TF: &str = include_str!("../../../../docs/terraform/main.tf");
const README: &str = include_str!("../../../../README.md");

struct Terraform {
    binary: PathBuf,
    mirror: PathBuf,
    work: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Terraform {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .current_dir(self.work.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("running terraform")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "terraform {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn terraform_for(s: &Server) -> Option<Terraform> {
    let dir = std::env::var_os("KUBEINVOKE_TERRAFORM").map(PathBuf::from);
    let missing = match &dir {
        Some(dir) if dir.join("terraform").is_file() => None,
        _ => Some("KUBEINVOKE_TERRAFORM names no Terraform build (scripts/build-terraform.sh makes one)".to_string()),
    };
    if !kubeinvoke_testkit::prerequisites::runs("the Terraform test", missing) {
        return None;
    }
    let dir = dir.unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("main.tf"), MAIN_TF).unwrap();
    let cli_config = work.path().join("terraformrc");
    std::fs::write(&cli_config, "").unwrap();
    let path = |p: &Path| p.display().to_string();
    let env = vec![
        ("SSL_CERT_FILE".to_string(), path(&s.data_dir().join("tls/ca.pem"))),
        ("TF_CLI_CONFIG_FILE".to_string(), path(&cli_config)),
        ("TF_IN_AUTOMATION".to_string(), "1".to_string()),
        ("CHECKPOINT_DISABLE".to_string(), "1".to_string()),
        ("TF_VAR_url".to_string(), s.base.clone()),
        ("TF_VAR_data_dir".to_string(), path(&s.data_dir())),
    ];
    Some(Terraform { binary: dir.join("terraform"), mirror: dir.join("mirror"), work, env })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_applies_a_run_command_reads_its_output_and_destroys_everything() {
    assert!(README.contains(MAIN_TF), "README's Infrastructure as code section shows docs/terraform/main.tf as it is");
    let s = Server::start(&[]).await;
    let Some(tf) = terraform_for(&s) else {
        return;
    };
    let mirror = format!("-plugin-dir={}", tf.mirror.display());
    tokio::task::block_in_place(|| {
        tf.ok(&["init", "-input=false", "-no-color", &mirror]);
        tf.ok(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        assert_eq!(tf.ok(&["output", "-raw", "output"]), "hello from terraform\n");
    });
    // The file reads the subscription where the server's data directory says.
    let instance: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.data_dir().join("instance.json")).unwrap()).unwrap();
    let group = format!("/subscriptions/{}/resourceGroups/tf-rg", instance["subscriptionId"].as_str().unwrap());
    let cluster_path = format!("{group}/providers/Microsoft.ContainerService/managedClusters/tf-cluster");
    let cluster = s.get(&cluster_path).await.json();
    assert_eq!(cluster["properties"]["dnsPrefix"], "tf", "{cluster}");

    tokio::task::block_in_place(|| {
        // Nothing drifted: the second plan has nothing to do (exit code 0, not 2).
        let plan = tf.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
        // A changed script runs again.
        tf.ok(&["apply", "-auto-approve", "-input=false", "-no-color", "-var", "script=echo changed"]);
        assert_eq!(tf.ok(&["output", "-raw", "output"]), "changed\n");
    });
    let history = s.get(&format!("{cluster_path}/commandResults")).await.json();
    assert_eq!(history["value"].as_array().unwrap().len(), 2, "{history}");

    tokio::task::block_in_place(|| {
        // treatFailureAsDeploymentFailure: a failing script fails the apply.
        let failed = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color", "-var", "script=echo no; exit 3"]);
        assert!(!failed.status.success(), "{}", String::from_utf8_lossy(&failed.stdout));
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(stderr.contains("Failed"), "{stderr}");
        tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color", "-var", "script=echo no; exit 3"]);
    });
    s.get(&group).await.assert_error(404, "ResourceGroupNotFound");
}
