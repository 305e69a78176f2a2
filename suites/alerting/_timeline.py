"""Shared by the alerting suite: series written ahead of time (so every rule evaluation
sees a value the test knows), the run's notifications of one test, and how many
notifications an alert may cause."""

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


def expected_repeats(firing_s: float, repeat_s: float, group_interval_s: float) -> range:
    """How many firing notifications an alert firing for ``firing_s`` seconds may cause: the
    first, then one each ``repeat_s`` (late by up to one group interval each): no storm, none dropped."""
    most = 1 + math.floor(firing_s / repeat_s)
    least = 1 + math.floor(firing_s / (repeat_s + group_interval_s))
    return range(least, most + 1)


def record_latency(check, what: str, seconds: float) -> None:
    check.node.user_properties.append((PROP_LATENCY, {"what": what, "seconds": round(seconds, 4)}))


def record_notifications(check, signal: str, tenant: str, expected: int, notes: list[dict]) -> None:
    """One alert's notification counts for the session table: ``expected`` is what the caller's
    bounds allow; what arrived beyond it counts as duplicates, what fell short as missing."""
    got = len(notes)
    check.node.user_properties.append((PROP_NOTIFICATIONS, {
        "signal": signal, "tenant": tenant, "expected": expected, "received": got,
        "duplicates": max(0, got - expected), "missing": max(0, expected - got)}))


def now_ms() -> int:
    return int(time.time() * 1000)
