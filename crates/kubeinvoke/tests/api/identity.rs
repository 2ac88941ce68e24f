//! The built-in issuer, token validation (every rejection), RBAC and external issuers.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::*;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn the_issuer_serves_discovery_keys_and_tokens() {
    let s = Server::start(&[]).await;
    let admin = s.admin().unwrap();
    assert!(s.banner.contains("bootstrap-admin.json"), "{}", s.banner);
    use std::os::unix::fs::PermissionsExt;
    // On PostgreSQL the signing key lives in the shared database, not in a file.
    let secrets: &[&str] =
        if on_postgres() { &["bootstrap-admin.json"] } else { &["bootstrap-admin.json", "signing-key.pem"] };
    for secret in secrets {
        let mode = std::fs::metadata(s.data_dir().join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    let discovery =
        reply(s.client.get(format!("{}/{}/v2.0/.well-known/openid-configuration", s.base, admin.tenant))).await.json();
    assert_eq!(discovery["issuer"], format!("{}/{}/v2.0", s.base, admin.tenant));
    assert_eq!(discovery["token_endpoint"], format!("{}/{}/oauth2/v2.0/token", s.base, admin.tenant));
    assert!(discovery["authorization_endpoint"].is_string());
    let keys = reply(s.client.get(discovery["jwks_uri"].as_str().unwrap())).await.json();
    let kid = keys["keys"][0]["kid"].as_str().unwrap().to_string();
    assert_eq!(keys["keys"][0]["kty"], "RSA");

    let claims = claims_of(&s.token);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s.token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], kid);
    assert_eq!(claims["aud"], "https://management.azure.com", "the scope minus '/.default'");
    assert_eq!(claims["iss"], discovery["issuer"]);
    assert_eq!(claims["tid"], admin.tenant);
    assert_eq!(claims["appid"], admin.app_id);
    for claim in ["oid", "sub", "iat", "nbf", "exp"] {
        assert!(!claims[claim].is_null(), "{claim} missing: {claims}");
    }
    // The /adfs authority issues tokens too, with form-encoded or Basic client credentials.
    let adfs = reply(s.client.get(format!("{}/adfs/.well-known/openid-configuration", s.base))).await.json();
    let form = [("grant_type", "client_credentials"), ("scope", "https://management.core.windows.net//.default")];
    let r = reply(
        s.client
            .post(adfs["token_endpoint"].as_str().unwrap())
            .basic_auth(&admin.app_id, Some(&admin.password))
            .form(&form),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let adfs_token = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&adfs_token)["aud"], "https://management.core.windows.net/");
    assert_eq!(
        send_as(&s, &adfs_token, reqwest::Method::GET, "/subscriptions?api-version=2022-12-01", None).await.status,
        200
    );
}

