"""Alerting state across a crash and a graceful restart of the metrics store (its
ruler and Alertmanager): rule groups, Alertmanager configs and silences are what
a tenant set through the API, and must be there when the store is back; log rule
groups (files the provider keeps) must be what the logs rule evaluator itself reports
loaded, and evaluates, after a crash of it."""

from __future__ import annotations

import time

import pytest

from fixtures.alerting import log_rules_of, need, rules_load_timeout
from fixtures.defects import known_defect
from harness.clients.alerting import Alertmanager, AlertmanagerConfig, RuleGroups, parse_rfc3339
from harness.clients.poll import poll_until

from .test_crash import one_at_a_time  # noqa: F401  (the durability tests take the platform down in turns)

pytestmark = pytest.mark.durability



def _state(target, tenant, system, test_id):
    rules, config, am = RuleGroups(target, tenant), AlertmanagerConfig(target, system), Alertmanager(target, tenant)
    group = {"name": f"durable-{test_id}", "interval": "1s",
             "rules": [{"alert": "StackproofDurable", "expr": "vector(1) > 2", "for": "1m",
                        "labels": {"test": test_id}, "annotations": {"summary": "never fires"}}]}
    cfg = {"route": {"receiver": f"durable-{test_id}"}, "receivers": [{"name": f"durable-{test_id}"}]}
    assert rules.set_group(f"ns-{test_id}", group).status_code == 202
    assert config.set(cfg).status_code == 201
    now = time.time()
    sid = am.silence({"test": test_id}, now - 1, now + 3600, f"durable {test_id}")
    return rules, config, am, group, cfg, sid


def _back(am) -> None:
    vis = poll_until(lambda: am.silences() is not None, bool, timeout=60)
    assert vis.ok, f"the Alertmanager did not answer after the restart: {vis.detail}"


def _active(am, sid) -> bool:
    return any(s["id"] == sid and s["status"]["state"] == "active" for s in am.silences())


@pytest.mark.parametrize("how", ["kill -9", "graceful stop"])
def test_rule_groups_and_alertmanager_configs_survive_a_restart_of_the_metrics_store(
        target, tenant_a, system_tenant, test_id, platform_control, check, how):
    rules, config, am, group, cfg, _ = _state(target, tenant_a, system_tenant, test_id)
    try:
        if how == "kill -9":
            platform_control.kill_component("metrics-store")
        else:
            check.equal(platform_control.stop_component("metrics-store"), "stopped", "the metrics store stops")
        platform_control.start_component("metrics-store")
        _back(am)
        check.equal(rules.get_group(f"ns-{test_id}", group["name"]), group, f"the rule group after {how}")
        check.equal(config.get()["alertmanager_config"], cfg, f"the Alertmanager config after {how}")
    finally:
        rules.delete_namespace(f"ns-{test_id}")
        config.delete()


def test_silences_survive_a_graceful_stop_of_the_metrics_store(target, tenant_a, system_tenant, test_id,
                                                               platform_control, check):
    rules, config, am, _, _, sid = _state(target, tenant_a, system_tenant, test_id)
    try:
        check.equal(platform_control.stop_component("metrics-store"), "stopped", "the metrics store stops")
        platform_control.start_component("metrics-store")
        _back(am)
        check.true(_active(am, sid), "the silence is active after a graceful stop")
    finally:
        rules.delete_namespace(f"ns-{test_id}")
        config.delete()


def test_silences_survive_kill_9_of_the_metrics_store(target, tenant_a, system_tenant, test_id, platform_control,
                                                      check, request):
    known_defect(request, target, "silences-lost-on-kill")
    rules, config, am, _, _, sid = _state(target, tenant_a, system_tenant, test_id)
    try:
        platform_control.kill_component("metrics-store")
        platform_control.start_component("metrics-store")
        _back(am)
        check.true(_active(am, sid), "the silence is active after kill -9")
    finally:
        rules.delete_namespace(f"ns-{test_id}")
        config.delete()


def _last_evaluation(rules, name: str) -> float:
    """The latest ``lastEvaluation`` the evaluator reports of a group's rules (seconds, its
    clock; before the first evaluation Go's zero time, far below any real one)."""
    g = rules.reads.group(name)
    return max((parse_rfc3339(r["lastEvaluation"]) for r in (g or {}).get("rules", []) if r.get("lastEvaluation")),
               default=float("-inf"))


def test_log_rule_groups_survive_kill_9_of_the_log_rule_evaluator(target, tenant_a, test_id, platform_control, check):
    """The provider keeps the rule files; what is proven is the evaluator's side: before the
    crash it reports the group loaded as set, after kill -9 and a start it reports it
    loaded again, every rule, expression, label, annotation and interval as set, and
    evaluates it again (a later ``lastEvaluation`` than before the crash, both its clock)."""
    need(target, "log-alerting")
    rules = log_rules_of(target, platform_control)(tenant_a)
    ns = f"ns-{test_id}"
    group = {"name": f"durable-logs-{test_id}", "interval": "1s",
             "rules": [{"record": "stackproof:durable_log_lines", "expr": f'test:"{test_id}" | stats count() as n',
                        "labels": {"test": test_id}},
                       {"alert": "StackproofDurableLogs",  # never true: no such lines are written
                        "expr": f'test:"{test_id}" "ERROR" | stats count() as n | filter n:>0',
                        "for": "1m", "labels": {"severity": "page", "test": test_id},
                        "annotations": {"summary": "{{ $value }} errors in {{ $labels.test }}"}}]}
    want = rules.as_loaded(ns, [group])
    wait = rules_load_timeout(target)
    try:
        rules.set_group(ns, group)
        got = check.visible("alert", lambda: rules.loaded().get(ns), lambda g: g == want,
                            "the evaluator reports the log group loaded as set", timeout=wait, settle=True)
        check.equal(got, want, "the evaluator reports the log group loaded as set")
        before = check.visible("alert", lambda: _last_evaluation(rules, group["name"]), lambda t: t > 0,
                               "the log group evaluated before the crash", timeout=wait)
        platform_control.kill_component("logs-ruler")
        platform_control.start_component("logs-ruler")
        got = check.visible("alert", lambda: rules.loaded().get(ns), lambda g: g == want,
                            "the evaluator reports the log group loaded again after kill -9", timeout=wait,
                            settle=True)
        check.equal(got, want, "the log rule group the evaluator reports after kill -9")
        check.visible("alert", lambda: _last_evaluation(rules, group["name"]), lambda t: t > before,
                      "the log group evaluated again after kill -9", timeout=wait)
    finally:
        rules.delete_namespace(ns)
