"""Shared by the alerting suite: series written ahead of time (so every rule evaluation
sees a value the test knows), the run's notifications of one test, how many
notifications an alert may cause (computed from the input's time window and the
route's timings, never from what arrived), and how long to wait before judging that
exactly one arrived (so that a late duplicate is seen)."""

from __future__ import annotations

import math
import time

from harness.clients import RemoteWriteClient
from harness.summary import PROP_LATENCY, PROP_NOTIFICATIONS

STEP_MS = 1000


def write_timeline(target, tenant, labels: dict, start_ms: int, values: list[float]) -> None:
    """One sample a second from ``start_ms``: ``values[k]`` at ``start_ms + k s`` (future ones
    too: the metrics store accepts samples up to its creation grace period ahead)."""
    samples = [(start_ms + k * STEP_MS, v) for k, v in enumerate(values)]
    r = RemoteWriteClient(target, tenant).write([(labels, samples)])
    if r.status_code not in (200, 204):
        raise AssertionError(f"remote write of the timeline: HTTP {r.status_code} {r.text[:200]}")


def value_at(start_ms: int, values: list[float], t_ms: int) -> float | None:
    """What an instant query at ``t_ms`` sees: the latest sample at or before it."""
    k = (t_ms - start_ms) // STEP_MS
    return values[k] if 0 <= k < len(values) else (values[-1] if k >= len(values) else None)


def firing_notifications(notes: list[dict]) -> list[dict]:
    return [n for n in notes if n["status"] == "firing"]


def repeat_bounds(window_s: float, route: dict, evaluation_interval_s: float) -> range:
    """How many firing notifications an alert may cause whose condition holds for ``window_s``
    seconds of written samples, routed with ``route``'s timings (:data:`fixtures.alerting.ROUTE`,
    the fast repeat route), from those figures alone, never from what arrived: the ruler sees
    the condition within one evaluation interval of its start and of its end, so the alert is
    firing for ``window_s`` give or take one interval; the first notification leaves after the
    group wait, and each repeat once the repeat interval has passed, at the next flush (up to
    one group interval later). Most: a repeat every repeat interval over the longest window;
    least: a repeat every repeat interval plus a group interval over the shortest, less the
    group wait and a flush."""
    repeat, gi, gw = route["fast_repeat_interval_s"], route["group_interval_s"], route["group_wait_s"]
    longest, shortest = window_s + evaluation_interval_s, window_s - evaluation_interval_s
    most = 1 + math.floor(longest / repeat)
    least = 1 + math.floor(max(0.0, shortest - gw - gi) / (repeat + gi))
    return range(least, most + 1)


def nominal_repeats(window_s: float, route: dict) -> int:
    """The firing notifications of an alert firing for exactly ``window_s`` with no delay at all:
    the first, then one each repeat interval (the summary's expected count)."""
    return 1 + math.floor(window_s / route["fast_repeat_interval_s"])


def settle_s(route: dict, resend_delay_s: float) -> float:
    """How long after a notification a duplicate of it could still arrive: the ruler sends the
    alert again after its resend delay, and the Alertmanager flushes the group every group
    interval (two, for a flush in flight), so a duplicate either makes is in by then."""
    return resend_delay_s + 2 * route["group_interval_s"] + route["group_wait_s"]


def after_settling(read, settle: float):
    """Wait ``settle`` seconds, then read again: what a judgement of "exactly one" must see,
    rather than the first read that had one."""
    time.sleep(settle)
    return read()


def one_firing_after(check, read, what: str, timeout: float, settle: float) -> list[dict]:
    """``read`` (a test's notifications at its receiver) shows a notification within
    ``timeout``; ``settle`` seconds after the first, exactly one, and it is firing: a
    duplicate that arrives late is seen, not missed by judging at the first arrival."""
    check.visible("alert", read, bool, what, timeout=timeout)
    notes = after_settling(read, settle)
    check.equal([n["status"] for n in notes], ["firing"],
                f"exactly one firing notification, {settle:.0f}s after the first ({what})")
    return notes


def judge_repeats(check, signal: str, tenant: str, notes: list[dict], window_s: float, route: dict,
                  evaluation_interval_s: float) -> None:
    """The notifications of one alert whose condition held for ``window_s`` seconds on the
    fast repeat route: as many firing ones as the window and the route's timings allow
    (:func:`repeat_bounds`, computed from those, not from what arrived), none closer than
    the repeat interval, one resolve and nothing after it; the counts go to the summary."""
    repeat = route["fast_repeat_interval_s"]
    fired = firing_notifications(notes)
    resolved = [n for n in notes if n["status"] == "resolved"]
    allowed = repeat_bounds(window_s, route, evaluation_interval_s)
    record_notifications(check, signal, tenant, nominal_repeats(window_s, route) + 1, notes,
                         range(allowed.start + 1, allowed.stop + 1))
    check.true(len(fired) in allowed,
               f"firing notifications of an alert whose condition held {window_s:g}s, at a {repeat:g}s repeat "
               "interval", f"{len(fired)}, allowed {allowed.start}..{allowed.stop - 1}")
    check.equal(len(resolved), 1, "one resolved notification")
    check.equal(notes[-1]["status"], "resolved", "nothing after the resolve")
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(fired, fired[1:])]
    check.true(all(g >= repeat - 0.5 for g in gaps), "no repeat before the repeat interval",
               f"gaps {[round(g, 1) for g in gaps]}")


def record_latency(check, what: str, seconds: float) -> None:
    check.node.user_properties.append((PROP_LATENCY, {"what": what, "seconds": round(seconds, 4)}))


def record_notifications(check, signal: str, tenant: str, expected: int, notes: list[dict],
                         allowed: range | None = None) -> None:
    """One alert's notification counts for the session table: ``expected`` is computed from
    the test's input and the route (never from what arrived); with ``allowed`` (the bounds
    the timings leave), what arrived beyond its top counts as duplicates, what fell short of
    its bottom as missing; without, beyond or short of ``expected``."""
    got = len(notes)
    allowed = allowed or range(expected, expected + 1)
    check.node.user_properties.append((PROP_NOTIFICATIONS, {
        "signal": signal, "tenant": tenant, "expected": expected, "received": got,
        "duplicates": max(0, got - (allowed.stop - 1)), "missing": max(0, allowed.start - got)}))


def now_ms() -> int:
    return int(time.time() * 1000)
