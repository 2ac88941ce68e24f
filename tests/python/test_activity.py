"""The activity log through `az monitor activity-log list`, and event subscriptions through
`az eventgrid event-subscription create`, against a receiver in this test (a small HTTPS server
with its own CA, which the server trusts through --event-ca)."""

import datetime
import hashlib
import hmac
import http.server
import json
import ssl
import tempfile
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import SUBSCRIPTION, AzCli, Server

GROUP = "activity-rg"
CLUSTER = "activity-cluster"
CLUSTER_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerService/managedClusters/{CLUSTER}"


def make_tls(directory):
    """A CA and a certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "ca.pem"


class Receiver:
    """Answers the CloudEvents validation handshake and records each delivery."""

    def __init__(self, directory):
        self.events = []
        self.handshakes = 0
        received = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_OPTIONS(self):
                received.handshakes += 1
                self.send_response(200)
                self.send_header("WebHook-Allowed-Origin", self.headers["WebHook-Request-Origin"])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.events.append((self.headers["kubeinvoke-signature"], body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("receiver")
    ca = make_tls(directory)
    receiver = Receiver(directory)
    with tempfile.TemporaryDirectory() as root:
        srv = Server(root, ["--event-ca", str(ca), "--event-allow-private-networks"])
        az = AzCli(srv, tmp_path_factory.mktemp("activity-az"))
        az.login(srv.admin)
        az.run("group", "create", "-n", GROUP, "-l", "westeurope", "-o", "none")
        srv.put(f"{CLUSTER_ID}?api-version=2024-09-01", {"location": "westeurope", "properties": {}})
        try:
            yield srv, az, receiver
        finally:
            srv.stop()


def wait_for(what, check, seconds=20):
    deadline = time.time() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def command_id(output):
    return json.loads(output)["id"]


def test_az_monitor_lists_a_commands_events_with_its_caller(setup):
    server, az, _ = setup
    result = az.run("aks", "command", "invoke", "-g", GROUP, "-n", CLUSTER, "--command", "echo audited", "-o", "json")
    cid = command_id(result.stdout)
    def events_of_command():
        found = json.loads(az.run("monitor", "activity-log", "list", "--correlation-id", cid, "--offset", "1h",
                                  "-o", "json").stdout)
        return found if len(found) == 3 else None

    listed = wait_for("the command's three events", events_of_command)
    assert [e["status"]["value"] for e in listed] == ["Succeeded", "Started", "Accepted"], listed
    for event in listed:
        assert event["caller"] == server.admin["appId"], event
        assert event["operationName"]["value"] == "Microsoft.ContainerService/managedClusters/runcommand/action"
        assert event["resourceId"] == CLUSTER_ID and event["resourceGroupName"] == GROUP
    assert listed[0]["properties"]["exitCode"] == "0"
    # The group filter and the caller filter find them; another group does not.
    in_group = json.loads(az.run("monitor", "activity-log", "list", "--resource-group", GROUP, "--offset", "1h",
                                 "-o", "json").stdout)
    assert {e["eventDataId"] for e in listed} <= {e["eventDataId"] for e in in_group}
    by_caller = json.loads(az.run("monitor", "activity-log", "list", "--caller", server.admin["appId"],
                                  "--offset", "1h", "-o", "json").stdout)
    assert {e["eventDataId"] for e in listed} <= {e["eventDataId"] for e in by_caller}
    elsewhere = json.loads(az.run("monitor", "activity-log", "list", "--resource-group", "nowhere", "--offset", "1h",
                                  "-o", "json").stdout)
    assert elsewhere == []
    # A start time after the command leaves it out.
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    after = json.loads(az.run("monitor", "activity-log", "list", "--correlation-id", cid, "--start-time", later,
                              "-o", "json").stdout)
    assert after == []


def test_az_eventgrid_subscription_delivers_signed_cloud_events(setup):
    server, az, receiver = setup
    az.run("eventgrid", "event-subscription", "create", "--name", "finished-only", "--source-resource-id", CLUSTER_ID,
           "--endpoint", receiver.url, "--event-delivery-schema", "cloudeventschemav1_0",
           "--included-event-types", "Microsoft.ContainerService.CommandFinished", "-o", "none")
    assert receiver.handshakes >= 1, "the endpoint was validated before any delivery"
    shown = json.loads(az.run("eventgrid", "event-subscription", "show", "--name", "finished-only",
                              "--source-resource-id", CLUSTER_ID, "-o", "json").stdout)
    assert shown["provisioningState"] == "Succeeded" and shown["eventDeliverySchema"] == "CloudEventSchemaV1_0", shown
    attributes = json.loads(az.run("rest", "--method", "post", "--url",
                                   f"{CLUSTER_ID}/providers/Microsoft.EventGrid/eventSubscriptions/finished-only/getDeliveryAttributes?api-version=2022-06-15",
                                   "-o", "json").stdout)
    key = attributes["value"][0]["properties"]["value"]

    result = az.run("aks", "command", "invoke", "-g", GROUP, "-n", CLUSTER, "--command", "exit 3", "-o", "json")
    cid = command_id(result.stdout)
    signature, body = wait_for("the delivery", lambda: next(
        ((s, b) for s, b in receiver.events if json.loads(b)["data"]["commandId"] == cid), None))
    event = json.loads(body)
    assert event["specversion"] == "1.0" and event["type"] == "Microsoft.ContainerService.CommandFinished"
    assert event["data"]["exitCode"] == 3 and event["data"]["state"] == "Succeeded" and event["source"] == CLUSTER_ID
    assert "exit 3" not in body.decode(), "the command text is not in the event"
    stamp, mac = dict(part.split("=", 1) for part in signature.split(",")).values()
    expected = hmac.new(key.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected), "the signature checks out with the subscription's key"
    # Only the included type arrived, once.
    time.sleep(1.5)
    mine = [json.loads(b) for _, b in receiver.events if json.loads(b)["data"]["commandId"] == cid]
    assert [e["type"] for e in mine] == ["Microsoft.ContainerService.CommandFinished"], mine
    az.run("eventgrid", "event-subscription", "delete", "--name", "finished-only", "--source-resource-id", CLUSTER_ID)
