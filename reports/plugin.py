"""pytest plugin: with ``--stackproof-results DIR``, write ``report.json`` and
``report.html`` (what ran, what failed, how long it took, against which
target) and the Allure environment and categories into the Allure results.

Runs in the controller process only; with xdist the workers' reports reach
the controller through ``pytest_runtest_logreport``. The target is read from
the target file the fixtures plugin records as
``config.option.stackproof_target_path``; tokens are never written.

Secrets: every message it writes is redacted (``harness.leaks``) with the
target's secrets and every other one the process knows. And it scans last:
after every plugin has written its files at the end of the session (JUnit,
the Allure results, these reports), it scans them for every known secret and
fails the run in one line naming each file and whose secret it holds, never
the secret, since a scan inside the run (the security suite's) cannot see
what is written after it.
"""

from __future__ import annotations

import html
import json
import platform
import sys
import time
from pathlib import Path

import pytest

from harness import __version__, leaks
from harness.summary import PROP_CHECK, PROP_LATENCY, PROP_NOTIFICATIONS, PROP_UPGRADE, PROP_VISIBILITY, summarize

from reports.upgrade import write_upgrade_report
from harness.target import Target

STATE = pytest.StashKey[dict]()

ALLURE_CATEGORIES = [
    {"name": "Data mismatch (written != read)", "matchedStatuses": ["failed"],
     "messageRegex": ".*(assert|mismatch|expected).*"},
    {"name": "Not visible before the deadline", "matchedStatuses": ["failed"],
     "messageRegex": ".*not visible after.*"},
    {"name": "Platform could not be provisioned", "matchedStatuses": ["broken", "failed"],
     "messageRegex": ".*cannot provision.*"},
    {"name": "Refused or wrong status code", "matchedStatuses": ["failed"],
     "messageRegex": ".*-> \\d{3}.*"},
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("stackproof").addoption(
        "--stackproof-results", default=None, metavar="DIR",
        help="write report.json and report.html (and Allure environment/categories) here")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(LastScan(), "stackproof-last-scan")
        config.stash[STATE] = {"started": time.time(), "tests": {}, "checks": 0, "latencies": {},
                               "other_latencies": {}, "notifications": []}


class _Collector:
    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        state = self.config.stash[STATE]
        # a test's properties accumulate over its setup, call and teardown, and each of their
        # reports carries all so far: read them once, from the teardown's (the last)
        for key, value in (report.user_properties if report.when == "teardown" else ()):
            if key == PROP_CHECK:
                state["checks"] += 1
            elif key == PROP_VISIBILITY:
                state["latencies"].setdefault(value["signal"], []).append(value["seconds"])
            elif key == PROP_LATENCY:
                state["other_latencies"].setdefault(value["what"], []).append(value["seconds"])
            elif key == PROP_NOTIFICATIONS:
                state["notifications"].append(value)
            elif key == PROP_UPGRADE:
                out = Path(self.config.option.stackproof_results or "results")
                j, h = write_upgrade_report(out, value)
                state.setdefault("reports", []).extend([str(j), str(h)])
        t = state["tests"].setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed",
                                                      "duration": 0.0, "message": ""})
        t["duration"] += report.duration
        if report.failed:
            t["outcome"] = "error" if report.when != "call" else "failed"
            t["message"] = (leaks.redact((report.longreprtext or "").strip().splitlines()[-1][:500])
                            if report.longreprtext else "")
        elif hasattr(report, "wasxfail") and t["outcome"] == "passed":
            t["outcome"] = "xfailed" if report.skipped else "xpassed"
            t["message"] = leaks.redact(str(report.wasxfail)[:500])
        elif report.skipped and t["outcome"] == "passed":
            t["outcome"] = "skipped"


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if STATE in config.stash:
        config.pluginmanager.register(_Collector(config), "stackproof-report-collector")


def _target(config: pytest.Config) -> Target | None:
    path = getattr(config.option, "stackproof_target_path", None) or getattr(config.option, "target_file", None)
    try:
        return Target.load(path) if path else None
    except Exception:
        return None


def _secrets(config: pytest.Config) -> dict[str, bytes]:
    """Every secret this process knows, and the target's."""
    t = _target(config)
    return {**leaks.known(), **(leaks.secrets_of(t) if t is not None else {})}


def _write(path: Path, text: str, secrets: dict[str, bytes]) -> None:
    path.write_text(leaks.redact(text, secrets))


