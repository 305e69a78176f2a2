"""locust users for the write path: Prometheus remote write and logs push (the
Loki push protocol, snappy protobuf, to the target's ``logs_push_path``, which
VictoriaLogs and Loki both accept), through the gateway, with each tenant's
token and the platform CA.

Every user sends fast payloads (encoded once, patched per request), fires
locust's request events through FastHttpUser (geventhttpclient), and counts
what the platform answered so that a run can be checked for silent loss:

- accepted: a 2xx answer, so every item of the request must be stored;
- refused:  401, 403, 413 or 429, answered before anything is stored;
- unsure:   anything else (a 400 may have stored the valid part, a 5xx or a
            broken connection may have stored all of it), and a request cut
            off in flight when the run ends, so a check allows
            ``accepted <= stored <= accepted + unsure``.

The classes declared here are abstract. :func:`user_classes` builds the
concrete ones of one workload against one target, once, before locust starts
them: host, wait time, weight, target and workload are class attributes, as
in locust's examples, and the classes share one :class:`Tally` of what they
counted. The locustfiles (``loadgen.locustfiles``) build them from their
environment, in the locust processes ``stackproof load`` and ``suites/load``
start (never in pytest's own: locust patches its process for gevent).
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from locust import FastHttpUser, constant_throughput, task
from locust.exception import StopUser

from harness.clients.logs import encode_push_proto
from harness.clients.metrics import REMOTE_WRITE_HEADERS
from harness.load import REQUEST_NAMES, write_counts, zero_counts
from harness.target import Target
from harness.workload import Workload

from .payloads import MetricsPayload

REFUSED = frozenset({401, 403, 413, 429})


@dataclass
class Tally:
    """What the users of one process sent, and what the platform answered, per signal."""

    counts: dict = field(default_factory=zero_counts)
    sent: int = 0
    ids: Iterator[int] = field(default_factory=itertools.count)  # user numbers, from 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, counts_dir: Path) -> Path:
        """Leave the counts in ``counts_dir`` for the completeness check (one file per process)."""
        with self.lock:
            return write_counts(counts_dir, self.counts)


def user_classes(target: Target, workload: Workload, tally: Tally) -> list[type[StackproofUser]]:
    """The concrete user classes of ``workload`` against ``target``, one per signal, counting into ``tally``."""
    common = {"abstract": False, "host": target.gateway_url, "wait_time": constant_throughput(workload.rate),
              "ssl_context_factory": staticmethod(functools.partial(_ssl_context, target.ca_file)),
              "target": target, "workload": workload, "tally": tally}
    kinds = {"metrics": (RemoteWriteUser, workload.metrics_weight), "logs": (LogsPushUser, workload.logs_weight)}
    return [type(base.__name__, (base,), {**common, "weight": weight, "__module__": __name__})
            for base, weight in (kinds[sig] for sig in workload.signals)]


class _NoDelayContext(ssl.SSLContext):
    """Client TLS that turns Nagle off on each connection before the handshake.

    TLS cuts a body above 16 KiB into several records, written one after
    another; with Nagle on, the last small segment waits for the server's
    delayed ACK, about 40 ms on Linux (measured: a 20 KiB logs push took a
    47 ms median through geventhttpclient and 2 ms through requests, which
    sets TCP_NODELAY). geventhttpclient leaves Nagle on; its SSL pool calls
    the context's ``wrap_socket``, the one place we own."""

    def wrap_socket(self, sock, *args, **kwargs):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().wrap_socket(sock, *args, **kwargs)


def _ssl_context(ca_file: str | None, cafile=None) -> ssl.SSLContext:
    """The context geventhttpclient asks for (``cafile``: its own option, unused): trust the target's CA."""
    ctx = _NoDelayContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname check and CERT_REQUIRED, as the default context
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.load_default_certs()
    return ctx


def _label_values(i: int, n: int, cardinality: int) -> dict[str, str]:
    """``n`` extra labels, the j-th taking ``cardinality`` values as series i goes up."""
    return {f"l{j}": f"v{(i // cardinality ** j) % cardinality}" for j in range(n)}


