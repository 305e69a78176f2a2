"""OTLP metrics (``metrics.otlp_path``) then PromQL, exact per sample: gauges,
cumulative sums, explicit-bucket histograms and exponential histograms, in
protobuf and JSON, plain and gzipped; the OpenTelemetry-to-Prometheus name
translation checked against a table of names written out here; resource
attributes as ``job``/``instance``, promoted labels and ``target_info``; delta
sums as the store's settings say; bad bodies refused with the good writes
around them kept."""

from __future__ import annotations

import time

import pytest

from fixtures.defects import store_version
from harness.binaries import version_tuple
from harness.clients import PromQLClient
from harness.clients import otlp as o
from harness.clients.metrics import selector
from harness.components import METRICS_STORE

pytestmark = [pytest.mark.otlp]


@pytest.fixture(autouse=True)
def _needs_otlp(target):
    if not target.has("otlp"):
        pytest.skip(f"target {target.name!r} has no 'otlp' capability (OTLP through its gateway)")


def _ns(ms: int) -> int:
    return ms * 1_000_000


def _resource(test_id: str, **extra) -> dict:
    return {"service.name": "stackproof-otlp", "service.instance.id": test_id, **extra}


def _le(bound: float) -> str:
    """A bucket bound as the translation writes ``le``: Go's shortest form ("1", "0.005")."""
    return str(int(bound)) if bound.is_integer() else repr(bound)


ENCODINGS = [(o.PROTOBUF, False), (o.PROTOBUF, True), (o.JSON, False), (o.JSON, True)]


@pytest.mark.parametrize("content_type,compress", ENCODINGS,
                         ids=[f"{c.split('/')[1]}{'-gzip' if z else ''}" for c, z in ENCODINGS])
def test_gauge_sum_and_histogram_round_trip(target, tenant_a, test_id, check, content_type, compress):
    t0 = int(time.time() * 1000) - 60_000
    base = {"stackproof_test": test_id}
    gauge = [(t0 + i * 1_000, v) for i, v in enumerate([1.5, -2.25, 0.0, 1e-9, 123456.75])]
    ints = [(t0 + i * 1_000 + 1, 10 ** i) for i in range(5)]  # as_int points
    counter = [(t0 + i * 1_000 + 2, 3.0 * i * i) for i in range(5)]
    bounds = [0.005, 0.1, 1.0]
    hist = [(t0 + i * 1_000 + 3, [i, 2 * i, 1, i + 1], 1.25 * i) for i in range(1, 4)]
    start = _ns(t0 - 1_000)
    req = o.metrics_request([
        o.gauge("stackproof.otlp.gauge", [o.number_point(_ns(t), v, base) for t, v in gauge]),
        o.gauge("stackproof.otlp.ints", [o.number_point(_ns(t), v, base) for t, v in ints]),
        o.sum_("stackproof.otlp.calls", [o.number_point(_ns(t), v, base, start_ns=start) for t, v in counter]),
        o.histogram("stackproof.otlp.latency", [o.histogram_point(_ns(t), bounds, counts, total, base, start_ns=start)
                                                for t, counts, total in hist], unit="s"),
    ], _resource(test_id))
    r = o.OTLPClient(target, tenant_a).metrics(req, content_type, compress)
    check.status(r, 200, f"OTLP metrics export ({content_type}{', gzip' if compress else ''})")

    promql = PromQLClient(target, tenant_a)
    common = {"job": "stackproof-otlp", "instance": test_id, **base}
    at = t0 + 10_000
    want = {"stackproof_otlp_gauge": gauge, "stackproof_otlp_ints": [(t, float(v)) for t, v in ints],
            "stackproof_otlp_calls_total": counter,
            "stackproof_otlp_latency_seconds_sum": [(t, total) for t, _, total in hist],
            "stackproof_otlp_latency_seconds_count": [(t, float(sum(c))) for t, c, _ in hist]}
    for i, le in enumerate([*map(_le, bounds), "+Inf"]):  # cumulative per bucket, as Prometheus has them
        want[f"stackproof_otlp_latency_seconds_bucket/le={le}"] = [(t, float(sum(c[:i + 1]))) for t, c, _ in hist]
    got = {}
    for key, samples in want.items():
        name, _, le = key.partition("/le=")
        labels = {"__name__": name, **common, **({"le": le} if le else {})}
        got[key] = check.visible("metrics", lambda lb=labels: promql.raw_samples(lb, at / 1000),
                                 lambda s, n=len(samples): len(s) >= n, key)
    check.equal(got, want, "every sample of every translated series: (timestamp ms, value)")


