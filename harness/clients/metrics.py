"""Prometheus remote write (1.0 and 2.0) and PromQL, through the gateway, as one tenant."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import cramjam
import requests
from prometheus_api_client import PrometheusConnect

from .. import proto
from ..target import Target, Tenant
from .http import TenantHTTP

# Series: (labels including __name__, [(timestamp_ms, value), ...])
Series = tuple[Mapping[str, str], Sequence[tuple[int, float]]]

REMOTE_WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


REMOTE_READ_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                       "X-Prometheus-Remote-Read-Version": "0.1.0"}


def encode_read_request(matchers: Sequence[tuple[int, str, str]], start_ms: int, end_ms: int) -> bytes:
    """A Prometheus remote-read request of one query (matcher types 0 =, 1 !=, 2 =~, 3 !~),
    snappy block format."""
    req = proto.ReadRequest()
    q = req.queries.add(start_timestamp_ms=start_ms, end_timestamp_ms=end_ms)
    for kind, name, value in matchers:
        q.matchers.add(type=kind, name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def encode_write_request(series: Iterable[Series]) -> bytes:
    """A remote-write 1.0 body: protobuf ``WriteRequest``, snappy block format.
    Labels are sorted by name, as the spec requires."""
    req = proto.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for t_ms, v in samples:
            ts.samples.add(timestamp=int(t_ms), value=float(v))
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


# -- remote write 2.0 ------------------------------------------------------------------

REMOTE_WRITE_V2_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    "X-Prometheus-Remote-Write-Version": "2.0.0",
}
# what a 2.0 receiver says it stored, per kind (the spec's response headers)
WRITTEN_HEADERS = {"samples": "X-Prometheus-Remote-Write-Samples-Written",
                   "histograms": "X-Prometheus-Remote-Write-Histograms-Written",
                   "exemplars": "X-Prometheus-Remote-Write-Exemplars-Written"}
METRIC_TYPES = {"counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4, "summary": 5, "info": 6,
                "stateset": 7}
CUSTOM_BUCKETS_SCHEMA = -53  # a native histogram with explicit bucket bounds (custom_values)


@dataclass
class NativeHistogram:
    """One native histogram sample as written: exponential (``schema`` -4..8) with
    ``positive``/``negative`` {bucket index: count}, or with custom bucket bounds
    (schema -53, ``custom_values`` the upper bounds, indexes into them). Counts are
    integers, or floats for a float histogram."""

    t_ms: int
    schema: int
    sum: float
    positive: dict[int, float]
    negative: dict[int, float] = field(default_factory=dict)
    zero_count: float = 0
    zero_threshold: float = 0.0
    custom_values: list[float] = field(default_factory=list)

    @property
    def is_float(self) -> bool:
        return any(isinstance(c, float) for c in (*self.positive.values(), *self.negative.values(), self.zero_count))

    @property
    def count(self) -> float:
        return self.zero_count + sum(self.positive.values()) + sum(self.negative.values())

    def buckets(self) -> list[tuple]:
        """Every non-empty bucket, lowest first, in the form :func:`bucket_keys` gives a
        query API answer: exponential buckets by index (the bounds are the server's to
        compute; index i is (base^(i-1), base^i]), the zero bucket and custom buckets by bounds."""
        if self.schema == CUSTOM_BUCKETS_SCHEMA:
            bounds = [-math.inf, *self.custom_values, math.inf]
            return [("custom", bounds[i], bounds[i + 1], c) for i, c in sorted(self.positive.items()) if c]
        out = [("negative", i, c) for i, c in sorted(self.negative.items(), reverse=True) if c]
        if self.zero_count:
            out.append(("zero", self.zero_threshold, self.zero_count))
        return out + [("positive", i, c) for i, c in sorted(self.positive.items()) if c]


def bucket_keys(buckets: list[tuple[int, float, float, float]], schema: int) -> list[tuple]:
    """A query API's buckets (boundary rule, lower, upper, count) in the form of
    :meth:`NativeHistogram.buckets`: an exponential bucket's index recovered exactly
    from its upper bound (log2(bound) * 2^schema is a whole number), checked against
    its lower bound; a bucket whose bounds fit no index is kept as it came."""
    out = []
    for rule, lo, hi, c in buckets:
        if schema == CUSTOM_BUCKETS_SCHEMA:
            out.append(("custom", lo, hi, c))
        elif rule == 3 and lo == -hi:
            out.append(("zero", hi, c))
        else:
            side, edge, other = ("positive", hi, lo) if hi > 0 else ("negative", -lo, -hi)
            i = round(math.log2(edge) * 2.0 ** schema)
            if other <= 0 or round(math.log2(other) * 2.0 ** schema) != i - 1:
                out.append((side, "bounds", lo, hi, c))
            else:
                out.append((side, i, c))
    return out


def spans(buckets: dict[int, float]) -> tuple[list[tuple[int, int]], list[float]]:
    """(spans as (offset, length), counts in order) of the buckets by index: one span per run."""
    spans, counts, prev = [], [], None
    for i in sorted(buckets):
        if prev is not None and i == prev + 1:
            spans[-1] = (spans[-1][0], spans[-1][1] + 1)
        else:
            spans.append((i if prev is None else i - prev - 1, 1))
        counts.append(buckets[i])
        prev = i
    return spans, counts


def _fill_histogram(h, nh: NativeHistogram) -> None:
    h.timestamp, h.schema, h.sum, h.zero_threshold = nh.t_ms, nh.schema, nh.sum, nh.zero_threshold
    h.custom_values.extend(nh.custom_values)
    if nh.is_float:
        h.count_float, h.zero_count_float = float(nh.count), float(nh.zero_count)
    else:
        h.count_int, h.zero_count_int = int(nh.count), int(nh.zero_count)
    for side, buckets in (("positive", nh.positive), ("negative", nh.negative)):
        runs, counts = spans(buckets)
        for off, n in runs:
            getattr(h, f"{side}_spans").add(offset=off, length=n)
        if nh.is_float:
            getattr(h, f"{side}_counts").extend(float(c) for c in counts)
        else:  # integer histograms: each count as the delta from the one before
            getattr(h, f"{side}_deltas").extend(deltas(counts))


def deltas(counts: list) -> list[int]:
    """Integer bucket counts as the wire has them: each the difference from the one before."""
    return [int(c) - int(p) for c, p in zip(counts, [0, *counts[:-1]])]


@dataclass
class V2Series:
    """One series of a 2.0 request: labels (``__name__`` included), float samples
    (ms, value), native histograms, exemplars (labels, value, ms) and metadata."""

    labels: Mapping[str, str]
    samples: Sequence[tuple[int, float]] = ()
    histograms: Sequence[NativeHistogram] = ()
    exemplars: Sequence[tuple[Mapping[str, str], float, int]] = ()
    type: str | None = None
    help: str = ""
    unit: str = ""


def encode_write_request_v2(series: Iterable[V2Series]) -> bytes:
    """A remote-write 2.0 body: ``io.prometheus.write.v2.Request`` with its symbol
    table (symbol 0 is the empty string), snappy block format."""
    req = proto.V2Request(symbols=[""])
    refs = {"": 0}

    def ref(s: str) -> int:
        if s not in refs:
            refs[s] = len(req.symbols)
            req.symbols.append(s)
        return refs[s]

    def label_refs(labels: Mapping[str, str]) -> list[int]:
        return [r for name in sorted(labels) for r in (ref(name), ref(labels[name]))]

    for s in series:
        ts = req.timeseries.add(labels_refs=label_refs(s.labels))
        for t_ms, v in s.samples:
            ts.samples.add(timestamp=int(t_ms), value=float(v))
        for nh in s.histograms:
            _fill_histogram(ts.histograms.add(), nh)
        for labels, v, t_ms in s.exemplars:
            ts.exemplars.add(labels_refs=label_refs(labels), value=float(v), timestamp=int(t_ms))
        if s.type or s.help or s.unit:
            ts.metadata.type = METRIC_TYPES[s.type] if s.type else 0
            ts.metadata.help_ref, ts.metadata.unit_ref = ref(s.help), ref(s.unit)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def written(response: requests.Response) -> dict[str, int | None]:
    """What a 2.0 receiver says it wrote, per kind (None: the header is missing)."""
    return {k: (int(response.headers[h]) if h in response.headers else None) for k, h in WRITTEN_HEADERS.items()}


class RemoteWriteClient:
    def __init__(self, target: Target, tenant: Tenant | None, session: TenantHTTP | None = None):
        self.target = target
        self.http = session or TenantHTTP(target, tenant)

    def write(self, series: Iterable[Series], headers: dict | None = None) -> requests.Response:
        body = encode_write_request(series)
        return self.write_raw(body, headers)

    def write_v2(self, series: Iterable[V2Series], headers: dict | None = None) -> requests.Response:
        return self.write_raw(encode_write_request_v2(series), {**REMOTE_WRITE_V2_HEADERS, **(headers or {})})

    def write_raw(self, body: bytes, headers: dict | None = None) -> requests.Response:
        return self.http.post(self.target.metrics_write_url, data=body,
                              headers={**REMOTE_WRITE_HEADERS, **(headers or {})})


def promql_string(value: str) -> str:
    """A PromQL string literal for ``value`` (double-quoted, escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def promql_label_name(name: str) -> str:
    """A label name as PromQL needs it: bare if legacy-valid, else quoted (Prometheus 3 UTF-8 names)."""
    return name if _LEGACY_NAME.match(name) else promql_string(name)


def selector(labels: Mapping[str, str]) -> str:
    """An exact-match series selector for ``labels`` (``__name__`` included as a matcher)."""
    return "{" + ",".join(f"{promql_label_name(k)}={promql_string(v)}" for k, v in sorted(labels.items())) + "}"


def parse_value(s: str) -> float:
    """Prometheus API sample values are strings: "1.5", "+Inf", "NaN"."""
    return float(s) if s not in ("+Inf", "-Inf", "NaN") else {"+Inf": math.inf, "-Inf": -math.inf,
                                                              "NaN": math.nan}[s]


def parse_histogram(h: dict) -> dict:
    """A native histogram as the query API gives it, with its strings as floats."""
    return {"count": parse_value(h["count"]), "sum": parse_value(h["sum"]),
            "buckets": [(int(rule), parse_value(lo), parse_value(hi), parse_value(c))
                        for rule, lo, hi, c in h.get("buckets", [])]}


class PromQLClient:
    """PromQL through prometheus-api-client, with the tenant's token and the platform CA."""

    def __init__(self, target: Target, tenant: Tenant | None):
        self.http = TenantHTTP(target, tenant)
        headers = dict(self.http.headers)
        self.api = PrometheusConnect(url=target.metrics_query_url, headers=headers, session=self.http,
                                     timeout=30)

    def query(self, q: str, time_s: float | None = None) -> list[dict]:
        params = {"time": f"{time_s:.3f}"} if time_s is not None else None
        return self.api.custom_query(q, params=params)

    def raw_samples(self, labels: Mapping[str, str], at_s: float, window: str = "1h") -> list[tuple[int, float]]:
        """Every stored sample of one series in (at - window, at], as (timestamp ms, value).

        A range selector returns raw samples with their own timestamps, unlike
        an instant query, which returns the evaluation time."""
        series = self._one_series(labels, at_s, window)
        return [(round(float(t) * 1000), parse_value(v)) for t, v in series.get("values", [])]

    def raw_histograms(self, labels: Mapping[str, str], at_s: float, window: str = "1h") -> list[tuple[int, dict]]:
        """Every stored native histogram of one series in (at - window, at], as (timestamp ms,
        {"count", "sum", "buckets": [(boundary rule, lower, upper, count), ...]}), numbers as floats."""
        series = self._one_series(labels, at_s, window)
        return [(round(float(t) * 1000), parse_histogram(h)) for t, h in series.get("histograms", [])]

    def _one_series(self, labels: Mapping[str, str], at_s: float, window: str) -> dict:
        """The range query result of the one series ``labels`` selects ({} when none does)."""
        res = self.query(f"{selector(labels)}[{window}]", time_s=at_s)
        if len(res) > 1:
            raise AssertionError(f"expected one series for {selector(labels)}, got {len(res)}")
        return res[0] if res else {}

    def query_range(self, q: str, start_s: float, end_s: float, step: str) -> list[dict]:
        return self.api.custom_query_range(q, start_time=_dt(start_s), end_time=_dt(end_s), step=step)


def _dt(t: float):
    import datetime as dt
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)


