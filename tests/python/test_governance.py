"""Governance with the real az CLI: a custom role made by `az role definition create`, assigned by
`az role assignment create`, lets a service principal run a saved command (and nothing else)."""

import base64
import json
import uuid

import requests

from conftest import SUBSCRIPTION, AzCli

GROUP = "gov-rg"
CLUSTER = "gov-cluster"
SCOPE = f"/subscriptions/{SUBSCRIPTION}"
PROVIDER = "Microsoft.ContainerService"
CLUSTER_PATH = f"{SCOPE}/resourceGroups/{GROUP}/providers/{PROVIDER}/managedClusters/{CLUSTER}"
SAVED = f"{SCOPE}/providers/{PROVIDER}/savedCommands/pods-in-namespace"


def test_a_custom_role_lets_a_principal_run_only_saved_commands(server, az, tmp_path):
    az.run("group", "create", "-n", GROUP, "-l", "westeurope", "-o", "none")
    server.put(f"{CLUSTER_PATH}?api-version=2024-09-01", {"location": "westeurope", "properties": {}})
    server.put(f"{SAVED}?api-version=2024-09-01", {"properties": {
        "description": "Pods of one namespace",
        "script": 'echo "namespace=$ns level=$level"; [ "$token" = "expected-token" ] && echo token-ok',
        "parameters": {"ns": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$"},
                       "level": {"type": "enum", "values": ["info", "debug"]},
                       "token": {"type": "secret"}},
    }})

    role_name = f"Saved command runner {uuid.uuid4().hex[:8]}"
    definition = tmp_path / "role.json"
    definition.write_text(json.dumps({
        "Name": role_name,
        "Description": "May run saved commands and read, nothing else",
        "Actions": [f"{PROVIDER}/managedClusters/runSavedCommand/action", "*/read"],
        "NotActions": [],
        "AssignableScopes": [SCOPE],
    }))
    created = json.loads(az.run("role", "definition", "create", "--role-definition", f"@{definition}", "-o", "json").stdout)
    assert created["roleName"] == role_name and created["roleType"] == "CustomRole", created
    listed = json.loads(az.run("role", "definition", "list", "--name", role_name, "-o", "json").stdout)
    assert [r["name"] for r in listed] == [created["name"]], listed

    runner = server.sp_create("saved-runner")
    token = server.token(runner)
    object_id = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["oid"]
    assigned = json.loads(az.run("role", "assignment", "create", "--assignee-object-id", object_id,
                                 "--assignee-principal-type", "ServicePrincipal", "--role", role_name,
                                 "--scope", SCOPE, "-o", "json").stdout)
    assert assigned["roleDefinitionId"].endswith(created["name"]), assigned

    headers = {"Authorization": f"Bearer {token}"}
    run_url = f"{server.base}{CLUSTER_PATH}/runSavedCommand?api-version=2024-09-01"
    body = {"savedCommand": SAVED, "parameters": {"ns": "kube-system", "level": "debug", "token": "expected-token"}}
    accepted = requests.post(run_url, json=body, headers=headers, verify=server.ca)
    assert accepted.status_code == 202, accepted.text
    command_id = accepted.headers["Location"].split("/commandResults/")[1].split("?")[0]

    # The runner's own az reads the result like any other.
    runner_az = AzCli(server, tmp_path / "runner-config")
    runner_az.login(runner)
    result = runner_az.run("aks", "command", "result", "-g", GROUP, "-n", CLUSTER, "--command-id", command_id)
    assert "namespace=kube-system level=debug" in result.stdout, result.stdout
    assert "token-ok" in result.stdout, result.stdout

    # A value that breaks its pattern is a 400 naming the parameter.
    body["parameters"]["ns"] = "kube-system; rm -rf /"
    refused = requests.post(run_url, json=body, headers=headers, verify=server.ca)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["target"] == "parameters.ns", refused.text

    # Free-form commands stay refused: the role does not hold runcommand/action.
    denied = runner_az.run("aks", "command", "invoke", "-g", GROUP, "-n", CLUSTER, "--command", "id", check=False)
    assert denied.returncode != 0 and "AuthorizationFailed" in denied.stderr, denied.stderr

    # The role cannot be deleted while assigned.
    still = az.run("role", "definition", "delete", "--name", role_name, check=False)
    assert still.returncode != 0 and "RoleDefinitionHasAssignments" in still.stderr, still.stderr
