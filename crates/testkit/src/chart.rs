//! `helm template` of the chart under `deploy/chart`, shared by the tests that read it (typed,
//! in `tests/kubernetes`) and apply it (to a real API server, in `tests/cluster`).

/// The chart rendered by `helm` (a path or a name on PATH), with a store URL, the one value it
/// requires.
pub fn rendered_chart(helm: &std::path::Path) -> String {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/chart/kubeinvoke");
    let out = std::process::Command::new(helm)
        .args(["template", "kubeinvoke", "--namespace", "kubeinvoke"])
        .arg(&chart)
        .args(["--set", "store.url=postgres://kubeinvoke:secret@postgres:5432/kubeinvoke"])
        .output()
        .expect("helm is installed (scripts/test.sh installs the one matching the test cluster)");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