class StackproofUser(FastHttpUser):
    abstract = True
    insecure = False
    signal = ""
    name = ""
    # set on the concrete classes by user_classes()
    target: Target
    workload: Workload
    tally: Tally

    def on_start(self) -> None:
        w = self.workload
        tenants = w.tenants_in(self.target)
        self.uid = next(self.tally.ids)
        self.tenant = tenants[self.uid % len(tenants)]  # users spread evenly across the tenants
        self.headers = {"Authorization": f"Bearer {self.tenant.token}"}
        # forked workers start from the same counter: the pid keeps their series apart
        self.ident = {"run": w.run_id, "p": str(os.getpid()), "u": str(self.uid)}

    def send(self, body: bytes, items: int, headers: dict) -> None:
        tally = self.tally
        with tally.lock:
            if tally.sent >= self.workload.max_requests:
                raise StopUser()  # the per-process request bound
            tally.sent += 1
            # unsure until answered: a request the run's end cuts off in flight (the user
            # stopped from the dashboards) may still be stored, and must not count as extra
            tally.counts[self.signal]["unsure"] += items
        with self.client.post(self.path, data=body, name=self.name, headers={**headers, **self.headers},
                              catch_response=True) as resp:
            code = resp.status_code or 0
            with tally.lock:
                c = tally.counts[self.signal]
                c["requests"] += 1
                if 200 <= code < 300:
                    c["unsure"] -= items
                    c["accepted"] += items
                elif code in REFUSED:
                    c["unsure"] -= items
                    c["refused"] += items
            if not 200 <= code < 300:
                text = (resp.text or "")[:160] if code else str(resp.error)[:160]
                resp.failure(f"HTTP {code}: {text.strip()}")


class RemoteWriteUser(StackproofUser):
    abstract = True
    signal = "metrics"
    name = REQUEST_NAMES[signal]

    def on_start(self) -> None:
        super().on_start()
        self.path = self.target.metrics_write_path
        w = self.workload
        self.gen = np.zeros(w.series, dtype=np.int64)  # churn: a series' generation is one of its labels
        self.churn_cursor = 0
        self.next_churn = time.monotonic() + w.churn_interval
        self._build()
        self.last_ts = 0

    def _build(self) -> None:
        w = self.workload
        self.payload = MetricsPayload(
            [{"__name__": w.metric, **self.ident, "s": str(i), "g": str(self.gen[i]),
              **_label_values(i, w.labels, w.cardinality)} for i in range(w.series)], w.samples)
        self.values = np.zeros(self.payload.samples)

    def _churn(self) -> None:
        w = self.workload
        n = max(1, round(w.series * w.churn))
        idx = (self.churn_cursor + np.arange(n)) % w.series
        self.gen[idx] += 1
        self.churn_cursor = int((self.churn_cursor + n) % w.series)
        self._build()

    @task
    def remote_write(self) -> None:
        w = self.workload
        if w.churn and time.monotonic() >= self.next_churn:
            self.next_churn += w.churn_interval
            self._churn()
        step = max(1, int(w.scrape_interval * 1000))
        now = int(time.time() * 1000)
        # the newest sample at "now", earlier ones a scrape interval apart, and
        # every series strictly increasing from one request to the next
        t = max(now - (w.samples - 1) * step if w.scrape_interval else now, self.last_ts + 1)
        self.last_ts = t + (w.samples - 1) * step
        self.values += 1.0
        self.send(self.payload.next(t, self.values, step), self.payload.samples, REMOTE_WRITE_HEADERS)


class LogsPushUser(StackproofUser):
    abstract = True
    signal = "logs"
    name = REQUEST_NAMES[signal]
    FILLER = np.random.default_rng(7).integers(97, 123, 1 << 20, dtype=np.uint8).tobytes().decode()

    def on_start(self) -> None:
        super().on_start()
        self.path = self.target.logs_push_path
        w = self.workload
        self.stream_labels = [{**self.ident, "job": "stackproof-load", "stream": str(j),
                               **_label_values(j, w.stream_labels, w.cardinality)} for j in range(w.streams)]
        self.rng = np.random.default_rng(self.uid)
        self.length = w.length  # parsed once, not per push
        self.seq = 0
        self.last_ns = 0

    def _lengths(self, n: int) -> np.ndarray:
        d = self.length
        if d.kind == "fixed":
            out = np.full(n, d.a)
        elif d.kind == "uniform":
            out = self.rng.uniform(d.a, d.b, n)
        else:
            out = self.rng.lognormal(np.log(max(d.a, 1)), d.b, n)
        return np.clip(out, 1, len(self.FILLER) // 2).astype(np.int64)

    @task
    def push(self) -> None:
        w = self.workload
        t = max(time.time_ns(), self.last_ns + 1)
        lengths = self._lengths(w.lines)
        starts = self.rng.integers(0, len(self.FILLER) // 2, w.lines)
        per_stream: list[list] = [[] for _ in range(w.streams)]
        for i in range(w.lines):
            self.seq += 1
            head = f"seq={self.seq} "
            n = max(0, int(lengths[i]) - len(head))
            per_stream[i % w.streams].append((t + i, head + self.FILLER[starts[i]:starts[i] + n]))
        self.last_ns = t + w.lines
        body = encode_push_proto([(labels, e) for labels, e in zip(self.stream_labels, per_stream) if e])
        self.send(body, w.lines, {"Content-Type": "application/x-protobuf"})
