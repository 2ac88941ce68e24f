use super::*;
use base64::Engine;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pem_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["api.example".into()]).unwrap().self_signed(&key).unwrap();
    (certificate.pem(), key.serialize_pem())
}

/// A kubeconfig whose one cluster and user carry the given extra YAML lines.
fn config(cluster_lines: &str, user_lines: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://api.example:6443\n{cluster_lines}contexts:\n- name: c\n  context: {{cluster: k, user: u, namespace: default}}\nusers:\n- name: other\n  user: {{exec: {{command: /bin/sh}}}}\n- name: u\n  user:\n{user_lines}"
    )
}

fn refused_field(document: &str) -> String {
    match ClusterAccess::from_kubeconfig(document.as_bytes()) {
        Err(e) => e.field().unwrap_or("<none>").to_string(),
        Ok(access) => panic!("accepted: {access:?}"),
    }
}

#[test]
fn keeps_the_allowed_fields_of_the_selected_context() {
    let (certificate, key) = pem_pair();
    let document = config(
        &format!("    certificate-authority-data: {}\n    tls-server-name: api.example\n", b64(certificate.as_bytes())),
        &format!(
            "    token: abc.def-ghi\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(certificate.as_bytes()),
            b64(key.as_bytes())
        ),
    );
    let access = ClusterAccess::from_kubeconfig(document.as_bytes()).unwrap();
    assert_eq!(access.server.to_string(), "https://api.example:6443/");
    assert_eq!(access.ca_certificates.len(), 1);
    assert_eq!(access.tls_server_name.as_deref(), Some("api.example"));
    assert_eq!(access.token.as_deref(), Some("abc.def-ghi"));
    assert!(access.client_identity.is_some());
    let printed = format!("{access:?}");
    assert!(!printed.contains("abc.def") && !printed.contains("PRIVATE"), "{printed}");
}

#[test]
fn anything_that_runs_a_program_reads_a_file_or_takes_a_proxy_is_refused_by_name() {
    let cases = [
        ("", "    exec: {command: /bin/sh, args: [-c, id]}\n", "users[1].user.exec"),
        ("", "    auth-provider: {name: gcp}\n", "users[1].user.auth-provider"),
        ("", "    tokenFile: /root/secret\n", "users[1].user.tokenFile"),
        ("", "    client-certificate: /etc/ssl/c.pem\n", "users[1].user.client-certificate"),
        ("", "    client-key: /etc/ssl/k.pem\n", "users[1].user.client-key"),
        ("", "    username: admin\n    password: x\n", "users[1].user.username"),
        ("", "    as: system:admin\n", "users[1].user.as"),
        ("    certificate-authority: /etc/shadow\n", "    token: t\n", "clusters[0].cluster.certificate-authority"),
        ("    proxy-url: http://10.0.0.1:3128\n", "    token: t\n", "clusters[0].cluster.proxy-url"),
        ("    insecure-skip-tls-verify: true\n", "    token: t\n", "clusters[0].cluster.insecure-skip-tls-verify"),
    ];
    for (cluster, user, field) in cases {
        assert_eq!(refused_field(&config(cluster, user)), field, "{cluster}{user}");
    }
    let message = ClusterAccess::from_kubeconfig(config("", "    exec: {command: x}\n").as_bytes()).unwrap_err();
    assert!(message.to_string().contains("never runs a program"), "{message}");
}

#[test]
fn values_that_cannot_reach_a_header_or_a_handshake_are_refused() {
    for token in ["\"a\\nX-Injected: 1\"", "\"with space\"", "\"\"", "\"caf\u{e9}\""] {
        assert_eq!(refused_field(&config("", &format!("    token: {token}\n"))), "users[1].user.token", "{token}");
    }
    assert_eq!(
        refused_field(&config("    certificate-authority-data: bm90IGEgY2VydA==\n", "")),
        "clusters[0].cluster.certificate-authority-data"
    );
    assert_eq!(refused_field(&config("", "    client-certificate-data: bm90\n")), "users[1].user.client-key-data");
    let server = |url: &str| {
        format!(
            "current-context: c\nclusters: [{{name: k, cluster: {{server: \"{url}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: k}}}}]\n"
        )
    };
    for url in ["file:///etc/passwd", "unix:///run/x.sock", "not a url", "https://"] {
        assert_eq!(refused_field(&server(url)), "clusters[0].cluster.server", "{url}");
    }
    assert!(ClusterAccess::from_kubeconfig(server("http://127.0.0.1:8080").as_bytes()).is_ok());
}

#[test]
fn the_context_decides_which_user_is_read() {
    // The exec user is present but not selected: it is never read, so the document is usable.
    assert!(ClusterAccess::from_kubeconfig(config("", "    token: t\n").as_bytes()).is_ok());
    let ambiguous = "clusters: [{name: k, cluster: {server: https://a}}]\ncontexts: [{name: a, context: {cluster: k}}, {name: b, context: {cluster: k}}]\n";
    assert!(ClusterAccess::from_kubeconfig(ambiguous.as_bytes()).is_err());
    assert!(ClusterAccess::from_kubeconfig(b"{{{").is_err());
}
