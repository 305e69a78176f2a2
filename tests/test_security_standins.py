"""The security suite's checks can fail, and the harness never writes a secret.

Each case runs checks against a deliberately broken stand-in and shows them go
red with the right message:

- without a platform: a small HTTP server of this test's own plays a platform
  whose every error page echoes the caller's token, and a generated test file
  (the stackproof, reports and Allure plugins loaded) meets it: the run fails on
  the echo (the response scan), and the token is in none of the files the
  harness wrote (JUnit, the Allure results, report.json and report.html), nor in
  its output; a file holding a token written after every test (at the session's
  end) fails the run in one line naming the file, and so does ``stackproof run
  --provider existing`` for a leak in its results.
- with a real local platform (module-scoped) behind :class:`StandinGateway`, the
  security suite's own tests, run in a subprocess against a target file naming
  the proxy: they pass through a faithful proxy, and fail on a tail refused or
  closed for tenant B, on metadata, exemplars, LogsQL and log rules answered
  with another tenant's data, on a results cache keyed without the tenant, and on error pages that
  echo the token.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.leaks import files_under
from harness.target import Target, Tenant

from . import test_no_skip as no_skip
from .conftest import REPO, run_cli
from .standin_gateway import StandinGateway

# the reports plugin (its last scan), Allure's and the timeout's besides the stackproof plugin
PLUGINS = ("reports.plugin", "allure_pytest.plugin", "pytest_timeout")


def run_pytest(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return no_skip.run_pytest(cwd, *args, timeout=timeout, plugins=PLUGINS)


# -- every route is a write or says its reads -------------------------------------------------------

def _passes(match: str, path: str) -> bool:
    """Whether an nginx ``location`` match (exact, regex or prefix) takes ``path``."""
    if match.startswith("= "):
        return path == match[2:]
    if match.startswith("~ "):
        return re.search(match[2:], path) is not None
    return path.startswith(match)


def test_every_route_the_gateway_passes_is_a_write_or_declares_its_reads():
    """The security suite asks the reads the routes declare: a route that declares
    nothing would be a read path no tenant-isolation check ever asks. Every read's
    path is one its route passes, and a route of alternatives has a read for each."""
    from harness.components import fronted

    dummy = {"label": "l", "marker": "m"}
    for c in fronted():
        for route in c.routes:
            assert route.writes or route.reads, f"{c.name} {route.match}"
            paths = [r.path.format(**dummy) for r in route.reads]
            assert all(_passes(route.match, p) for p in paths), f"{c.name} {route.match}: {paths}"
            alternatives = re.fullmatch(r"~ \^(.*)\((.*)\)\$", route.match)
            if alternatives:
                prefix, alts = alternatives.group(1), alternatives.group(2).split("|")
                assert sorted({p.removeprefix(prefix) for p in paths}) == sorted(alts), route.match


# -- a platform that echoes the token, and no platform at all ------------------------------------

class _Echo(BaseHTTPRequestHandler):
    """Answers 500 with the caller's Authorization header in the body (the probe path: 200)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        ok = self.path.startswith("/prometheus/api/v1/status/buildinfo")
        body = b"{}" if ok else f"500 oops; you sent {self.headers.get('Authorization')}\n".encode()
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


@pytest.fixture
def echoing_target(tmp_path) -> Target:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = Target(name="echoes-tokens", gateway_url=f"http://127.0.0.1:{server.server_address[1]}",
                    tenants=[Tenant(name, secrets.token_urlsafe(32), account_id=i)
                             for i, name in enumerate(("tenant-a", "tenant-b"), 1)])
    target.save(tmp_path / "target.yaml")
    yield target
    server.shutdown()
    server.server_close()


MEETS_THE_ECHO = """\
from harness.clients import TenantHTTP


def _echoed(target, tenant):
    return TenantHTTP(target, tenant).get("/prometheus/api/v1/query", params={"query": "up"})


def test_status_check_quotes_the_body(target, tenant_a, check):
    check.status(_echoed(target, tenant_a), 200, "a query")


def test_diff_and_attachment_quote_the_body(target, tenant_a, check):
    r = _echoed(target, tenant_a)
    print("the body was", r.text)
    check.query("what came back", r.text)
    check.equal({"body": r.text}, {"body": "ok"}, "the answer")


def test_plain_assert_and_property_quote_the_body(target, tenant_a, record_property):
    r = _echoed(target, tenant_a)
    record_property("body", r.text)
    assert r.text == "ok", r.text
"""