# (OTLP name, unit, kind) -> the Prometheus name the specification's translation gives (with suffixes)
TRANSLATION = [
    ("stackproof.otlp.memory", "By", "gauge", "stackproof_otlp_memory_bytes"),
    ("stackproof.otlp.utilization", "1", "gauge", "stackproof_otlp_utilization_ratio"),
    ("stackproof.otlp.temperature", "Cel", "gauge", "stackproof_otlp_temperature_celsius"),
    ("stackproof.otlp.wait", "ms", "gauge", "stackproof_otlp_wait_milliseconds"),
    ("stackproof.otlp.throughput", "By/s", "gauge", "stackproof_otlp_throughput_bytes_per_second"),
    ("stackproof.otlp.queue-depth", "{item}", "gauge", "stackproof_otlp_queue_depth"),
    ("stackproof.otlp.requests", "{request}", "counter", "stackproof_otlp_requests_total"),
    ("stackproof.otlp.total.errors", "", "counter", "stackproof_otlp_errors_total"),
    ("stackproof.otlp.sent", "By", "counter", "stackproof_otlp_sent_bytes_total"),
    ("stackproof.otlp.open.files", "", "updown", "stackproof_otlp_open_files"),
    ("stackproof.otlp.seconds.used", "s", "gauge", "stackproof_otlp_seconds_used"),
    ("2xx.responses", "", "gauge", "_2xx_responses"),
]
# OTLP attribute key -> Prometheus label name
LABELS = {"http.request.method": "http_request_method", "net.peer..port": "net_peer_port",
          "2xx": "key_2xx", "already_fine": "already_fine"}
# Cortex 1.20's translator (otlptranslator of June 2025) keeps a run of underscores; 1.21's folds it
LABELS_BEFORE_1_21 = {**LABELS, "net.peer..port": "net_peer__port"}


def test_names_and_labels_translate_as_the_table_says(target, tenant_a, test_id, check):
    t = int(time.time() * 1000) - 5_000
    version = store_version(target, METRICS_STORE)
    labels = LABELS_BEFORE_1_21 if version and version_tuple(version) < (1, 21) else LABELS
    attrs = {**{k: f"v-{v}" for k, v in LABELS.items()}, "stackproof_test": test_id}
    metrics = []
    for name, unit, kind, _ in TRANSLATION:
        point = [o.number_point(_ns(t), 1.0, attrs, start_ns=_ns(t - 1_000))]
        metrics.append(o.gauge(name, point, unit) if kind == "gauge"
                       else o.sum_(name, point, unit, monotonic=(kind == "counter")))
    r = o.OTLPClient(target, tenant_a).metrics(o.metrics_request(metrics, _resource(test_id)))
    check.status(r, 200, "OTLP export of the translation table")
    promql = PromQLClient(target, tenant_a)
    q = f'{{stackproof_test="{test_id}"}}'
    check.query("series", q)
    res = check.visible("metrics", lambda: promql.query(q, time_s=t / 1000), lambda s: len(s) >= len(TRANSLATION),
                        "the translated series")
    check.equal(sorted(s["metric"]["__name__"] for s in res), sorted(p for *_, p in TRANSLATION),
                "metric names: dots and dashes to '_', unit suffixes, '_total' on counters, '_ratio' on unit '1'")
    want_labels = {"job": "stackproof-otlp", "instance": test_id, "stackproof_test": test_id,
                   **{labels[k]: f"v-{v}" for k, v in LABELS.items()}}
    check.equal({s["metric"]["__name__"]: {k: v for k, v in s["metric"].items() if k != "__name__"} for s in res},
                {p: want_labels for *_, p in TRANSLATION}, "label names of every series")


