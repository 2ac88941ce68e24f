"""The real azure-mgmt-containerservice SDK against kubeinvoke, authenticated by
azure.identity.ClientSecretCredential against the built-in issuer."""

import base64
import io
import time
import zipfile

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.containerservice.models import ManagedCluster, RunCommandRequest

from conftest import SUBSCRIPTION

GROUP = "sdk-rg"


@pytest.fixture(scope="module")
def cluster(server, client):
    server.put(f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}?api-version=2022-09-01", {"location": "westeurope"})
    poller = client.managed_clusters.begin_create_or_update(GROUP, "sdk-cluster", ManagedCluster(location="westeurope"))
    created = poller.result()
    assert created.name == "sdk-cluster"
    assert created.provisioning_state == "Succeeded"
    return created.name


def test_run_command_polls_to_succeeded_with_logs(client, cluster):
    poller = client.managed_clusters.begin_run_command(
        GROUP, cluster, RunCommandRequest(command="echo hello from kubeinvoke; exit 3")
    )
    result = poller.result()
    assert result.provisioning_state == "Succeeded"
    assert result.exit_code == 3
    assert result.logs == "hello from kubeinvoke\n"
    assert len(result.id) == 32
    assert result.started_at is not None and result.finished_at >= result.started_at


def test_run_command_with_a_context_file(client, cluster):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.yaml", "kind: Namespace\nmetadata:\n  name: demo\n" * 20)
    context = base64.encodebytes(buffer.getvalue()).decode()
    assert "\n" in context.strip()
    result = client.managed_clusters.begin_run_command(
        GROUP, cluster, RunCommandRequest(command="grep -c 'name: demo' manifest.yaml", context=context)
    ).result()
    assert result.provisioning_state == "Succeeded"
    assert result.logs == "20\n"


def test_get_command_result_is_none_while_running(client, cluster):
    # What `az aks command invoke --no-wait` does: no polling, read the id from Location.
    poller = client.managed_clusters.begin_run_command(
        GROUP, cluster, RunCommandRequest(command="sleep 2; echo finished"), polling=False
    )
    location = poller.polling_method()._initial_response.http_response.headers["location"]
    command_id = location.split("commandResults/")[1].split("?")[0]
    assert client.managed_clusters.get_command_result(GROUP, cluster, command_id) is None
    deadline = time.time() + 30
    result = None
    while result is None and time.time() < deadline:
        time.sleep(0.2)
        result = client.managed_clusters.get_command_result(GROUP, cluster, command_id)
    assert result is not None, "command never finished"
    assert result.provisioning_state == "Succeeded"
    assert result.logs == "finished\n"


def test_unknown_cluster_raises_resource_not_found(client, cluster):
    with pytest.raises(ResourceNotFoundError) as error:
        client.managed_clusters.begin_run_command(GROUP, "no-such-cluster", RunCommandRequest(command="true")).result()
    assert error.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.managed_clusters.get(GROUP, "no-such-cluster")
