"""A real sender: the platform's Prometheus agent scrapes and remote-writes
through the gateway as the system tenant, and only there."""

from __future__ import annotations

import pytest

from harness.clients import PromQLClient

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