#[tokio::test]
async fn the_token_endpoint_answers_rfc_6749_errors() {
    let s = Server::start(&[]).await;
    let admin = s.admin().unwrap();
    let endpoint = format!("{}/{}/oauth2/v2.0/token", s.base, admin.tenant);
    let scope = "https://management.azure.com/.default";
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &admin.app_id),
                ("client_secret", "wrong"),
                ("scope", scope),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "not-a-guid"),
                ("client_secret", "x"),
                ("scope", scope),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &admin.app_id),
                ("client_secret", &admin.password),
                ("scope", scope),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![("client_id", &admin.app_id), ("client_secret", &admin.password), ("scope", scope)],
            400,
            "invalid_request",
        ),
        (vec![("grant_type", "client_credentials"), ("scope", scope)], 400, "invalid_request"),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &admin.app_id),
                ("client_secret", &admin.password),
            ],
            400,
            "invalid_scope",
        ),
    ];
    for (form, status, error) in cases {
        let r = reply(s.client.post(&endpoint).form(&form)).await;
        assert_eq!(r.status.as_u16(), status, "{form:?}: {}", r.text);
        assert_eq!(r.json()["error"], error, "{form:?}");
        assert!(r.json()["error_description"].is_string());
    }
    let r = reply(
        s.client
            .post(format!("{}/{}/oauth2/v2.0/token", s.base, uuid::Uuid::new_v4()))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.json()["error"].as_str().unwrap()), (400, "invalid_tenant"));
    let r = reply(s.client.post(&endpoint).body("%%%garbage")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn every_bad_token_is_refused_with_the_right_code() {
    let s = Server::start(&[]).await;
    let admin = s.admin().unwrap();
    let pem = s.signing_key_pem().await;
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let header_of = |t: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap()).unwrap()
    };
    let kid = header_of(&s.token)["kid"].as_str().unwrap().to_string();
    let good = claims_of(&s.token);
    let sign = |claims: &Value, kid: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    };
    let with = |field: &str, value: Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    // Sanity: a token we craft with the right claims is accepted, so each refusal is about its one flaw.
    let fresh = with("exp", json!(now() + 600));
    assert_eq!(send_as(&s, &sign(&fresh, &kid), reqwest::Method::GET, &group_path("rg"), None).await.status, 404);

    let other_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    use rsa::pkcs8::EncodePrivateKey;
    let other_pem = other_key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.clone());
    let forged =
        jsonwebtoken::encode(&header, &fresh, &EncodingKey::from_rsa_pem(other_pem.as_bytes()).unwrap()).unwrap();

    let public_jwks = reply(s.client.get(format!("{}/{}/discovery/v2.0/keys", s.base, admin.tenant))).await.text;
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(&hs, &fresh, &EncodingKey::from_secret(public_jwks.as_bytes())).unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(fresh.to_string())
    );

    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("malformed", "not.a.jwt".into(), "InvalidAuthenticationToken", "malformed"),
        ("wrong signature", forged, "InvalidAuthenticationToken", "signature"),
        ("expired", sign(&with("exp", json!(now() - 3600)), &kid), "ExpiredAuthenticationToken", "expiry"),
        ("not yet valid", sign(&with("nbf", json!(now() + 3600)), &kid), "InvalidAuthenticationToken", "not valid yet"),
        (
            "wrong audience",
            sign(&with("aud", json!("https://graph.microsoft.com/")), &kid),
            "InvalidAuthenticationToken",
            "audience",
        ),
        (
            "wrong issuer",
            sign(&with("iss", json!("https://evil.example/tenant/v2.0")), &kid),
            "InvalidAuthenticationToken",
            "issuer",
        ),
        (
            "wrong tenant",
            sign(&with("tid", json!(uuid::Uuid::new_v4().to_string())), &kid),
            "InvalidAuthenticationToken",
            "tenant",
        ),
        ("alg none", none, "InvalidAuthenticationToken", "malformed"),
        ("HS256 with the public key", hs256, "InvalidAuthenticationToken", "HS256"),
        ("unknown kid", sign(&fresh, "some-other-key"), "InvalidAuthenticationToken", "unknown key"),
    ];
    for (name, token, code, says) in cases {
        let r = send_as(&s, &token, reqwest::Method::GET, &group_path("rg"), None).await;
        let message = r.assert_error(401, code);
        assert!(message.contains(says), "{name}: {message}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"), "{name}: {challenge:?}");
    }
    let r = reply(s.client.get(s.url(&group_path("rg")))).await;
    r.assert_error(401, "AuthenticationFailed");
    assert!(r.header("www-authenticate").unwrap().contains("authorization_uri"));
}

