"""Log rules, end to end and per tenant: a LogsQL recording rule's series appears in the
metrics store under the same tenant with exactly the number of lines written in each
evaluation window; a LogsQL alerting rule over lines the test writes fires and reaches
the tenant's webhook through the metrics store's Alertmanager, the tenant kept all
the way (what loki#6001 lost), then resolves.

Lines are written ahead of time at half seconds (``k + 0.5``), so every one-second
evaluation window ``[t - 1 s, t]`` holds a count the test knows, whatever the window's
edges include."""

from __future__ import annotations

import time

import pytest

from harness.clients import LogsPush, PromQLClient

from ._timeline import after_settling, record_latency, record_notifications, settle_s

pytestmark = pytest.mark.alerting


def _push(target, tenant, labels: dict, lines: list[tuple[int, str]]) -> None:
    r = LogsPush(target, tenant).push_json([(labels, lines)])
    if r.status_code != 204:
        raise AssertionError(f"push: HTTP {r.status_code} {r.text[:200]}")


def test_a_log_recording_rule_counts_exactly_the_lines_of_each_window(
        target, tenant_a, log_rules, test_id, rules_cleanup, check):
    first_s = int(time.time()) + 5
    per_second = {first_s + k: k % 4 + 1 for k in range(40)}  # 1, 2, 3, 4, 1, ... lines in second k
    lines = [((s * 1000 + 500) * 10**6 + j, f"line {j} of second {s}") for s, n in per_second.items() for j in range(n)]
    labels = {"test": test_id, "job": "stackproof-log-rules"}
    _push(target, tenant_a, labels, lines)
    rule = {"name": f"logrec-{test_id}", "interval": "1s",
            "rules": [{"record": "stackproof:log_lines:count",
                       "expr": f'_stream:{{test="{test_id}"}} | stats count() as lines',
                       "labels": {"test": test_id}}]}
    rules_cleanup(log_rules(tenant_a), f"ns-{test_id}")
    log_rules(tenant_a).set_group(f"ns-{test_id}", rule)
    promql = PromQLClient(target, tenant_a)
    out = {"__name__": "stackproof:log_lines:count", "stats_result": "lines", "test": test_id}
    need = 10
    got = check.visible("logs", lambda: [(t, v) for t, v in promql.raw_samples(out, time.time(), "5m")
                                         if (t // 1000 - 1) in per_second],
                        lambda s: len(s) >= need, f"{need} evaluations of the log recording rule in the metrics store",
                        timeout=60 + target.alerting.settle_s())
    check.equal(got, [(t, float(per_second[t // 1000 - 1])) for t, _ in got],
                "lines counted in each window [t - 1 s, t] at every evaluation timestamp")


def test_a_log_alert_reaches_the_tenants_webhook_through_the_alertmanager(
        target, tenant_a, tenant_b, log_rules, rule_reads, alert_route, alert_receiver, test_id, rules_cleanup,
        check):
    lead_s, high_s = 6, 12
    first_s = int(time.time()) + lead_s
    errors = [((s * 1000 + 500) * 10**6, f"ERROR payment {s} failed") for s in range(first_s, first_s + high_s)]
    labels = {"test": test_id, "job": "stackproof-log-alerts"}
    _push(target, tenant_a, labels, errors)
    rule = {"name": f"logalert-{test_id}", "interval": "1s",
            "rules": [{"alert": "StackproofLogErrors",
                       "expr": f'_stream:{{test="{test_id}"}} "ERROR" | stats count() as errors | filter errors:>0',
                       "for": "2s", "labels": {"severity": "page", "test": test_id},
                       "annotations": {"summary": "{{ $value }} error lines in {{ $labels.test }}"}}]}
    rules_cleanup(log_rules(tenant_a), f"ns-{test_id}")
    log_rules(tenant_a).set_group(f"ns-{test_id}", rule)
    reads = rule_reads(tenant_a, "logs")
    firing = check.visible("alert", lambda: [a for a in reads.alerts() if a["labels"].get("test") == test_id],
                           lambda a: a and a[0]["state"] == "firing", "the log alert firing in the evaluator",
                           timeout=lead_s + 30 + target.alerting.settle_s())
    want = {"alertname": "StackproofLogErrors", "severity": "page", "test": test_id, "stats_result": "errors",
            "alertgroup": rule["name"]}
    check.equal(firing[0]["labels"], want, "the log alert's labels")
    notes = check.visible("alert", lambda: alert_receiver.notifications(tenant_a.name, test_id),
                          lambda n: any(x["status"] == "resolved" for x in n),
                          "the log alert firing, then resolved, at tenant-a's webhook", timeout=high_s + 90)
    # judged once a duplicate (of either) would have arrived, not at the first resolve
    notes = after_settling(lambda: alert_receiver.notifications(tenant_a.name, test_id),
                           settle_s(alert_route, target.alerting.resend_delay_s))
    check.equal([(n["status"], [x["labels"] for x in n["alerts"]]) for n in notes],
                [("firing", [want]), ("resolved", [want])],
                "one firing and one resolved notification, exactly labelled")
    check.equal(notes[0]["alerts"][0]["annotations"], {"summary": f"1 error lines in {test_id}"},
                "the rendered annotation")
    check.equal(alert_receiver.notifications(tenant_b.name, test_id), [], "nothing reached tenant-b's webhook")
    record_notifications(check, "logs", tenant_a.name, 2, notes)
    # the evaluator's ALERTS series in the metrics store, same tenant: when it turned firing
    fire = PromQLClient(target, tenant_a).raw_samples({"__name__": "ALERTS", **want, "alertstate": "firing"},
                                                      time.time(), "5m")
    check.true(bool(fire), "the log alert's ALERTS series is in the metrics store under tenant-a")
    # its samples are stamped with the evaluated time (evaluation delay before the evaluation)
    fired_s = fire[0][0] / 1000 + target.alerting.evaluation_delay_s
    record_latency(check, "log alert: condition true -> firing", fired_s - (first_s + 0.5))
    record_latency(check, "log alert: firing -> webhook", notes[0]["received_at"] - fired_s)
