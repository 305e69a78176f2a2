"""The continuous writers' bookkeeping: outages and the acked-versus-stored comparison."""

from __future__ import annotations

from harness.writers import Attempt, WriteLog, _compare, retryable


def test_retry_rules_follow_remote_write():
    assert retryable(0) and retryable(429) and retryable(500) and retryable(503)
    assert not retryable(400) and not retryable(401) and not retryable(413) and not retryable(415)


def test_outages_span_first_failure_to_next_success():
    log = WriteLog("metrics")
    for t, status in ((1.0, 200), (2.0, 503), (2.5, 0), (4.0, 200), (5.0, 500)):
        log.attempts.append(Attempt(t, 1, status, 0.01, "" if status == 200 else f"e{status}"))
    assert log.outages() == [{"from": 2.0, "to": 4.0, "seconds": 2.0, "first_error": "e503"},
                             {"from": 5.0, "to": None, "seconds": None, "first_error": "e500"}]


def test_compare_finds_lost_duplicated_unexpected_and_moved_writes():
    log = WriteLog("logs")
    log.sent = {1: 100, 2: 200, 3: 300, 4: 400}
    log.acked = {1: 100, 2: 200, 3: 300}
    r = _compare(log, [(1, 100), (2, 200), (2, 200), (3, 301), (4, 400), (9, 900)])
    assert r["lost"] == [] and r["duplicated"] == [2] and r["unexpected"] == [9]
    assert r["wrong_timestamp"] == [3] and r["stored_unacked"] == 1
    assert _compare(log, [(1, 100)])["lost"] == [2, 3]
