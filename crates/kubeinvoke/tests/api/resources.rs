//! Resource groups, managed clusters, credentials, subscriptions and cloud metadata.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn resource_groups_have_a_full_lifecycle() {
    let s = Server::start(&[]).await;
    let r = s.put(&group_path("Team-RG"), json!({"location": "westeurope", "tags": {"env": "dev"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({
            "id": format!("/subscriptions/{SUB}/resourceGroups/Team-RG"),
            "name": "Team-RG",
            "type": "Microsoft.Resources/resourceGroups",
            "location": "westeurope",
            "tags": {"env": "dev"},
            "properties": {"provisioningState": "Succeeded"}
        })
    );
    let again = s.put(&group_path("team-rg"), json!({"location": "westeurope", "tags": {"env": "test"}})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["name"], "Team-RG", "keeps the casing it was created with");
    assert_eq!(s.get(&group_path("TEAM-RG")).await.json()["tags"], json!({"env": "test"}));
    assert_eq!(s.send(Method::HEAD, &group_path("team-rg"), None).await.status, 204);

    let list = s.get(&format!("/subscriptions/{SUB}/resourcegroups")).await.json();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);

    s.create_cluster("team-rg", "c1", json!({})).await;
    assert_eq!(s.send(Method::DELETE, &group_path("team-rg"), None).await.status, 200);
    s.get(&group_path("team-rg")).await.assert_error(404, "ResourceGroupNotFound");
    assert_eq!(s.send(Method::HEAD, &group_path("team-rg"), None).await.status, 404);
    s.send(Method::DELETE, &group_path("team-rg"), None).await.assert_error(404, "ResourceGroupNotFound");
    s.get(&cluster_path("team-rg", "c1")).await.assert_error(404, "ResourceGroupNotFound");
}

#[tokio::test]
async fn clusters_keep_unknown_properties_and_hide_the_kubeconfig() {
    let s = Server::start(&[]).await;
    s.create_group("rg").await;
    let (yaml, encoded) = kubeconfig_for("https://my-cluster.hcp.westeurope.azmk8s.io:443");
    let body = json!({
        "location": "westeurope",
        "tags": {"team": "platform"},
        "sku": {"name": "Base", "tier": "Free"},
        "properties": {
            "kubeconfig": encoded,
            "dnsPrefix": "dns1",
            "futureFeature": {"nested": [1, 2, {"deep": true}]},
            "aadProfile": {"managed": false}
        }
    });
    let created = s.put(&cluster_path("rg", "c1"), body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let fetched = s.get(&cluster_path("rg", "c1")).await;
    assert_eq!(fetched.status, 200);
    for got in [created.json(), fetched.json()] {
        assert_eq!(got["type"], "Microsoft.ContainerService/ManagedClusters");
        assert_eq!(got["tags"], json!({"team": "platform"}));
        assert_eq!(got["sku"], json!({"name": "Base", "tier": "Free"}));
        let properties = &got["properties"];
        assert_eq!(properties["futureFeature"], json!({"nested": [1, 2, {"deep": true}]}));
        assert_eq!(properties["dnsPrefix"], "dns1");
        assert_eq!(properties["fqdn"], "my-cluster.hcp.westeurope.azmk8s.io");
        assert_eq!(properties["provisioningState"], "Succeeded");
        assert!(properties.get("kubeconfig").is_none(), "kubeconfig is write-only: {got}");
        assert!(!got.to_string().contains(&encoded));
    }

    // A PUT without the kubeconfig (GET, edit, PUT) keeps it.
    let mut edited = fetched.json();
    edited["properties"]["dnsPrefix"] = json!("dns2");
    let updated = s.put(&cluster_path("rg", "C1"), edited).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json()["properties"]["dnsPrefix"], "dns2");

    for (action, name) in [("listClusterAdminCredential", "clusterAdmin"), ("listClusterUserCredential", "clusterUser")]
    {
        let r = s.post(&format!("{}/{action}", cluster_path("rg", "c1")), json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        assert_eq!(body["kubeconfigs"][0]["name"], name);
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body["kubeconfigs"][0]["value"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), yaml);
    }
}

#[tokio::test]
async fn bad_kubeconfigs_are_refused_naming_the_property() {
    let s = Server::start(&[]).await;
    s.create_group("rg").await;
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for bad in [json!("%%%not base64"), json!(b64("{{{ not yaml")), json!(b64("clusters: []")), json!(42)] {
        let r = s.put(&cluster_path("rg", "c1"), json!({"properties": {"kubeconfig": bad}})).await;
        let message = r.assert_error(400, "InvalidParameter");
        assert!(message.contains("properties.kubeconfig"), "{message}");
        assert_eq!(r.json()["error"]["target"], "properties.kubeconfig");
    }
    s.get(&cluster_path("rg", "c1")).await.assert_error(404, "ResourceNotFound");
    s.create_cluster("rg", "bare", json!({})).await;
    let r = s.post(&format!("{}/listClusterAdminCredential", cluster_path("rg", "bare")), json!({})).await;
    r.assert_error(400, "NoCredentials");
}

#[tokio::test]
async fn cluster_put_needs_its_group_and_defaults_the_location() {
    let s = Server::start(&[]).await;
    let r = s.put(&cluster_path("nogroup", "c1"), json!({"location": "x", "properties": {}})).await;
    r.assert_error(404, "ResourceGroupNotFound");
    s.create_group("rg").await;
    let r = s.put(&cluster_path("rg", "c1"), json!({})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["location"], "westeurope");
}

#[tokio::test]
async fn delete_is_idempotent_and_results_go_with_the_cluster() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let location = s.submit("rg", "c1", json!({"command": "echo old"})).await;
    s.wait(&location).await;
    assert_eq!(s.send(Method::DELETE, &cluster_path("rg", "c1"), None).await.status, 200);
    s.get(&cluster_path("rg", "c1")).await.assert_error(404, "ResourceNotFound");
    assert_eq!(s.send(Method::DELETE, &cluster_path("rg", "c1"), None).await.status, 204);
    // A new cluster with the same name does not inherit the old one's results.
    s.create_cluster("rg", "c1", json!({})).await;
    s.get(&location).await.assert_error(404, "NotFound");
}

