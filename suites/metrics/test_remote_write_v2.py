"""Prometheus remote write 2.0 (``io.prometheus.write.v2.Request``) then PromQL,
exact: float samples, native histograms (integer and float counts, exponential
and custom buckets) bucket by bucket, exemplars and metadata; and what the
receiver says it wrote (the ``X-Prometheus-Remote-Write-*-Written`` headers,
passed through the gateway) equals what was sent.

The target declares whether it takes 2.0 (capability 'remote-write-2'). One
without it must say so with a 415; one that acknowledges a 2.0 request and
writes nothing (Cortex 1.20 with 2.0 off decodes it as 1.0, finds it empty and
answers 2xx) fails here loudly, with the headers and what PromQL holds."""

from __future__ import annotations

import cramjam
import pytest

from fixtures.defects import known_defect, store_version
from harness import proto
from harness.binaries import version_tuple
from harness.clients import MetricsMetadataClient, PromQLClient, RemoteWriteClient
from harness.components import METRICS_STORE
from harness.clients.metrics import (CUSTOM_BUCKETS_SCHEMA, REMOTE_WRITE_V2_HEADERS, NativeHistogram, V2Series,
                                    bucket_keys, selector, written)

from ._helpers import now_ms, raw_samples

pytestmark = pytest.mark.metrics


@pytest.fixture(autouse=True)
def _takes_2_0(request, target):
    if request.node.name.startswith("test_a_2_0_request_is_stored_or_refused"):
        return
    if not target.has("remote-write-2"):
        pytest.skip(f"target {target.name!r} does not declare 'remote-write-2'; "
                    "test_a_2_0_request_is_stored_or_refused_as_declared checks its 415")


def test_a_2_0_request_is_stored_or_refused_as_declared(target, tenant_a, test_id, check):
    t = now_ms() - 10_000
    labels = {"__name__": "stackproof_v2_declared", "stackproof_test": test_id}
    r = RemoteWriteClient(target, tenant_a).write_v2([V2Series(labels, [(t, 1.0), (t + 1, 2.0)])])
    promql = PromQLClient(target, tenant_a)
    if not target.has("remote-write-2"):
        stored = raw_samples(promql, labels, t + 1)
        check.true(r.status_code == 415, "a target without remote write 2.0 refuses it with 415",
                   f"{r.status_code}, Written headers {written(r)}, samples stored {stored}: "
                   + ("not a 2xx" if not 200 <= r.status_code < 300 else
                      "stored: the target takes 2.0 but does not declare 'remote-write-2'" if stored else
                      "acknowledged and dropped (the Cortex 1.20 behaviour with 2.0 off)"))
        return
    check.status(r, (200, 204), "a 2.0 write to a target that declares 'remote-write-2'")
    check.equal(written(r), {"samples": 2, "histograms": 0, "exemplars": 0},
                "the Written headers (a 2xx with nothing written is the Cortex 1.20 behaviour with 2.0 off)")
    got = check.visible("metrics", lambda: raw_samples(promql, labels, t + 1), lambda g: len(g) >= 2, "2 samples")
    check.equal(got, [(t, 1.0), (t + 1, 2.0)], "both samples")


def _write(check, target, tenant, series: list[V2Series], what: str):
    r = RemoteWriteClient(target, tenant).write_v2(series)
    sent = {"samples": sum(len(s.samples) for s in series), "histograms": sum(len(s.histograms) for s in series),
            "exemplars": sum(len(s.exemplars) for s in series)}
    check.true(r.status_code != 415, f"{what}: the target takes remote write 2.0",
               f"415 {r.text.strip()[:200]} (2.0 is off on this target)")
    check.status(r, (200, 204), what)
    check.equal(written(r), sent, f"{what}: the Written headers equal what was sent")
    return r


def test_float_samples_round_trip_and_the_written_headers_count_them(target, tenant_a, test_id, check):
    t0 = now_ms() - 60_000
    series = [V2Series({"__name__": "stackproof_v2_gauge", "stackproof_test": test_id, "case": str(i)},
                       [(t0 + j * 1_000 + i, i * 0.5 + j / 3) for j in range(10)]) for i in range(5)]
    _write(check, target, tenant_a, series, "a 2.0 write of 5 series x 10 samples")
    promql = PromQLClient(target, tenant_a)
    at = t0 + 20_000
    for s in series:
        got = check.visible("metrics", lambda lb=s.labels: raw_samples(promql, lb, at), lambda g: len(g) >= 10,
                            f"case {s.labels['case']}")
        check.equal(got, list(s.samples), f"case {s.labels['case']}: (timestamp ms, value) of every sample")


def _histograms() -> dict[str, list[NativeHistogram]]:
    t0 = now_ms() - 60_000
    return {
        # integer counts, exponential schema 0 (bucket i is (2^(i-1), 2^i]), a zero bucket and negatives
        "integer exponential": [NativeHistogram(t0 + k * 1_000, 0, 40.5 + k, {1: 2 + k, 2: 3, 5: 1 + k}, {0: 1},
                                                zero_count=1, zero_threshold=0.001) for k in range(3)],
        # schema 3: eight buckets per power of two
        "integer exponential schema 3": [NativeHistogram(t0 + k * 1_000, 3, 12.25, {-3: 1, -2: 4, 7: 2 + k})
                                         for k in range(3)],
        "float exponential": [NativeHistogram(t0 + k * 1_000, 1, 7.5 * (k + 1), {0: 0.5 + k, 1: 2.25, 4: 1.0})
                              for k in range(3)],
        # custom bucket bounds (what a classic histogram becomes): index i of (bounds[i-1], bounds[i]]
        "custom buckets": [NativeHistogram(t0 + k * 1_000, CUSTOM_BUCKETS_SCHEMA, 99.0 + k, {0: 3, 1: 5 + k, 3: 2},
                                           custom_values=[0.1, 1.0, 10.0]) for k in range(3)],
    }