#[tokio::test]
async fn role_assignments_decide_who_may_do_what() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg-a", "a1", json!({})).await;
    s.create_cluster("rg-b", "b1", json!({})).await;
    let sub = format!("/subscriptions/{SUB}");
    let group_a = format!("{sub}/resourceGroups/rg-a");
    let reader = s.create_principal("reader", Some(("Reader", &sub)));
    let contributor = s.create_principal("contributor", Some(("Contributor", &group_a)));
    let nobody = s.create_principal("nobody", None);
    let scope = "https://management.azure.com/.default";
    let (reader_token, contributor_token, nobody_token) =
        (s.token_for(&reader, scope).await, s.token_for(&contributor, scope).await, s.token_for(&nobody, scope).await);
    let run = |group: &str, name: &str| format!("{}/runCommand", cluster_path(group, name));
    let body = || Some(json!({"command": "echo ok"}));

    // Contributor on rg-a runs commands there, and nowhere else.
    let r = send_as(&s, &contributor_token, reqwest::Method::POST, &run("rg-a", "a1"), body()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    let r = send_as(&s, &contributor_token, reqwest::Method::POST, &run("rg-b", "b1"), body()).await;
    let message = r.assert_error(403, "AuthorizationFailed");
    let oid = claims_of(&contributor_token)["oid"].as_str().unwrap().to_string();
    let expected = format!(
        "The client '{}' with object id '{oid}' does not have authorization to perform action \
         'Microsoft.ContainerService/managedClusters/runcommand/action' over scope '{}' or the scope is invalid.",
        contributor.app_id,
        cluster_path("rg-b", "b1")
    );
    assert_eq!(message, expected);

    // Reader reads results and clusters everywhere in the subscription, but may not run commands.
    s.wait(&location).await;
    let r = send_as(&s, &reader_token, reqwest::Method::GET, &location, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    send_as(&s, &reader_token, reqwest::Method::POST, &run("rg-a", "a1"), body())
        .await
        .assert_error(403, "AuthorizationFailed");
    assert_eq!(send_as(&s, &reader_token, reqwest::Method::GET, &cluster_path("rg-b", "b1"), None).await.status, 200);
    send_as(&s, &reader_token, reqwest::Method::PUT, &group_path("rg-c"), Some(json!({"location": "x"})))
        .await
        .assert_error(403, "AuthorizationFailed");

    // A result can never be read through another cluster's path.
    let id = location.split("/commandResults/").nth(1).unwrap().split('?').next().unwrap();
    let r = send_as(
        &s,
        &reader_token,
        reqwest::Method::GET,
        &format!("{}/commandResults/{id}", cluster_path("rg-b", "b1")),
        None,
    )
    .await;
    r.assert_error(404, "NotFound");

    // Lists show only what the caller may read.
    let list = format!("{sub}/providers/Microsoft.ContainerService/managedClusters");
    let names = |r: Reply| -> Vec<String> {
        r.json()["value"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(send_as(&s, &reader_token, reqwest::Method::GET, &list, None).await), ["a1", "b1"]);
    assert_eq!(names(send_as(&s, &contributor_token, reqwest::Method::GET, &list, None).await), ["a1"]);
    assert!(names(send_as(&s, &nobody_token, reqwest::Method::GET, &list, None).await).is_empty());
    let subs =
        send_as(&s, &nobody_token, reqwest::Method::GET, "/subscriptions?api-version=2022-12-01", None).await.json();
    assert_eq!(subs["value"].as_array().unwrap().len(), 0, "{subs}");
    send_as(&s, &nobody_token, reqwest::Method::GET, &cluster_path("rg-a", "a1"), None)
        .await
        .assert_error(403, "AuthorizationFailed");

    // Contributors may not grant roles; owners may, and the grant takes effect at once.
    let assignment = format!(
        "{group_a}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
        uuid::Uuid::new_v4()
    );
    let nobody_oid = claims_of(&nobody_token)["oid"].as_str().unwrap().to_string();
    let grant = json!({"properties": {"roleDefinitionId": format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"), "principalId": nobody_oid, "principalType": "ServicePrincipal"}});
    send_as(&s, &contributor_token, reqwest::Method::PUT, &assignment, Some(grant.clone()))
        .await
        .assert_error(403, "AuthorizationFailed");
    let r = s.put(&assignment, grant.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(send_as(&s, &nobody_token, reqwest::Method::GET, &cluster_path("rg-a", "a1"), None).await.status, 200);
    let twin = format!(
        "{group_a}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01",
        uuid::Uuid::new_v4()
    );
    s.put(&twin, grant).await.assert_error(409, "RoleAssignmentExists");
    let defs = s.get(&format!("{sub}/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01&$filter=roleName%20eq%20'Reader'")).await.json();
    assert_eq!(defs["value"][0]["name"], "acdd72a7-3385-48ef-bd42-f606fba81ae7");
}

#[tokio::test]
async fn sp_commands_manage_principals_and_keep_only_hashes() {
    let s = Server::start(&[]).await;
    let created = s.create_principal("ci-bot", Some(("Reader", "/")));
    let token = s.token_for(&created, "https://management.azure.com/.default").await;
    assert_eq!(send_as(&s, &token, reqwest::Method::GET, &group_path("x"), None).await.status, 404);
    let listed =
        Command::new(env!("CARGO_BIN_EXE_kubeinvoke")).args(["sp", "list"]).args(s.admin_args()).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let bot = listed.as_array().unwrap().iter().find(|p| p["displayName"] == "ci-bot").unwrap();
    assert_eq!(bot["roles"], json!([{"role": "Reader", "scope": "/"}]));
    assert!(!listed.to_string().contains(&created.password));
    if on_postgres() {
        // The generated secret holds no quote, so it can sit in the test's literal.
        assert!(!created.password.contains('\''));
        let sql = format!(
            "SELECT COUNT(*) FROM principals WHERE strpos(app_id || object_id || display_name || encode(secret_salt, 'escape') || encode(secret_hash, 'escape'), '{}') > 0",
            created.password
        );
        assert_eq!(s.count(&sql).await, 0, "secret stored in clear");
    } else {
        let database = std::fs::read(s.data_dir().join("kubeinvoke.db")).unwrap();
        let wal = std::fs::read(s.data_dir().join("kubeinvoke.db-wal")).unwrap_or_default();
        let needle = created.password.as_bytes();
        assert!(
            !database.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle),
            "secret stored in clear"
        );
    }
    let deleted = Command::new(env!("CARGO_BIN_EXE_kubeinvoke"))
        .args(["sp", "delete", "--app-id", &created.app_id])
        .args(s.admin_args())
        .output()
        .unwrap();
    assert!(deleted.status.success());
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", created.app_id.as_str()),
        ("client_secret", created.password.as_str()),
        ("scope", "https://management.azure.com/.default"),
    ];
    let r = reply(s.client.post(format!("{}/{}/oauth2/v2.0/token", s.base, created.tenant)).form(&form)).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn tokens_of_a_trusted_external_issuer_are_accepted() {
    let issuer = Server::start(&[]).await;
    let external = issuer.admin().unwrap();
    let issuer_url = format!("{}/{}/v2.0", issuer.base, external.tenant);
    let ca = issuer.data_dir().join("tls/ca.pem");
    let s = Server::start(&["--trusted-issuer", &issuer_url, "--trusted-issuer-ca", ca.to_str().unwrap()]).await;
    // Authenticated (keys fetched on the first unknown kid), but no role here yet: 403, not 401.
    let foreign = issuer.token.clone();
    send_as(&s, &foreign, reqwest::Method::GET, &group_path("rg"), None).await.assert_error(403, "AuthorizationFailed");
    let oid = claims_of(&foreign)["oid"].as_str().unwrap().to_string();
    let grant =
        format!("/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01", uuid::Uuid::new_v4());
    let body = json!({"properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7", "principalId": oid}});
    assert_eq!(s.put(&grant, body).await.status, 201);
    assert_eq!(send_as(&s, &foreign, reqwest::Method::GET, &group_path("rg"), None).await.status, 404);
    // A third server is not trusted.
    let stranger = Server::start(&[]).await;
    let r = send_as(&s, &stranger.token, reqwest::Method::GET, &group_path("rg"), None).await;
    r.assert_error(401, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn with_the_builtin_issuer_off_its_tokens_are_refused() {
    let s = Server::start(&["--builtin-issuer", "false"]).await;
    let admin = s.admin().unwrap();
    let r = reply(
        s.client
            .post(format!("{}/{}/oauth2/v2.0/token", s.base, admin.tenant))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_ne!(r.status, 200, "no token endpoint");
    assert!(!r.text.contains("access_token"), "{}", r.text);
    let pem = s.signing_key_pem().await;
    let kid = {
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
        use sha2::Digest;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(std::str::from_utf8(&pem).unwrap()).unwrap();
        let der = rsa::RsaPublicKey::from(&key).to_public_key_der().unwrap();
        URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(der.as_bytes())[..16])
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid);
    let claims = json!({"iss": format!("{}/{}/v2.0", s.base, admin.tenant), "aud": "https://management.azure.com/", "tid": admin.tenant,
        "oid": uuid::Uuid::new_v4().to_string(), "sub": "x", "iat": now(), "nbf": now(), "exp": now() + 600});
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap();
    let message = send_as(&s, &token, reqwest::Method::GET, &group_path("rg"), None)
        .await
        .assert_error(401, "InvalidAuthenticationToken");
    assert!(message.contains("not trusted"), "{message}");
}
