"""Shared by the metrics suite: write series, read raw samples back."""

from __future__ import annotations

import math
import time

from harness.clients import PromQLClient
from harness.clients.metrics import parse_value, selector


def now_ms() -> int:
    return int(time.time() * 1000)


def raw_samples(promql: PromQLClient, labels: dict, at_ms: int, window: str = "1h") -> list[tuple[int, float]]:
    """Every stored sample of one series in (at - window, at], as (ms, value).

    A range selector returns raw samples with their own timestamps, unlike an
    instant query, which returns the evaluation time."""
    res = promql.query(f"{selector(labels)}[{window}]", time_s=at_ms / 1000)
    if not res:
        return []
    assert len(res) == 1, f"expected one series for {selector(labels)}, got {len(res)}"
    return [(round(float(t) * 1000), parse_value(v)) for t, v in res[0]["values"]]


def same_float(a: float, b: float) -> bool:
    """Exact equality, with NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b