def test_an_echoed_token_fails_the_run_and_reaches_no_file_the_harness_writes(tmp_path, echoing_target):
    (tmp_path / "test_echo.py").write_text(MEETS_THE_ECHO)
    junit, allure_dir, results = tmp_path / "junit.xml", tmp_path / "allure", tmp_path / "results"
    r = run_pytest(tmp_path, "test_echo.py", f"--target-file={echoing_target.path}", f"--junitxml={junit}",
                   f"--alluredir={allure_dir}", f"--stackproof-results={results}", "-o", "junit_logging=all")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-4000:]
    assert "3 failed" in out and "3 errors" in out, out[-4000:]
    assert "the platform sent a secret back: GET /prometheus/api/v1/query -> 500: the response body holds " \
           "tenant tenant-a's token" in out, out[-4000:]
    written = files_under(junit, allure_dir, results)
    assert junit in written and results / "report.json" in written and any(p.suffix == ".json" for p in
                                                                           files_under(allure_dir)), written
    for t in echoing_target.tenants:
        assert t.token not in out, "a token in the run's output"
        assert not [p for p in written if t.token.encode() in p.read_bytes()], "a token in a file the harness wrote"
    # what the checks quoted is there, redacted: the body reached the reports, the token did not
    assert "&lt;tenant tenant-a's token&gt;" in junit.read_text() or "<tenant tenant-a's token>" in junit.read_text()
    assert "SECRET LEAK" not in out, out[-3000:]


LATE_WRITER = """\
from pathlib import Path

from harness.target import Target


def pytest_sessionfinish(session):
    # a file written after every test ran, into the results: what no scan inside the run can see
    token = Target.load(session.config.option.target_file).tenants[0].token
    Path(session.config.option.stackproof_results).mkdir(parents=True, exist_ok=True)
    Path(session.config.option.stackproof_results, "late.txt").write_text(f"token={token}\\n")
"""


@pytest.mark.parametrize("late", [False, True], ids=["nothing-late", "a-token-written-late"])
def test_what_is_written_last_is_scanned_and_a_leak_fails_the_run_in_one_line(tmp_path, echoing_target, late):
    (tmp_path / "test_quiet.py").write_text("def test_quiet(target):\n    assert target.name\n")
    if late:
        (tmp_path / "conftest.py").write_text(LATE_WRITER)
    results = tmp_path / "results"
    r = run_pytest(tmp_path, "test_quiet.py", f"--target-file={echoing_target.path}",
                   f"--junitxml={tmp_path / 'junit.xml'}", f"--stackproof-results={results}")
    out = r.stdout + r.stderr
    lines = [ln for ln in out.splitlines() if "SECRET LEAK" in ln]
    if not late:
        assert r.returncode == 0 and not lines, out[-3000:]
        return
    assert r.returncode == 1, out[-3000:]
    assert "1 passed" in out, out[-3000:]
    assert lines == [f"stackproof: SECRET LEAK in what this run wrote: {results / 'late.txt'} holds tenant "
                     "tenant-a's token"], out[-3000:]
    assert echoing_target.tenants[0].token not in out


def test_stackproof_run_on_an_existing_platform_scans_its_results(tmp_path, echoing_target):
    """``stackproof run --provider existing`` scans its results too (a file the suites' run did not write)."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "left-over.txt").write_text(f"token={echoing_target.tenants[1].token}\n")
    r = run_cli("run", "--provider", "existing", "--target-file", str(echoing_target.path), "--results",
                str(results), "--suite", "smoke", "-n", "0", "--", "-k", "no_test_has_this_name",
                env={"STACKPROOF_STATE": str(tmp_path / "state")}, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert f"stackproof: SECRET LEAK in {results}: {results / 'left-over.txt'} holds tenant tenant-b's token" \
        in out.splitlines(), out[-3000:]
    assert echoing_target.tenants[1].token not in out


# -- the security suite against a real platform behind a broken proxy -------------------------------

SECURITY = str(REPO / "suites" / "security" / "test_security.py")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A real local platform (Cortex, VictoriaLogs, nginx, ...), for the module."""
    from harness.providers import LocalProvider
    from harness.releases import Catalog

    state = tmp_path_factory.mktemp("standins-state")
    old = os.environ.get("STACKPROOF_STATE")
    os.environ["STACKPROOF_STATE"] = str(state)
    provider = LocalProvider("standins")
    try:
        yield provider.deploy(Catalog.load().get())
    finally:
        provider.destroy()
        if old is None:
            os.environ.pop("STACKPROOF_STATE", None)
        else:
            os.environ["STACKPROOF_STATE"] = old


def _behind_proxy(platform: Target, tmp_path: Path, *defects: str):
    """A target file naming a :class:`StandinGateway` in front of ``platform``'s gateway: the
    platform's own but for its gateway, beside it (the local provider keeps the log rule files
    there, found from the target file's directory)."""
    users = platform.user_tenants
    proxy = StandinGateway(platform.gateway_url, platform.ca_file, {t.name: t.token for t in users[:2]},
                           defects).start()
    data = platform.to_dict()
    data["gateway_url"] = proxy.url
    path = platform.path.parent / f"behind-{tmp_path.name}.yaml"
    Target.from_dict(data).save(path)
    return proxy, path


