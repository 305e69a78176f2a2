"""Short, bounded load runs driven in-process through locust's Environment
API: the objectives hold and nothing accepted under load is missing.

Run on its own (``pytest suites/load``): locust patches the process for gevent."""

from __future__ import annotations

import time

import gevent
import pytest
from locust.env import Environment

from harness.clients import LokiClient, PromQLClient
from loadgen import users

pytestmark = pytest.mark.load

SECONDS = 8
OBJECTIVE_ERROR_RATIO = 0.0
OBJECTIVE_P99_MS = 5000  # an objective, generous on purpose: a 2-core machine is shared


@pytest.mark.parametrize("kind", ["metrics", "logs"])
def test_write_path_holds_objectives_and_loses_nothing(target, test_id, check, kind):
    run = test_id.replace("-", "_")
    cfg = users.configure(target, run, series_per_user=500, lines_per_push=100, rps_per_user=5)
    cls = users.RemoteWriteUser if kind == "metrics" else users.LokiPushUser
    # stop_timeout: at the end users finish the request under way, so every
    # request sent is either acknowledged and counted or refused and counted
    env = Environment(user_classes=[cls], stop_timeout=30)
    runner = env.create_local_runner()
    t0 = time.time()
    runner.start(user_count=4, spawn_rate=4)
    gevent.sleep(SECONDS)  # bounded: the run stops by itself
    runner.stop()
    runner.quit()
    total = env.stats.total
    check.true(total.num_requests > 0, "the load run sent requests")
    ratio = total.num_failures / total.num_requests
    check.true(ratio <= OBJECTIVE_ERROR_RATIO, f"error ratio {ratio:.4f} within {OBJECTIVE_ERROR_RATIO}",
               str(env.stats.errors))
    p99 = total.get_response_time_percentile(0.99)
    check.true(p99 <= OBJECTIVE_P99_MS, f"p99 write latency {p99} ms within {OBJECTIVE_P99_MS} ms")
    accepted = cfg.accepted[kind]
    window = int(time.time() - t0) + 60
    if kind == "metrics":
        tenants = target.user_tenants
        q = f'sum(count_over_time(stackproof_load{{run="{run}"}}[{window}s]))'

        def stored():
            return sum(int(float(r["value"][1])) for t in tenants
                       for r in PromQLClient(target, t).query(q, time.time()))
    else:
        q = f'sum(count_over_time({{run="{run}"}}[{window}s]))'

        def stored():
            return sum(int(r["value"][1]) for t in target.user_tenants
                       for r in LokiClient(target, t).query(q, time.time_ns())["result"])
    check.query("completeness", q)
    got = check.visible(kind, stored, lambda n: n >= accepted, f"{kind} accepted under load", timeout=60)
    check.equal(got, accepted, f"{kind}: stored equals accepted (no silent loss, no duplicates)")
    print(f"{kind}: {total.num_requests} requests, {accepted} accepted, "
          f"{accepted / SECONDS:,.0f}/s, p50 {total.median_response_time} ms, p99 {p99} ms")
