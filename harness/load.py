"""Load runs and the capacity search behind ``stackproof load``.

Each step is one headless locust run (``python -m locust`` on a locustfile of
``loadgen/``, so the gevent-patched process stays apart from this one), with
its own run id, its own CSV and HTML, a maximum duration and a request
bound. After every step the completeness check asks the target for what it
stored under that run id and compares it with what the users counted as
accepted: ``accepted <= stored <= accepted + unsure``. Fewer is silent loss.

The capacity search steps the number of users (at a fixed rate per user) up
until an objective breaks: p99 write latency, error rate, or the platform
not taking the offered rate (achieved below ``min_throughput_ratio`` of
offered). The highest step that held is the capacity, in samples/s and
lines/s. The result is ``capacity.json``; ``reports.capacity`` draws it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .clients import PromQLClient, Select, logs_reader, poll_until
from .clients.metrics import promql_string
from .errors import StackproofError
from .target import Target
from .workload import Workload

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILES = REPO / "loadgen" / "locustfiles"
SIGNAL_ITEMS = {"metrics": "samples", "logs": "lines"}
REQUEST_NAMES = {"metrics": "remote write", "logs": "logs push"}  # locust request names, the rows of its stats
STOP_TIMEOUT = 30  # seconds users get to finish the request under way
CPU_WARNING = "CPU usage above 90%"


# -- per-process counts (written by loadgen's users, read here) --------------

def zero_counts() -> dict:
    return {s: {"requests": 0, "accepted": 0, "refused": 0, "unsure": 0} for s in SIGNAL_ITEMS}


def write_counts(counts_dir: Path, counts: dict) -> Path:
    counts_dir.mkdir(parents=True, exist_ok=True)
    path = counts_dir / f"counts-{os.getpid()}.json"
    path.write_text(json.dumps({"pid": os.getpid(), "counts": counts}))
    return path


def read_counts(counts_dir: Path) -> dict:
    """The sum of every process's counts in ``counts_dir``."""
    total = zero_counts()
    for f in sorted(Path(counts_dir).glob("counts-*.json")):
        for sig, c in json.loads(f.read_text())["counts"].items():
            for k, v in c.items():
                total[sig][k] += v
    return total


# -- completeness -----------------------------------------------------------

def stored_count(target: Target, workload: Workload, signal_: str, since_s: float) -> int:
    """How many samples or lines of ``workload.run_id`` written since ``since_s`` (epoch seconds)
    the target returns, over every tenant the workload used."""
    tenants = workload.tenants_in(target)
    # a minute of slack either side: the earliest samples of a request lie a few scrape
    # intervals before it was sent, and clocks of a remote target may be a little off
    at = time.time() + 60
    window_s = int(at - since_s + workload.samples * workload.scrape_interval) + 60
    if signal_ == "metrics":
        q = f'sum(count_over_time({{__name__={promql_string(workload.metric)}}}[{window_s}s]))'
        return sum(int(float(r["value"][1])) for t in tenants for r in PromQLClient(target, t).query(q, at))
    sel, end_ns = Select.of({"run": workload.run_id}), int(at * 1e9)
    return sum(logs_reader(target, t).count(sel, end_ns - window_s * 10**9, end_ns) for t in tenants)


def completeness(target: Target, workload: Workload, counts: dict, since_s: float,
                 timeout: float = 120.0) -> dict:
    """Per signal: accepted, refused, unsure, stored, and whether ``accepted <= stored <= accepted + unsure``."""
    out = {}
    for sig in workload.signals:
        c = counts[sig]
        vis = poll_until(lambda: stored_count(target, workload, sig, since_s),
                         lambda n: n >= c["accepted"], timeout=timeout, interval=0.5)
        stored = vis.value if isinstance(vis.value, int) else -1
        ok = c["accepted"] <= stored <= c["accepted"] + c["unsure"]
        out[sig] = {**c, "stored": stored, "complete": ok, "visible_after_s": round(vis.seconds, 2),
                    "lost": max(0, c["accepted"] - stored) if stored >= 0 else None,
                    "detail": vis.detail}
    return out


# -- objectives -------------------------------------------------------------