def _target_info(config: pytest.Config) -> dict:
    path = getattr(config.option, "stackproof_target_path", None) or config.option.target_file
    if not path:
        return {}
    t = _target(config)
    if t is None:
        return {"target_file": str(path)}
    return {"name": t.name, "provider": t.provider, "release": t.release or "", "gateway": t.gateway_url,
            "tenants": [f"{x.name} ({x.role})" for x in t.tenants], "capabilities": t.capabilities}


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The session summary: checks run and write-to-visible latency per signal."""
    if STATE not in config.stash or not config.stash[STATE]["checks"]:
        return
    state = config.stash[STATE]
    for path in state.get("reports", []):
        terminalreporter.write_line(f"report written: {path}")
    summary = summarize(state["checks"], state["latencies"], state["other_latencies"], state["notifications"])
    tr = terminalreporter
    tr.section("stackproof summary")
    tr.write_line(f"exact checks run: {summary['checks']}")
    for signal, v in summary["visibility_seconds"].items():
        tr.write_line(f"{signal} write-to-visible latency over {v['n']} read-backs: p50 {v['p50'] * 1000:.0f} ms, "
                      f"p95 {v['p95'] * 1000:.0f} ms, max {v['max'] * 1000:.0f} ms")
    for what, v in summary.get("latency_seconds", {}).items():
        tr.write_line(f"{what} over {v['n']}: p50 {v['p50'] * 1000:.0f} ms, p95 {v['p95'] * 1000:.0f} ms, "
                      f"max {v['max'] * 1000:.0f} ms")
    for sig, row in summary.get("notifications", {}).items():
        tr.write_line(f"{sig} notifications over {row['alerts']} alerts: expected {row['expected']}, received "
                      f"{row['received']}, duplicates {row['duplicates']}, missing {row['missing']}")
    out = Path(config.option.stackproof_results or "results")
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "summary.json", json.dumps({**summary, "tests": len(state["tests"]),
                                             "wall_seconds": round(time.time() - state["started"], 2),
                                             "target": _target_info(config)}, indent=2) + "\n", _secrets(config))
    tr.write_line(f"summary saved to {out / 'summary.json'}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if STATE not in config.stash or not config.option.stackproof_results:
        return
    state = config.stash[STATE]
    out = Path(config.option.stackproof_results)
    out.mkdir(parents=True, exist_ok=True)
    tests = sorted(state["tests"].values(), key=lambda t: t["nodeid"])
    counts: dict[str, int] = {}
    for t in tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    report = {
        "stackproof": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state["started"])),
        "wall_seconds": round(time.time() - state["started"], 2),
        "exit_status": int(exitstatus),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count()},
        "target": _target_info(config),
        "counts": counts,
        "summary": summarize(state["checks"], state["latencies"], state["other_latencies"],
                             state["notifications"]),
        "tests": tests,
    }
    secrets = _secrets(config)
    _write(out / "report.json", json.dumps(report, indent=2) + "\n", secrets)
    _write(out / "report.html", render_html(report), secrets)
    allure_dir = getattr(config.option, "allure_report_dir", None)
    if allure_dir:
        write_allure_extras(Path(allure_dir), report, secrets)


def written_files(config: pytest.Config) -> list[Path]:
    """What this run wrote for people to read: JUnit, the Allure results, the stackproof results."""
    return leaks.files_under(getattr(config.option, "xmlpath", None),
                             getattr(config.option, "allure_report_dir", None),
                             getattr(config.option, "stackproof_results", None))


class LastScan:
    """The scan of what a run wrote, after everything else (controller side)."""

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):
        """Outermost, so after every plugin wrote its files (JUnit's, Allure's, this
        plugin's): scan them for every known secret; a leak fails the run in one line."""
        yield
        config = session.config
        found = leaks.find_leaks(written_files(config), _secrets(config))
        if not found:
            return
        line = f"stackproof: SECRET LEAK in what this run wrote: {'; '.join(found)}"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line, red=True, bold=True)
        else:
            print(line, file=sys.stderr)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def write_allure_extras(allure_dir: Path, report: dict, secrets: dict[str, bytes] | None = None) -> None:
    allure_dir.mkdir(parents=True, exist_ok=True)
    env = {"stackproof": report["stackproof"], "python": report["machine"]["python"]}
    for k in ("name", "provider", "release", "gateway"):
        if report["target"].get(k):
            env[f"target.{k}"] = report["target"][k]
    _write(allure_dir / "environment.properties", "".join(f"{k}={v}\n" for k, v in env.items()), secrets or {})
    (allure_dir / "categories.json").write_text(json.dumps(ALLURE_CATEGORIES, indent=2))


def render_html(report: dict) -> str:
    e = html.escape
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report["counts"].items())) or "no tests"
    target = report["target"]
    summ = report.get("summary", {})
    summary_line = e(f"{summ.get('checks', 0)} exact checks. " + " ".join(
        f"{sig} write-to-visible: p50 {v['p50'] * 1000:.0f} ms, p95 {v['p95'] * 1000:.0f} ms, "
        f"max {v['max'] * 1000:.0f} ms ({v['n']} read-backs)."
        for sig, v in summ.get("visibility_seconds", {}).items()))
    rows = "\n".join(
        f"<tr class='{e(t['outcome'])}'><td>{e(t['outcome'])}</td><td>{e(t['nodeid'])}</td>"
        f"<td>{t['duration']:.2f}s</td><td>{e(t['message'])}</td></tr>" for t in report["tests"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>stackproof run {e(report['started'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; font-size: 90%; }}
tr.failed td:first-child, tr.error td:first-child {{ color: #b00; font-weight: bold; }}
tr.passed td:first-child {{ color: #070; }}
</style></head><body>
<h1>stackproof run</h1>
<p>{e(counts)} in {report['wall_seconds']:.1f}s, started {e(report['started'])}; pytest exit status
{report['exit_status']}.</p>
<p>Target: <b>{e(str(target.get('name', '-')))}</b> (provider {e(str(target.get('provider', '-')))},
release {e(str(target.get('release', '-')))}, gateway {e(str(target.get('gateway', '-')))}).</p>
<p>{summary_line}</p>
<p>Machine: Python {e(report['machine']['python'])}, {e(report['machine']['platform'])},
{report['machine']['cpus']} CPUs.</p>
<table><tr><th>outcome</th><th>test</th><th>time</th><th>message</th></tr>
{rows}
</table></body></html>
"""