def test_resource_attributes_become_job_instance_promoted_labels_and_target_info(target, tenant_a, test_id, check):
    t = int(time.time() * 1000) - 5_000
    promoted = {a: f"{a}-value" for a in target.metrics_otlp_promoted}
    resource = _resource(test_id, **{"service.namespace": "stackproof", "host.name": "node-1",
                                     "cloud.region": "local-1", **promoted})
    req = o.metrics_request([o.gauge("stackproof.otlp.resource", [o.number_point(_ns(t), 7.0,
                                                                                   {"stackproof_test": test_id})])],
                            resource)
    check.status(o.OTLPClient(target, tenant_a).metrics(req), 200, "OTLP export with resource attributes")
    promql = PromQLClient(target, tenant_a)
    job = {"job": "stackproof/stackproof-otlp", "instance": test_id}
    series = {"__name__": "stackproof_otlp_resource", **job, "stackproof_test": test_id,
              **{a.replace(".", "_"): v for a, v in promoted.items()}}
    got = check.visible("metrics", lambda: promql.raw_samples(series, t / 1000), bool, "the series, by its labels")
    check.equal(got, [(t, 7.0)], "the sample, with job from service.namespace/service.name, instance from "
                                 f"service.instance.id and the promoted attributes {sorted(promoted)} as labels")
    q = f'target_info{{instance="{test_id}"}}'
    info = check.visible("metrics", lambda: promql.query(f"{q}[1h]", time_s=t / 1000), bool, "target_info")
    check.equal([(s["metric"], [(round(float(ts) * 1000), v) for ts, v in s["values"]]) for s in info],
                [({"__name__": "target_info", **job, "host_name": "node-1", "cloud_region": "local-1",
                   **{a.replace(".", "_"): v for a, v in promoted.items()}}, [(t, "1")])],
                "target_info: the other resource attributes, value 1 at the export's timestamp")


def test_exponential_histogram_becomes_a_native_histogram(target, tenant_a, test_id, check):
    t = int(time.time() * 1000) - 5_000
    # the converter gives the zero bucket a width of 1e-128 around 0 (its default zero threshold).
    # scale 0: OTLP bucket at offset+i covers (2^(offset+i), 2^(offset+i+1)], i.e. Prometheus index offset+i+1
    point = o.exponential_histogram_point(_ns(t), 0, (1, [2, 3, 0, 1]), 1, 40.5, {"stackproof_test": test_id},
                                          start_ns=_ns(t - 1_000))
    req = o.metrics_request([o.exponential_histogram("stackproof.otlp.sizes", [point], unit="By")],
                            _resource(test_id))
    check.status(o.OTLPClient(target, tenant_a).metrics(req), 200, "OTLP export of an exponential histogram")
    promql = PromQLClient(target, tenant_a)
    labels = {"__name__": "stackproof_otlp_sizes_bytes", "job": "stackproof-otlp", "instance": test_id,
              "stackproof_test": test_id}
    check.query("native histogram", selector(labels))
    got = check.visible("metrics", lambda: promql.raw_histograms(labels, t / 1000), bool, "the native histogram")
    check.equal(got, [(t, {"count": 7.0, "sum": 40.5, "buckets": [
        (3, -1e-128, 1e-128, 1.0), (0, 2.0, 4.0, 2.0), (0, 4.0, 8.0, 3.0), (0, 16.0, 32.0, 1.0)]})],
        "count, sum, the zero bucket and every populated bucket")