@dataclass
class Objectives:
    p99_ms: float = 500.0
    max_error_rate: float = 0.001
    min_throughput_ratio: float = 0.9

    def judge(self, step: dict) -> list[str]:
        """What broke in a step (empty: it held)."""
        broke = []
        for sig, s in step["signals"].items():
            name = REQUEST_NAMES[sig]
            if s["requests"] == 0:
                broke.append(f"{name}: no requests were sent")
                continue
            if s["p99_ms"] > self.p99_ms:
                broke.append(f"{name}: p99 {s['p99_ms']:g} ms > {self.p99_ms:g} ms")
            if s["error_rate"] > self.max_error_rate:
                broke.append(f"{name}: error rate {s['error_rate']:.4f} > {self.max_error_rate:g}")
            if s["achieved_per_s"] < self.min_throughput_ratio * s["offered_per_s"]:
                broke.append(f"{name}: took {s['achieved_per_s']:,.0f} {SIGNAL_ITEMS[sig]}/s of "
                             f"{s['offered_per_s']:,.0f} offered (< {self.min_throughput_ratio:.0%})")
        return broke


# -- one locust run ---------------------------------------------------------

@dataclass
class RunPlan:
    users: int
    seconds: int
    processes: int = 0  # 0: one process; N: locust's --processes N (a master and N workers)
    shape: str | None = None
    web: bool = False
    web_port: int = 8089
    csv_prefix: Path | None = None
    html: Path | None = None


def users_split(workload: Workload, users: int) -> dict[str, int]:
    """How locust divides ``users`` among the user classes (by weight, for mixed)."""
    if workload.signal != "mixed":
        return {workload.signal: users}
    mw, lw = workload.metrics_weight, workload.logs_weight
    m = round(users * mw / (mw + lw)) if mw + lw else 0
    return {"metrics": m, "logs": users - m}


def locust_command(target: Target, workload: Workload, plan: RunPlan) -> list[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / f"{workload.signal}.py"),
           "--host", target.gateway_url, "--stop-timeout", str(STOP_TIMEOUT), "--exit-code-on-error", "0"]
    if plan.web:
        cmd += ["--web-host", "127.0.0.1", "--web-port", str(plan.web_port)]
        if plan.users or plan.shape:
            cmd += ["--autostart", "--autoquit", "5", "-t", f"{plan.seconds}s"]
            if not plan.shape:
                cmd += ["-u", str(plan.users), "-r", str(plan.users)]
    else:
        cmd += ["--headless", "--only-summary", "-t", f"{plan.seconds}s"]
        if not plan.shape:
            cmd += ["-u", str(plan.users), "-r", str(plan.users)]
    if plan.csv_prefix:
        cmd += ["--csv", str(plan.csv_prefix)]
    if plan.html:
        cmd += ["--html", str(plan.html)]
    if plan.processes:
        # the master starts when this many workers have joined: by default it starts with the first
        # and rebalances as the others join, moving users (seen: a signal's users sent nothing in 10 s)
        cmd += ["--processes", str(plan.processes), "--expect-workers", str(plan.processes)]
    return cmd


def _read_stats_csv(path: Path) -> dict[str, dict]:
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[row["Name"]] = row
    return rows


def _peak_users(history: Path) -> int:
    """The most users a run had (set on the dashboards or by a shape), from locust's history CSV."""
    if not history.is_file():
        return 0
    with open(history, newline="") as f:
        return max((int(_num(r, "User Count")) for r in csv.DictReader(f)), default=0)


def _num(row: dict, key: str) -> float:
    v = row.get(key, "")
    return float(v) if v not in ("", "N/A") else 0.0


