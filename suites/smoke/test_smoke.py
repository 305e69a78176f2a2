"""Smoke: every endpoint answers through the gateway with a token and says 401
without one; one remote-write sample and one log line round-trip exactly."""

from __future__ import annotations

import time

import pytest

from harness.clients import LokiClient, PromQLClient, RemoteWriteClient, poll_until
from harness.clients.logs import logql_selector
from harness.clients.metrics import selector

from ..endpoints import ENDPOINTS, request_endpoint

pytestmark = pytest.mark.smoke


@pytest.mark.parametrize("name", ENDPOINTS)
def test_endpoint_answers_with_token(target, tenant_a, tenant_session, name):
    r = request_endpoint(tenant_session(tenant_a), target, name)
    assert r.status_code in (200, 204), f"{name}: {r.request.method} {r.url} -> {r.status_code} {r.text[:300]}"


@pytest.mark.parametrize("name", ENDPOINTS)
def test_endpoint_refuses_without_token(target, tenant_session, name):
    r = request_endpoint(tenant_session(None), target, name)
    assert r.status_code == 401, f"{name}: {r.request.method} without a token -> {r.status_code}, expected 401"


def test_one_sample_round_trips_exactly(target, tenant_a, test_id):
    labels = {"__name__": "stackproof_smoke_value", "stackproof_test": test_id, "kind": "gauge"}
    t_ms = int(time.time() * 1000)
    value = 12345.678
    r = RemoteWriteClient(target, tenant_a).write([(labels, [(t_ms, value)])])
    assert r.status_code in (200, 204), f"remote write -> {r.status_code} {r.text[:300]}"

    q = f"{selector(labels)}[5m]"  # a range selector returns the raw samples with their timestamps
    promql = PromQLClient(target, tenant_a)
    vis = poll_until(lambda: promql.query(q, time_s=t_ms / 1000 + 1), lambda res: len(res) > 0, timeout=30)
    assert vis.ok, f"sample not visible after {vis.seconds:.1f}s ({vis.detail})"
    assert vis.value == [{"metric": labels, "values": [[t_ms / 1000, repr(value)]]}]


def test_one_log_line_round_trips_exactly(target, tenant_a, test_id):
    labels = {"stackproof_test": test_id, "job": "smoke"}
    t_ns = time.time_ns()
    line = f"smoke line {test_id} ✓ exact"
    loki = LokiClient(target, tenant_a)
    r = loki.push_json([(labels, [(t_ns, line)])])
    assert r.status_code == 204, f"push -> {r.status_code} {r.text[:300]}"

    q = logql_selector(labels)

    def read():
        return loki.query_range(q, t_ns - 60_000_000_000, t_ns + 60_000_000_000)["data"]["result"]

    vis = poll_until(read, lambda res: len(res) > 0, timeout=30)
    assert vis.ok, f"line not visible after {vis.seconds:.1f}s ({vis.detail})"
    assert len(vis.value) == 1
    assert vis.value[0]["stream"] == labels
    assert vis.value[0]["values"] == [[str(t_ns), line]]