#[tokio::test]
async fn cluster_lists_page_with_next_link_in_both_scopes() {
    let s = Server::start(&["--page-size", "2"]).await;
    for (group, name) in [("rg-a", "c3"), ("rg-a", "c1"), ("rg-a", "C2"), ("rg-b", "c4"), ("rg-b", "c5")] {
        s.create_cluster(group, name, json!({})).await;
    }
    let collect = |first: String| {
        let s = &s;
        async move {
            let mut names = Vec::new();
            let mut next = Some(first);
            let mut pages = 0;
            while let Some(url) = next {
                let r = s.get(&url).await;
                assert_eq!(r.status, 200, "{url}: {}", r.text);
                let body = r.json();
                pages += 1;
                names.extend(body["value"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()));
                next = body.get("nextLink").and_then(Value::as_str).map(str::to_string);
                if let Some(link) = &next {
                    assert!(link.starts_with(&s.base), "absolute: {link}");
                    assert!(link.contains("api-version=2024-09-01"), "same api-version: {link}");
                }
            }
            (names, pages)
        }
    };
    let (all, pages) =
        collect(format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/managedClusters")).await;
    assert_eq!(all, ["c1", "C2", "c3", "c4", "c5"]);
    assert_eq!(pages, 3);
    let in_group =
        format!("/subscriptions/{SUB}/resourceGroups/rg-b/providers/Microsoft.ContainerService/managedClusters");
    let (b, pages) = collect(in_group.clone()).await;
    assert_eq!((b, pages), (vec!["c4".to_string(), "c5".to_string()], 1));
    s.get(&format!("{in_group}?api-version={API}&$skipToken=zz")).await.assert_error(400, "InvalidParameter");
    let empty =
        format!("/subscriptions/{SUB}/resourceGroups/none/providers/Microsoft.ContainerService/managedClusters");
    s.get(&empty).await.assert_error(404, "ResourceGroupNotFound");
}

#[tokio::test]
async fn subscriptions_and_cloud_metadata_serve_az_login() {
    let s = Server::start(&["--subscription-id", SUB, "--tenant-id", "11111111-2222-3333-4444-555555555555"]).await;
    let subs = s.get("/subscriptions?api-version=2022-12-01").await.json();
    let first = &subs["value"][0];
    assert_eq!(first["subscriptionId"], SUB);
    assert_eq!(first["id"], format!("/subscriptions/{SUB}"));
    assert_eq!(first["state"], "Enabled");
    assert_eq!(first["tenantId"], "11111111-2222-3333-4444-555555555555");
    assert!(first["displayName"].is_string());

    let meta = reply(s.client.get(format!("{}/metadata/endpoints?api-version=2022-09-01", s.base))).await.json();
    assert_eq!(meta["resourceManager"], format!("{}/", s.base));
    assert_eq!(meta["authentication"]["loginEndpoint"], s.base);
    let audiences = meta["authentication"]["audiences"].as_array().unwrap();
    assert!(audiences.contains(&json!("https://management.core.windows.net/")));
    assert!(meta["suffixes"].is_object() && meta["name"].is_string());
}

#[tokio::test]
async fn generated_certificate_covers_loopback_names_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start(&["--hostname", "kubeinvoke.test"]).await;
    let tls = s.data_dir().join("tls");
    for key in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(tls.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let port = s.base.rsplit(':').next().unwrap().to_string();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}/metadata/endpoints");
        assert_eq!(reply(s.client.get(&url)).await.status, 200, "{host}");
    }
    let names = std::fs::read_to_string(tls.join("server.names")).unwrap();
    assert!(names.contains("kubeinvoke.test") && names.contains("::1"), "{names}");
    // A restart reuses the CA, so clients that trust it keep working.
    let ca_before = std::fs::read(tls.join("ca.pem")).unwrap();
    let s = s.restart().await;
    assert_eq!(std::fs::read(s.data_dir().join("tls/ca.pem")).unwrap(), ca_before);
    assert_eq!(s.get(&group_path("x")).await.status, 404);
}

