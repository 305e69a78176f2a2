"""An exporter a real Prometheus scrapes: one histogram, classic and native at
once, served in the protobuf exposition format (the only one in which the
pinned Prometheus releases read native histograms), from observations the
caller gives. The numbers it serves are computed here from the observations, so
a test knows every bucket the sender must deliver.

Native buckets use schema 0: bucket ``i`` holds (2^(i-1), 2^i]; a zero
observation goes to the zero bucket. Classic buckets are cumulative up to each
upper bound, +Inf last."""

from __future__ import annotations

import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

from . import proto
from .clients.metrics import deltas, spans

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
HISTOGRAM = 4  # io.prometheus.client.MetricType


def native_index(v: float) -> int:
    """The schema-0 bucket of ``v`` > 0: the i with 2^(i-1) < v <= 2^i, exactly (frexp, no log)."""
    m, e = math.frexp(v)  # v = m * 2^e, 0.5 <= m < 1
    return e - 1 if m == 0.5 else e


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class HistogramExporter:
    """Serves ``name{labels}`` on ``http://<host>:<port>/metrics`` until :meth:`close`, at a port
    the kernel picks. ``host``: loopback for an agent on this machine; for one in a pod, the
    address of this machine the pods reach (a target's ``agent_scrape_host``: on local-kube the
    host's end of the node's veth, whose guard lets a pod reach only the kernel's ephemeral ports)."""

    def __init__(self, name: str, labels: dict[str, str], observations: Sequence[float],
                 classic_bounds: Sequence[float], host: str = "127.0.0.1"):
        if any(v < 0 for v in observations):
            raise ValueError("this exporter serves non-negative observations only")
        self.name, self.labels = name, dict(labels)
        self.observations = list(observations)
        self.bounds = sorted(classic_bounds)
        body = self.encode()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet: the test reports what matters
                pass

        self.scrapes = 0
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="histogram-exporter", daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    # what is served, and so what the sender must deliver ------------------------------
    @property
    def count(self) -> int:
        return len(self.observations)

    @property
    def sum(self) -> float:
        return math.fsum(self.observations)

    def classic(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count), +Inf last."""
        return [(b, sum(1 for v in self.observations if v <= b)) for b in self.bounds] + [(math.inf, self.count)]

    def native(self) -> tuple[int, dict[int, int]]:
        """(zero count, {schema-0 bucket index: count})."""
        buckets: dict[int, int] = {}
        for v in self.observations:
            if v > 0:
                buckets[native_index(v)] = buckets.get(native_index(v), 0) + 1
        return sum(1 for v in self.observations if v == 0), buckets

    def encode(self) -> bytes:
        mf = proto.MetricFamily(name=self.name, help="stackproof's histogram, classic and native", type=HISTOGRAM)
        m = mf.metric.add()
        for k in sorted(self.labels):
            m.label.add(name=k, value=self.labels[k])
        h = m.histogram
        h.sample_count, h.sample_sum = self.count, self.sum
        for b, c in self.classic()[:-1]:  # +Inf is the count
            h.bucket.add(upper_bound=b, cumulative_count=c)
        zero, buckets = self.native()
        h.schema, h.zero_threshold, h.zero_count = 0, 0.0, zero
        runs, counts = spans(buckets)
        for off, n in runs:
            h.positive_span.add(offset=off, length=n)
        h.positive_delta.extend(deltas(counts))
        data = mf.SerializeToString()
        return _varint(len(data)) + data

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "HistogramExporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
