"""A request body over the server's limit is answered with a CloudError the client can read:
clients that write the whole body before reading (requests, the Azure SDK, az) must see
`RequestEntityTooLarge`, not a broken connection."""

import os

import requests

from conftest import SUBSCRIPTION

GROUP = "big-rg"
CLUSTER = "big-cluster"
LIMIT = 32 * 1024 * 1024  # the server's default --max-body-bytes
CLUSTER_PATH = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerService"
                f"/managedClusters/{CLUSTER}")


def make_cluster(server):
    server.put(f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}?api-version=2021-04-01",
               {"location": "westeurope"})
    server.put(f"{CLUSTER_PATH}?api-version=2024-09-01", {"location": "westeurope", "properties": {}})


def test_requests_reads_the_413_after_sending_everything(server):
    make_cluster(server)
    body = b'{"command": "true", "context": "' + b"A" * (LIMIT + 1024 * 1024) + b'"}'
    response = requests.post(
        f"{server.base}{CLUSTER_PATH}/runCommand?api-version=2024-09-01",
        data=body,
        headers={"Authorization": f"Bearer {server.token()}", "Content-Type": "application/json"},
        verify=server.ca,
        timeout=120,
    )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "RequestEntityTooLarge"
    assert str(LIMIT) in error["message"], error["message"]
    # Nothing was lost: the server still answers on a new connection.
    assert requests.get(f"{server.base}/healthz", verify=server.ca, timeout=10).ok


def test_az_invoke_with_a_folder_over_the_limit_prints_the_cloud_error(server, az, tmp_path):
    make_cluster(server)
    # Random bytes do not compress: the zip (then base64) is well over the limit.
    (tmp_path / "blob.bin").write_bytes(os.urandom(LIMIT))
    result = az.run("aks", "command", "invoke", "-g", GROUP, "-n", CLUSTER, "--command", "ls", "--file", ".",
                    cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "RequestEntityTooLarge" in result.stderr, result.stderr
    assert str(LIMIT) in result.stderr, result.stderr
