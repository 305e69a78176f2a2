"""The in-cluster webhook receiver (capability 'alerting-webhook' on every cluster
provider): its web server's configuration, run for real by this machine's nginx on
loopback ports, logs each Alertmanager notification (time, tenant path, body) to
stdout; the run's receiver on loopback reads those lines (in a cluster: the pod's
log through the API) and serves them to the suites' workers exactly as the local
receiver does, the in-cluster address included. A broken receiver (one whose log
loses the body) turns into bad bodies and no notification, so the alerting
fixture's probe goes red rather than passing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from harness.ports import free_ports
from harness.providers.kube.webhook import ClusterReceiver, parse_line, receiver_conf, receiver_manifests
from harness.webhook import Receiver, ReceiverClient

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PAYLOAD = {"version": "4", "status": "firing", "receiver": "r", "groupKey": "{}:{alertname=\"A\"}",
           "groupLabels": {"alertname": "A"}, "commonLabels": {"alertname": "A", "test": "t1"},
           "alerts": [{"status": "firing", "labels": {"alertname": "A", "test": "t1"},
                       "annotations": {"summary": "a \"quoted\" line\nand a second"},
                       "startsAt": "2026-12-04T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"}]}


class _Namespace:
    namespace = "sp-test"


class LogFile(ClusterReceiver):
    """The receiver as a run uses it, with the pod's log read from a file (the server's stdout)."""

    def __init__(self, log: Path):
        super().__init__(lambda: _Namespace())
        self.log = log

    def start(self):
        return Receiver.start(self)  # nothing to deploy: the server runs here

    def _log(self) -> str:
        return self.log.read_text()


@pytest.fixture
def server(tmp_path):
    """nginx with the receiver's configuration (or a broken one) on loopback; its stdout in a file."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (apt-get install nginx): the gateway needs it too", pytrace=False)
    procs = []

    def run(mangle=lambda text: text) -> tuple[int, Path]:
        port, backend = free_ports(2)
        tmp = tmp_path / f"run{len(procs)}"
        tmp.mkdir()
        conf = tmp / "receiver.conf"
        text = receiver_conf(listen="127.0.0.1", port=port, backend_port=backend, tmp=str(tmp))
        # workers as root when the harness is (the gateway does the same locally)
        conf.write_text(("user root root;\n" if os.geteuid() == 0 else "") + mangle(text))
        out = tmp / "stdout.log"
        procs.append(subprocess.Popen([NGINX, "-e", str(tmp / "error.log"), "-p", str(tmp), "-c", str(conf),
                                       "-g", "daemon off;"], stdout=out.open("w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return port, out
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"the receiver did not start: {(tmp / 'error.log').read_text()[-500:]}")

    yield run
    for p in procs:
        p.terminate()
        p.wait(10)


def _post(port: int, tenant: str, body: bytes) -> int:
    return requests.post(f"http://127.0.0.1:{port}/hook/{tenant}", data=body,
                         headers={"Content-Type": "application/json"}, timeout=5).status_code


def test_notifications_logged_by_the_receiver_are_what_the_workers_read(server):
    port, out = server()
    t0 = time.time()
    assert _post(port, "tenant-a", json.dumps(PAYLOAD).encode()) == 200
    assert _post(port, "tenant-b", b"not json at all") == 200  # answered; counted as a bad body
    assert requests.get(f"http://127.0.0.1:{port}/anything", timeout=5).status_code == 404
    time.sleep(0.2)  # the access log line is written when the request ends
    rec = LogFile(out).start()
    try:
        client = ReceiverClient(rec.base_url, ReceiverClient.hook_base_of(rec.base_url))
        # the Alertmanagers send to the in-cluster Service, the workers read here
        assert client.url("tenant-a") == "http://stackproof-webhook.sp-test.svc:8080/hook/tenant-a"
        got = client.notifications("tenant-a", "t1")
        assert len(got) == 1
        n = got[0]
        assert n["alerts"] == [{k: PAYLOAD["alerts"][0][k] for k in ("status", "labels", "annotations", "startsAt",
                                                                      "endsAt", "fingerprint")}]
        assert (n["status"], n["groupKey"], n["commonLabels"]) == ("firing", PAYLOAD["groupKey"],
                                                                   PAYLOAD["commonLabels"])
        assert t0 - 1 <= n["received_at"] <= time.time() + 1
        assert client.notifications("tenant-b") == []
        assert client.stats() == {"tenant-a": {"received": 1, "bad": 0}, "tenant-b": {"received": 0, "bad": 1}}
        # read again: nothing counted twice
        assert len(client.notifications("tenant-a")) == 1
    finally:
        rec.stop()


def test_a_receiver_whose_log_loses_the_body_records_no_notification(server):
    """The stand-in: the same server without the pass that reads the body into memory, so
    its log has an empty body. Nothing is taken for a notification: the probe would fail."""
    port, out = server(lambda text: re.sub(r"proxy_pass [^;]+;", "return 200 '{\"ok\":true}';", text))
    assert _post(port, "tenant-a", json.dumps(PAYLOAD).encode()) == 200
    time.sleep(0.2)
    rec = LogFile(out).start()
    try:
        client = ReceiverClient(rec.base_url, ReceiverClient.hook_base_of(rec.base_url))
        assert client.notifications("tenant-a") == []
        assert client.stats() == {"tenant-a": {"received": 0, "bad": 1}}
    finally:
        rec.stop()


def test_log_lines_parse_with_and_without_the_apis_timestamp():
    line = json.dumps({"at": 1733300000.123, "method": "POST", "uri": "/hook/tenant-a", "body": '{"alerts": []}'})
    assert parse_line(line) == ("tenant-a", 1733300000.123, {"alerts": []})
    assert parse_line("2026-12-04T00:00:00.000000001Z " + line) == ("tenant-a", 1733300000.123, {"alerts": []})
    for other in ("", "nginx: [warn] something", json.dumps({"at": 1, "method": "GET", "uri": "/hook/a"}),
                  json.dumps({"at": 1, "method": "POST", "uri": "/other/a", "body": "{}"})):
        assert parse_line(other) is None, other


def test_the_receiver_runs_on_the_gateways_image_and_names_no_component():
    from harness.providers.kube import KubeDeployer
    d = KubeDeployer({"clusters": []}, "sp-test", images={"nginx:1.28.0": "localhost/stackproof/nginx:1"})
    cm, svc, sts = receiver_manifests(d)
    assert (cm["kind"], svc["kind"], sts["kind"]) == ("ConfigMap", "Service", "StatefulSet")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "localhost/stackproof/nginx:1"  # the image map applies, as to every container
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 8080
    assert sts["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"] == sts["spec"]["template"][
        "metadata"]["labels"]
