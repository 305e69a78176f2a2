"""Alerting across the release upgrade and the rollback: rule groups (metrics and
logs), Alertmanager configs and silences are as the tenants set them; an alert that
fires before the upgrade is still firing after it, without a notification beyond
what the route's repeat interval allows (counted) and without a resolve of its own;
once its condition stops, exactly one resolved notification follows.

The upgrade gate runs with --no-skips, so this test never skips: it checks what the
target has (log rules with 'log-alerting', notifications with 'alerting-webhook'; the
metrics ruler and Alertmanager every platform stackproof builds has) and says which.

Runs after the data upgrade test and its rollback (file order: a restart of Cortex
cuts its head block, after which it takes no sample older than that block's end,
and the data test writes three hours back): from --upgrade-from to --upgrade-to
and back again."""

from __future__ import annotations

import time

import pytest

from harness.clients.alerting import AlertmanagerConfig

from ..alerting._timeline import record_notifications

pytestmark = pytest.mark.upgrade


def _firing(reads, test_id: str) -> list[str]:
    return [a["state"] for a in reads.alerts() if a["labels"].get("test") == test_id]


def test_alerting_state_and_a_firing_alert_survive_the_upgrade_and_the_rollback(
        target, tenant_a, system_tenant, test_id, platform_control, upgrade_releases, metrics_rules, rule_reads,
        alertmanager, check, request):
    old, new = upgrade_releases
    log_rules = request.getfixturevalue("log_rules") if target.has("log-alerting") else None
    webhook = target.has("alerting-webhook")
    alert_route = request.getfixturevalue("alert_route") if webhook else None
    alert_receiver = request.getfixturevalue("alert_receiver") if webhook else None
    print(f"alerting across the upgrade: metrics rules, Alertmanager config, silences, a firing alert"
          f"{', log rules' if log_rules else ' (no log-alerting: no log rules)'}"
          f"{', notifications' if webhook else ' (no alerting-webhook: notifications not counted)'}")
    if type(target).load(target.path).release != old.name:
        platform_control.upgrade(old)
    rules, am = metrics_rules(tenant_a), alertmanager(tenant_a)
    config = AlertmanagerConfig(target, system_tenant)
    ns = f"ns-{test_id}"
    # always true: its condition does not depend on data a restart may hide for a moment
    firing_group = {"name": f"firing-{test_id}", "interval": "1s",
                    "rules": [{"alert": "StackproofAcrossUpgrade", "expr": "vector(1)", "for": "2s",
                               "labels": {"severity": "page", "test": test_id},
                               "annotations": {"summary": "fires across the upgrade"}}]}
    log_group = {"name": f"logs-{test_id}", "interval": "1s",
                 "rules": [{"record": "stackproof:upgrade_log_lines",
                            "expr": f'test:"{test_id}" | stats count() as n'}]}
    cfg = {"route": {"receiver": f"upgrade-{test_id}"}, "receivers": [{"name": f"upgrade-{test_id}"}]}
    check.status(rules.set_group(ns, firing_group), 202, "set the alerting rule")
    if log_rules:
        log_rules(tenant_a).set_group(ns, log_group)
    check.status(config.set(cfg), 201, "the system tenant's Alertmanager config")
    now = time.time()
    sid = am.silence({"test": f"{test_id}-other"}, now - 1, now + 3600, "kept across the upgrade")
    reads = rule_reads(tenant_a)
    check.visible("alert", lambda: _firing(reads, test_id), lambda s: s == ["firing"], "firing before the upgrade",
                  timeout=30 + target.alerting.settle_s())
    if webhook:
        check.visible("alert", lambda: alert_receiver.notifications(tenant_a.name, test_id), bool,
                      "its notification before the upgrade", timeout=30)

    try:
        for release in (new, old):
            platform_control.upgrade(release)
            what = f"after the {'upgrade to' if release is new else 'rollback to'} {release.name}"
            check.equal(rules.get_group(ns, firing_group["name"]), firing_group, f"the alerting rule group {what}")
            if log_rules:
                check.equal(log_rules(tenant_a).get_group(ns, log_group["name"]), log_group,
                            f"the log rule group {what}")
            check.equal(config.get()["alertmanager_config"], cfg, f"the Alertmanager config {what}")
            check.true(any(s["id"] == sid and s["status"]["state"] == "active" for s in am.silences()),
                       f"the silence is active {what}")
            check.visible("alert", lambda: _firing(reads, test_id), lambda s: s == ["firing"], f"firing {what}",
                          timeout=30 + target.alerting.settle_s())
            if not webhook:
                continue
            # long enough for a resolve (the alert's end is 4 resend delays ahead) or a duplicate to arrive
            time.sleep(4 * target.alerting.resend_delay_s + 3 * alert_route["group_interval_s"] + 2)
            notes = alert_receiver.notifications(tenant_a.name, test_id)
            check.equal([n["status"] for n in notes], ["firing"],
                        f"one firing notification in all and no resolve {what} (repeat interval "
                        f"{alert_route['repeat_interval_s']}s)")
    finally:
        rules.delete_namespace(ns)
        if log_rules:
            log_rules(tenant_a).delete_namespace(ns)
        config.delete()
        am.expire(sid)
    if not webhook:
        return
    # the condition stops (its group is gone): the alert ends at the Alertmanager, resolved once
    notes = check.visible("alert", lambda: alert_receiver.notifications(tenant_a.name, test_id),
                          lambda n: n[-1]["status"] == "resolved", "the resolve once the rule is gone",
                          timeout=60 + 4 * target.alerting.resend_delay_s)
    time.sleep(3 * alert_route["group_interval_s"])
    notes = alert_receiver.notifications(tenant_a.name, test_id)
    check.equal([n["status"] for n in notes], ["firing", "resolved"], "across both swaps: one firing, one resolved")
    record_notifications(check, "metrics (across the upgrade and the rollback)", tenant_a.name, 2, notes)
