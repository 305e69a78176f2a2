"""Label edge cases, and the series, labels and label-values APIs."""

from __future__ import annotations

import pytest

from harness.clients import MetricsMetadataClient, PromQLClient, RemoteWriteClient
from harness.clients.metrics import selector

from ._helpers import now_ms, raw_samples

pytestmark = pytest.mark.metrics


def _cases(test_id: str, limits: dict) -> dict[str, dict]:
    max_len = limits["metrics_max_label_value_length"]
    max_names = limits["metrics_max_label_names_per_series"]
    base = {"__name__": "stackproof_label_case", "stackproof_test": test_id}
    many = {**base, **{f"l{i:02d}": f"v{i}" for i in range(max_names - len(base))}}
    return {
        "utf-8 value": {**base, "case": "utf8", "v": "ünïcødé ✓ 日本語 🚀 Ω"},
        "value needing PromQL escapes": {**base, "case": "escape", "v": 'quote " backslash \\ newline \n tab \t end'},
        "value at the length limit": {**base, "case": "long", "v": "x" * max_len},
        "labels at the per-series limit": {**many, "case": "many"} if len(many) < max_names else many,
        "label name with underscores and digits": {**base, "case": "name", "_a1_B2": "ok"},
        # UTF-8 names must be quoted in PromQL: {"service.name"="..."}
        "label names needing quotes in PromQL": {**base, "case": "utf8-names", "service.name": "checkout",
                                                 "k8s/pod-name": "p-1", "ünïcode": "ok", "with space": "yes"},
        "metric name needing quotes in PromQL": {**base, "__name__": "stackproof.label_case.dotted",
                                                 "case": "utf8-metric"},
    }


def test_label_edge_cases_round_trip(target, tenant_a, test_id, check):
    cases = _cases(test_id, target.limits)
    # the 'many' case must be exactly at the limit
    many = cases["labels at the per-series limit"]
    while len(many) > target.limits["metrics_max_label_names_per_series"]:
        many.pop(sorted(k for k in many if k.startswith("l"))[-1])
    t = now_ms() - 5_000
    r = RemoteWriteClient(target, tenant_a).write([(labels, [(t, float(i))]) for i, labels in
                                                   enumerate(cases.values())])
    check.status(r, (200, 204), "remote write of label edge cases")
    promql = PromQLClient(target, tenant_a)
    for i, (name, labels) in enumerate(cases.items()):
        check.query(name, selector(labels))
        got = check.visible("metrics", lambda lb=labels: promql.query(selector(lb), time_s=t / 1000), bool, name)
        check.equal([(s["metric"], s["value"][1]) for s in got], [(labels, repr(float(i)).removesuffix(".0"))],
                    f"{name}: exact label set and value")


def test_over_the_limits_is_refused_and_nothing_is_stored(target, tenant_a, test_id, check):
    max_len = target.limits["metrics_max_label_value_length"]
    max_names = target.limits["metrics_max_label_names_per_series"]
    t = now_ms() - 5_000
    base = {"__name__": "stackproof_over_limit", "stackproof_test": test_id}
    too_long = {**base, "case": "long", "v": "y" * (max_len + 1)}
    too_many = {**base, "case": "many", **{f"l{i:02d}": "v" for i in range(max_names + 1 - len(base) - 1)}}
    assert len(too_many) == max_names + 1
    rw = RemoteWriteClient(target, tenant_a)
    r = rw.write([(too_long, [(t, 1.0)])])
    check.status(r, 400, f"a label value of {max_len + 1} characters")
    check.true("too long" in r.text, "the refusal names the problem", r.text[:200])
    r = rw.write([(too_many, [(t, 1.0)])])
    check.status(r, 400, f"a series with {max_names + 1} labels")
    check.true("too many labels" in r.text, "the refusal names the problem", r.text[:200])
    promql = PromQLClient(target, tenant_a)
    check.equal(promql.query(f'count({{stackproof_test="{test_id}"}})', time_s=t / 1000), [],
                "nothing of the refused series is stored")


