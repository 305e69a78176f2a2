"""The OpenTelemetry Collector as a real sender (capability 'otel-collector'):
it tails a file the test writes and takes OTLP on its own port, and ships both
through the gateway with its tenant's token. Every line arrives exactly once,
in file order, under the Collector's stream and with its file's name; an OTLP
export sent to the Collector reaches the metrics store under the same tenant."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from harness.clients import PromQLClient, Select, logs_reader
from harness.clients import otlp as o
from harness.clients.http import TenantHTTP

pytestmark = [pytest.mark.otlp]

LINES = 3000
BURST = 250


@pytest.fixture
def shipper(target) -> dict:
    if not target.has("otel-collector"):
        pytest.skip(f"target {target.name!r} has no 'otel-collector' capability (a Collector that ships for it)")
    return target.otel_collector


def test_every_line_of_a_tailed_file_arrives_once_in_order(target, shipper, test_id, check):
    tenant = target.tenant(shipper["tenant"])
    path = Path(shipper["inbox"]) / f"{test_id}.log"
    lines = [f"{test_id} line {i:05d} {'x' * (i % 64)} \u00e9" for i in range(LINES)]
    since = time.time_ns() - 10**9
    with open(path, "a", encoding="utf-8") as fh:  # in bursts, as a program writes its log
        for start in range(0, LINES, BURST):
            fh.write("".join(f"{line}\n" for line in lines[start:start + BURST]))
            fh.flush()
            time.sleep(0.05)
    reader = logs_reader(target, tenant)
    sel = Select.of({"service.name": shipper["service_name"]}).meta("log.file.name", path.name)
    check.query("the shipped lines", reader.query_text(sel))
    got = check.visible("logs", lambda: reader.read(sel, since, time.time_ns() + 60 * 10**9),
                        lambda e: len(e) >= LINES, f"{LINES} lines shipped by the Collector", timeout=60)
    counts = Counter(e.line for e in got)
    check.equal({line: n for line, n in counts.items() if n != 1}, {}, "no line stored twice")
    check.equal([e.line for e in got], lines, "every line of the file, once, in file order")
    check.equal({(tuple(sorted(e.labels.items())), e.metadata.get("log.file.name")) for e in got},
                {((("service.name", shipper["service_name"]),), path.name)},
                "every line under the Collector's stream, with its file's name")


def test_an_otlp_export_to_the_collector_reaches_the_metrics_store_as_its_tenant(target, shipper, tenant_b,
                                                                                  test_id, check):
    tenant = target.tenant(shipper["tenant"])
    t = int(time.time() * 1000) - 5_000
    points = [o.number_point((t + i) * 1_000_000, float(i), {"stackproof_test": test_id}) for i in range(5)]
    req = o.metrics_request([o.gauge("stackproof.collector.gauge", points)],
                            {"service.name": "via-collector", "service.instance.id": test_id})
    # to the Collector's own OTLP port on loopback: no token; the Collector adds its tenant's
    r = o.OTLPClient(target, None, session=TenantHTTP(target, None)).raw(
        f"{shipper['otlp_url']}/v1/metrics", *o.encode(req))
    check.status(r, 200, "an OTLP metrics export to the Collector")
    labels = {"__name__": "stackproof_collector_gauge", "job": "via-collector", "instance": test_id,
              "stackproof_test": test_id}
    promql = PromQLClient(target, tenant)
    got = check.visible("metrics", lambda: promql.raw_samples(labels, (t + 10) / 1000), lambda s: len(s) >= 5,
                        "the samples, shipped by the Collector", timeout=60)
    check.equal(got, [(t + i, float(i)) for i in range(5)], "every sample, through the Collector")
    if tenant_b.name != tenant.name:
        check.equal(PromQLClient(target, tenant_b).raw_samples(labels, (t + 10) / 1000), [],
                    "none of it under another tenant")