def test_delta_sums_are_refused_and_the_cumulative_ones_beside_them_kept(target, tenant_a, test_id, check):
    """Cortex ingests delta temporality only with -distributor.otlp.allow-delta-temporality
    (off on the platforms stackproof builds): an export of deltas alone is refused with a
    400 that says why; beside cumulative points, the cumulative ones are kept."""
    t = int(time.time() * 1000) - 5_000
    attrs = {"stackproof_test": test_id}
    delta = o.sum_("stackproof.otlp.delta", [o.number_point(_ns(t), 5.0, attrs, start_ns=_ns(t - 1_000))],
                   temporality=o.DELTA)
    client = o.OTLPClient(target, tenant_a)
    r = client.metrics(o.metrics_request([delta], _resource(test_id)))
    check.status(r, 400, "an export of delta sums alone")
    check.true("temporality" in r.text, "the refusal names the temporality", r.text.strip()[:300])
    cumulative = o.sum_("stackproof.otlp.cumulative", [o.number_point(_ns(t), 5.0, attrs, start_ns=_ns(t - 1_000))])
    check.status(client.metrics(o.metrics_request([delta, cumulative], _resource(test_id))), 200,
                 "an export of a delta and a cumulative sum")
    promql = PromQLClient(target, tenant_a)
    q = f'{{stackproof_test="{test_id}"}}'
    res = check.visible("metrics", lambda: promql.query(q, time_s=t / 1000), bool, "the cumulative sum")
    check.equal([s["metric"]["__name__"] for s in res], ["stackproof_otlp_cumulative_total"],
                "only the cumulative sum is stored")


BAD = {
    "malformed protobuf": (b"\x0a\xff\xff\xff\xff\x0f", {"Content-Type": o.PROTOBUF}),
    "malformed JSON": (b'{"resourceMetrics": [', {"Content-Type": o.JSON}),
    "wrong content type": (b"resourceMetrics", {"Content-Type": "text/plain"}),
    "gzip header on a plain body": (b"\x0a\x00", {"Content-Type": o.PROTOBUF, "Content-Encoding": "gzip"}),
}


def test_bad_bodies_get_4xx_and_the_good_exports_around_them_are_kept(target, tenant_a, test_id, check):
    t = int(time.time() * 1000) - 30_000
    client = o.OTLPClient(target, tenant_a)
    labels = {"stackproof_test": test_id}
    good = []
    for i, (what, (body, headers)) in enumerate(BAD.items()):
        point = (t + i * 1_000, float(i))
        good.append(point)
        req = o.metrics_request([o.gauge("stackproof.otlp.around", [o.number_point(_ns(point[0]), point[1],
                                                                                      labels)])], _resource(test_id))
        check.status(client.metrics(req), 200, f"the good export before the {what}")
        r = client.raw(target.metrics_otlp_url, body, headers)
        check.true(400 <= r.status_code < 500, f"the {what} gets a 4xx", f"{r.status_code} {r.text.strip()[:200]}")
    promql = PromQLClient(target, tenant_a)
    series = {"__name__": "stackproof_otlp_around", "job": "stackproof-otlp", "instance": test_id, **labels}
    got = check.visible("metrics", lambda: promql.raw_samples(series, (t + 10_000) / 1000),
                        lambda s: len(s) >= len(good), "the good exports")
    check.equal(got, good, "every good export around the bad ones")


def test_a_tenant_reads_only_its_own_otlp_series(target, tenant_a, tenant_b, test_id, check):
    t = int(time.time() * 1000) - 5_000
    req = o.metrics_request([o.gauge("stackproof.otlp.private", [o.number_point(_ns(t), 1.0,
                                                                                  {"stackproof_test": test_id})])],
                            _resource(test_id))
    check.status(o.OTLPClient(target, tenant_a).metrics(req), 200, "tenant A's OTLP export")
    q = f'stackproof_otlp_private{{stackproof_test="{test_id}"}}'
    check.visible("metrics", lambda: PromQLClient(target, tenant_a).query(q, time_s=t / 1000), bool,
                  "A's series, for A")
    check.equal(PromQLClient(target, tenant_b).query(q, time_s=t / 1000), [], "A's OTLP series, for B")
