"""Rule groups per tenant, through the gateway: set, list, get and delete come back
equal; an invalid group is refused with a 4xx naming the problem and the tenant's
groups are untouched. Metrics rules through the ruler's API. Log rules are set the logs
dialect's way (VictoriaLogs: rule files the provider keeps and checks with vmalert
itself, since vmalert has no write API) and judged by what the evaluator reports loaded
through its rules API: every group, rule, expression, labels, annotations, interval and
type as set, nothing after a delete. The provider's files are never the read-back: a
provider that writes them but whose evaluator does not reload them fails here."""

from __future__ import annotations

import time

import pytest
import yaml

from fixtures.alerting import rules_load_timeout
from fixtures.defects import known_defect
from harness.errors import StackproofError

pytestmark = pytest.mark.alerting


def recording_group(test_id: str, name: str = "recording") -> dict:
    return {"name": f"{name}-{test_id}", "interval": "1s",
            "rules": [{"record": "stackproof:rules_api:sum", "expr": f'sum(stackproof_rules_api{{test="{test_id}"}})',
                       "labels": {"test": test_id}}]}


def alerting_group(test_id: str) -> dict:
    return {"name": f"alerting-{test_id}", "interval": "1s",
            "rules": [{"alert": "StackproofRulesAPI", "expr": f'stackproof_rules_api{{test="{test_id}"}} > 1',
                       "for": "5s", "labels": {"severity": "page", "test": test_id},
                       "annotations": {"summary": "value {{ $value }} of {{ $labels.test }}"}}]}


def test_metrics_rule_groups_set_list_get_delete(metrics_rules, tenant_a, test_id, check):
    rules = metrics_rules(tenant_a)
    ns = f"ns-{test_id}"
    groups = [recording_group(test_id), alerting_group(test_id)]
    for g in groups:
        check.status(rules.set_group(ns, g), 202, f"set group {g['name']}")
    for g in groups:
        check.equal(rules.get_group(ns, g["name"]), g, f"group {g['name']} read back")
    check.equal(rules.list().get(ns), sorted(groups, key=lambda g: g["name"]), "the namespace's groups, by name")
    replaced = {**groups[0], "interval": "2s"}
    check.status(rules.set_group(ns, replaced), 202, "replace a group")
    check.equal(rules.get_group(ns, replaced["name"]), replaced, "the replaced group")
    check.status(rules.delete_group(ns, replaced["name"]), 202, "delete one group")
    check.equal(rules.get_group(ns, replaced["name"]), None, "the deleted group is gone")
    check.equal(rules.list().get(ns), [groups[1]], "the other group stays")
    check.status(rules.delete_namespace(ns), 202, "delete the namespace")
    check.equal(rules.list().get(ns), None, "the namespace is gone")


INVALID_METRICS_GROUPS = {
    "bad PromQL": ({"name": "g", "rules": [{"record": "r", "expr": "sum(("}]}, "parse"),
    "an alert with a bad for": ({"name": "g", "rules": [{"alert": "A", "expr": "vector(1)", "for": "soon"}]},
                                "soon"),
    "a group without a name": ({"rules": [{"record": "r", "expr": "vector(1)"}]}, "name"),
    "a rule that records and alerts": ({"name": "g", "rules": [{"record": "r", "alert": "A", "expr": "vector(1)"}]},
                                       "record"),
    "a rule without an expression": ({"name": "g", "rules": [{"record": "r"}]}, "expr"),
    "a template that does not parse": ({"name": "g", "rules": [{"alert": "A", "expr": "vector(1)",
                                                                "annotations": {"x": "{{ .Nope "}}]}, "template"),
}


# the cases whose refusal a known defect leaves nameless
REFUSAL_DEFECTS = {"bad PromQL": "empty-promql-refusal", "an alert with a bad for": "vague-rule-decode-refusal"}


@pytest.mark.parametrize("case", INVALID_METRICS_GROUPS)
def test_an_invalid_metrics_rule_group_is_refused_and_nothing_stored_is_harmed(target, metrics_rules, tenant_a, test_id,
                                                                                check, case, request):
    if case in REFUSAL_DEFECTS:
        known_defect(request, target, REFUSAL_DEFECTS[case])
    rules = metrics_rules(tenant_a)
    ns = f"ns-{test_id}"
    kept = recording_group(test_id)
    check.status(rules.set_group(ns, kept), 202, "a valid group first")
    bad, names = INVALID_METRICS_GROUPS[case]
    try:
        r = rules.set_group(ns, bad)
        check.status(r, 400, f"{case} is refused")
        check.equal(rules.list().get(ns), [kept], "the tenant's groups are untouched")
        check.true(names.lower() in r.text.lower(), f"the refusal of {case} names the problem",
                   f"{names!r} not in {r.text.strip()[:200]!r}")
    finally:
        rules.delete_namespace(ns)


