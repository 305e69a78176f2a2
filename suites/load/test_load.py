"""Short, bounded load runs: the objectives hold and nothing accepted under
load is missing.

Each run is headless locust in a process of its own, on a locustfile of
``loadgen/locustfiles/``, exactly as ``stackproof load`` runs it
(``harness.load``): locust patches its process for gevent, which must happen
before anything imports ssl, so this pytest process never imports locust or
gevent and ``pytest suites/load`` works as typed. The users leave their counts
in files, locust its stats in CSV files; the tests read both, then ask the
platform what it stored under the run's id.

Figures are printed, never asserted: the objectives here are the pass/fail
line, generous on purpose, since a 2-core machine is shared; ``stackproof load
--capacity`` is where capacity is found.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.clients import PromQLClient
from harness.load import REPO, Objectives, RunPlan, completeness, run_once, step_with_check
from harness.workload import Workload

pytestmark = pytest.mark.load

SECONDS = 8
# the throughput objective is capacity's (stackproof load): here a share of the offered rate is printed only
OBJECTIVES = Objectives(p99_ms=5000, max_error_rate=0.0, min_throughput_ratio=0.0)

WORKLOADS = {
    "metrics": dict(series=500, labels=3, cardinality=5, rate=5),
    "logs": dict(lines=100, streams=3, line_length="lognormal:200:0.6", rate=5),
    # every knob at once: churn, several samples a scrape interval apart, both signals
    "mixed": dict(series=200, samples=3, scrape_interval=0.05, churn=0.25, churn_interval=2,
                  lines=50, line_length="uniform:20:400", rate=5),
}


def _run_id(test_id: str) -> str:
    return test_id.replace("-", "_")


def _exactly_stored(check, step: dict) -> None:
    """Every signal of a run sent requests and the platform stored exactly what it accepted."""
    for sig, s in step["signals"].items():
        check.true(s["requests"] > 0, f"{sig}: the load run sent requests", str(s))
        check.true(s["accepted"] > 0, f"{sig}: the platform accepted something", str(s))
        check.equal(s["stored"], s["accepted"], f"{sig}: stored equals accepted (no silent loss, no duplicates)")
        print(f"{sig}: {s['requests']} requests ({s['failures']} failed), {s['accepted']} accepted, "
              f"{s['stored']} stored, visible after {s['visible_after_s']} s; p50 {s['p50_ms']:g} ms, "
              f"p99 {s['p99_ms']:g} ms; {s['achieved_per_s']:,.0f} taken of {s['offered_per_s']:,.0f} offered/s")


@pytest.mark.parametrize("signal", sorted(WORKLOADS))
def test_write_path_holds_objectives_and_loses_nothing(target, test_id, check, tmp_path, signal):
    workload = Workload(signal=signal, run_id=_run_id(test_id), **WORKLOADS[signal])
    notes: list[str] = []
    step = step_with_check(target, workload, RunPlan(users=4, seconds=SECONDS), tmp_path, OBJECTIVES, notes.append)
    print(f"locust: {step['files']['log']}")
    check.equal(notes, [], "the run stopped by itself, within its time")
    check.equal(step["broke"], [], f"the objectives hold (p99 within {OBJECTIVES.p99_ms:g} ms, no errors)")
    _exactly_stored(check, step)
    if signal == "mixed":
        # churn replaced a quarter of each user's series every 2 s: more series exist than users hold at once
        q = f'count(count_over_time({{__name__="{workload.metric}"}}[10m]))'
        n = sum(int(r["value"][1]) for t in target.user_tenants for r in PromQLClient(target, t).query(q))
        writers = step["signals"]["metrics"]["users"]
        check.true(writers > 0 and n > workload.series * writers,
                   f"churn: {n} series written by {writers} users of {workload.series} series")


def test_step_shape_runs_its_steps_and_stops_by_itself(target, test_id, check, tmp_path):
    """1, 2, then 3 users, 3 s each (``step:1:1:3:3``): locust logs each step the shape sets
    and its own stop; the run's time limit (60 s) is far beyond the shape's 12 s."""
    workload = Workload(signal="metrics", run_id=_run_id(test_id), series=100, rate=5)
    notes: list[str] = []
    step = run_once(target, workload, RunPlan(users=0, seconds=60, shape="step:1:1:3:3"), tmp_path, notes.append)
    log = open(step["files"]["log"], errors="replace").read()
    check.equal(notes, [], "locust ended the run by itself (not stopped by the harness)")
    check.true("Shape test stopping" in log, "the step shape ended the run by itself", log[-1500:])
    steps = [int(line.split("Shape test updating to ")[1].split()[0]) for line in log.splitlines()
             if "Shape test updating to " in line]
    check.true(sorted(set(steps) - {0}) == [1, 2, 3], "users went through every step", f"{steps}: {log[-1500:]}")
    result = completeness(target, workload, step["signals"], step["started"], timeout=60)
    for sig, c in result.items():
        step["signals"][sig].update(stored=c["stored"], visible_after_s=c["visible_after_s"])
        check.equal(step["signals"][sig]["failures"], 0, f"{sig}: no request failed")
    _exactly_stored(check, step)


BUILD_TWICE = """\
import locust  # first: it patches this process for gevent before anything imports ssl
import json, sys
from harness.target import Target
from harness.workload import Workload
from loadgen import users

target = Target.load(sys.argv[1])
mixed, logs = Workload(signal="mixed", metrics_weight=3, rate=2), Workload(signal="logs", rate=7)
t_mixed, t_logs = users.Tally(), users.Tally()
built = users.user_classes(target, mixed, t_mixed)
users.user_classes(target, logs, t_logs)
print(json.dumps({"first": [[c.__name__, c.weight, c.workload == mixed, c.tally is t_mixed] for c in built],
                  "abstract": [users.RemoteWriteUser.abstract, users.LogsPushUser.abstract]}))
"""


def test_each_build_of_the_users_keeps_its_own_workload_and_counts(target, check):
    """Classes are built per workload, never rewritten: two builds run side by side without
    touching each other. In a process of its own, as locust imports the users."""
    r = subprocess.run([sys.executable, "-c", BUILD_TWICE, str(target.path)], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    check.true(r.returncode == 0, "the users module builds its classes", r.stderr[-2000:])
    got = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {}
    check.equal(got.get("first"), [["RemoteWriteUser", 3, True, True], ["LogsPushUser", 1, True, True]],
                "the first build is untouched by the second")
    check.equal(got.get("abstract"), [True, True], "the declared classes stay abstract: locust only runs built ones")


def test_this_process_never_imported_locust_or_gevent():
    """What makes ``pytest suites/load`` work as typed: locust's gevent patch never happens here."""
    assert not [m for m in sys.modules if m.split(".")[0] in ("locust", "gevent", "loadgen")], \
        sorted(m for m in sys.modules if m.split(".")[0] in ("locust", "gevent", "loadgen"))
    assert time.sleep.__module__ == "time", "time.sleep was patched: something imported gevent's monkey"
