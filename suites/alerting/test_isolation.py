"""Tenant isolation of rules and alerting: tenant B cannot list, read, change or delete
A's rule groups, Alertmanager config, alerts or silences; A's alerts never reach B's
receiver. (The 401s of every rules and alerts path are in the security suite's
endpoint table.) The Alertmanager config cases use the system and limited tenants,
whose configs the run's route leaves alone."""

from __future__ import annotations

import time

import pytest

from harness.clients.alerting import AlertmanagerConfig, rfc3339

pytestmark = pytest.mark.alerting


def test_another_tenant_cannot_see_or_touch_a_tenants_rule_groups(metrics_rules, tenant_a, tenant_b, test_id, check):
    a, b = metrics_rules(tenant_a), metrics_rules(tenant_b)
    ns = f"ns-{test_id}"
    group = {"name": f"mine-{test_id}", "rules": [{"record": "stackproof:iso", "expr": "vector(1)"}]}
    check.status(a.set_group(ns, group), 202, "A sets a group")
    try:
        check.true(ns not in b.list(), "B's list has no namespace of A's")
        # a tenant header B sends itself is the gateway's to set, never B's
        for header, value in (("X-Scope-OrgID", tenant_a.name), ("AccountID", str(tenant_a.account_id))):
            r = b.http.get(b.base, headers={header: value})
            check.true(ns not in (r.text if r.status_code == 200 else ""),
                       f"B's list with its own {header}: {value} has no namespace of A's", f"HTTP {r.status_code}")
        check.equal(b.get_group(ns, group["name"]), None, "B cannot read A's group")
        b.delete_group(ns, group["name"])
        b.delete_namespace(ns)
        check.equal(a.get_group(ns, group["name"]), group, "A's group survives B's deletes")
        theirs = {**group, "rules": [{"record": "stackproof:iso", "expr": "vector(2)"}]}
        check.status(b.set_group(ns, theirs), 202, "B sets a group of the same namespace and name: its own")
        check.equal(a.get_group(ns, group["name"]), group, "A's group is unchanged")
        check.equal(b.get_group(ns, group["name"]), theirs, "B reads its own")
    finally:
        a.delete_namespace(ns)
        b.delete_namespace(ns)


def test_another_tenant_cannot_see_or_touch_a_tenants_alertmanager_config(target, own_alertmanager_configs, check):
    system_tenant, limited = own_alertmanager_configs
    mine, theirs = AlertmanagerConfig(target, system_tenant), AlertmanagerConfig(target, limited)
    config = {"route": {"receiver": "system-null"}, "receivers": [{"name": "system-null"}]}
    check.status(mine.set(config), 201, "the system tenant sets its Alertmanager config")
    try:
        seen = theirs.get()
        check.true(seen is None or seen["alertmanager_config"] != config,
                   "another tenant does not read the system tenant's config", str(seen)[:200])
        theirs.delete()
        check.equal(mine.get()["alertmanager_config"], config, "the config survives another tenant's delete")
        other = {"route": {"receiver": "limited-null"}, "receivers": [{"name": "limited-null"}]}
        check.status(theirs.set(other), 201, "another tenant sets its own")
        check.equal(mine.get()["alertmanager_config"], config, "the system tenant's config is unchanged")
    finally:
        mine.delete()
        theirs.delete()


def test_another_tenant_cannot_see_or_touch_a_tenants_alerts_or_silences(
        alertmanager, alert_route, alert_receiver, tenant_a, tenant_b, test_id, check):
    a, b = alertmanager(tenant_a), alertmanager(tenant_b)
    now = time.time()
    labels = {"alertname": "StackproofIsolation", "test": test_id}
    r = a.http.post(f"{a.base}/alerts", json=[{"labels": labels, "annotations": {"summary": "A's own"},
                                               "startsAt": rfc3339(now - 1), "endsAt": rfc3339(now + 120)}])
    check.status(r, 200, "A posts an alert to its Alertmanager")
    check.visible("alert", lambda: a.alerts([f'test="{test_id}"']), bool, "A's alert at A's Alertmanager")
    check.equal(b.alerts([f'test="{test_id}"']), [], "B's Alertmanager has none of A's alerts")
    sid = a.silence({"test": test_id, "alertname": "Nothing"}, now, now + 600, "A's silence")
    check.true(all(s["id"] != sid for s in b.silences()), "B's silences have none of A's")
    check.status(b.get_silence(sid), (404,), "B cannot read A's silence")
    b.expire(sid)
    check.true(any(s["id"] == sid and s["status"]["state"] == "active" for s in a.silences()),
               "A's silence is still active after B's expire")
    notes = check.visible("alert", lambda: alert_receiver.notifications(tenant_a.name, test_id), bool,
                          "A's alert at A's webhook", timeout=30)
    check.equal([n["tenant"] for n in notes], [tenant_a.name], "A's alert reached A's receiver path")
    check.equal(alert_receiver.notifications(tenant_b.name, test_id), [], "nothing of A's reached B's receiver")
    a.expire(sid)

