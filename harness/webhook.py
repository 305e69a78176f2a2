"""A real webhook receiver for Alertmanager notifications, on loopback.

One per run: the pytest plugin starts it in the controller process (or the only
process), every xdist worker reads it over HTTP. Each tenant's Alertmanager sends to
its own path (``/hook/<tenant>``), so a notification that reaches the wrong tenant's
path is caught; a test finds its own notifications by the ``test`` label its rules
put on every alert. Every notification is recorded with its arrival time (the
receiver's clock, ``time.time()``), nothing is dropped, and a body that is not an
Alertmanager webhook payload is answered 400 and counted.

    POST /hook/<tenant>                 an Alertmanager webhook (version 4 payload)
    GET  /notifications?tenant=&test=   what arrived (for ``test``: only its alerts)
    GET  /stats                         per tenant: received, bad bodies
    GET  /hook-base                     where the Alertmanagers send (``hook_base``)

A receiver the platform cannot reach on this machine (a cluster's pods) is fed
from elsewhere by a subclass (``harness.providers.kube.webhook.ClusterReceiver``):
it says where the Alertmanagers send (``hook_base``), and workers learn it from
``/hook-base``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self.records: list[dict] = []
        self.bad: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # no stderr line per request
                pass

            def _send(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                at = time.time()
                parts = urlsplit(self.path).path.strip("/").split("/")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if len(parts) != 2 or parts[0] != "hook":
                    return self._send(404, {"error": "POST /hook/<tenant>"})
                try:
                    payload = json.loads(body)
                    assert isinstance(payload, dict) and isinstance(payload.get("alerts"), list)
                except (ValueError, AssertionError):
                    with receiver._lock:
                        receiver.bad[parts[1]] = receiver.bad.get(parts[1], 0) + 1
                    return self._send(400, {"error": "not an Alertmanager webhook payload"})
                receiver._record(parts[1], at, payload)
                self._send(200, {"ok": True})

            def do_GET(self):
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/notifications":
                    return self._send(200, receiver.notifications(q.get("tenant"), q.get("test")))
                if url.path == "/stats":
                    return self._send(200, receiver.stats())
                if url.path == "/hook-base":
                    return self._send(200, {"hook_base": receiver.hook_base})
                self._send(404, {"error": "GET /notifications or /stats"})

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, tenant: str) -> str:
        """Where ``tenant``'s Alertmanager sends."""
        return f"{self.hook_base}/hook/{tenant}"

    @property
    def hook_base(self) -> str:
        """The base of :meth:`url`, as the platform reaches it: here, this server."""
        return self.base_url

    def start(self) -> "Receiver":
        self._thread = threading.Thread(target=self.server.serve_forever, name="stackproof-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, tenant: str, at: float, payload: dict) -> None:
        with self._lock:
            self.records.append({"tenant": tenant, "received_at": at, "status": payload.get("status"),
                                 "receiver": payload.get("receiver"), "groupKey": payload.get("groupKey"),
                                 "groupLabels": payload.get("groupLabels") or {},
                                 "commonLabels": payload.get("commonLabels") or {},
                                 "alerts": [{k: a.get(k) for k in ("status", "labels", "annotations", "startsAt",
                                                                   "endsAt", "fingerprint")}
                                            for a in payload["alerts"]]})

    def notifications(self, tenant: str | None = None, test: str | None = None) -> list[dict]:
        """What arrived, in order; for ``test``, each notification with only that test's alerts."""
        out = []
        with self._lock:
            for rec in self.records:
                if tenant and rec["tenant"] != tenant:
                    continue
                alerts = [a for a in rec["alerts"] if test is None or (a["labels"] or {}).get("test") == test]
                if alerts:
                    out.append({**rec, "alerts": alerts})
        return out

    def stats(self) -> dict:
        with self._lock:
            tenants = sorted({r["tenant"] for r in self.records} | set(self.bad))
            return {t: {"received": sum(1 for r in self.records if r["tenant"] == t), "bad": self.bad.get(t, 0)}
                    for t in tenants}


class ReceiverClient:
    """A worker's view of the run's receiver; ``hook_base``: where the platform sends, when
    not the receiver itself (see :meth:`hook_base_of`)."""

    def __init__(self, base_url: str, hook_base: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.hook_base = (hook_base or self.base_url).rstrip("/")

    @staticmethod
    def hook_base_of(base_url: str) -> str:
        """Where the Alertmanagers send, as the receiver at ``base_url`` says."""
        r = requests.get(f"{base_url.rstrip('/')}/hook-base", timeout=10)
        r.raise_for_status()
        return r.json()["hook_base"]

    def url(self, tenant: str) -> str:
        return f"{self.hook_base}/hook/{tenant}"

    def notifications(self, tenant: str | None = None, test: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("tenant", tenant), ("test", test)) if v}
        r = requests.get(f"{self.base_url}/notifications", params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def stats(self) -> dict:
        r = requests.get(f"{self.base_url}/stats", timeout=10)
        r.raise_for_status()
        return r.json()