class MetricsMetadataClient:
    """Series, label names and label values APIs (PromQL metadata), as one tenant."""

    def __init__(self, target: Target, tenant: Tenant | None):
        self.target = target
        self.http = TenantHTTP(target, tenant)

    def _get(self, path: str, params: dict | list) -> list:
        r = self.http.get(f"{self.target.metrics_query_url}/api/v1/{path}", params=params)
        if r.status_code != 200:
            raise requests.HTTPError(f"GET {path} -> {r.status_code} {r.text.strip()[:300]}", response=r)
        return r.json()["data"] or []

    def series(self, match: str, start_s: float, end_s: float) -> list[dict]:
        return self._get("series", {"match[]": match, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}"})

    def labels(self, match: str, start_s: float, end_s: float) -> list[str]:
        return self._get("labels", {"match[]": match, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}"})

    def exemplars(self, query: str, start_s: float, end_s: float) -> list[dict]:
        return self._get("query_exemplars", {"query": query, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}"})

    def metadata(self, metric: str) -> dict:
        return self._get("metadata", {"metric": metric}) or {}

    def label_values(self, name: str, match: str, start_s: float, end_s: float) -> list[str]:
        return self._get(f"label/{name}/values", {"match[]": match, "start": f"{start_s:.3f}",
                                                   "end": f"{end_s:.3f}"})
