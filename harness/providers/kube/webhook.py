"""An Alertmanager webhook receiver inside the platform's cluster (capability
'alerting-webhook' on every cluster provider).

A cluster's pods cannot reach a receiver on the harness's machine (a cloud's
nodes have no route to it; a kubeconfig's cluster may be anywhere), so the
receiver runs where the Alertmanager is: the gateway's own image (the same
web server, pinned by its shape) as a StatefulSet and a ClusterIP Service,
``stackproof-webhook``, in the platform's namespace. It answers every
``POST /hook/<tenant>`` 200 and writes one access-log line per request to its
stdout: the arrival time (the server's clock, ``$msec``), the path and the
body, JSON-escaped. The body is read into memory (a pass to a second,
loopback-only server of the same process) so that the log line has it.

The harness reads what arrived through the Kubernetes API (the pod's log),
never through a port of the cluster: :class:`ClusterReceiver` is the run's
:class:`~harness.webhook.Receiver` on this machine's loopback (what the suites'
workers read, unchanged), fed from those log lines whenever it is asked, and
it tells the Alertmanagers the in-cluster address (:meth:`ClusterReceiver.url`).
A line whose body is not an Alertmanager payload counts as a bad body, as the
local receiver counts one. Alert payloads carry no token; the log holds nothing
secret.
"""

from __future__ import annotations

import json
import threading
from typing import Callable

from ...components import GATEWAY, by_role
from ...errors import StackproofError
from ...webhook import Receiver
from .manifests import SERVICE_ACCOUNT

NAME = "stackproof-webhook"
PORT = 8080
CONTAINER = "receiver"
_BACKEND_PORT = 8081  # loopback only: answers the pass that makes the body readable in the log
CONF_FILE = "receiver.conf"
CONF_DIR = "/etc/stackproof-webhook"


def receiver_conf(listen: str = "0.0.0.0", port: int = PORT, backend_port: int = _BACKEND_PORT,
                  tmp: str = "/tmp") -> str:
    """The web server's configuration: each hook request logged (time, path, body) to stdout.
    The defaults are the pod's; a test runs the same file on loopback ports of its own."""
    return f"""# stackproof's in-cluster webhook receiver; generated, do not edit
worker_processes 1;
pid {tmp}/receiver.pid;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server_tokens off;
    access_log off;
    log_format hook escape=json '{{"at":$msec,"method":"$request_method","uri":"$uri","body":"$request_body"}}';
    server {{
        listen {listen}:{port};
        client_max_body_size 4m;
        client_body_buffer_size 4m;
        client_body_in_single_buffer on;
        location = /healthz {{ return 200 "ok\\n"; }}
        location ~ ^/hook/[^/]+$ {{
            access_log /dev/stdout hook;
            proxy_pass http://127.0.0.1:{backend_port};
        }}
        location / {{ return 404 "POST /hook/<tenant>\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{backend_port};
        location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
    }}
}}
"""


def receiver_manifests(m) -> list[dict]:
    """Its ConfigMap, Service and StatefulSet in the namespace of ``m`` (a
    :class:`~harness.providers.kube.PlatformManifests`), on the gateway's image."""
    shape = by_role(GATEWAY).cluster
    assert shape is not None
    conf = f"{CONF_DIR}/{CONF_FILE}"
    sel = m.selector(NAME)
    container = {
        "name": CONTAINER, "image": m.image(shape.image_for(None)), "imagePullPolicy": "IfNotPresent",
        "command": [shape.binary, "-e", "stderr", "-c", conf, "-g", "daemon off;"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "volumeMounts": [{"name": "config", "mountPath": CONF_DIR, "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2,
                           "timeoutSeconds": 3, "failureThreshold": 3}}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": m._meta(f"{NAME}-config", NAME),
         "data": {CONF_FILE: receiver_conf()}},
        {"apiVersion": "v1", "kind": "Service", "metadata": m._meta(NAME, NAME),
         "spec": {"type": "ClusterIP", "selector": sel,
                  "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": m._meta(NAME, NAME), "spec": {
            "serviceName": NAME, "replicas": 1, "selector": {"matchLabels": sel},
            "template": {"metadata": {"labels": sel}, "spec": {
                "containers": [container], "serviceAccountName": SERVICE_ACCOUNT,
                "automountServiceAccountToken": False, "enableServiceLinks": False,
                "terminationGracePeriodSeconds": 5,
                "volumes": [{"name": "config", "configMap": {"name": f"{NAME}-config"}}]}}}},
    ]


def parse_line(line: str) -> tuple[str, float, object] | None:
    """(tenant, arrival time, payload or None for a body that is no JSON) of one log line
    of a hook request; None for any other line. A log line may start with the API's
    timestamp (``timestamps=true``): everything before the first '{' is dropped."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        rec = json.loads(line[start:])
        parts = rec["uri"].strip("/").split("/")
        at = float(rec["at"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if rec.get("method") != "POST" or len(parts) != 2 or parts[0] != "hook":
        return None
    try:
        payload = json.loads(rec.get("body") or "")
    except ValueError:
        payload = None
    return parts[1], at, payload


class ClusterReceiver(Receiver):
    """The run's receiver for a platform in a cluster: deploys the in-cluster receiver
    into the deployer's namespace on :meth:`start`, serves what arrived on loopback (as
    :class:`~harness.webhook.Receiver` does), read from the receiver pod's log. Its
    objects go with the namespace. ``deployer_of`` gives the platform's deployer, asked
    anew each time (a cloud's token expires during a long run)."""

    def __init__(self, deployer_of: Callable[[], object], host: str = "127.0.0.1", timeout: float = 300):
        super().__init__(host=host)
        self.deployer_of = deployer_of
        self.timeout = timeout
        self._namespace = deployer_of().namespace
        self._lines_done = 0
        self._sync_lock = threading.Lock()

    @property
    def hook_base(self) -> str:
        """Where the Alertmanagers send (:meth:`url`): the in-cluster receiver."""
        return f"http://{NAME}.{self._namespace}.svc:{PORT}"

    def start(self) -> "ClusterReceiver":
        d = self.deployer_of()
        for manifest in receiver_manifests(d):
            d.api.apply(manifest)
        secs = d.wait_rollout(NAME, self.timeout)
        d.say(f"webhook receiver {NAME} rolled out in namespace {d.namespace} after {secs:.1f}s")
        return super().start()

    def _log(self) -> str:
        d = self.deployer_of()
        _, data = d.api.request("GET", f"/api/v1/namespaces/{d.namespace}/pods/{NAME}-0/log",
                                query={"container": CONTAINER}, timeout=30)
        return data.decode(errors="replace")

    def sync(self) -> None:
        """Record the hook requests logged since the last sync, in order."""
        with self._sync_lock:
            try:
                lines = self._log().splitlines()
            except StackproofError:
                return  # the pod restarts, or the API is slow: the next ask reads on
            if len(lines) < self._lines_done:  # a restarted container: its log starts anew
                self._lines_done = 0
            for line in lines[self._lines_done:]:
                hit = parse_line(line)
                if hit is None:
                    continue
                tenant, at, payload = hit
                if isinstance(payload, dict) and isinstance(payload.get("alerts"), list):
                    self._record(tenant, at, payload)
                else:
                    with self._lock:
                        self.bad[tenant] = self.bad.get(tenant, 0) + 1
            self._lines_done = len(lines)

    def notifications(self, tenant: str | None = None, test: str | None = None) -> list[dict]:
        self.sync()
        return super().notifications(tenant, test)

    def stats(self) -> dict:
        self.sync()
        return super().stats()