def run_once(target: Target, workload: Workload, plan: RunPlan, out_dir: Path,
             log: Callable[[str], None] = lambda s: None) -> dict:
    """One locust run; returns the step record (without completeness)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts_dir = out_dir / f"counts-{workload.run_id}"
    plan.csv_prefix = plan.csv_prefix or out_dir / workload.run_id
    plan.html = plan.html or out_dir / f"{workload.run_id}.html"
    env = {**os.environ, "STACKPROOF_TARGET_FILE": str(target.path), "STACKPROOF_LOAD": workload.to_env(),
           "STACKPROOF_LOAD_COUNTS": str(counts_dir), "PYTHONPATH": os.pathsep.join(
               p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    if plan.shape:
        env["STACKPROOF_LOAD_SHAPE"] = plan.shape
    else:
        env.pop("STACKPROOF_LOAD_SHAPE", None)
    cmd = locust_command(target, workload, plan)
    stderr_path = out_dir / f"{workload.run_id}.locust.log"
    # headless and autostarted runs end by themselves (run time); a run driven from the
    # dashboards is stopped here when its time is up
    driven = plan.web and not (plan.users or plan.shape)
    limit = plan.seconds if driven else plan.seconds + STOP_TIMEOUT + 90
    t0 = time.time()
    with open(stderr_path, "wb") as errf:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errf, cwd=out_dir)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            if not driven:
                log(f"locust still running after {limit:.0f}s: stopping it")
            proc.send_signal(signal.SIGTERM)  # locust quits gracefully: users finish, counts are written
            try:
                proc.wait(timeout=STOP_TIMEOUT + 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=STOP_TIMEOUT + 15)
            raise
    wall = time.time() - t0
    text = stderr_path.read_text(errors="replace")
    if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT) and not list(counts_dir.glob("counts-*.json")):
        tail = "\n".join(text.strip().splitlines()[-8:])
        raise StackproofError(f"locust exited with {proc.returncode}; last lines of {stderr_path}:\n{tail}")
    counts = read_counts(counts_dir)
    stats_path = Path(f"{plan.csv_prefix}_stats.csv")
    rows = _read_stats_csv(stats_path) if stats_path.is_file() else {}
    seconds = plan.seconds if not plan.web else max(1.0, wall)
    users = plan.users or _peak_users(Path(f"{plan.csv_prefix}_stats_history.csv"))
    per_user = workload.per_user()
    split = users_split(workload, users)
    signals = {}
    for sig in workload.signals:
        row = rows.get(REQUEST_NAMES[sig], {})
        reqs = int(_num(row, "Request Count"))
        fails = int(_num(row, "Failure Count"))
        rps = _num(row, "Requests/s")
        # the rate locust measured (first to last request; not the nominal run time,
        # which includes start-up and the last request's wait), in items: the stats CSV
        # of a single process is last written up to a second before the run ends, so
        # its counts must not be divided into the final accepted count (that overstated
        # throughput by 1-8 %)
        ok_share = (reqs - fails) / reqs if reqs else 0.0
        signals[sig] = {
            "users": split.get(sig, 0),
            "offered_per_s": per_user[sig] * split.get(sig, 0) if plan.users and not plan.shape else 0.0,
            "achieved_per_s": rps * ok_share * workload.per_request()[sig] if rps
            else counts[sig]["accepted"] / seconds,
            "requests": reqs, "failures": fails, "error_rate": fails / reqs if reqs else 0.0,
            "rps": rps,
            "p50_ms": _num(row, "50%"), "p95_ms": _num(row, "95%"), "p99_ms": _num(row, "99%"),
            "max_ms": _num(row, "Max Response Time"),
            **{k: counts[sig][k] for k in ("accepted", "refused", "unsure")},
        }
    return {
        "run_id": workload.run_id, "users": users, "seconds": seconds, "wall_s": round(wall, 1),
        "processes": plan.processes, "signals": signals,
        "generator_saturated": CPU_WARNING in text,
        "files": {"csv": f"{plan.csv_prefix}_stats.csv", "html": str(plan.html), "log": str(stderr_path)},
        "started": t0,
    }


def step_with_check(target: Target, workload: Workload, plan: RunPlan, out_dir: Path,
                    objectives: Objectives, log: Callable[[str], None]) -> dict:
    step = run_once(target, workload, plan, out_dir, log)
    check = completeness(target, workload, step["signals"], step["started"])
    for sig, c in check.items():
        step["signals"][sig].update(stored=c["stored"], complete=c["complete"], lost=c["lost"],
                                    visible_after_s=c["visible_after_s"])
    step["complete"] = all(c["complete"] for c in check.values())
    step["broke"] = objectives.judge(step) if not plan.shape else []
    step["held"] = not step["broke"] and step["complete"]
    return step


# -- the search -------------------------------------------------------------

@dataclass
class Search:
    start_users: int = 2
    step_users: int = 2
    max_users: int = 40
    step_seconds: int = 20
    max_minutes: float = 30.0  # the whole search stops by itself after this


def describe(step: dict) -> str:
    parts = []
    for sig, s in step["signals"].items():
        parts.append(f"{s['achieved_per_s']:,.0f} {SIGNAL_ITEMS[sig]}/s (offered {s['offered_per_s']:,.0f}), "
                     f"p50 {s['p50_ms']:g} ms p99 {s['p99_ms']:g} ms, errors {s['failures']}/{s['requests']}, "
                     f"stored {s.get('stored', '?')}/{s['accepted']} accepted")
    return "; ".join(parts)


def run_load(target: Target, workload: Workload, objectives: Objectives, out_dir: Path, *,
             search: Search | None = None, users: int = 4, seconds: int = 30, processes: int = 0,
             shape: str | None = None, web: bool = False, web_port: int = 8089,
             csv_prefix: Path | None = None, html: Path | None = None,
             require: dict[str, float] | None = None, log: Callable[[str], None] = print) -> dict:
    """A single run (``search=None``) or a capacity search; returns the capacity record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base_run = workload.run_id
    steps: list[dict] = []
    t_end = time.monotonic() + (search.max_minutes * 60 if search else 1e12)
    plans: list[int] = (list(range(search.start_users, search.max_users + 1, max(1, search.step_users)))
                        if search else [users])
    for k, n in enumerate(plans, 1):
        if time.monotonic() >= t_end:
            log(f"stopping the search: {search.max_minutes:g} minutes are up")
            break
        w = workload.with_(run_id=f"{base_run}-s{k}" if search else base_run)
        plan = RunPlan(users=n, seconds=search.step_seconds if search else seconds, processes=processes,
                       shape=shape, web=web, web_port=web_port,
                       csv_prefix=None if search else csv_prefix, html=None if search else html)
        where = f"step {k}: " if search else ""
        if web:
            log(f"locust dashboards: http://127.0.0.1:{web_port}/  (stops after {plan.seconds}s"
                + ("; press start there)" if not (n or shape) else ")"))
        who = f"{n} users" if n else ("users of the shape" if shape else "users set on the dashboards")
        log(f"{where}{who} x {w.rate:g} req/s for {plan.seconds}s"
            + (f" with {processes} worker processes" if processes else "") + " ...")
        step = step_with_check(target, w, plan, out_dir, objectives, log)
        step["step"] = k
        steps.append(step)
        verdict = "held" if step["held"] else "BROKE: " + "; ".join(
            step["broke"] + ([] if step["complete"] else ["completeness failed"]))
        log(f"{where}{describe(step)} -> {verdict}"
            + ("  [load generator CPU above 90%: add --processes]" if step["generator_saturated"] else ""))
        if not step["held"]:
            break
    held = [s for s in steps if s["held"]]
    best = held[-1] if held else None
    capacity = ({f"{SIGNAL_ITEMS[sig]}_per_s": round(s["achieved_per_s"], 1) for sig, s in best["signals"].items()}
                | {"users": best["users"], "step": best["step"]}) if best else None
    lost = any(not s["complete"] for s in steps)
    require = {k: v for k, v in (require or {}).items() if v}
    short = [f"{k} {capacity.get(k, 0) if capacity else 0:,.0f} < required {v:,.0f}"
             for k, v in require.items() if not capacity or capacity.get(k, 0) < v]
    # a run or a search passes when nothing was lost, the first step held and the requirement is met
    ok = bool(steps) and not lost and steps[0]["held"] and not short
    return {
        "kind": "stackproof-capacity", "version": 1,
        "target": target.name, "provider": target.provider, "release": target.release,
        "mode": "search" if search else ("web" if web else "run"),
        "workload": asdict(workload), "objectives": asdict(objectives),
        "search": asdict(search) if search else None, "required": require,
        "steps": steps, "capacity": capacity,
        "complete": not lost, "verdict": "pass" if ok else "fail",
        "why": [] if ok else (["data accepted under load is missing"] if lost else [])
        + (steps[-1]["broke"] if steps and not steps[0]["held"] else []) + short,
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "generated": time.time(),
    }