def _run_security(tmp_path: Path, target_file: Path, select: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "pytest", SECURITY, "-k", select, f"--target-file={target_file}",
                        "-p", "no:cacheprovider", "-q", "-rA", f"--rootdir={REPO}", "--timeout=600"], cwd=REPO,
                       env={**os.environ}, capture_output=True, text=True, timeout=900)
    return r.returncode, r.stdout + r.stderr


def _failed_lines(out: str, test: str) -> list[str]:
    return [ln for ln in out.splitlines() if (ln.startswith("FAILED") or ln.startswith("ERROR")) and test in ln]


ISOLATION = ("tail_of_another_tenant or every_read_path or same_query_asked_by_two or "
             "paths_no_tenant_may_use")


@pytest.mark.platform
def test_the_isolation_checks_pass_through_a_faithful_proxy(platform, tmp_path):
    proxy, target_file = _behind_proxy(platform, tmp_path)
    try:
        rc, out = _run_security(tmp_path, target_file, ISOLATION)
    finally:
        proxy.stop()
    assert rc == 0 and "4 passed" in out, out[-5000:]


@pytest.mark.platform
@pytest.mark.parametrize("defect, test, said", [
    ("tail-refused", "test_tail_of_another_tenant_receives_nothing",
     "B's tail opens: refused: HTTP 403: 403 Forbidden"),
    ("tail-closed", "test_tail_of_another_tenant_receives_nothing",
     "B's tail stayed open through the window"),
    ("cross-exemplars", "test_every_read_path_answers_each_tenant_only_its_own",
     "promql exemplars: tenant-b's answer holds nothing of tenant-a's exemplars"),
    ("cross-metadata", "test_every_read_path_answers_each_tenant_only_its_own",
     "promql metadata: tenant-b's answer holds nothing of tenant-a's metadata"),
    ("cross-logsql", "test_every_read_path_answers_each_tenant_only_its_own",
     "logsql query: tenant-b's answer holds nothing of tenant-a's logs"),
    ("cross-log-rules", "test_every_read_path_answers_each_tenant_only_its_own",
     "log rules: tenant-b's answer holds nothing of tenant-a's log-rules"),
    ("tenant-blind-cache", "test_the_same_query_asked_by_two_tenants_in_a_row_answers_each_its_own",
     "promql query asked by B right after A asked the same: B's answer holds nothing of A's"),
    ("tenant-blind-cache cache-logs-only", "test_the_same_query_asked_by_two_tenants_in_a_row_answers_each_its_own",
     "logsql query asked by B right after A asked the same: B's answer holds nothing of A's"),
    ("tenant-blind-cache cache-b-only", "test_the_same_query_asked_by_two_tenants_in_a_row_answers_each_its_own",
     "promql query asked by A right after B asked the same: A's answer holds A's metrics, not B's answer"),
    ("echo-token", "test_paths_no_tenant_may_use_are_refused",
     "the platform sent a secret back: GET /select/tenant_ids -> 403: the response body holds tenant "),
], ids=["tail-refused", "tail-closed", "exemplars-of-another", "metadata-of-another", "logs-of-another",
        "log-rules-of-another", "cache-promql",
        "cache-logsql", "cache-b-then-a", "echoed-token"])
def test_an_isolation_check_fails_on_a_broken_stand_in(platform, tmp_path, defect, test, said):
    proxy, target_file = _behind_proxy(platform, tmp_path, *defect.split())
    try:
        rc, out = _run_security(tmp_path, target_file, test)
    finally:
        proxy.stop()
    assert rc == 1, out[-5000:]
    failed = _failed_lines(out, test)
    assert failed, out[-5000:]
    assert said in out, out[-5000:]
    for t in platform.tenants:
        assert t.token not in out, "a token in the run's output"


@pytest.mark.platform
def test_a_target_declaring_log_alerting_whose_rules_cannot_be_set_fails_in_one_line(platform, tmp_path):
    """The seed's log rule group is never left out quietly (a read path then proven by
    nothing): on a target file of a provider that keeps no rule files the isolation test
    fails, naming why."""
    proxy, target_file = _behind_proxy(platform, tmp_path)
    data = Target.load(target_file).to_dict()
    data["provider"] = "existing"
    Target.from_dict(data).save(target_file)
    try:
        rc, out = _run_security(tmp_path, target_file, "every_read_path")
    finally:
        proxy.stop()
    assert rc == 1, out[-5000:]
    assert "declares 'log-alerting', but A's log rule group cannot be set: provider 'existing' cannot keep log " \
           "rule groups" in out, out[-5000:]
