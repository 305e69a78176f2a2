"""Smoke: every endpoint answers through the gateway with a token and says 401
without one; one remote-write sample and one log line round-trip exactly."""

from __future__ import annotations

import time

import pytest

from harness.clients import LokiClient, PromQLClient, RemoteWriteClient, poll_until
from harness.clients.logs import encode_push_json, logql_selector
from harness.clients.metrics import encode_write_request, selector

pytestmark = pytest.mark.smoke


RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}

# name -> (method, url(target, now), body(now), headers): one request per
# gateway endpoint that succeeds for any tenant and writes nothing others read
# (Loki refuses a push without streams with 422, so the push carries one line
# under a label no test reads)
ENDPOINTS = {
    "metrics write": ("POST", lambda t, now: t.metrics_write_url, lambda now: encode_write_request([]),
                      RW_HEADERS),
    "promql query": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/query?query=vector(1)",
                     lambda now: None, {}),
    "promql query_range": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/query_range?query=vector(1)"
                           f"&start={now - 60}&end={now}&step=15", lambda now: None, {}),
    "promql series": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/series?match[]=up"
                      f"&start={now - 60}&end={now}", lambda now: None, {}),
    "promql labels": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/labels", lambda now: None, {}),
    "promql label values": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/label/__name__/values",
                            lambda now: None, {}),
    "logs push": ("POST", lambda t, now: t.logs_push_url,
                  lambda now: encode_push_json([({"job": "stackproof-smoke-endpoint"}, [(now * 10**9, "ping")])]),
                  {"Content-Type": "application/json"}),
    "logql query_range": ("GET", lambda t, now: f"{t.logs_query_url}/query_range?query=" + '{job="none"}'
                          + f"&start={now - 60}&end={now}", lambda now: None, {}),
    "logql labels": ("GET", lambda t, now: f"{t.logs_query_url}/labels", lambda now: None, {}),
    "logql series": ("GET", lambda t, now: f"{t.logs_query_url}/series?match[]=" + '{job="none"}',
                     lambda now: None, {}),
}


def _request(session, target, name):
    method, url, body, headers = ENDPOINTS[name]
    now = int(time.time())
    return session.request(method, url(target, now), data=body(now), headers=headers)


@pytest.mark.parametrize("name", ENDPOINTS)
def test_endpoint_answers_with_token(target, tenant_a, tenant_session, name):
    r = _request(tenant_session(tenant_a), target, name)
    assert r.status_code in (200, 204), f"{name}: {r.request.method} {r.url} -> {r.status_code} {r.text[:300]}"


@pytest.mark.parametrize("name", ENDPOINTS)
def test_endpoint_refuses_without_token(target, tenant_session, name):
    r = _request(tenant_session(None), target, name)
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
