//! Replays of Azure's official 2024-09-01 examples (tests/fixtures/azure-2024-09-01, MIT).

use serde_json::{Value, json};

use crate::harness::*;

fn example(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/azure-2024-09-01/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn cluster_path_of(parameters: &Value) -> String {
    format!(
        "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ContainerService/managedClusters/{}?api-version={}",
        parameters["subscriptionId"].as_str().unwrap(),
        parameters["resourceGroupName"].as_str().unwrap(),
        parameters["resourceName"].as_str().unwrap(),
        parameters["api-version"].as_str().unwrap()
    )
}

#[tokio::test]
async fn run_command_request_example_gives_a_result_shaped_like_the_response_example() {
    let request = example("RunCommandRequest.json");
    let expected = example("RunCommandResultSucceed.json");
    let parameters = &request["parameters"];
    let s = Server::start(&[]).await;
    s.create_group(parameters["resourceGroupName"].as_str().unwrap()).await;
    // A cluster whose API server refuses connections: kubectl really runs and really fails.
    let (_, kubeconfig) = kubeconfig_for("https://127.0.0.1:1");
    let cluster = cluster_path_of(parameters);
    let r = s.put(&cluster, json!({"location": "westeurope", "properties": {"kubeconfig": kubeconfig}})).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let run = cluster.replace("?api-version", "/runCommand?api-version");
    let r = s.post(&run, parameters["requestPayload"].clone()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    let example_location = expected["responses"]["202"]["headers"]["location"].as_str().unwrap();
    let tail =
        |l: &str| l.split_once("/subscriptions/").unwrap().1.split("/commandResults/").next().unwrap().to_lowercase();
    assert_eq!(tail(&location), tail(example_location));

    let result = s.wait(&location).await;
    let want = &expected["responses"]["200"]["body"];
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&result), keys(want));
    assert_eq!(keys(&result["properties"]), keys(&want["properties"]));
    assert_eq!(result["properties"]["provisioningState"], "Succeeded", "PascalCase of the example's 'succeeded'");
    assert!(result["properties"]["exitCode"].is_i64());
    let logs = result["properties"]["logs"].as_str().unwrap();
    assert!(logs.contains("ns.yaml"), "real kubectl output: {logs}");
}

#[tokio::test]
async fn create_disable_run_command_example_is_kept_and_enforced() {
    let create = example("ManagedClustersCreate_DisableRunCommand.json");
    let parameters = &create["parameters"];
    let s = Server::start(&[]).await;
    s.create_group("rg1").await;
    let cluster = cluster_path_of(parameters);
    let r = s.put(&cluster, parameters["parameters"].clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let got = s.get(&cluster).await.json();
    let sent = &parameters["parameters"]["properties"];
    for (key, value) in sent.as_object().unwrap() {
        assert_eq!(&got["properties"][key], value, "property {key} kept as sent");
    }
    assert_eq!(got["sku"], parameters["parameters"]["sku"]);
    assert_eq!(got["tags"], parameters["parameters"]["tags"]);
    let run = cluster.replace("?api-version", "/runCommand?api-version");
    s.post(&run, json!({"command": "true"})).await.assert_error(400, "RunCommandDisabled");
}

#[tokio::test]
async fn get_example_response_round_trips() {
    let get = example("ManagedClustersGet.json");
    let parameters = &get["parameters"];
    let body = &get["responses"]["200"]["body"];
    let s = Server::start(&[]).await;
    s.create_group(parameters["resourceGroupName"].as_str().unwrap()).await;
    let cluster = cluster_path_of(parameters);
    assert_eq!(s.put(&cluster, body.clone()).await.status, 201);
    let got = s.get(&cluster).await.json();
    assert_eq!(got["name"], body["name"]);
    assert_eq!(got["location"], body["location"]);
    for (key, value) in body["properties"].as_object().unwrap() {
        assert_eq!(&got["properties"][key], value, "property {key}");
    }
}
