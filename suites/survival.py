"""One check for bad input that may bring a logs store down: acknowledged lines
of two tenants just before it, the bad request, then every one of those lines
must still be readable and the request must get a 2xx or a 4xx. Run on a
platform of the test's own (``own_platform``), so no other test is harmed."""

from __future__ import annotations

import time
from typing import Callable

import requests

from harness.clients import LogsPush, Select, logs_reader

WINDOW = 60 * 10**9


def acked_lines_survive(check, platform, send_bad: Callable[[object], requests.Response], what: str) -> None:
    """``send_bad(tenant)`` sends the bad request as the platform's first user tenant."""
    a, b = platform.user_tenants[:2]
    t_ns = time.time_ns() - 5 * 10**9
    acked = {}
    for tenant in (a, b):  # acknowledged lines of two tenants, just before the bad request
        stream = {"job": "before", "owner": tenant.name}
        lines = [(t_ns + i, f"acked {i} of {tenant.name}") for i in range(50)]
        check.status(LogsPush(platform, tenant).push_proto([(stream, lines)]), 204, f"{tenant.name} pushes")
        acked[tenant.name] = (stream, lines)
    r = send_bad(a)
    outcome = f"HTTP {r.status_code}"
    time.sleep(2.0)  # the store's crash, if any, comes within the flush of the bad row
    for tenant in (a, b):
        stream, lines = acked[tenant.name]
        reader = logs_reader(platform, tenant)
        got = check.visible("logs", lambda: reader.entries(Select.of(stream), t_ns - WINDOW, t_ns + WINDOW),
                            lambda e: len(e) >= len(lines),
                            f"{tenant.name}'s acked lines after {what} ({outcome})", timeout=15)
        check.equal(got, lines, f"every acknowledged line of {tenant.name} after {what}")
    check.true(r.status_code < 300 or 400 <= r.status_code < 500, f"{what} gets a 2xx or a 4xx", outcome)
