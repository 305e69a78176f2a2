"""Metrics rules, end to end: a recording rule's output equals what the test computes
from what it wrote, at every evaluation; an alerting rule goes inactive -> pending ->
firing with ``for:``, is seen in the alerts API and the ``ALERTS`` series, and the
tenant's Alertmanager delivers it to the run's webhook with exactly the expected
labels and rendered annotations, then a resolved notification; a silence suppresses
it and expiring the silence lets exactly one through (judged after a settle window, so
a late duplicate is seen); the number of notifications follows the route's repeat
interval, bounded from the input's time window and the route's timings alone.

Every series is written ahead of time, one sample a second, so that whatever moment
the ruler evaluates at, the test knows the value it saw."""

from __future__ import annotations

import math
import time

import pytest

from harness.clients import PromQLClient

from ._timeline import (after_settling, judge_repeats, now_ms, one_firing_after, record_latency,
                        record_notifications, settle_s, value_at, write_timeline)

pytestmark = pytest.mark.alerting


def _ns(test_id: str) -> str:
    return f"ns-{test_id}"


def test_a_recording_rule_equals_what_was_written_at_every_evaluation(target, tenant_a, metrics_rules, test_id,
                                                                     rules_cleanup, check):
    start = now_ms() - 30_000
    values = {i: [float(i * 1000 + k) for k in range(150)] for i in range(3)}
    for i, vals in values.items():
        write_timeline(target, tenant_a, {"__name__": "stackproof_rec_input", "test": test_id, "i": str(i)},
                       start, vals)
    group = {"name": f"rec-{test_id}", "interval": "1s",
             "rules": [{"record": "stackproof:rec_input:sum",
                        "expr": f'sum by (test) (stackproof_rec_input{{test="{test_id}"}})'}]}
    rules_cleanup(metrics_rules(tenant_a), _ns(test_id))
    check.status(metrics_rules(tenant_a).set_group(_ns(test_id), group), 202, "set the recording rule")
    promql = PromQLClient(target, tenant_a)
    out = {"__name__": "stackproof:rec_input:sum", "test": test_id}
    need = 8
    got = check.visible("metrics", lambda: promql.raw_samples(out, time.time(), "5m"), lambda s: len(s) >= need,
                        f"{need} evaluations of the recording rule",
                        timeout=30 + target.alerting.settle_s() + need * target.alerting.evaluation_interval_s)
    expected = [(t, sum(value_at(start, vals, t) for vals in values.values())) for t, _ in got]
    check.equal(got, expected, "the recorded sum at every evaluation timestamp")


def _alert_rule(test_id: str, name: str, for_s: int, extra: dict | None = None) -> dict:
    return {"name": f"alert-{test_id}-{name}", "interval": "1s",
            "rules": [{"alert": "StackproofHigh", "expr": f'stackproof_alert_input{{test="{test_id}"}} > 1',
                       "for": f"{for_s}s", "labels": {"severity": "page", **(extra or {})},
                       "annotations": {"summary": "{{ $labels.test }} is at {{ $value }}",
                                       "runbook": "https://runbooks.example/stackproof"}}]}


def _alerts_of(reads, test_id: str) -> list[dict]:
    return [a for a in reads.alerts() if a["labels"].get("test") == test_id]


def test_an_alert_goes_pending_then_firing_and_reaches_the_webhook_exactly_then_resolves(
        target, tenant_a, metrics_rules, rule_reads, alert_route, alert_receiver, test_id, rules_cleanup, check):
    for_s, lead_s, high_s = 4, 8, 20
    start = now_ms() - 10_000
    # 0 until lead_s from now, 7 for high_s seconds, then 0 again
    true_ms = start + (10 + lead_s) * 1000
    values = [7.0 if true_ms <= start + k * 1000 < true_ms + high_s * 1000 else 0.0 for k in range(120)]
    labels = {"__name__": "stackproof_alert_input", "test": test_id}
    write_timeline(target, tenant_a, labels, start, values)
    rules_cleanup(metrics_rules(tenant_a), _ns(test_id))
    check.status(metrics_rules(tenant_a).set_group(_ns(test_id), _alert_rule(test_id, "life", for_s)), 202,
                 "set the alerting rule")
    reads = rule_reads(tenant_a)
    promql = PromQLClient(target, tenant_a)

    # pending first, while the condition holds for less than 'for'
    pending = check.visible("alert", lambda: _alerts_of(reads, test_id), lambda a: bool(a),
                            "the alert in the alerts API", timeout=lead_s + target.alerting.settle_s() + 30)
    check.equal([a["state"] for a in pending], ["pending"], "the alert is pending before 'for' has passed")
    firing = check.visible("alert", lambda: _alerts_of(reads, test_id), lambda a: a and a[0]["state"] == "firing",
                           "the alert firing", timeout=for_s + 30)
    a = firing[0]
    want_labels = {"alertname": "StackproofHigh", "severity": "page", "test": test_id}
    check.equal(a["labels"], want_labels, "the firing alert's labels")
    check.equal(a["annotations"], {"summary": f"{test_id} is at 7", "runbook": "https://runbooks.example/stackproof"},
                "the firing alert's rendered annotations")

    # the webhook: one firing notification, exactly labelled, then one resolved
    notes = check.visible("alert", lambda: alert_receiver.notifications(tenant_a.name, test_id),
                          lambda n: any(x["status"] == "resolved" for x in n), "firing, then resolved, at the webhook",
                          timeout=high_s + lead_s + 60)
    # judged once a duplicate (of either) would have arrived, not at the first resolve
    notes = after_settling(lambda: alert_receiver.notifications(tenant_a.name, test_id),
                           settle_s(alert_route, target.alerting.resend_delay_s))
    rcv = alert_route["receiver"]
    check.equal([(n["status"], n["receiver"], [x["labels"] for x in n["alerts"]]) for n in notes],
                [("firing", rcv, [want_labels]), ("resolved", rcv, [want_labels])],
                "the notifications: one firing, one resolved, exactly labelled (repeat interval 1h: no repeats)")
    check.equal(notes[0]["alerts"][0]["annotations"], a["annotations"], "the annotations as delivered")
    record_notifications(check, "metrics", tenant_a.name, 2, notes)

    # the ALERTS series: pending from the first evaluation that saw the condition, then firing
    at = time.time()
    pend = promql.raw_samples({"__name__": "ALERTS", "alertname": "StackproofHigh", "alertstate": "pending",
                               "severity": "page", "test": test_id}, at, "5m")
    fire = promql.raw_samples({"__name__": "ALERTS", "alertname": "StackproofHigh", "alertstate": "firing",
                               "severity": "page", "test": test_id}, at, "5m")
    check.true(bool(pend) and bool(fire), "ALERTS has pending and firing samples", f"{len(pend)}, {len(fire)}")
    check.true(pend[0][0] >= true_ms and pend[-1][0] < fire[0][0] and fire[0][0] - pend[0][0] >= for_s * 1000,
               "pending starts once the condition holds and turns firing after 'for'",
               f"condition {true_ms}, pending {pend[0][0]}..{pend[-1][0]}, firing from {fire[0][0]}")
    check.true(fire[-1][0] < true_ms + high_s * 1000 + 2000, "firing ends when the condition stops",
               f"last firing sample {fire[-1][0]}, condition ended {true_ms + high_s * 1000}")
    check.equal({v for _, v in pend + fire}, {1.0}, "ALERTS samples are 1")
    record_latency(check, "metrics alert: condition true -> firing", (fire[0][0] - true_ms) / 1000)
    record_latency(check, "metrics alert: firing -> webhook", notes[0]["received_at"] - fire[0][0] / 1000)