#[tokio::test]
async fn startup_says_where_everything_is() {
    let s = Server::start(&["--subscription-id", SUB]).await;
    let data_dir = s.data_dir();
    for expected in [
        format!("listening on   {}", s.base),
        format!("trust this CA  {}", data_dir.join("tls/ca.pem").display()),
        format!("data dir       {}", data_dir.display()),
        format!("subscription   {SUB}"),
    ] {
        assert!(s.banner.contains(&expected), "{expected:?} missing from:\n{}", s.banner);
    }
    assert!(s.banner.contains("tenant "), "{}", s.banner);
    assert!(s.base.starts_with("https://127.0.0.1:"), "HTTPS on loopback by default: {}", s.base);
}

#[tokio::test]
async fn own_certificate_and_plain_http_modes() {
    // Borrow a certificate made by another server's CA and serve it with --tls-cert/--tls-key.
    let issuer = Server::start(&[]).await;
    let tls = issuer.data_dir().join("tls");
    let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));
    let own = Server::start_trusting(
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        Some(tls.join("ca.pem")),
    )
    .await;
    assert!(own.banner.contains("--tls-cert"), "{}", own.banner);
    assert_eq!(own.get(&group_path("rg")).await.status, 404);
    assert!(!own.data_dir().join("tls").exists(), "no certificate generated when one is given");

    let plain = Server::start(&["--http"]).await;
    assert!(plain.base.starts_with("http://"), "{}", plain.base);
    assert!(plain.banner.contains("WARNING"), "{}", plain.banner);
    plain.create_cluster("rg", "c1", json!({})).await;
    let run = plain.url(&format!("{}/runCommand", cluster_path("rg", "c1")));
    let direct = reply(plain.client.post(&run).bearer_auth(&plain.token).json(&json!({"command": "true"}))).await;
    assert!(direct.header("location").unwrap().starts_with("http://127.0.0.1:"));
    let proxied = reply(
        plain
            .client
            .post(&run)
            .bearer_auth(&plain.token)
            .header("x-forwarded-proto", "https")
            .header("host", "kubeinvoke.example")
            .json(&json!({"command": "true"})),
    )
    .await;
    let location = proxied.header("location").unwrap();
    assert!(location.starts_with("https://kubeinvoke.example/subscriptions/"), "{location}");
}

