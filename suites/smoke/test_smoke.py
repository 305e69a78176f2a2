"""Smoke: every endpoint answers through the gateway with a token and says 401
without one; one remote-write sample and one log line round-trip exactly."""

from __future__ import annotations

import time

import pytest

from harness.clients import LogsPush, PromQLClient, RemoteWriteClient, Select, logs_reader
from harness.clients.metrics import selector

from ..endpoints import endpoint_names, ok_statuses, request_endpoint

pytestmark = pytest.mark.smoke


def test_every_endpoint_answers_with_a_token_and_refuses_without(target, tenant_a, tenant_session, check):
    for name in endpoint_names(target):
        check.status(request_endpoint(tenant_session(tenant_a), target, name), ok_statuses(target, name),
                     f"{name} with a token")
        check.status(request_endpoint(tenant_session(None), target, name), 401, f"{name} without a token")


def test_one_sample_round_trips_exactly(target, tenant_a, test_id, check):
    labels = {"__name__": "stackproof_smoke_value", "stackproof_test": test_id, "kind": "gauge"}
    t_ms = int(time.time() * 1000)
    value = 12345.678
    check.status(RemoteWriteClient(target, tenant_a).write([(labels, [(t_ms, value)])]), (200, 204), "remote write")
    q = f"{selector(labels)}[5m]"  # a range selector returns the raw samples with their timestamps
    check.query("raw samples", q)
    promql = PromQLClient(target, tenant_a)
    got = check.visible("metrics", lambda: promql.query(q, time_s=t_ms / 1000 + 1), bool, "the sample")
    check.equal(got, [{"metric": labels, "values": [[t_ms / 1000, repr(value)]]}], "labels, timestamp and value")


def test_one_log_line_round_trips_exactly(target, tenant_a, test_id, check):
    labels = {"stackproof_test": test_id, "job": "smoke"}
    t_ns = time.time_ns()
    line = f"smoke line {test_id} ✓ exact"
    check.status(LogsPush(target, tenant_a).push_json([(labels, [(t_ns, line)])]), 204, "push")
    reader = logs_reader(target, tenant_a)
    sel = Select.of(labels)
    check.query("stream", reader.query_text(sel))
    got = check.visible("logs", lambda: reader.read(sel, t_ns - 60 * 10**9, t_ns + 60 * 10**9), bool, "the line")
    check.equal([(e.ts, e.labels, e.line, e.metadata) for e in got], [(t_ns, labels, line, {})],
                "timestamp, stream labels and line")
