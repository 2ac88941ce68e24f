"""Four eyes with the real clients: `az aks command invoke`, `az aks command result` and the
Python SDK keep polling a command held for approval, unchanged, until a second principal approves
it, and then show its output."""

import base64
import json
import re
import subprocess
import threading
import time
import uuid

import requests
from azure.mgmt.containerservice.models import RunCommandRequest

from conftest import SUBSCRIPTION

GROUP = "four-eyes-rg"
SCOPE = f"/subscriptions/{SUBSCRIPTION}"
PROVIDER = "Microsoft.ContainerService"
APPROVE = f"{PROVIDER}/managedClusters/commandResults/approve/action"
VERSION = "api-version=2024-09-01"


def cluster_path(name):
    return f"{SCOPE}/resourceGroups/{GROUP}/providers/{PROVIDER}/managedClusters/{name}"


def held_cluster(server, name):
    server.put(f"{SCOPE}/resourcegroups/{GROUP}?api-version=2022-09-01", {"location": "westeurope"})
    server.put(f"{cluster_path(name)}?{VERSION}", {"location": "westeurope", "properties": {
        "commandApproval": {"mode": "always", "approvers": 1, "expiresAfter": "PT10M"}}})


def approver_token(server, name):
    """A principal whose only role is a custom one holding the approve action."""
    role_id = str(uuid.uuid4())
    server.put(f"{SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role_id}?api-version=2022-04-01", {
        "properties": {"roleName": f"Approver {name}", "type": "CustomRole", "assignableScopes": [SCOPE],
                       "permissions": [{"actions": [APPROVE, "*/read"], "notActions": []}]}})
    who = server.sp_create(name)
    token = server.token(who)
    oid = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["oid"]
    server.put(f"{SCOPE}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?api-version=2022-04-01", {
        "properties": {"roleDefinitionId": f"{SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role_id}",
                       "principalId": oid, "principalType": "ServicePrincipal"}})
    return token


def waiting_command(server, token):
    """The one command that waits for this approver (polls until it shows)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        listed = requests.get(f"{server.base}{SCOPE}/providers/{PROVIDER}/pendingApprovals?{VERSION}",
                              headers={"Authorization": f"Bearer {token}"}, verify=server.ca)
        assert listed.ok, listed.text
        if listed.json()["value"]:
            return listed.json()["value"][0]
        time.sleep(0.3)
    raise AssertionError("no command came to approve")


def approve(server, token, view, reason):
    url = f"{server.base}{view['properties']['clusterId']}/commandResults/{view['name']}/approve?{VERSION}"
    answer = requests.post(url, json={"reason": reason}, headers={"Authorization": f"Bearer {token}"}, verify=server.ca)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_sdk_polls_a_held_command_until_another_principal_approves(server, client):
    held_cluster(server, "sdk-held")
    token = approver_token(server, "sdk-approver")
    poller = client.managed_clusters.begin_run_command(
        GROUP, "sdk-held", RunCommandRequest(command="echo approved by four eyes")
    )
    view = waiting_command(server, token)
    assert view["properties"]["command"] == "echo approved by four eyes"
    # While it waits, the SDK's result read is a 202: no result yet.
    assert client.managed_clusters.get_command_result(GROUP, "sdk-held", view["name"]) is None
    assert not poller.done()
    # The requester (the admin, an Owner) may not approve its own command.
    own = requests.post(f"{server.base}{cluster_path('sdk-held')}/commandResults/{view['name']}/approve?{VERSION}",
                        json={"reason": "mine"}, headers={"Authorization": f"Bearer {server.token()}"},
                        verify=server.ca)
    assert own.status_code == 403 and own.json()["error"]["code"] == "SelfApprovalNotAllowed", own.text
    approve(server, token, view, "checked the change ticket")
    result = poller.result(timeout=120)
    assert result.provisioning_state == "Succeeded"
    assert result.logs == "approved by four eyes\n"


def test_az_invoke_and_result_wait_for_approval_unchanged(server, az):
    held_cluster(server, "az-held")
    token = approver_token(server, "az-approver")
    invoked = subprocess.Popen([az.binary, "aks", "command", "invoke", "-g", GROUP, "-n", "az-held",
                                "--command", "echo az waited; exit 4"], env=az.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = {}
    reader = threading.Thread(target=lambda: output.update(zip(("out", "err"), invoked.communicate(timeout=300))))
    reader.start()
    view = waiting_command(server, token)
    # `az aks command result` on the waiting command says where it stands.
    pending = az.run("aks", "command", "result", "-g", GROUP, "-n", "az-held", "-i", view["name"])
    assert re.search(r"status: PendingApproval", pending.stdout), pending.stdout
    assert invoked.poll() is None, "az keeps polling while the command waits"
    approve(server, token, view, "reviewed")
    reader.join(timeout=300)
    assert invoked.returncode == 0, output
    assert "with exitcode=4" in output["out"] and "az waited" in output["out"], output
