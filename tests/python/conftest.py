"""Fixtures: a real `kubeinvoke serve` process, the real Azure SDK and the real az CLI."""

import json
import os
import pathlib
import queue
import shutil
import subprocess
import tempfile
import threading

import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.mgmt.containerservice import ContainerServiceClient

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("KUBEINVOKE_BIN", str(REPO / "target" / "debug" / "kubeinvoke"))
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


class Server:
    def __init__(self, root, extra=()):
        self.root = pathlib.Path(root)
        self.data_dir = self.root / "data"
        self.process = subprocess.Popen(
            [BINARY, "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
             "--subscription-id", SUBSCRIPTION, *extra],
            stdout=subprocess.PIPE,
            stderr=open(self.root / "server.log", "wb"),
            text=True,
        )
        found = queue.Queue()

        def drain():
            for line in self.process.stdout:
                if line.strip().startswith("listening on"):
                    found.put(line.split()[-1])

        threading.Thread(target=drain, daemon=True).start()
        self.base = found.get(timeout=30)
        self.ca = str(self.data_dir / "tls" / "ca.pem")
        self.admin = json.loads((self.data_dir / "bootstrap-admin.json").read_text())
        self.tenant = self.admin["tenant"]

    def token(self, creds=None, scope="https://management.azure.com/.default"):
        creds = creds or self.admin
        response = requests.post(
            f"{self.base}/{self.tenant}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": creds["appId"],
                  "client_secret": creds["password"], "scope": scope},
            verify=self.ca,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def put(self, path, body):
        response = requests.put(
            f"{self.base}{path}", json=body, headers={"Authorization": f"Bearer {self.token()}"}, verify=self.ca
        )
        assert response.ok, response.text
        return response.json()

    def sp_create(self, name, role=None, scope=None):
        args = [BINARY, "sp", "create", "--name", name, "--data-dir", str(self.data_dir)]
        if role:
            args += ["--role", role, "--scope", scope]
        return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)

    def stop(self):
        died = self.process.poll()
        self.process.kill()
        self.process.wait()
        if died is not None:
            log = (self.root / "server.log").read_text(errors="replace")
            raise AssertionError(f"the server exited during the tests (status {died}); its log ends:\n{log[-4000:]}")


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory() as root:
        srv = Server(root)
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="session")
def credential(server):
    # requests lets REQUESTS_CA_BUNDLE override a per-call verify: point it at our CA.
    os.environ["REQUESTS_CA_BUNDLE"] = server.ca
    return ClientSecretCredential(
        server.tenant,
        server.admin["appId"],
        server.admin["password"],
        authority=server.base,
        disable_instance_discovery=True,
        connection_verify=server.ca,
    )


@pytest.fixture(scope="session")
def client(server, credential):
    return ContainerServiceClient(credential, SUBSCRIPTION, base_url=server.base, connection_verify=server.ca)


class AzCli:
    """The real az CLI with its own config directory, pointed at the server."""

    def __init__(self, server, config_dir):
        self.server = server
        self.env = {
            **os.environ,
            "AZURE_CONFIG_DIR": str(config_dir),
            "REQUESTS_CA_BUNDLE": server.ca,
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_NO_COLOR": "true",
        }
        self.binary = shutil.which("az", path=str(REPO / ".venv" / "bin")) or shutil.which("az")
        assert self.binary, "the az CLI is not installed (scripts/test.sh installs it into .venv)"

    def run(self, *args, cwd=None, check=True):
        result = subprocess.run([self.binary, *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, f"az {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        return result

    def login(self, creds):
        self.run("config", "set", "core.instance_discovery=false", "--only-show-errors")
        # Endpoint discovery on: az reads the server's /metadata/endpoints.
        self.run("cloud", "register", "-n", "kubeinvoke", "--endpoint-resource-manager", f"{self.server.base}/",
                 "--endpoint-active-directory", self.server.base,
                 "--endpoint-active-directory-resource-id", "https://management.core.windows.net/",
                 "--only-show-errors")
        self.run("cloud", "set", "-n", "kubeinvoke", "--only-show-errors")
        result = self.run("login", "--service-principal", "-u", creds["appId"], f"--password={creds['password']}",
                          "--tenant", creds["tenant"], "-o", "json")
        return json.loads(result.stdout)


@pytest.fixture(scope="session")
def az(server, tmp_path_factory):
    cli = AzCli(server, tmp_path_factory.mktemp("azure-config"))
    cli.login(server.admin)
    return cli