#[tokio::test]
async fn locations_are_stored_by_name_and_a_group_never_moves() {
    let s = Server::start(&[]).await;
    let r = s.put(&group_path("where"), json!({"location": "West Europe"})).await;
    assert_eq!((r.status.as_u16(), r.json()["location"].as_str()), (201, Some("westeurope")), "{}", r.text);
    // The same location in any spelling is no change; another one is ARM's 409.
    assert_eq!(s.put(&group_path("where"), json!({"location": "westEurope"})).await.status, 200);
    let moved = s.put(&group_path("where"), json!({"location": "East US"})).await;
    let message = moved.assert_error(409, "InvalidResourceGroupLocation");
    assert!(message.contains("'eastus'") && message.contains("'westeurope'"), "{message}");
    assert_eq!(moved.json()["error"]["target"], "location");
    assert_eq!(s.get(&group_path("where")).await.json()["location"], "westeurope", "nothing changed");
    let cluster = s.put(&cluster_path("where", "c1"), json!({"location": "North Europe", "properties": {}})).await;
    assert_eq!(cluster.json()["location"], "northeurope", "{}", cluster.text);
}

#[tokio::test]
async fn patch_replaces_tags_of_groups_and_clusters_and_nothing_else() {
    let s = Server::start(&[]).await;
    s.create_cluster("tagged", "c1", json!({"dnsPrefix": "keep"})).await;
    let r = s.send(Method::PATCH, &group_path("tagged"), Some(json!({"tags": {"env": "prod"}}))).await;
    assert_eq!((r.status.as_u16(), &r.json()["tags"]), (200, &json!({"env": "prod"})), "{}", r.text);
    assert_eq!(s.get(&group_path("tagged")).await.json()["tags"], json!({"env": "prod"}));
    let moved = s.send(Method::PATCH, &group_path("tagged"), Some(json!({"location": "eastus"}))).await;
    moved.assert_error(409, "InvalidResourceGroupLocation");
    let missing = s.send(Method::PATCH, &group_path("nowhere"), Some(json!({"tags": {}}))).await;
    missing.assert_error(404, "ResourceGroupNotFound");

    let r = s.send(Method::PATCH, &cluster_path("tagged", "c1"), Some(json!({"tags": {"team": "a"}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let shown = s.get(&cluster_path("tagged", "c1")).await.json();
    assert_eq!((&shown["tags"], &shown["properties"]["dnsPrefix"]), (&json!({"team": "a"}), &json!("keep")));
    // A cluster's settings change with PUT, where they are checked: a PATCH of them is refused,
    // and changes nothing.
    let sneaky = json!({"tags": {"team": "b"}, "properties": {"apiServerAccessProfile": {"disableRunCommand": false}}});
    let r = s.send(Method::PATCH, &cluster_path("tagged", "c1"), Some(sneaky)).await;
    let message = r.assert_error(400, "InvalidParameter");
    assert!(message.contains("'properties'"), "{message}");
    assert_eq!(s.get(&cluster_path("tagged", "c1")).await.json()["tags"], json!({"team": "a"}));
    let bad = s.send(Method::PATCH, &cluster_path("tagged", "c1"), Some(json!({"tags": "env=prod"}))).await;
    bad.assert_error(400, "InvalidParameter");
    let missing = s.send(Method::PATCH, &cluster_path("tagged", "nope"), Some(json!({"tags": {}}))).await;
    missing.assert_error(404, "ResourceNotFound");

    // A Reader may not.
    let reader = s.create_principal("tag-reader", Some(("Reader", &format!("/subscriptions/{SUB}"))));
    let token = s.token_for(&reader, "https://management.azure.com/.default").await;
    let r = send_as(&s, &token, Method::PATCH, &cluster_path("tagged", "c1"), Some(json!({"tags": {}}))).await;
    r.assert_error(403, "AuthorizationFailed");
    let r = send_as(&s, &token, Method::PATCH, &group_path("tagged"), Some(json!({"tags": {}}))).await;
    r.assert_error(403, "AuthorizationFailed");
    assert_eq!(s.get(&group_path("tagged")).await.json()["tags"], json!({"env": "prod"}));
}

#[tokio::test]
async fn tags_azure_would_refuse_get_a_400_naming_the_tag_and_change_nothing() {
    let s = Server::start(&[]).await;
    s.create_cluster("strict", "c1", json!({})).await;
    let r = s.send(Method::PATCH, &cluster_path("strict", "c1"), Some(json!({"tags": {"env": "prod"}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let refused = [
        (json!(["env"]), "must be a JSON object"),
        (json!({"env": 1}), "tag 'env' must be a string"),
        (json!({"nul": "a\u{0}b"}), "control character"),
        (json!({"line\nbreak": "v"}), "'line\\nbreak'"),
        (json!({"": "v"}), "must not be empty"),
        (json!({"long": "v".repeat(257)}), "longer than 256"),
        (Value::Object((0..51).map(|i| (format!("t{i}"), json!("v"))).collect()), "at most 50"),
    ];
    for (tags, says) in refused {
        let body = json!({"location": "westeurope", "tags": tags.clone(), "properties": {}});
        for r in [
            s.put(&cluster_path("strict", "c1"), body).await,
            s.send(Method::PATCH, &cluster_path("strict", "c1"), Some(json!({"tags": tags.clone()}))).await,
            s.put(&group_path("strict"), json!({"location": "westeurope", "tags": tags.clone()})).await,
            s.send(Method::PATCH, &group_path("strict"), Some(json!({"tags": tags.clone()}))).await,
        ] {
            let message = r.assert_error(400, "InvalidParameter");
            assert!(message.contains(says), "{tags}: {message}");
            assert_eq!(r.json()["error"]["target"], "tags", "{}", r.text);
        }
    }
    assert_eq!(s.get(&cluster_path("strict", "c1")).await.json()["tags"], json!({"env": "prod"}), "nothing changed");
    let r = s.send(Method::PATCH, &cluster_path("strict", "c1"), Some(json!({"tags": null}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(s.get(&cluster_path("strict", "c1")).await.json().get("tags").is_none(), "null clears the tags");
}

#[tokio::test]
async fn providers_are_registered_and_locations_listed() {
    let s = Server::start(&[]).await;
    let providers = s.get(&format!("/subscriptions/{SUB}/providers?api-version=2022-12-01")).await;
    assert_eq!(providers.status, 200, "{}", providers.text);
    let names: Vec<String> = providers.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["namespace"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"Microsoft.ContainerService".to_string()), "{names:?}");
    // Any casing finds it; it answers in ARM's.
    let one = s.get(&format!("/subscriptions/{SUB}/providers/microsoft.containerservice?api-version=2022-12-01")).await;
    let provider = one.json();
    assert_eq!(
        (&provider["namespace"], &provider["registrationState"]),
        (&json!("Microsoft.ContainerService"), &json!("Registered"))
    );
    let clusters = provider["resourceTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["resourceType"] == "managedClusters")
        .unwrap()
        .clone();
    assert!(clusters["apiVersions"].as_array().unwrap().contains(&json!("2024-09-01")), "{clusters}");
    assert!(clusters["locations"].as_array().unwrap().contains(&json!("West Europe")), "{clusters}");
    let registered = s
        .post(
            &format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/register?api-version=2022-12-01"),
            json!({}),
        )
        .await;
    assert_eq!((registered.status.as_u16(), &registered.json()["registrationState"]), (200, &json!("Registered")));
    let unknown = s.get(&format!("/subscriptions/{SUB}/providers/Microsoft.Nope?api-version=2022-12-01")).await;
    unknown.assert_error(404, "InvalidResourceNamespace");

    let locations = s.get(&format!("/subscriptions/{SUB}/locations?api-version=2022-12-01")).await.json();
    let west = locations["value"].as_array().unwrap().iter().find(|l| l["name"] == "westeurope").unwrap().clone();
    assert_eq!(west["displayName"], "West Europe");
    assert_eq!(west["id"], format!("/subscriptions/{SUB}/locations/westeurope"));

    // Reading them takes a read right; registering (a write in ARM) more than Reader has.
    let reader = s.create_principal("provider-reader", Some(("Reader", &format!("/subscriptions/{SUB}"))));
    let token = s.token_for(&reader, "https://management.azure.com/.default").await;
    let path = format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService");
    assert_eq!(send_as(&s, &token, Method::GET, &format!("{path}?api-version=2022-12-01"), None).await.status, 200);
    let r =
        send_as(&s, &token, Method::POST, &format!("{path}/register?api-version=2022-12-01"), Some(json!({}))).await;
    r.assert_error(403, "AuthorizationFailed");
    let nobody = s.create_principal("provider-nobody", None);
    let token = s.token_for(&nobody, "https://management.azure.com/.default").await;
    let r = send_as(&s, &token, Method::GET, &format!("{path}?api-version=2022-12-01"), None).await;
    r.assert_error(403, "AuthorizationFailed");
}
