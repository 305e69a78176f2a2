"""Alerting across the release upgrade and the rollback: rule groups (metrics and
logs), Alertmanager configs and silences are as the tenants set them; an alert that
fires before the upgrade is still firing after it, without a notification beyond
what the route's repeat interval allows (counted) and without a resolve of its own;
once its condition stops, exactly one resolved notification follows.

One upgrade and one rollback serve every part (``across``, module-scoped): it sets up
each part the target has, swaps the releases, and keeps what it read after each swap;
each part is then a test of its own that judges what was kept. The metrics ruler and
Alertmanager part always runs (every platform stackproof builds has them); the log
rules part skips only through the capability (``need(target, 'log-alerting')``), the
notifications part only through ``alert_receiver`` ('alerting-webhook'), both before
the upgrade is made (session-scoped, so they come first), so that
``--no-skips`` (the upgrade gate) names a part a target leaves out rather than the
case narrowing itself and passing.

Log rule groups are judged by what the logs rule evaluator reports loaded after each
swap (its rules API), not by the files the provider keeps.

Runs after the data upgrade test and its rollback (file order: a restart of Cortex
cuts its head block, after which it takes no sample older than that block's end,
and the data test writes three hours back): from --upgrade-from to --upgrade-to
and back again."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import pytest

from fixtures.alerting import log_rules_of, need, rules_load_timeout
from harness.clients.alerting import AlertmanagerConfig
from harness.clients.poll import poll_until

from ..alerting._timeline import record_notifications

pytestmark = pytest.mark.upgrade


def _firing(reads, test_id: str) -> list[str]:
    return [a["state"] for a in reads.alerts() if a["labels"].get("test") == test_id]


def _read(fn):
    """What ``fn()`` read, or the error it raised (kept for the test to show, not raised here)."""
    try:
        return fn()
    except Exception as exc:  # a read that fails after a swap is a finding of the part that reads it
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


@dataclass
class Across:
    """What was set before the upgrade, and what was read back after each swap (by phase)."""

    firing_group: dict
    config: dict
    phases: list[str] = field(default_factory=list)  # "before the upgrade", "after the upgrade to X", ...
    rule_group: dict = field(default_factory=dict)
    alertmanager_config: dict = field(default_factory=dict)
    silence_active: dict = field(default_factory=dict)
    firing: dict = field(default_factory=dict)
    log_want: list | None = None  # what the evaluator must report for the log group (None: no log rules)
    log_loaded: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)  # phase -> the alert's notifications (webhook part only)
    final_notes: list = field(default_factory=list)  # after its rule is gone
    route: dict | None = None


@pytest.fixture(scope="module")
def upgrade_test_id(request, run_id: str) -> str:
    """A label value unique to this module's upgrade in this run."""
    return f"{run_id}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]}"