def test_series_labels_and_label_values_apis(target, tenant_a, test_id, check):
    t = now_ms() - 5_000
    series = [
        {"__name__": "stackproof_api_a", "stackproof_test": test_id, "kind": "alpha", "zone": "z1"},
        {"__name__": "stackproof_api_a", "stackproof_test": test_id, "kind": "beta", "zone": "z2"},
        {"__name__": "stackproof_api_b", "stackproof_test": test_id, "kind": "gamma", "rack": "r7"},
    ]
    check.status(RemoteWriteClient(target, tenant_a).write([(s, [(t, 1.0)]) for s in series]), (200, 204), "write")
    meta = MetricsMetadataClient(target, tenant_a)
    match = f'{{stackproof_test="{test_id}"}}'
    start, end = (t - 60_000) / 1000, (t + 60_000) / 1000
    check.query("series", f"match[]={match}")
    got = check.visible("metrics", lambda: meta.series(match, start, end), lambda r: len(r) >= len(series),
                        "series API")
    key = lambda d: sorted(d.items())  # noqa: E731
    check.equal(sorted(got, key=key), sorted(series, key=key), "series API: exact label sets")
    check.equal(sorted(meta.labels(match, start, end)),
                sorted({k for s in series for k in s}), "labels API: label names of the matched series")
    check.equal(sorted(meta.label_values("kind", match, start, end)), ["alpha", "beta", "gamma"],
                "label values API: values of 'kind'")
    check.equal(sorted(meta.label_values("__name__", match, start, end)), ["stackproof_api_a", "stackproof_api_b"],
                "label values API: metric names")


def test_duplicate_and_too_old_samples_are_refused_the_rest_is_kept(target, tenant_a, test_id, check):
    """Cortex documents a 400 for a request with samples it cannot take (a
    duplicate timestamp with another value; a timestamp before the head's
    valid range) and ingests the other series of that same request."""
    t = now_ms() - 5_000
    rw = RemoteWriteClient(target, tenant_a)
    dup = {"__name__": "stackproof_dup", "stackproof_test": test_id}
    ok1 = {"__name__": "stackproof_dup_neighbour", "stackproof_test": test_id}
    old = {"__name__": "stackproof_old", "stackproof_test": test_id}
    ok2 = {"__name__": "stackproof_old_neighbour", "stackproof_test": test_id}
    check.status(rw.write([(dup, [(t, 1.0)])]), (200, 204), "first write of the sample")
    r = rw.write([(dup, [(t, 2.0)]), (ok1, [(t, 3.0)])])
    check.status(r, 400, "the same timestamp with another value")
    check.true("duplicate sample" in r.text, "the refusal says 'duplicate sample'", r.text[:300])
    r = rw.write([(old, [(t - 3 * 3600_000, 4.0)]), (ok2, [(t, 5.0)])])
    check.status(r, 400, "a sample three hours older than the head")
    check.true("out of bounds" in r.text, "the refusal says 'out of bounds'", r.text[:300])

    promql = PromQLClient(target, tenant_a)
    got = {}
    for name, labels in (("dup", dup), ("neighbour of dup", ok1), ("neighbour of old", ok2)):
        got[name] = check.visible("metrics", lambda lb=labels: raw_samples(promql, lb, t), bool, name)
    got["old"] = raw_samples(promql, old, t, window="4h")
    check.equal(got, {"dup": [(t, 1.0)], "neighbour of dup": [(t, 3.0)], "neighbour of old": [(t, 5.0)],
                      "old": []}, "what is stored after the partial refusals")


def test_tenant_over_its_ingestion_limit_gets_429_and_what_was_accepted_is_intact(target, test_id, check):
    limited = next((t for t in target.tenants if t.role == "limited"), None)
    if limited is None:
        pytest.skip(f"target {target.name!r} has no tenant with role 'limited'")
    burst = target.limits["limited_metrics_burst_samples"]
    t = now_ms() - 5_000
    rw = RemoteWriteClient(target, limited)
    accepted = [({"__name__": "stackproof_limited", "stackproof_test": test_id, "i": str(i)}, [(t, float(i))])
                for i in range(burst // 2)]
    check.status(rw.write(accepted), (200, 204), f"{len(accepted)} samples, within the burst of {burst}")
    refused = [({"__name__": "stackproof_limited_over", "stackproof_test": test_id, "i": str(i)}, [(t, 1.0)])
               for i in range(burst * 5)]
    r = rw.write(refused)
    check.status(r, 429, f"{len(refused)} samples, five times the burst")
    promql = PromQLClient(target, limited)
    q = f'stackproof_limited{{stackproof_test="{test_id}"}}'
    res = check.visible("metrics", lambda: promql.query(q, time_s=t / 1000), lambda r: len(r) >= len(accepted),
                        "accepted samples of the limited tenant")
    check.equal(sorted((s["metric"]["i"], s["value"][1]) for s in res),
                sorted((lb["i"], repr(float(lb["i"])).removesuffix(".0")) for lb, _ in accepted),
                "every accepted sample, exactly")
    check.equal(promql.query(f'count(stackproof_limited_over{{stackproof_test="{test_id}"}})', time_s=t / 1000),
                [], "nothing of the refused request")