def test_a_metrics_rule_group_with_an_unknown_field_is_refused(target, metrics_rules, tenant_a, test_id, check,
                                                               request):
    known_defect(request, target, "unknown-rule-field-dropped")
    rules = metrics_rules(tenant_a)
    ns = f"ns-{test_id}"
    group = recording_group(test_id)
    group["rules"][0]["labeles"] = {"typo": "of labels"}  # a typo a user makes
    r = rules.set_group(ns, group)
    rules.delete_namespace(ns)
    check.status(r, 400, "a group with an unknown field 'labeles' is refused")


def log_group(test_id: str, name: str = "logs") -> dict:
    return {"name": f"{name}-{test_id}", "interval": "1s",
            "rules": [{"record": "stackproof:log_lines:count",
                       "expr": f'test:"{test_id}" | stats count() as lines', "labels": {"test": test_id}}]}


def log_alert_group(test_id: str) -> dict:
    return {"name": f"c-{test_id}", "interval": "2s",
            # never true (no such lines are written): it must not notify anyone
            "rules": [{"alert": "StackproofLogRulesAPI",
                       "expr": f'test:"{test_id}" "ERROR" | stats count() as n | filter n:>0',
                       "for": "1m30s", "labels": {"severity": "page", "test": test_id},
                       "annotations": {"summary": "{{ $value }} errors in {{ $labels.test }}"}},
                      {"record": "stackproof:log_errors:count", "expr": f'test:"{test_id}" | stats count() as n'}]}


def loaded_as(check, rules, target, ns: str, groups: list[dict], what: str):
    """What the evaluator reports loaded from ``ns`` becomes what ``groups`` set there must
    load as (nothing for none), within the bound of a rule file's reload; a diff if not."""
    want = rules.as_loaded(ns, groups)
    got = check.visible("alert", lambda: rules.loaded().get(ns), lambda g: g == want, what,
                        timeout=rules_load_timeout(target), settle=True)
    check.equal(got, want, what)


def test_log_rule_groups_set_list_get_delete(target, log_rules, tenant_a, test_id, check):
    rules = log_rules(tenant_a)
    ns = f"ns-{test_id}"
    groups = [log_group(test_id, "a"), log_group(test_id, "b"), log_alert_group(test_id)]
    try:
        for g in groups:
            rules.set_group(ns, g)
        loaded_as(check, rules, target, ns, groups, "the evaluator reports the namespace's log groups as set")
        replaced = {**groups[1], "interval": "3s",
                    "rules": [{**groups[1]["rules"][0], "labels": {"test": test_id, "replaced": "yes"}}]}
        rules.set_group(ns, replaced)
        loaded_as(check, rules, target, ns, [groups[0], replaced, groups[2]],
                  "the evaluator reports the replaced log group, the others as they were")
        rules.delete_group(ns, groups[0]["name"])
        loaded_as(check, rules, target, ns, [replaced, groups[2]],
                  "one log group deleted: the evaluator no longer reports it, the others stay")
        rules.delete_namespace(ns)
        loaded_as(check, rules, target, ns, [], "the log namespace deleted: the evaluator reports none of it")
    finally:
        rules.delete_namespace(ns)


INVALID_LOG_GROUPS = {
    "bad LogsQL": ({"name": "g", "rules": [{"record": "r", "expr": "| stats count( as"}]}, "bad LogsQL expr"),
    "an unknown field": ({"name": "g", "rules": [{"record": "r", "expr": "* | stats count() as n",
                                                  "labeles": {"x": "y"}}]}, "labeles"),
    "duplicate group names": ([{"name": "g", "rules": [{"record": "r", "expr": "* | stats count() as n"}]}] * 2,
                              "duplicate"),
    "a group that picks its own tenant": ({"name": "g", "headers": ["AccountID: 2"],
                                           "rules": [{"record": "r", "expr": "* | stats count() as n"}]}, "tenant"),
}


@pytest.mark.parametrize("case", INVALID_LOG_GROUPS)
def test_an_invalid_log_rule_group_is_refused_and_nothing_stored_is_harmed(target, log_rules, tenant_a, test_id,
                                                                            check, case):
    rules = log_rules(tenant_a)
    ns = f"ns-{test_id}"
    kept = log_group(test_id)
    try:
        rules.set_group(ns, kept)
        loaded_as(check, rules, target, ns, [kept], "the valid log group loaded first")
        bad, names = INVALID_LOG_GROUPS[case]
        with pytest.raises(StackproofError) as refused:
            if isinstance(bad, list):  # a whole file: what a set of one group cannot make
                rules.set_file(ns, yaml.safe_dump({"groups": bad}))
            else:
                rules.set_group(ns, bad)
        message = str(refused.value)
        check.true(names.lower() in message.lower() and "\n" not in message,
                   f"the refusal of {case} is one line naming the problem", message[:300])
        # the provider's part: the file it keeps is the one before; the evaluator's: still loaded as set
        check.equal(rules.kept().get(ns), [kept], "the tenant's log rule file is untouched")
        # a bad file installed anyway would be read within one reload: wait that long, then judge
        time.sleep(2 * target.alerting.poll_interval_s + target.alerting.evaluation_interval_s)
        check.equal(rules.loaded().get(ns), rules.as_loaded(ns, [kept]),
                    "the evaluator still reports the tenant's log group as set")
    finally:
        rules.delete_namespace(ns)
