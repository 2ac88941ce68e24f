//! ARM fixtures: the subscription, api-version, resource paths, context zips, kubeconfigs, token
//! claims, and what the machine offers.

use serde_json::Value;

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";

pub const API: &str = "2024-09-01";

/// A variable set in the server's environment that commands must not see.
pub const SERVER_ONLY_VAR: &str = "KUBEINVOKE_TEST_SERVER_SECRET";

/// Whether the bubblewrap sandbox is installed: the tests of what only it does are left out
/// without it ([`crate::prerequisites`]).
pub fn bubblewrap_here() -> bool {
    crate::prerequisites::runs("the bubblewrap sandbox tests", crate::prerequisites::programs(&["bwrap"]))
}

/// The command id at the end of a `commandResults` location.
pub fn id_of(location: &str) -> String {
    location.split("/commandResults/").nth(1).unwrap().split('?').next().unwrap().to_string()
}

pub fn result_path(group: &str, cluster: &str, id: &str) -> String {
    format!("{}/commandResults/{id}", cluster_path(group, cluster))
}

/// The command uids whose host-wide lease file names one of `pids` as the server that took it.
pub fn uids_leased_by(pids: &[u32]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/kubeinvoke/uids") else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let holder = text.lines().next().and_then(|l| l.strip_prefix("pid ")).and_then(|p| p.parse::<u32>().ok());
            holder.is_some_and(|pid| pids.contains(&pid))
        })
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

pub fn group_path(group: &str) -> String {
    format!("/subscriptions/{SUB}/resourcegroups/{group}")
}

pub fn cluster_path(group: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters/{name}")
}

/// A zip with these files, as `az aks command invoke --file` builds it (stored, at the root).
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in files {
        out.start_file(*name, options).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// Base64 with a newline every 76 characters, like Python's `base64.encodebytes`.
pub fn encodebytes(bytes: &[u8]) -> String {
    use base64::Engine;
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    flat.as_bytes().chunks(76).map(|line| format!("{}\n", std::str::from_utf8(line).unwrap())).collect()
}

/// A kubeconfig pointing at `server`, base64-encoded for `properties.kubeconfig`.
pub fn kubeconfig_for(server: &str) -> (String, String) {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\nusers:\n- name: admin\n  user:\n    token: not-a-real-token\n"
    );
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&yaml);
    (yaml, encoded)
}

/// The claims of a JWT (unverified: the test made it or got it from the server).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
