"""Tenant isolation of rules and alerting: tenant B cannot list, read, change or delete
A's rule groups, Alertmanager config, alerts or silences; A's alerts never reach B's
receiver. (The 401s of every rules and alerts path are in the security suite's
endpoint table.) The Alertmanager config cases use the system and limited tenants,
whose configs the run's route leaves alone.

"Nothing of A's seen" counts only from a read that answered: B holds a group, a config,
an alert and a silence of its own, and each of B's reads must answer 200 with exactly
B's own and nothing of A's. A refused or failing read (a 4xx or 5xx, as a gateway that
passes B's own tenant header on would cause) proves nothing, and fails the check."""

from __future__ import annotations

import time

import pytest
import yaml

from harness.clients.alerting import AlertmanagerConfig, rfc3339

pytestmark = pytest.mark.alerting


def _answered(check, r, what: str):
    """The parsed body of a read that answered 200; any other answer fails ``what``."""
    check.status(r, 200, f"{what}: the read answers (a refusal shows nothing)")
    return yaml.safe_load(r.text) or {}


def test_another_tenant_cannot_see_or_touch_a_tenants_rule_groups(metrics_rules, tenant_a, tenant_b, test_id, check):
    a, b = metrics_rules(tenant_a), metrics_rules(tenant_b)
    ns, own = f"ns-{test_id}", f"own-{test_id}"
    group = {"name": f"mine-{test_id}", "rules": [{"record": "stackproof:iso", "expr": "vector(1)"}]}
    bs = {"name": f"bs-{test_id}", "rules": [{"record": "stackproof:iso", "expr": "vector(3)"}]}
    check.status(a.set_group(ns, group), 202, "A sets a group")
    # B holds a group of its own, so that each of B's reads has something to answer with
    check.status(b.set_group(own, bs), 202, "B sets a group of its own")
    try:
        def namespaces(listed: dict) -> dict:
            return {k: listed.get(k) for k in (own, ns)}

        check.equal(namespaces(_answered(check, b.read(), "B's list")), {own: [bs], ns: None},
                    "B's list has its own namespace and none of A's")
        # a tenant header B sends itself is the gateway's to set, never B's
        for header, value in (("X-Scope-OrgID", tenant_a.name), ("AccountID", str(tenant_a.account_id))):
            listed = _answered(check, b.read(headers={header: value}), f"B's list with {header}")
            check.equal(namespaces(listed), {own: [bs], ns: None},
                        f"B's list with its own {header}: {value} is B's, with none of A's")
        check.equal(_answered(check, b.read(own, bs["name"]), "B's read of its own group"), bs,
                    "B reads its own group by name")
        # B's read of its own group by name answered above: the path works, and A's is not there
        check.status(b.read(ns, group["name"]), 404, "B's read of A's group by name: not found")
        b.delete_group(ns, group["name"])
        b.delete_namespace(ns)
        check.equal(a.get_group(ns, group["name"]), group, "A's group survives B's deletes")
        theirs = {**group, "rules": [{"record": "stackproof:iso", "expr": "vector(2)"}]}
        check.status(b.set_group(ns, theirs), 202, "B sets a group of the same namespace and name: its own")
        check.equal(a.get_group(ns, group["name"]), group, "A's group is unchanged")
        check.equal(_answered(check, b.read(ns, group["name"]), "B's read of its same-named group"),
                    theirs, "B reads its own")
        check.equal(_answered(check, a.read(), "A's list").get(ns), [group], "A's list has its own group there")
    finally:
        a.delete_namespace(ns)
        b.delete_namespace(ns)
        b.delete_namespace(own)


def test_another_tenant_cannot_see_or_touch_a_tenants_alertmanager_config(target, own_alertmanager_configs, check):
    system_tenant, limited = own_alertmanager_configs
    mine, theirs = AlertmanagerConfig(target, system_tenant), AlertmanagerConfig(target, limited)
    config = {"route": {"receiver": "system-null"}, "receivers": [{"name": "system-null"}]}
    other = {"route": {"receiver": "limited-null"}, "receivers": [{"name": "limited-null"}]}
    # the other tenant holds a config of its own, so that its read has something to answer with
    check.status(theirs.set(other), 201, "another tenant sets its own")
    check.status(mine.set(config), 201, "the system tenant sets its Alertmanager config")
    try:
        seen = _answered(check, theirs.http.get(theirs.url), "the other tenant's config read")
        check.equal(yaml.safe_load(seen.get("alertmanager_config") or "") or {}, other,
                    "another tenant reads its own config, not the system tenant's")
        check.status(theirs.delete(), 200, "another tenant deletes its own config")
        check.equal(mine.get()["alertmanager_config"], config, "the config survives another tenant's delete")
        check.status(theirs.set(other), 201, "another tenant sets its own again")
        check.equal(mine.get()["alertmanager_config"], config, "the system tenant's config is unchanged")
    finally:
        mine.delete()
        theirs.delete()


def test_another_tenant_cannot_see_or_touch_a_tenants_alerts_or_silences(
        alertmanager, alert_route, alert_receiver, tenant_a, tenant_b, test_id, check):
    a, b = alertmanager(tenant_a), alertmanager(tenant_b)
    now = time.time()
    labels = {"alertname": "StackproofIsolation", "test": test_id}
    for am, owner in ((a, "A"), (b, "B")):  # B has an alert of its own: its reads have something to show
        r = am.http.post(f"{am.base}/alerts", json=[{"labels": labels, "annotations": {"summary": f"{owner}'s own"},
                                                     "startsAt": rfc3339(now - 1), "endsAt": rfc3339(now + 120)}])
        check.status(r, 200, f"{owner} posts an alert to its Alertmanager")

    def summaries(am):
        return sorted(x["annotations"].get("summary") for x in am.alerts([f'test="{test_id}"']))

    check.visible("alert", lambda: summaries(a), lambda s: s == ["A's own"], "A's alert at A's Alertmanager")
    check.equal(check.visible("alert", lambda: summaries(b), bool, "B's alert at B's Alertmanager"), ["B's own"],
                "B's Alertmanager has its own alert and none of A's")
    sid = a.silence({"test": test_id, "alertname": "Nothing"}, now, now + 600, "A's silence")
    bsid = b.silence({"test": test_id, "alertname": "Nothing"}, now, now + 600, "B's silence")
    try:
        check.equal([s["id"] for s in b.silences() if s["id"] in (sid, bsid)], [bsid],
                    "B's silences have its own and none of A's")
        check.status(b.get_silence(bsid), 200, "B reads its own silence by id")
        check.status(b.get_silence(sid), 404, "B's read of A's silence by id: not found")
        b.expire(sid)
        check.true(any(s["id"] == sid and s["status"]["state"] == "active" for s in a.silences()),
                   "A's silence is still active after B's expire")
        notes = check.visible("alert", lambda: alert_receiver.notifications(tenant_a.name, test_id), bool,
                              "A's alert at A's webhook", timeout=30)
        check.equal([(n["tenant"], [x["annotations"]["summary"] for x in n["alerts"]]) for n in notes],
                    [(tenant_a.name, ["A's own"])], "A's alert reached A's receiver path")
        theirs = check.visible("alert", lambda: alert_receiver.notifications(tenant_b.name, test_id), bool,
                               "B's alert at B's webhook", timeout=30)
        check.equal([(n["tenant"], [x["annotations"]["summary"] for x in n["alerts"]]) for n in theirs],
                    [(tenant_b.name, ["B's own"])], "B's receiver has B's own alert and nothing of A's")
    finally:
        a.expire(sid)
        b.expire(bsid)

