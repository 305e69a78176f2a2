"""A real sender: the platform's Prometheus agent scrapes and remote-writes
through the gateway as the system tenant, and only there."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from harness.clients import PromQLClient
from harness.components.prometheus import EXPORTERS_JOB
from harness.exporter import HistogramExporter

pytestmark = pytest.mark.metrics


def test_agent_series_arrive_under_the_system_tenant_only(target, tenants, check):
    if not target.has("agent"):
        pytest.skip(f"target {target.name!r} has no 'agent' capability")
    system = PromQLClient(target, target.system_tenant)
    q = 'up{stackproof_platform!=""}'
    check.query("agent up", q)
    # one scrape job per role: the stores and the sender itself
    jobs = ("logs-store", "metrics-store", "sender")
    res = check.visible("agent", lambda: system.query(q), lambda r: {s["metric"].get("job") for s in r}
                        >= set(jobs), "agent scrapes under the system tenant", timeout=60)
    check.equal(sorted((s["metric"]["job"], s["value"][1]) for s in res if s["metric"]["job"] in jobs),
                [(j, "1") for j in jobs], "every scraped target is up")
    for t in tenants:
        check.equal(PromQLClient(target, t).query(q), [], f"no agent series under {t.name}")


def test_the_agent_sends_a_scraped_histogram_native_and_classic_bucket_by_bucket(target, test_id, check):
    """The agent scrapes an exporter of the harness's (protobuf exposition: the histogram
    in native schema-0 buckets and in classic buckets at once) and sends it with remote
    write 2.0; both come back from the store exactly as the exporter served them.

    The exporter listens at the target's ``agent_scrape_host`` (loopback where the agent
    runs on this machine; where a cluster's pods reach this machine otherwise) and is
    listed in ``agent_scrape_dir``. That the agent scraped it at all is checked first, so
    a list the agent does not read, or an exporter it cannot reach, is named as such
    rather than as a histogram that never arrived."""
    if not target.has("agent-scrape"):
        pytest.skip(f"target {target.name!r} has no 'agent-scrape' capability (exporters the agent scrapes)")
    observations = [0.0, 0.3, 0.7, 1.0, 1.5, 2.0, 3.0, 3.5, 6.0, 6.0, 100.0]
    name = "stackproof_agent_histogram"
    with HistogramExporter(name, {"stackproof_test": test_id}, observations, [0.5, 1.0, 2.0, 4.0],
                           host=target.agent_scrape_host) as ex:
        listing = Path(target.agent_scrape_dir) / f"{test_id}.json"
        listing.write_text(json.dumps([{"targets": [ex.address], "labels": {"stackproof_test": test_id}}]))
        try:
            check.visible("agent", lambda: ex.scrapes, bool,
                          f"the agent's scrape of the exporter at {ex.address} (listed in {listing}; without "
                          "one, the agent does not read agent_scrape_dir or cannot reach agent_scrape_host)",
                          timeout=60)
            system = PromQLClient(target, target.system_tenant)
            native = {"__name__": name, "job": EXPORTERS_JOB, "instance": ex.address, "stackproof_test": test_id}
            got = check.visible("agent", lambda: system.raw_histograms(native, time.time(), "1m"), bool,
                                "the native histogram, scraped and sent by the agent", timeout=60)
            zero, buckets = ex.native()
            want = [(3, -0.0, 0.0, float(zero))] + [(0, 2.0 ** (i - 1), 2.0 ** i, float(c))
                                                    for i, c in sorted(buckets.items())]
            check.equal(got[-1][1], {"count": float(ex.count), "sum": ex.sum, "buckets": want},
                        "the native histogram: count, sum, the zero bucket and every schema-0 bucket")
            classic = {}
            for le, cum in ex.classic():
                lb = {**native, "__name__": f"{name}_bucket", "le": "+Inf" if le == math.inf else _le(le)}
                s = check.visible("agent", lambda lb=lb: system.raw_samples(lb, time.time(), "1m"), bool,
                                  f"classic bucket le={lb['le']}", timeout=30)
                classic[lb["le"]] = s[-1][1]
            check.equal(classic, {("+Inf" if le == math.inf else _le(le)): float(c) for le, c in ex.classic()},
                        "every classic bucket (cumulative)")
        finally:
            listing.unlink(missing_ok=True)


def _le(bound: float) -> str:
    """``le`` as Prometheus 3 writes a scraped bound: normalised to a float's text ("1.0", "0.5")."""
    return repr(float(bound))
