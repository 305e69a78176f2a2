"""Short, bounded load runs driven in-process through locust's Environment
API: the objectives hold and nothing accepted under load is missing.

Run on its own (``pytest -p loadgen.gevent_first suites/load``): locust
patches the process for gevent. Figures are printed, never asserted: the
objectives here are the pass/fail line, generous on purpose, since a 2-core
machine is shared; ``stackproof load --capacity`` is where capacity is found.
"""

from __future__ import annotations

import time

import gevent
import pytest
from locust.env import Environment

from harness.clients import PromQLClient
from harness.load import Objectives, completeness
from harness.workload import Workload
from loadgen import shapes, users

pytestmark = pytest.mark.load

SECONDS = 8
OBJECTIVES = Objectives(p99_ms=5000, max_error_rate=0.0)

WORKLOADS = {
    "metrics": dict(series=500, labels=3, cardinality=5, rate=5),
    "logs": dict(lines=100, streams=3, line_length="lognormal:200:0.6", rate=5),
    # every knob at once: churn, several samples a scrape interval apart, both signals
    "mixed": dict(series=200, samples=3, scrape_interval=0.05, churn=0.25, churn_interval=2,
                  lines=50, line_length="uniform:20:400", rate=5),
}


def run_env(user_classes, seconds: float, user_count: int) -> Environment:
    # stop_timeout: at the end users finish the request under way, so every
    # request sent is either answered and counted, or its user never sent it
    env = Environment(user_classes=user_classes, stop_timeout=30)
    runner = env.create_local_runner()
    runner.start(user_count=user_count, spawn_rate=user_count)
    gevent.sleep(seconds)  # bounded: the run stops by itself
    runner.stop()
    runner.quit()
    return env


def check_run(env: Environment, workload: Workload, tally: users.Tally, target, check, t0: float) -> None:
    for name, entry in env.stats.entries.items():
        check.true(entry.num_requests > 0, f"{name[1]}: the load run sent requests")
        ratio = entry.num_failures / entry.num_requests
        check.true(ratio <= OBJECTIVES.max_error_rate, f"{name[1]}: error ratio {ratio:.4f} within "
                   f"{OBJECTIVES.max_error_rate}", str(env.stats.errors))
        p99 = entry.get_response_time_percentile(0.99)
        check.true(p99 <= OBJECTIVES.p99_ms, f"{name[1]}: p99 write latency {p99} ms within {OBJECTIVES.p99_ms} ms")
    result = completeness(target, workload, tally.counts, t0, timeout=60)
    for sig, c in result.items():
        check.true(c["accepted"] > 0, f"{sig}: the platform accepted something")
        check.equal(c["stored"], c["accepted"], f"{sig}: stored equals accepted (no silent loss, no duplicates)")
        print(f"{sig}: {c['requests']} requests, {c['accepted']} accepted, {c['stored']} stored, "
              f"visible after {c['visible_after_s']} s")


@pytest.mark.parametrize("signal", sorted(WORKLOADS))
def test_write_path_holds_objectives_and_loses_nothing(target, test_id, check, signal):
    workload = Workload(signal=signal, run_id=test_id.replace("-", "_"), **WORKLOADS[signal])
    tally = users.Tally()
    classes = users.user_classes(target, workload, tally)
    t0 = time.time()
    env = run_env(classes, SECONDS, user_count=4)
    check_run(env, workload, tally, target, check, t0)
    if signal == "mixed":
        # churn replaced a quarter of each user's series every 2 s: more series exist than users hold at once
        q = f'count(count_over_time({{__name__="{workload.metric}"}}[10m]))'
        n = sum(int(r["value"][1]) for t in target.user_tenants for r in PromQLClient(target, t).query(q))
        writers = env.runner.user_classes_count["RemoteWriteUser"]
        check.true(n > workload.series * writers,
                   f"churn: {n} series written by {writers} users of {workload.series} series")


def test_step_shape_runs_its_steps_and_stops_by_itself(target, test_id, check):
    workload = Workload(signal="metrics", run_id=test_id.replace("-", "_"), series=100, rate=5)
    tally = users.Tally()
    shape = shapes.from_spec("step:1:1:3:3")  # 1, 2, then 3 users, 3 s each
    seen: list[int] = []
    t0 = time.time()
    env = Environment(user_classes=users.user_classes(target, workload, tally), stop_timeout=30,
                      shape_class=shape())
    runner = env.create_local_runner()
    runner.start_shape()
    deadline = time.monotonic() + 40
    while runner.shape_greenlet and not runner.shape_greenlet.dead and time.monotonic() < deadline:
        seen.append(runner.user_count)
        gevent.sleep(0.5)
    stopped = runner.shape_greenlet is None or runner.shape_greenlet.dead
    runner.stop()
    runner.quit()
    check.true(stopped, "the step shape ended the run by itself")
    check.equal(sorted(set(seen) - {0}), [1, 2, 3], "users went through every step")
    check_run(env, workload, tally, target, check, t0)


def test_each_build_of_the_users_keeps_its_own_workload_and_counts(target, check):
    """Classes are built per workload, never rewritten: two builds run side by side without touching each other."""
    mixed, logs = Workload(signal="mixed", metrics_weight=3, rate=2), Workload(signal="logs", rate=7)
    t_mixed, t_logs = users.Tally(), users.Tally()
    built = users.user_classes(target, mixed, t_mixed)
    users.user_classes(target, logs, t_logs)
    check.equal([(c.__name__, c.weight, c.workload, c.tally is t_mixed) for c in built],
                [("RemoteWriteUser", 3, mixed, True), ("LogsPushUser", 1, mixed, True)],
                "the first build is untouched by the second")
    check.true(users.RemoteWriteUser.abstract and users.LogsPushUser.abstract,
               "the declared classes stay abstract: locust only runs built ones")
