"""Fixtures: a real `kubeinvoke serve` process and the real Azure SDK client pointed at it."""

import os
import pathlib
import subprocess
import tempfile
import threading
import time
import queue

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.mgmt.containerservice import ContainerServiceClient

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.environ.get("KUBEINVOKE_BIN", str(REPO / "target" / "debug" / "kubeinvoke"))
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


class AnyToken:
    """A credential that returns any token: kubeinvoke accepts any bearer until identity lands."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("any-token", int(time.time()) + 3600)


class Server:
    def __init__(self, root):
        self.data_dir = pathlib.Path(root) / "data"
        self.process = subprocess.Popen(
            [BINARY, "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=open(pathlib.Path(root) / "server.log", "wb"),
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

    def put(self, path, body):
        response = requests.put(
            f"{self.base}{path}",
            json=body,
            headers={"Authorization": "Bearer any"},
            verify=self.ca,
        )
        response.raise_for_status()

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory() as root:
        srv = Server(root)
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="session")
def client(server):
    # requests lets REQUESTS_CA_BUNDLE override a per-call verify: point it at our CA.
    os.environ["REQUESTS_CA_BUNDLE"] = server.ca
    return ContainerServiceClient(
        AnyToken(), SUBSCRIPTION, base_url=server.base, connection_verify=server.ca
    )
