"""The real az CLI end to end, fully offline: cloud registration with endpoint discovery,
service-principal login against the built-in issuer, and every `az aks command` path."""

import base64
import json
import re

import pytest

from conftest import SUBSCRIPTION, AzCli

GROUP = "cli-rg"
CLUSTER = "cli-cluster"


@pytest.fixture(scope="module")
def cluster(server, az):
    created = json.loads(az.run("group", "create", "-n", GROUP, "-l", "westeurope", "-o", "json").stdout)
    assert created["name"] == GROUP and created["properties"]["provisioningState"] == "Succeeded"
    server.put(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerService/managedClusters/{CLUSTER}?api-version=2024-09-01",
        {"location": "westeurope", "properties": {"dnsPrefix": "cli"}},
    )
    shown = json.loads(az.run("aks", "show", "-g", GROUP, "-n", CLUSTER, "-o", "json").stdout)
    assert shown["name"] == CLUSTER and shown["dnsPrefix"] == "cli"
    return CLUSTER


def invoke(az, *args, cwd=None, check=True):
    return az.run("aks", "command", "invoke", "-g", GROUP, "-n", CLUSTER, *args, cwd=cwd, check=check)


def test_login_lists_the_subscription(az):
    account = json.loads(az.run("account", "show", "-o", "json").stdout)
    assert account["id"] == SUBSCRIPTION
    assert account["user"]["type"] == "servicePrincipal"


def test_invoke_prints_logs_and_the_exit_code(az, cluster):
    result = invoke(az, "--command", "echo hello from az; exit 0")
    assert "with exitcode=0" in result.stdout, result.stdout
    assert "hello from az" in result.stdout
    failed = invoke(az, "--command", "echo about to fail; exit 3")
    assert "with exitcode=3" in failed.stdout, failed.stdout
    assert "about to fail" in failed.stdout


def test_invoke_with_one_file(az, cluster, tmp_path):
    manifest = tmp_path / "ns.yaml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-file\n")
    result = invoke(az, "--command", "grep name: ns.yaml", "--file", str(manifest))
    assert "name: from-file" in result.stdout, result.stdout


def test_invoke_with_a_whole_directory(az, cluster, tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "top.txt").write_text("top\n")
    (tmp_path / "sub" / "deeper" / "leaf.txt").write_text("leaf\n")
    (tmp_path / ".hidden").write_text("hidden\n")
    result = invoke(az, "--command", "find . -type f | sort; cat sub/deeper/leaf.txt", "--file", ".", cwd=tmp_path)
    for expected in ["./.hidden", "./sub/deeper/leaf.txt", "./top.txt", "leaf"]:
        assert expected in result.stdout, result.stdout


def test_no_wait_then_result_while_running_and_after(az, cluster):
    started = invoke(az, "--command", "sleep 3; echo finally", "--no-wait")
    match = re.search(r"command id: (\w+)", started.stdout + started.stderr)
    assert match, started.stdout + started.stderr
    command_id = match.group(1)
    running = az.run("aks", "command", "result", "-g", GROUP, "-n", CLUSTER, "-i", command_id)
    assert "Running" in running.stdout + running.stderr, running.stdout + running.stderr
    import time

    deadline = time.time() + 60
    while True:
        done = az.run("aks", "command", "result", "-g", GROUP, "-n", CLUSTER, "-i", command_id)
        if "exitcode=" in done.stdout or time.time() > deadline:
            break
        time.sleep(1)
    assert "with exitcode=0" in done.stdout and "finally" in done.stdout, done.stdout


def test_unknown_command_id_exits_3(az, cluster):
    result = az.run("aks", "command", "result", "-g", GROUP, "-n", CLUSTER, "-i", "0" * 32, check=False)
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "(NotFound)" in result.stderr


def test_a_reader_is_refused(server, cluster, tmp_path):
    reader = server.sp_create("cli-reader", "Reader", f"/subscriptions/{SUBSCRIPTION}")
    other = AzCli(server, tmp_path / "reader-config")
    other.login(reader)
    # Reading works...
    shown = json.loads(other.run("aks", "show", "-g", GROUP, "-n", CLUSTER, "-o", "json").stdout)
    assert shown["name"] == CLUSTER
    # ...running does not.
    refused = other.run("aks", "command", "invoke", "-g", GROUP, "-n", CLUSTER, "--command", "true", check=False)
    assert refused.returncode != 0
    assert "AuthorizationFailed" in refused.stderr, refused.stderr
    assert "runcommand/action" in refused.stderr


def test_role_assignments_through_az(server, az, cluster):
    principal = server.sp_create("cli-assignee")
    token = server.token(principal)
    object_id = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["oid"]
    scope = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}"
    created = json.loads(az.run("role", "assignment", "create", "--assignee-object-id", object_id,
                                "--assignee-principal-type", "ServicePrincipal", "--role", "Reader",
                                "--scope", scope, "-o", "json").stdout)
    assert created["principalId"] == object_id and created["scope"] == scope
    listed = json.loads(az.run("role", "assignment", "list", "--scope", scope, "-o", "json").stdout)
    mine = [a for a in listed if a["principalId"] == object_id]
    assert mine and mine[0]["roleDefinitionName"] == "Reader", listed
    assert mine[0]["principalName"] == principal["appId"], mine
    # The bootstrap Owner, assigned at "/", is named too when listed under the subscription.
    everything = json.loads(az.run("role", "assignment", "list", "--all", "-o", "json").stdout)
    owners = [a for a in everything if a["scope"] == "/"]
    assert owners and owners[0]["roleDefinitionName"] == "Owner", owners


def test_aad_cluster_commands_act_as_the_caller(server, az, cluster):
    kubeconfig = (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters:\n- name: c\n  cluster: {server: 'https://203.0.113.7:6443'}\n"
        "contexts:\n- name: c\n  context: {cluster: c, user: admin}\n"
        "users:\n- name: admin\n  user: {token: admin-secret-token}\n"
    )
    server.put(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerService/managedClusters/aad?api-version=2024-09-01",
        {"location": "westeurope", "properties": {"aadProfile": {"managed": True},
                                                  "kubeconfig": base64.b64encode(kubeconfig.encode()).decode()}},
    )
    result = az.run("aks", "command", "invoke", "-g", GROUP, "-n", "aad", "--command",
                    "kubectl config view --raw --minify -o jsonpath='{.users[0].user.token}'")
    assert "admin-secret-token" not in result.stdout
    token = re.search(r"(eyJ[\w-]+\.[\w-]+\.[\w-]+)", result.stdout)
    assert token, result.stdout
    claims = json.loads(base64.urlsafe_b64decode(token.group(1).split(".")[1] + "==="))
    assert claims["aud"] == "6dae42f8-4368-4678-94ff-3960e28e3630"
    assert claims["appid"] == server.admin["appId"]


def test_the_az_login_script_sets_up_a_fresh_az(server, tmp_path):
    import os
    import stat
    import subprocess

    from conftest import BINARY, REPO

    script = tmp_path / "az-login.sh"
    config = tmp_path / "fresh-config"
    subprocess.run([BINARY, "az-login", "--url", server.base, "--data-dir", str(server.data_dir),
                    "--azure-config-dir", str(config), "--output", str(script)], check=True)
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o600
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    shown = subprocess.run(["bash", "-c", f"source {script} >/dev/null && az account show -o json"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tenantId"] == server.tenant
