//! kubeinvoke against a real Kubernetes control plane (`scripts/dev-cluster.sh`: etcd,
//! kube-apiserver, controller-manager, scheduler, kwok nodes, one real node), with real kubeinvoke servers:
//! the local executor running kubectl and helm (`local.rs`), clusterToken through the API
//! server's JWT authentication (`local.rs`), and the Pod executor (`pods.rs` on kwok nodes,
//! `node.rs` on the real node), and the chart installed with helm on the real node (`helm_install.rs`).

use kubeinvoke_testkit::harness;
use kubeinvoke_testkit::prerequisites;

use kubeinvoke_testkit::chart;
mod deploy;
mod dev_cluster;
mod helm_install;
mod local;
mod node;
mod pods;
use kubeinvoke_testkit::private_postgres;
