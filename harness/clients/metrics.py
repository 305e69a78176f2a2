"""Prometheus remote write 1.0 and PromQL, through the gateway, as one tenant."""

from __future__ import annotations

import math
import re
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


class RemoteWriteClient:
    def __init__(self, target: Target, tenant: Tenant | None, session: TenantHTTP | None = None):
        self.target = target
        self.http = session or TenantHTTP(target, tenant)

    def write(self, series: Iterable[Series], headers: dict | None = None) -> requests.Response:
        body = encode_write_request(series)
        return self.write_raw(body, headers)

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
        res = self.query(f"{selector(labels)}[{window}]", time_s=at_s)
        if not res:
            return []
        if len(res) != 1:
            raise AssertionError(f"expected one series for {selector(labels)}, got {len(res)}")
        return [(round(float(t) * 1000), parse_value(v)) for t, v in res[0]["values"]]

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

    def label_values(self, name: str, match: str, start_s: float, end_s: float) -> list[str]:
        return self._get(f"label/{name}/values", {"match[]": match, "start": f"{start_s:.3f}",
                                                   "end": f"{end_s:.3f}"})
