"""locust users for the write path: Prometheus remote write and Loki push,
through the gateway, with each tenant's token and the platform CA.

Every user sends fast payloads (encoded once, patched per request), fires
locust's request events through FastHttpUser (geventhttpclient), and counts
what the platform acknowledged so that a run can be checked for silent loss.

Configure once per process with :func:`configure` (the locustfiles do it
from ``STACKPROOF_TARGET_FILE``; tests call it directly). Knobs (environment
or ``configure``): series per user, samples per series per request, log lines
per push, line length, requests per second per user.
"""

from __future__ import annotations

import itertools
import os
import ssl
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from locust import FastHttpUser, constant_throughput, task

from harness.clients.logs import encode_push_proto
from harness.clients.metrics import REMOTE_WRITE_HEADERS
from harness.target import Target

from .payloads import MetricsPayload


@dataclass
class LoadConfig:
    target: Target | None = None
    run_id: str = "load"
    series_per_user: int = int(os.environ.get("STACKPROOF_LOAD_SERIES", "500"))
    samples_per_series: int = int(os.environ.get("STACKPROOF_LOAD_SAMPLES", "1"))
    lines_per_push: int = int(os.environ.get("STACKPROOF_LOAD_LINES", "100"))
    line_bytes: int = int(os.environ.get("STACKPROOF_LOAD_LINE_BYTES", "200"))
    rps_per_user: float = float(os.environ.get("STACKPROOF_LOAD_RPS", "5"))
    accepted: dict = field(default_factory=lambda: {"metrics": 0, "logs": 0})
    refused: dict = field(default_factory=lambda: {"metrics": 0, "logs": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)


CONFIG = LoadConfig()
_user_ids = itertools.count()


def configure(target: Target, run_id: str, **knobs) -> LoadConfig:
    """Set the target and knobs for every user class of this process; resets the counters."""
    global CONFIG
    CONFIG = LoadConfig(target=target, run_id=run_id, **knobs)
    for cls in (RemoteWriteUser, LokiPushUser):
        cls.host = target.gateway_url
        cls.wait_time = constant_throughput(CONFIG.rps_per_user)
    return CONFIG


def _ssl_context():
    return ssl.create_default_context(cafile=CONFIG.target.ca_file) if CONFIG.target.ca_file else \
        ssl.create_default_context()


class StackproofUser(FastHttpUser):
    abstract = True
    insecure = False
    ssl_context_factory = staticmethod(_ssl_context)

    def on_start(self) -> None:
        users = CONFIG.target.user_tenants
        self.uid = next(_user_ids)
        self.tenant = users[self.uid % len(users)]  # weighted evenly across the user tenants
        self.headers = {"Authorization": f"Bearer {self.tenant.token}"}

    def _count(self, signal: str, resp, n: int) -> None:
        with CONFIG.lock:
            if 200 <= resp.status_code < 300:
                CONFIG.accepted[signal] += n
            else:
                CONFIG.refused[signal] += n


class RemoteWriteUser(StackproofUser):
    def on_start(self) -> None:
        super().on_start()
        c = CONFIG
        self.payload = MetricsPayload(
            [{"__name__": "stackproof_load", "run": c.run_id, "user": str(self.uid), "s": str(i)}
             for i in range(c.series_per_user)], c.samples_per_series)
        self.values = np.zeros(self.payload.samples)
        self.last_ts = 0

    @task
    def remote_write(self) -> None:
        k = CONFIG.samples_per_series
        t = max(int(time.time() * 1000), self.last_ts + 1)  # strictly increasing per series
        self.last_ts = t + k - 1
        self.values += 1.0
        body = self.payload.next(t, self.values)
        with self.client.post(CONFIG.target.metrics_write_path, data=body, name="remote write",
                              headers={**REMOTE_WRITE_HEADERS, **self.headers}, catch_response=True) as resp:
            self._count("metrics", resp, self.payload.samples)


class LokiPushUser(StackproofUser):
    def on_start(self) -> None:
        super().on_start()
        self.labels = {"run": CONFIG.run_id, "user": str(self.uid), "job": "stackproof-load"}
        self.filler = "x" * max(0, CONFIG.line_bytes - 40)
        self.seq = 0
        self.last_ns = 0

    @task
    def push(self) -> None:
        t = max(time.time_ns(), self.last_ns + 1)
        entries = []
        for i in range(CONFIG.lines_per_push):
            self.seq += 1
            entries.append((t + i, f"seq={self.seq} {self.filler}"))
        self.last_ns = t + CONFIG.lines_per_push
        body = encode_push_proto([(self.labels, entries)])
        with self.client.post(CONFIG.target.logs_push_path, data=body, name="loki push",
                              headers={"Content-Type": "application/x-protobuf", **self.headers},
                              catch_response=True) as resp:
            self._count("logs", resp, len(entries))