@pytest.fixture(scope="module")
def across(target, tenant_a, system_tenant, upgrade_test_id, platform_control, upgrade_releases, metrics_rules,
           rule_reads, alertmanager, request):
    old, new = upgrade_releases
    test_id = upgrade_test_id
    webhook = target.has("alerting-webhook")
    alert_route = request.getfixturevalue("alert_route") if webhook else None
    alert_receiver = request.getfixturevalue("alert_receiver") if webhook else None
    log_rules = log_rules_of(target, platform_control)(tenant_a) if target.has("log-alerting") else None
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
                 "rules": [{"record": "stackproof:upgrade_log_lines", "expr": f'test:"{test_id}" | stats count() as n',
                            "labels": {"test": test_id}},
                           {"alert": "StackproofLogsAcrossUpgrade",  # never true: it must add no notification
                            "expr": f'test:"{test_id}" "ERROR" | stats count() as n | filter n:>0', "for": "1m",
                            "labels": {"severity": "page", "test": test_id},
                            "annotations": {"summary": "{{ $value }} errors"}}]}
    cfg = {"route": {"receiver": f"upgrade-{test_id}"}, "receivers": [{"name": f"upgrade-{test_id}"}]}
    out = Across(firing_group=firing_group, config=cfg, route=alert_route)
    reads = rule_reads(tenant_a)
    sid = None

    def observe(phase: str) -> None:
        out.phases.append(phase)
        out.rule_group[phase] = _read(lambda: rules.get_group(ns, firing_group["name"]))
        out.alertmanager_config[phase] = _read(lambda: config.get()["alertmanager_config"])
        out.silence_active[phase] = _read(lambda: any(s["id"] == sid and s["status"]["state"] == "active"
                                                      for s in am.silences()))
        out.firing[phase] = poll_until(lambda: _firing(reads, test_id), lambda s: s == ["firing"],
                                       timeout=30 + target.alerting.settle_s()).value
        if log_rules is not None:
            out.log_loaded[phase] = poll_until(lambda: log_rules.loaded().get(ns), lambda g: g == out.log_want,
                                               timeout=rules_load_timeout(target)).value
        if webhook:
            if phase == out.phases[0]:
                poll_until(lambda: alert_receiver.notifications(tenant_a.name, test_id), bool, timeout=30)
            else:
                # long enough for a resolve (the alert's end is 4 resend delays ahead) or a duplicate to arrive
                time.sleep(4 * target.alerting.resend_delay_s + 3 * alert_route["group_interval_s"] + 2)
            out.notes[phase] = alert_receiver.notifications(tenant_a.name, test_id)

    try:
        assert rules.set_group(ns, firing_group).status_code == 202, "set the alerting rule"
        if log_rules is not None:
            log_rules.set_group(ns, log_group)
            out.log_want = log_rules.as_loaded(ns, [log_group])
        assert config.set(cfg).status_code == 201, "the system tenant's Alertmanager config"
        now = time.time()
        sid = am.silence({"test": f"{test_id}-other"}, now - 1, now + 3600, "kept across the upgrade")
        observe("before the upgrade")
        for release in (new, old):
            platform_control.upgrade(release)
            observe(f"after the {'upgrade to' if release is new else 'rollback to'} {release.name}")
    finally:
        rules.delete_namespace(ns)
        if log_rules is not None:
            log_rules.delete_namespace(ns)
        config.delete()
        if sid is not None:
            am.expire(sid)
    if webhook:
        # the condition stops (its group is gone): the alert ends at the Alertmanager, resolved once
        poll_until(lambda: alert_receiver.notifications(tenant_a.name, test_id),
                   lambda n: bool(n) and n[-1]["status"] == "resolved", timeout=60 + 4 * target.alerting.resend_delay_s)
        time.sleep(3 * alert_route["group_interval_s"])
        out.final_notes = alert_receiver.notifications(tenant_a.name, test_id)
    return out


def test_metrics_rules_config_silence_and_a_firing_alert_survive_the_upgrade_and_the_rollback(across, check):
    check.equal(across.firing[across.phases[0]], ["firing"], "the alert firing before the upgrade")
    for what in across.phases[1:]:
        check.equal(across.rule_group[what], across.firing_group, f"the alerting rule group {what}")
        check.equal(across.alertmanager_config[what], across.config, f"the Alertmanager config {what}")
        check.equal(across.silence_active[what], True, f"the silence is active {what}")
        check.equal(across.firing[what], ["firing"], f"the alert firing {what}")


@pytest.fixture(scope="session")
def log_alerting(target) -> None:
    """Skips, naming the capability, for a target without 'log-alerting': session-scoped, so
    that it runs before the module's upgrade is made for a test that cannot use it."""
    need(target, "log-alerting")


def test_log_rule_groups_survive_the_upgrade_and_the_rollback(log_alerting, across, check):
    for what in across.phases:
        check.equal(across.log_loaded[what], across.log_want,
                    f"the log rule group as the evaluator reports it loaded {what}")


def test_notifications_across_the_upgrade_and_the_rollback(alert_receiver, tenant_a, across, check):
    route = across.route
    check.true(bool(across.notes[across.phases[0]]), "the alert's notification before the upgrade")
    for what in across.phases[1:]:
        check.equal([n["status"] for n in across.notes[what]], ["firing"],
                    f"one firing notification in all and no resolve {what} (repeat interval "
                    f"{route['repeat_interval_s']}s)")
    check.equal([n["status"] for n in across.final_notes], ["firing", "resolved"],
                "across both swaps: one firing, one resolved once the rule is gone")
    record_notifications(check, "metrics (across the upgrade and the rollback)", tenant_a.name, 2, across.final_notes)
