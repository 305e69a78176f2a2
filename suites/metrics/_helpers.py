"""Shared by the metrics suite: write series, read raw samples back."""

from __future__ import annotations

import math
import time

from harness.clients import PromQLClient


def now_ms() -> int:
    return int(time.time() * 1000)


def raw_samples(promql: PromQLClient, labels: dict, at_ms: int, window: str = "1h") -> list[tuple[int, float]]:
    """Every stored sample of one series in (at - window, at], as (ms, value)."""
    return promql.raw_samples(labels, at_ms / 1000, window)


def same_float(a: float, b: float) -> bool:
    """Exact equality, with NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b
