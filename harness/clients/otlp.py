"""OTLP over HTTP through the gateway, as one tenant: metrics to the metrics
store (``metrics.otlp_path``, protobuf or JSON) and logs to the logs store
(``logs.otlp_path``, protobuf), each plain or gzipped.

The messages are the OpenTelemetry project's own, from the published
``opentelemetry-proto`` package (Apache-2.0), never a hand-written encoder:
what the suites send is byte for byte what an OpenTelemetry SDK or the
Collector would send. Builders here make the few shapes the suites need
(attributes, a resource with its scope, data points) so a test reads as the
data it sends.

JSON is OTLP/JSON as the specification has it: enums as integers, 64-bit
integers as strings, camelCase field names (protobuf's JSON mapping);
trace and span ids, which OTLP/JSON writes in hex where protobuf's mapping
writes base64, are not used in JSON bodies."""

from __future__ import annotations

import gzip
from typing import Iterable, Mapping

import requests
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1 import metrics_pb2 as mpb

from ..target import Target, Tenant
from .http import TenantHTTP

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CUMULATIVE = mpb.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = mpb.AGGREGATION_TEMPORALITY_DELTA

Attrs = Mapping[str, object]


def any_value(v: object) -> AnyValue:
    """An OTLP AnyValue of a Python value: str, bool, int, float, bytes, list or dict."""
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(any_value(x) for x in v)
        return out
    if isinstance(v, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(attributes(v))
        return out
    raise TypeError(f"no OTLP AnyValue for {type(v).__name__}")


def attributes(attrs: Attrs | Iterable[tuple[str, object]]) -> list[KeyValue]:
    """KeyValues in the given order; pairs may repeat a key (bad input on purpose)."""
    pairs = attrs.items() if isinstance(attrs, Mapping) else attrs
    return [KeyValue(key=k, value=any_value(v)) for k, v in pairs]


def _export(req, signal: str, items_field: str, items, resource: Attrs | Iterable[tuple[str, object]],
            scope: tuple[str, str], scope_attrs: Attrs | None):
    """``req`` with one resource (``resource_<signal>``) holding one scope (``scope_<signal>``)
    holding ``items``: the shape every OTLP export request shares."""
    res = getattr(req, f"resource_{signal}").add()
    res.resource.attributes.extend(attributes(resource))
    sc = getattr(res, f"scope_{signal}").add(
        scope=InstrumentationScope(name=scope[0], version=scope[1], attributes=attributes(scope_attrs or {})))
    getattr(sc, items_field).extend(items)
    return req


# -- metrics --------------------------------------------------------------------

def number_point(t_ns: int, value: float | int, attrs: Attrs | None = None, start_ns: int = 0) -> mpb.NumberDataPoint:
    p = mpb.NumberDataPoint(time_unix_nano=t_ns, start_time_unix_nano=start_ns, attributes=attributes(attrs or {}))
    if isinstance(value, int) and not isinstance(value, bool):
        p.as_int = value
    else:
        p.as_double = float(value)
    return p


def _metric(name: str, unit: str, kind: str, points, description: str = "", **body) -> mpb.Metric:
    """A Metric of ``kind`` (gauge, sum, histogram, exponential_histogram) with its points and
    the kind's other fields (temporality, monotonicity)."""
    m = mpb.Metric(name=name, unit=unit, description=description)
    data = getattr(m, kind)
    data.data_points.extend(points)
    for field_name, value in body.items():
        setattr(data, field_name, value)
    return m


def gauge(name: str, points: Iterable[mpb.NumberDataPoint], unit: str = "", description: str = "") -> mpb.Metric:
    return _metric(name, unit, "gauge", points, description)


def sum_(name: str, points: Iterable[mpb.NumberDataPoint], unit: str = "", description: str = "",
         monotonic: bool = True, temporality: int = CUMULATIVE) -> mpb.Metric:
    return _metric(name, unit, "sum", points, description, is_monotonic=monotonic,
                   aggregation_temporality=temporality)


def histogram_point(t_ns: int, bounds: list[float], counts: list[int], total: float, attrs: Attrs | None = None,
                    start_ns: int = 0) -> mpb.HistogramDataPoint:
    """An explicit-bucket histogram point: ``counts`` per bucket (len(bounds) + 1, not cumulative)."""
    if len(counts) != len(bounds) + 1:
        raise ValueError("a histogram point needs one count more than it has bounds")
    return mpb.HistogramDataPoint(time_unix_nano=t_ns, start_time_unix_nano=start_ns,
                                  attributes=attributes(attrs or {}), count=sum(counts), sum=total,
                                  bucket_counts=counts, explicit_bounds=bounds)


def histogram(name: str, points: Iterable[mpb.HistogramDataPoint], unit: str = "",
              temporality: int = CUMULATIVE) -> mpb.Metric:
    return _metric(name, unit, "histogram", points, aggregation_temporality=temporality)


def exponential_histogram_point(t_ns: int, scale: int, positive: tuple[int, list[int]], zero_count: int,
                                total: float, attrs: Attrs | None = None, start_ns: int = 0,
                                negative: tuple[int, list[int]] = (0, [])) -> mpb.ExponentialHistogramDataPoint:
    """``positive``/``negative`` are (offset, bucket counts); the count is derived."""
    count = zero_count + sum(positive[1]) + sum(negative[1])
    p = mpb.ExponentialHistogramDataPoint(time_unix_nano=t_ns, start_time_unix_nano=start_ns, scale=scale,
                                          zero_count=zero_count, count=count, sum=total,
                                          attributes=attributes(attrs or {}))
    p.positive.offset, p.negative.offset = positive[0], negative[0]
    p.positive.bucket_counts.extend(positive[1])
    p.negative.bucket_counts.extend(negative[1])
    return p


def exponential_histogram(name: str, points: Iterable[mpb.ExponentialHistogramDataPoint], unit: str = "",
                          temporality: int = CUMULATIVE) -> mpb.Metric:
    return _metric(name, unit, "exponential_histogram", points, aggregation_temporality=temporality)


def metrics_request(metrics: Iterable[mpb.Metric], resource: Attrs | Iterable[tuple[str, object]],
                    scope: tuple[str, str] = ("stackproof", "1"),
                    scope_attrs: Attrs | None = None) -> ExportMetricsServiceRequest:
    return _export(ExportMetricsServiceRequest(), "metrics", "metrics", metrics, resource, scope, scope_attrs)


# -- logs ------------------------------------------------------------------------

def log_record(t_ns: int, body: object, severity: int = 0, severity_text: str = "", attrs: Attrs | None = None,
               observed_ns: int = 0, trace_id: bytes = b"", span_id: bytes = b"") -> LogRecord:
    return LogRecord(time_unix_nano=t_ns, observed_time_unix_nano=observed_ns, severity_number=severity,
                     severity_text=severity_text, body=any_value(body), attributes=attributes(attrs or {}),
                     trace_id=trace_id, span_id=span_id)


def logs_request(records: Iterable[LogRecord], resource: Attrs | Iterable[tuple[str, object]],
                 scope: tuple[str, str] = ("stackproof", "1"),
                 scope_attrs: Attrs | None = None) -> ExportLogsServiceRequest:
    return _export(ExportLogsServiceRequest(), "logs", "log_records", records, resource, scope, scope_attrs)


# -- sending ----------------------------------------------------------------------

def encode(message, content_type: str = PROTOBUF, compress: bool = False) -> tuple[bytes, dict]:
    """(body, headers) of an OTLP/HTTP request for ``message``."""
    if content_type == PROTOBUF:
        body = message.SerializeToString()
    elif content_type == JSON:
        body = json_format.MessageToJson(message, use_integers_for_enums=True, indent=None).encode()
    else:
        raise ValueError(f"OTLP/HTTP has no encoding {content_type!r}")
    headers = {"Content-Type": content_type}
    if compress:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return body, headers


class OTLPClient:
    """OTLP/HTTP exports of one tenant: metrics and logs through the gateway."""

    def __init__(self, target: Target, tenant: Tenant | None, session: TenantHTTP | None = None):
        self.target = target
        self.http = session or TenantHTTP(target, tenant)

    def metrics(self, req: ExportMetricsServiceRequest, content_type: str = PROTOBUF,
                compress: bool = False) -> requests.Response:
        return self.raw(self.target.metrics_otlp_url, *encode(req, content_type, compress))

    def logs(self, req: ExportLogsServiceRequest, content_type: str = PROTOBUF,
             compress: bool = False) -> requests.Response:
        return self.raw(self.target.logs_otlp_url, *encode(req, content_type, compress))

    def raw(self, url: str, body: bytes, headers: dict) -> requests.Response:
        return self.http.post(url, data=body, headers=headers)
