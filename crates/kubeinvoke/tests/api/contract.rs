//! Paths, api-versions, authentication, errors and headers (docs/contract.md §1, §2, §6, §7).

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn literal_segments_match_case_insensitively_and_names_keep_their_casing() {
    let s = Server::start(&[]).await;
    s.create_cluster("MyGroup", "MyCluster", json!({})).await;
    let variants = [
        format!(
            "/subscriptions/{SUB}/resourceGroups/MyGroup/providers/Microsoft.ContainerService/managedClusters/MyCluster"
        ),
        format!(
            "/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/mygroup/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/mycluster"
        ),
        format!(
            "/subscriptions/{SUB}/resourcegroups/MYGROUP/providers/microsoft.containerservice/managedclusters/MYCLUSTER"
        ),
    ];
    for path in variants {
        let r = s.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let body = r.json();
        assert_eq!(body["name"], "MyCluster");
        assert_eq!(
            body["id"],
            format!(
                "/subscriptions/{SUB}/resourceGroups/MyGroup/providers/Microsoft.ContainerService/managedClusters/MyCluster"
            )
        );
    }
    let location = s
        .submit("mygroup", "MYCLUSTER", json!({"command": "echo case", "context": ""}))
        .await
        .replace("/commandResults/", "/COMMANDRESULTS/");
    assert_eq!(s.wait(&location).await["properties"]["logs"], "case\n");
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let path = cluster_path("rg", "c1");

    let message = s.get(&format!("{path}?")).await.assert_error(400, "MissingApiVersionParameter");
    assert_eq!(message, "The api-version query parameter (?api-version=) is required for all requests.");

    for bad in ["2020-01-01", "2021-02-01", "latest", "2024-13-01", "2024-09-01-beta"] {
        let message = s.get(&format!("{path}?api-version={bad}")).await.assert_error(400, "InvalidApiVersionParameter");
        assert!(message.contains(&format!("'{bad}'")), "{message}");
        assert!(message.contains("2021-03-01"), "lists what is supported: {message}");
    }
    for good in ["2021-03-01", "2026-06-01", "2031-01-01-preview"] {
        assert_eq!(s.get(&format!("{path}?api-version={good}")).await.status, 200, "{good}");
    }
    // Resource groups follow Microsoft.Resources' versions, which predate runCommand.
    assert_eq!(s.get(&format!("{}?api-version=2019-10-01", group_path("rg"))).await.status, 200);
}