@pytest.mark.parametrize("case", list(_histograms()))
def test_native_histograms_round_trip_bucket_by_bucket(target, tenant_a, test_id, check, case):
    hists = _histograms()[case]
    labels = {"__name__": "stackproof_v2_histogram", "stackproof_test": test_id}
    version = store_version(target, METRICS_STORE)
    if case == "custom buckets" and version and version_tuple(version) < (1, 21):
        # custom buckets (schema -53) came with Cortex 1.21; before, they must be refused, never dropped
        r = RemoteWriteClient(target, tenant_a).write_v2([V2Series(labels, histograms=hists, type="histogram")])
        check.status(r, 400, f"custom-bucket histograms on Cortex {version} (which has no schema -53)")
        check.true("schema" in r.text, "the refusal names the schema", r.text.strip()[:200])
        return
    _write(check, target, tenant_a, [V2Series(labels, histograms=hists, type="histogram")],
           f"a 2.0 write of {len(hists)} {case} histograms")
    promql = PromQLClient(target, tenant_a)
    at_s = hists[-1].t_ms / 1000
    check.query(case, f"{selector(labels)}[1h] @ {at_s}")
    got = check.visible("metrics", lambda: promql.raw_histograms(labels, at_s), lambda g: len(g) >= len(hists),
                        f"{case} histograms")
    schema = hists[0].schema
    check.equal([(t, {**h, "buckets": bucket_keys(h["buckets"], schema)}) for t, h in got],
                [(h.t_ms, {"count": float(h.count), "sum": h.sum,
                           "buckets": [(*b[:-1], float(b[-1])) for b in h.buckets()]}) for h in hists],
                f"{case}: timestamp, count, sum and every bucket (its index or bounds, and its count)")


def test_exemplars_and_metadata_round_trip(target, tenant_a, test_id, check):
    t0 = now_ms() - 30_000
    name = f"stackproof_v2_{test_id.replace('-', '_')}_requests_total"  # metadata is per metric name
    labels = {"__name__": name, "stackproof_test": test_id}
    exemplars = [({"trace_id": f"{test_id}-{i:02d}", "span_id": f"{i:016x}"}, 0.25 * i, t0 + i * 1_000)
                 for i in range(1, 6)]
    series = V2Series(labels, [(t0 + i * 1_000, float(i)) for i in range(1, 6)], exemplars=exemplars,
                      type="counter", help=f"requests, by {test_id}", unit="requests")
    _write(check, target, tenant_a, [series], "a 2.0 write with exemplars and metadata")
    promql = MetricsMetadataClient(target, tenant_a)
    got = check.visible("metrics", lambda: promql.exemplars(selector(labels), t0 / 1000 - 1, t0 / 1000 + 10),
                        lambda g: g and len(g[0]["exemplars"]) >= len(exemplars), "exemplars")
    check.equal([{"labels": e["labels"], "value": float(e["value"]), "ms": round(float(e["timestamp"]) * 1000)}
                 for e in got[0]["exemplars"]],
                [{"labels": lb, "value": v, "ms": t} for lb, v, t in exemplars],
                "exemplars: labels, value and timestamp of each")
    meta = check.visible("metrics", lambda: promql.metadata(name), bool, "metadata")
    check.equal(meta, {name: [{"type": "counter", "help": series.help, "unit": "requests"}]},
                "metadata: type, help and unit")


def test_a_broken_symbol_reference_is_refused_and_the_good_writes_around_it_kept(request, target, tenant_a, test_id,
                                                                                 check):
    """A label reference past the end of the symbol table, or an odd number of refs, is
    bad input: a 4xx, and the 2.0 writes before and after it are stored."""
    known_defect(request, target, "prw2-bad-symbol-ref-panic")
    t = now_ms() - 10_000
    labels = {"__name__": "stackproof_v2_around", "stackproof_test": test_id}
    client = RemoteWriteClient(target, tenant_a)
    check.status(client.write_v2([V2Series(labels, [(t, 1.0)])]), (200, 204), "the good write before")
    for what, refs in (("a reference past the symbol table", [1, 2, 1, 99]), ("an odd number of references", [1])):
        req = proto.V2Request(symbols=["", "__name__", "stackproof_v2_broken"])
        req.timeseries.add(labels_refs=refs).samples.add(value=1.0, timestamp=t)
        r = client.write_raw(bytes(cramjam.snappy.compress_raw(req.SerializeToString())),
                             REMOTE_WRITE_V2_HEADERS)
        check.true(400 <= r.status_code < 500, f"{what} gets a 4xx", f"{r.status_code} {r.text.strip()[:200]}")
    check.status(client.write_v2([V2Series(labels, [(t + 1, 2.0)])]), (200, 204), "the good write after")
    promql = PromQLClient(target, tenant_a)
    got = check.visible("metrics", lambda: raw_samples(promql, labels, t + 1), lambda g: len(g) >= 2, "2 samples")
    check.equal(got, [(t, 1.0), (t + 1, 2.0)], "the good writes around the broken ones")
