"""Eventual visibility: poll a read until it matches, within a bounded deadline,
and record how long the data took to become visible."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Visibility:
    ok: bool
    seconds: float  # from the start of polling (just after the write was acknowledged)
    attempts: int
    value: Any  # the last thing read
    detail: str = ""


def poll_until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30.0,
               interval: float = 0.1, max_interval: float = 0.5) -> Visibility:
    """Call ``read`` until ``done(result)`` or ``timeout`` seconds pass.

    Exceptions from ``read`` count as "not yet" and are kept as the detail."""
    t0 = time.monotonic()
    attempts = 0
    value: Any = None
    detail = ""
    while True:
        attempts += 1
        try:
            value = read()
            detail = ""
            if done(value):
                return Visibility(True, time.monotonic() - t0, attempts, value)
        except Exception as exc:  # a read failing during start-up is "not visible yet"
            detail = f"{type(exc).__name__}: {exc}"[:300]
        elapsed = time.monotonic() - t0
        if elapsed >= timeout:
            return Visibility(False, elapsed, attempts, value, detail)
        time.sleep(min(interval, max(0.0, timeout - elapsed)))
        interval = min(interval * 1.5, max_interval)