def test_a_silence_suppresses_the_notification_and_expiring_it_lets_one_through(
        target, tenant_a, metrics_rules, alertmanager, alert_route, alert_receiver, test_id, rules_cleanup, check):
    am = alertmanager(tenant_a)
    now = time.time()
    sid = am.silence({"test": test_id}, now - 5, now + 3600, f"stackproof {test_id}")
    check.true(any(s["id"] == sid and s["status"]["state"] == "active" for s in am.silences()),
               "the silence is active")
    values = [7.0] * 150
    start = now_ms() - 10_000
    write_timeline(target, tenant_a, {"__name__": "stackproof_alert_input", "test": test_id}, start, values)
    rules_cleanup(metrics_rules(tenant_a), _ns(test_id))
    check.status(metrics_rules(tenant_a).set_group(_ns(test_id), _alert_rule(test_id, "silenced", 0)), 202,
                 "set the alerting rule")
    # the Alertmanager has it, silenced
    silenced = check.visible("alert", lambda: am.alerts([f'test="{test_id}"']),
                             lambda a: a and a[0]["status"]["state"] != "unprocessed",
                             "the alert at the Alertmanager, processed", timeout=target.alerting.settle_s() + 30)
    check.equal([(x["status"]["state"], x["status"]["silencedBy"]) for x in silenced], [("suppressed", [sid])],
                "the alert is suppressed by the silence")
    wait = 3 * alert_route["group_interval_s"] + alert_route["group_wait_s"] + 2
    time.sleep(wait)
    check.equal(alert_receiver.notifications(tenant_a.name, test_id), [],
                f"no notification while silenced ({wait}s, several group intervals)")
    check.status(am.expire(sid), 200, "expire the silence")
    expired_at = time.time()
    notes = one_firing_after(check, lambda: alert_receiver.notifications(tenant_a.name, test_id),
                             "a notification once the silence expired", timeout=30,
                             settle=settle_s(alert_route, target.alerting.resend_delay_s))
    record_latency(check, "metrics alert: silence expired -> webhook", notes[0]["received_at"] - expired_at)


def test_notifications_repeat_at_the_repeat_interval_no_storm_none_dropped(
        target, tenant_a, metrics_rules, rule_reads, alert_route, alert_receiver, test_id, rules_cleanup, check):
    repeat = alert_route["fast_repeat_interval_s"]
    high_s = 4 * repeat + 3
    # the condition starts once the rule is surely loaded, so that the ruler sees all of its window
    lead_s = 5 + math.ceil(target.alerting.settle_s())
    start = now_ms() - 10_000
    true_ms = start + (10 + lead_s) * 1000
    values = [7.0 if true_ms <= start + k * 1000 < true_ms + high_s * 1000 else 0.0
              for k in range(10 + lead_s + high_s + 120)]
    write_timeline(target, tenant_a, {"__name__": "stackproof_alert_input", "test": test_id}, start, values)
    rules_cleanup(metrics_rules(tenant_a), _ns(test_id))
    check.status(metrics_rules(tenant_a).set_group(_ns(test_id), _alert_rule(test_id, "repeat", 0,
                                                                             {"repeat": "fast"})), 202,
                 "set the alerting rule (fast repeat route)")
    notes = check.visible("alert", lambda: alert_receiver.notifications(tenant_a.name, test_id),
                          lambda n: any(x["status"] == "resolved" for x in n), "firing repeats, then resolved",
                          timeout=lead_s + high_s + 90)
    # a repeat or a duplicate after the resolve would come within a flush or a resend
    notes = after_settling(lambda: alert_receiver.notifications(tenant_a.name, test_id),
                           settle_s(alert_route, target.alerting.resend_delay_s))
    judge_repeats(check, "metrics", tenant_a.name, notes, high_s, alert_route, target.alerting.evaluation_interval_s)