#[tokio::test]
async fn strict_api_versions_pin_the_list() {
    let s = Server::start(&["--api-versions", "2024-09-01,2021-03-01"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let path = cluster_path("rg", "c1");
    assert_eq!(s.get(&format!("{path}?api-version=2024-09-01")).await.status, 200);
    let message =
        s.get(&format!("{path}?api-version=2026-06-01")).await.assert_error(400, "InvalidApiVersionParameter");
    assert!(message.contains("'2024-09-01', '2021-03-01'"), "{message}");
}

#[tokio::test]
async fn malformed_path_parameters_are_named() {
    let s = Server::start(&[]).await;
    let message = s
        .get("/subscriptions/not-a-uuid/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1")
        .await
        .assert_error(400, "InvalidSubscriptionId");
    assert_eq!(message, "The provided subscription identifier 'not-a-uuid' is malformed or invalid.");

    for bad_group in ["ends.", "has%20space", &"a".repeat(91)] {
        let message = s.get(&cluster_path(bad_group, "c1")).await.assert_error(400, "InvalidResourceGroupName");
        assert!(message.contains("resource group name"), "{message}");
    }
    for bad_name in ["-lead", "trail-", "dot.ted", &"a".repeat(64)] {
        let message = s.get(&cluster_path("rg", bad_name)).await.assert_error(400, "InvalidResourceName");
        assert!(message.contains(bad_name), "{message}");
    }
}

#[tokio::test]
async fn missing_resources_are_404_with_arm_messages() {
    let s = Server::start(&[]).await;
    let message = s.get(&cluster_path("nogroup", "c1")).await.assert_error(404, "ResourceGroupNotFound");
    assert_eq!(message, "Resource group 'nogroup' could not be found.");

    s.create_group("rg").await;
    let message = s.get(&cluster_path("rg", "nocluster")).await.assert_error(404, "ResourceNotFound");
    assert_eq!(
        message,
        "The Resource 'Microsoft.ContainerService/managedClusters/nocluster' under resource group 'rg' was not found."
    );
    s.post(&format!("{}/runCommand", cluster_path("rg", "nocluster")), json!({"command": "true"}))
        .await
        .assert_error(404, "ResourceNotFound");

    s.create_cluster("rg", "c1", json!({})).await;
    for junk in ["0123456789abcdef0123456789abcdef", "junk", "ABCDEF0123456789ABCDEF0123456789", "a;b", "..."] {
        s.get(&format!("{}/commandResults/{junk}", cluster_path("rg", "c1"))).await.assert_error(404, "NotFound");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_cloud_errors() {
    let s = Server::start(&[]).await;
    s.get("/nothing/here").await.assert_error(404, "NotFound");
    s.get(&format!("{}/explode", cluster_path("rg", "c1"))).await.assert_error(404, "NotFound");
    let r = s.send(Method::POST, &cluster_path("rg", "c1"), Some(json!({}))).await;
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("GET, PUT, PATCH, DELETE"));
    s.get(&format!("{}/runCommand", cluster_path("rg", "c1"))).await.assert_error(405, "MethodNotAllowed");
}

#[tokio::test]
async fn requests_without_a_bearer_token_are_401() {
    let s = Server::start(&[]).await;
    let url = s.url(&cluster_path("rg", "c1"));
    for request in [s.client.get(&url), s.client.get(&url).header("authorization", "Basic dXNlcjpwYXNz")] {
        let r = reply(request).await;
        r.assert_error(401, "AuthenticationFailed");
        let challenge = r.header("www-authenticate").expect("WWW-Authenticate");
        assert!(challenge.starts_with("Bearer authorization_uri=\"https://"), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    let r = reply(s.client.get(&url).header("authorization", "Bearer ")).await;
    r.assert_error(401, "InvalidAuthenticationToken");
    // Cloud metadata is public, as in Azure.
    let r = reply(s.client.get(format!("{}/metadata/endpoints?api-version=2022-09-01", s.base))).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn every_response_carries_the_arm_headers() {
    let s = Server::start(&[]).await;
    let url = s.url(&group_path("rg"));
    let r = reply(
        s.client
            .get(&url)
            .bearer_auth(&s.token)
            .header("x-ms-correlation-request-id", "corr-123")
            .header("x-ms-client-request-id", "client-456"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-ms-correlation-request-id"), Some("corr-123"));
    assert_eq!(r.header("x-ms-client-request-id"), Some("client-456"));
    let request_id = r.header("x-ms-request-id").expect("request id");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
    assert!(r.header("x-ms-ratelimit-remaining-subscription-reads").is_some());

    let put = s.put(&group_path("rg"), json!({"location": "x"})).await;
    assert!(put.header("x-ms-ratelimit-remaining-subscription-writes").is_some());
    let generated = put.header("x-ms-correlation-request-id").expect("generated correlation id");
    assert!(uuid::Uuid::parse_str(generated).is_ok());
    assert_ne!(put.header("x-ms-request-id"), r.header("x-ms-request-id"));
    assert_eq!(put.header("x-ms-client-request-id"), None);
}

#[tokio::test]
async fn bad_bodies_are_cloud_errors_never_500() {
    let s = Server::start(&["--max-body-bytes", "4096"]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let run = s.url(&format!("{}/runCommand", cluster_path("rg", "c1")));
    let send = |body: &'static str| {
        reply(s.client.post(&run).bearer_auth(&s.token).header("content-type", "application/json").body(body))
    };

    let message = send("{not json").await.assert_error(400, "InvalidRequestContent");
    assert!(message.contains("could not be deserialized"), "{message}");
    send("").await.assert_error(400, "InvalidRequestContent");
    send("[1,2]").await.assert_error(400, "InvalidRequestContent");
    send(r#"{"command": 42}"#).await.assert_error(400, "InvalidRequestContent");

    let big =
        reply(s.client.post(&run).bearer_auth(&s.token).body(format!(r#"{{"command":"{}"}}"#, "x".repeat(10_000))))
            .await;
    let message = big.assert_error(413, "RequestEntityTooLarge");
    assert!(message.contains("4096"), "{message}");

    let group = s.url(&group_path("rg2"));
    reply(s.client.put(&group).bearer_auth(&s.token).body("{")).await.assert_error(400, "InvalidRequestContent");
    reply(s.client.put(&group).bearer_auth(&s.token).body("{}")).await.assert_error(400, "LocationRequired");
    let cluster = s.url(&cluster_path("rg", "c2"));
    reply(s.client.put(&cluster).bearer_auth(&s.token).body("\"string\""))
        .await
        .assert_error(400, "InvalidRequestContent");
    reply(s.client.put(&cluster).bearer_auth(&s.token).body(r#"{"properties": 5}"#))
        .await
        .assert_error(400, "InvalidParameter");
}
