"""``stackproof load`` against a real local platform: locust runs in its own
processes (and, with --processes, as a master and two workers), objectives
decide pass or fail, the completeness check counts what the platform stored,
and the capacity report is written. Plus the workload knobs, shapes and the
report drawing without a platform. And ``pytest suites/load`` as a user types
it: it collects and runs (locust only in processes of its own), where a suite
that imports locust in pytest's process dies at collection."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.load import Objectives, completeness, read_counts, write_counts, zero_counts
from harness.target import Target
from harness.workload import LineLength, Workload, parse_shape
from reports.capacity import render

from .conftest import run_cli

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def load_platform(tmp_path_factory):
    """One local platform for this module (state root of its own), down at the end."""
    state = tmp_path_factory.mktemp("state")
    env = {"STACKPROOF_STATE": str(state)}
    r = run_cli("up", "--platform", "loadtest", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    yield Target.load(state / "loadtest" / "target.yaml"), env
    run_cli("down", "--platform", "loadtest", env=env)


def load(env, tmp_path, *args):
    r = run_cli("load", "--platform", "loadtest", "--results", str(tmp_path), *args, env=env, timeout=600)
    record = json.loads((tmp_path / "capacity.json").read_text()) if (tmp_path / "capacity.json").exists() else None
    return r, record


def test_mixed_run_with_two_worker_processes_holds_and_loses_nothing(load_platform, tmp_path):
    target, env = load_platform
    r, rec = load(env, tmp_path, "--profile", "smoke", "--signal", "mixed", "--users", "4", "--processes", "2",
                  "--labels", "2", "--line-length", "lognormal:150:0.5", "--p99-ms", "5000")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert rec["verdict"] == "pass" and rec["complete"] and rec["mode"] == "run"
    (step,) = rec["steps"]
    assert step["processes"] == 2
    for sig in ("metrics", "logs"):
        s = step["signals"][sig]
        assert s["requests"] > 0 and s["failures"] == 0
        assert s["stored"] == s["accepted"] > 0, s
    # two worker processes each left their counts (and the master its zeros)
    counts = list((tmp_path / "load" / rec["workload"]["run_id"]).glob("counts-*/counts-*.json"))
    assert len(counts) == 3, counts
    for f in ("csv", "html", "log"):
        assert Path(step["files"][f]).is_file(), step["files"][f]
    html = (tmp_path / "capacity.html").read_text()
    assert "<svg" in html and "PASS" in html and "locust report" in html
    assert "completeness: every accepted item was stored" in r.stdout


def test_objective_broken_fails_the_run(load_platform, tmp_path):
    _, env = load_platform
    r, rec = load(env, tmp_path, "--profile", "smoke", "--users", "1", "--duration", "4s", "--p99-ms", "0.01")
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    assert rec["verdict"] == "fail"
    assert any("p99" in why for why in rec["why"]), rec["why"]
    assert rec["complete"], "a slow run is still complete"


def test_capacity_search_steps_up_and_reports_the_last_step_that_held(load_platform, tmp_path):
    _, env = load_platform
    # the throughput objective at 2x offered can never hold: the search must stop at step 1
    r, rec = load(env, tmp_path, "--capacity", "--start-users", "1", "--step-users", "1", "--max-users", "3",
                  "--step-duration", "4s", "--series", "100", "--min-throughput", "2")
    assert rec["mode"] == "search" and len(rec["steps"]) == 1 and rec["capacity"] is None
    assert r.returncode == 1 and "no step held" in r.stdout
    # with reachable objectives it goes through every step and names the last one as the capacity
    r, rec = load(env, tmp_path, "--capacity", "--start-users", "1", "--step-users", "1", "--max-users", "2",
                  "--step-duration", "4s", "--series", "100", "--p99-ms", "5000", "--min-throughput", "0.5")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert [s["users"] for s in rec["steps"]] == [1, 2]
    assert rec["capacity"]["step"] == 2 and rec["capacity"]["samples_per_s"] > 0
    assert len({s["run_id"] for s in rec["steps"]}) == 2, "every step writes under its own run id"
    assert "capacity:" in r.stdout and "samples/s" in r.stdout


@pytest.mark.parametrize("signal, knob", [("metrics", "--series"), ("logs", "--lines")])
def test_completeness_check_sees_missing_and_extra_data(load_platform, tmp_path, signal, knob):
    """The checker can fail: claim one more accepted sample or line than was written, or one fewer."""
    target, env = load_platform
    r, rec = load(env, tmp_path, "--profile", "smoke", "--signal", signal, "--users", "1", "--duration", "3s",
                  knob, "10", "--p99-ms", "5000")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    w = Workload(**rec["workload"])
    s = rec["steps"][0]["signals"][signal]
    since = rec["steps"][0]["started"]
    assert s["stored"] == s["accepted"] > 0, s

    def check(accepted: int, unsure: int = 0) -> dict:
        return completeness(target, w, {signal: {**zero_counts()[signal], "accepted": accepted, "unsure": unsure}},
                            since, timeout=2)[signal]

    got = check(s["accepted"] + 1)
    assert not got["complete"] and got["lost"] == 1 and got["stored"] == s["accepted"]
    assert not check(s["accepted"] - 1)["complete"], "one extra stored item"
    assert check(s["accepted"] - 1, unsure=10)["complete"], "an unsure request may be stored"


def test_bad_knobs_get_one_line_errors(tmp_path):
    for args, words in ((["--line-length", "zipf:3"], "line length"),
                        (["--samples", "3", "--scrape-interval", "15"], "ahead of the clock"),
                        (["--churn", "1.5"], "churn"),
                        (["--capacity", "--web"], "cannot be combined"),
                        (["--shape", "step:0:1"], "load shape"),
                        (["--mix", "a:b", "--signal", "mixed"], "--mix")):
        r = run_cli("load", "--results", str(tmp_path), "--target-file", str(tmp_path / "none.yaml"), *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- pytest suites/load, as a user types it ------------------------------------------

def _pytest_as_typed(*args: str, env: dict | None = None, timeout: float = 900):
    """``python -m pytest ARGS`` from the checkout, no plugin named on the command line."""
    import subprocess
    import sys

    from .conftest import REPO

    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_pytest_suites_load_collects_as_typed():
    r = _pytest_as_typed("suites/load", "--collect-only", "-q", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "RecursionError" not in out, out[-3000:]
    assert "6 tests collected" in out, out[-3000:]


def test_a_suite_that_imports_locust_in_the_pytest_process_dies_at_collection(tmp_path):
    """The broken stand-in for the check above: a suite file that imports locust where the
    stackproof plugins (requests, so ssl) were imported first, as suites/load once did, fails
    the same collection with the RecursionError wall."""
    (tmp_path / "test_in_process_locust.py").write_text(
        "from locust.env import Environment\n\n\ndef test_nothing():\n    assert Environment\n")
    r = _pytest_as_typed(str(tmp_path / "test_in_process_locust.py"), "--collect-only", "-q", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "RecursionError" in out, out[-3000:]


def test_pytest_suites_load_runs_as_typed(tmp_path):
    """A short real run of the load suite, typed as a user would: it provisions its own local
    platform (a state root of its own), runs locust in processes of its own and passes."""
    r = _pytest_as_typed("suites/load", "--no-skips", "--timeout=600", "-k",
                         "(write_path and logs) or keeps_its_own or never_imported",
                         env={"STACKPROOF_STATE": str(tmp_path / "state")})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "3 passed" in out and "RecursionError" not in out, out[-4000:]


# -- without a platform --------------------------------------------------------

def test_workload_travels_as_json_and_refuses_unknown_knobs():
    w = Workload(signal="logs", run_id="r1", streams=7, line_length="uniform:10:20", tenants=["tenant-a"])
    assert Workload.from_env({"STACKPROOF_LOAD": w.to_env()}) == w
    with pytest.raises(ConfigError, match="unknown workload knob"):
        Workload.from_env({"STACKPROOF_LOAD": json.dumps({"seriez": 3})})
    assert Workload(run_id="a-b.c").metric == "stackproof_load_a_b_c"
    assert LineLength.parse("lognormal:200:0.5").mean == pytest.approx(200 * 1.1331, rel=1e-3)
    assert str(LineLength.parse("uniform:50:500")) == "uniform:50:500"
    assert parse_shape("step:2:2:20:10") == ("step", [2.0, 2.0, 20.0, 10.0])
    for bad in ("step:0:1:1:1", "ramp:5", "wave:1:2:3", "step:a:b:c:d", "step:4:1:10:2"):
        with pytest.raises(ConfigError, match="load shape"):
            parse_shape(bad)


def test_counts_from_every_process_add_up(tmp_path):
    c = zero_counts()
    c["metrics"]["accepted"] = 5
    write_counts(tmp_path, c)
    (tmp_path / "counts-999999.json").write_text(json.dumps({"pid": 999999, "counts": c}))
    assert read_counts(tmp_path)["metrics"]["accepted"] == 10
    assert (tmp_path / f"counts-{os.getpid()}.json").exists()


def test_objectives_name_what_broke():
    step = {"signals": {"logs": {"requests": 10, "failures": 1, "error_rate": 0.1, "p99_ms": 900,
                                 "achieved_per_s": 50.0, "offered_per_s": 100.0}}}
    broke = Objectives(p99_ms=500, max_error_rate=0.01, min_throughput_ratio=0.9).judge(step)
    assert len(broke) == 3 and "p99 900 ms > 500 ms" in broke[0] and "error rate" in broke[1] \
        and "took 50 lines/s of 100 offered" in broke[2]


def test_capacity_report_draws_every_step():
    sig = {"users": 2, "offered_per_s": 100.0, "achieved_per_s": 98.0, "requests": 10, "failures": 0,
           "error_rate": 0.0, "rps": 1.0, "p50_ms": 5.0, "p95_ms": 9.0, "p99_ms": 12.0, "max_ms": 13.0,
           "accepted": 980, "refused": 0, "unsure": 0, "stored": 980, "complete": True}
    steps = [{"step": k, "users": 2 * k, "held": k < 3, "broke": [] if k < 3 else ["p99 9 ms > 8 ms"],
              "signals": {"metrics": dict(sig)}, "files": {"html": f"/x/s{k}.html"}} for k in (1, 2, 3)]
    rec = {"target": "t<1>", "provider": "local", "release": "2026.11", "mode": "search", "verdict": "pass",
           "why": [], "workload": Workload().__dict__, "objectives": Objectives(p99_ms=8).__dict__,
           "steps": steps, "capacity": {"samples_per_s": 98.0, "users": 4, "step": 2},
           "machine": {"cpus": 2, "loadavg": [0.5, 0, 0]}}
    html = render(rec)
    assert html.count("<svg") == 2 and "t&lt;1&gt;" in html and "98 samples/s" in html
    assert html.count("<tr><td>") == 3 and "p99 9 ms &gt; 8 ms" in html
    assert html.count('fill="#d62728"><title>step 3') == 2, "the broken step is drawn red (p50 and p99)"


def test_web_dashboards_drive_a_run_and_it_stops_by_itself(load_platform, tmp_path):
    """--web without --users: locust's dashboards wait for the start button (its /swarm
    endpoint, posted here as the button does); the run ends when its time is up and is
    checked for completeness like any other."""
    import subprocess
    import sys

    import requests

    from harness.ports import free_ports
    from .conftest import REPO

    _, env = load_platform
    (port,) = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "load", "--platform", "loadtest", "--web",
                             "--web-port", str(port), "--duration", "15s", "--results", str(tmp_path)],
                            cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for _ in range(100):
            try:
                page = requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert page.status_code == 200 and "locust" in page.text.lower()
        started = requests.post(f"http://127.0.0.1:{port}/swarm", data={"user_count": 2, "spawn_rate": 2},
                                timeout=5).json()
        assert started["success"], started
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err[-2000:]
    rec = json.loads((tmp_path / "capacity.json").read_text())
    assert rec["mode"] == "web" and rec["complete"]
    (step,) = rec["steps"]
    assert step["users"] == 2
    s = step["signals"]["metrics"]
    # the run's end cuts a request off in flight: it is unsure, and may be stored
    assert s["requests"] > 0 and 0 < s["accepted"] <= s["stored"] <= s["accepted"] + s["unsure"]
    assert s["complete"] and "press start there" in err
