"""The alerting checks go red on a deliberately broken stand-in, and stay green on a
faithful one.

Each case runs the suites' own check against a small HTTP server of this test's own
on 127.0.0.1 (no platform): either the suite's test function itself, imported into a
generated pytest file and run in a subprocess against a target file that points at
the stand-in (as tests/test_no_skip.py runs generated files), or the suite's judging
function against a real webhook receiver fed what an Alertmanager would send.

- Tenant isolation of rule groups and Alertmanager configs (suites/alerting/
  test_isolation.py): a stand-in ruler that answers a read refused or failing (500
  when the gateway passes the client's own ``X-Scope-OrgID`` on beside its own, as
  Cortex does with two org IDs; 404 for every read of tenant B) must fail the test,
  where "nothing of A's seen" used to pass on any non-200.
- Log rule groups (suites/alerting/test_rules_api.py, suites/durability/
  test_alerting_state.py): the provider's rule files are kept by a stand-in provider
  (a directory) and the evaluator's rules API by a stand-in vmalert that reports
  groups the way vmalert v1.121.0 does. One that loaded the files once and never
  reloaded, and one that after a restart reports the groups without their labels and
  annotations, must fail: the files say what was set either way.
- The upgrade's alerting case (suites/upgrade/test_upgrade_alerting.py): a target
  without 'log-alerting' and 'alerting-webhook' makes its log rules and notifications
  parts skips that name the capability, and ``--no-skips`` fails the run naming both,
  where the one test used to leave them out with an ``if`` and pass.
- Notifications (suites/alerting/_timeline.py): a receiver fed a late duplicate of the
  firing notification after a silence expires, and one fed an alert that resolved
  long before its condition's window ended (no repeats), must fail.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
import yaml

from fixtures.checks import Checks
from harness.summary import PROP_NOTIFICATIONS
from harness.webhook import Receiver, ReceiverClient
from suites.alerting._timeline import judge_repeats, one_firing_after

from .test_no_skip import run_pytest

TOKENS = {"tok-a": "tenant-a", "tok-b": "tenant-b", "tok-s": "stackproof-system", "tok-l": "limited"}
ACCOUNTS = {"tenant-a": 1, "tenant-b": 2, "stackproof-system": 3, "limited": 4}


class StandinPlatform:
    """The paths of a platform the alerting checks read, behind a token check, with the
    defects a case asks for:

    - ``/api/v1/rules[/<ns>[/<group>]]``: Cortex's ruler config API (YAML; 404 for an
      empty list or a missing group; 202 for a set or a delete).
    - ``/api/v1/alerts``: Cortex's Alertmanager config API (201 on a set).
    - ``/vmalert/api/v1/rules``: vmalert's rules API for the token's tenant, the groups
      of its rule files under ``rules_root/<tenant>/<ns>.yml`` as vmalert reports them.
    - ``/prometheus/api/v1/rules``: an empty rules read (the suites' 'alerting' probe).
    - ``POST /standin/kill`` and ``/standin/start``: the evaluator down and up again.

    ``defects``: ``header-passed-on`` (a client's own tenant header reaches the store
    beside the gateway's: 500), ``b-reads-404`` (every rules or config read of tenant B
    answers 404), ``never-reloads`` (the evaluator read each rule file once and keeps
    what it read), ``labels-lost-on-restart`` (after a start, the evaluator reports
    every rule without its labels and annotations)."""

    def __init__(self, rules_root: Path, defects: set[str] = frozenset()):
        self.rules_root = rules_root
        self.defects = set(defects)
        self.rules: dict[str, dict[str, list[dict]]] = {}  # tenant -> namespace -> groups
        self.configs: dict[str, str] = {}  # tenant -> the config body as set
        self.seen: dict[tuple[str, str], str] = {}  # (tenant, file): the text the evaluator read first
        self.up, self.restarted = True, False
        self.lock = threading.Lock()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: str | dict = "", kind: str = "application/json") -> None:
                data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if url.path.startswith("/standin/"):
                    platform.up = url.path == "/standin/start"
                    platform.restarted = platform.restarted or platform.up
                    return self._send(200, {"up": platform.up})
                if url.path == "/prometheus/api/v1/status/buildinfo":
                    return self._send(200, {"status": "success", "data": {}})
                tenant = TOKENS.get(self.headers.get("Authorization", "").removeprefix("Bearer "))
                if tenant is None:
                    return self._send(401, "no token", "text/plain")
                if "header-passed-on" in platform.defects and (self.headers.get("X-Scope-OrgID")
                                                               or self.headers.get("AccountID")):
                    return self._send(500, "multiple org IDs present", "text/plain")
                with platform.lock:
                    code, out, kind = platform.answer(method, url.path, tenant, body)
                self._send(code, out, kind)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_DELETE(self):
                self._serve("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the APIs ----------------------------------------------------------------------
    def answer(self, method: str, path: str, tenant: str, body: bytes) -> tuple[int, str | dict, str]:
        text, js = "text/plain", "application/json"
        if path == "/prometheus/api/v1/rules":
            return 200, {"status": "success", "data": {"groups": []}}, js
        if path == "/vmalert/api/v1/rules":
            if not self.up:
                return 502, "the evaluator is down", text
            return 200, {"status": "success", "data": {"groups": self.evaluator_groups(tenant)}}, js
        b_404 = "b-reads-404" in self.defects and tenant in ("tenant-b", "limited") and method == "GET"
        if path == "/api/v1/alerts":
            if method == "POST":
                self.configs[tenant] = body.decode()
                return 201, "", text
            if method == "DELETE":
                self.configs.pop(tenant, None)
                return 200, "", text
            if b_404 or tenant not in self.configs:
                return 404, "alertmanager config not found", text
            return 200, self.configs[tenant], "application/yaml"
        if not path.startswith("/api/v1/rules"):
            return 404, f"no such path {path}", text
        parts = [unquote(p) for p in path[len("/api/v1/rules"):].strip("/").split("/") if p]
        mine = self.rules.setdefault(tenant, {})
        if method == "POST" and len(parts) == 1:
            group = yaml.safe_load(body)
            mine[parts[0]] = [g for g in mine.get(parts[0], []) if g["name"] != group["name"]] + [group]
            return 202, "", text
        if method == "DELETE":
            rest = [g for g in mine.get(parts[0], []) if len(parts) == 2 and g["name"] != parts[1]]
            if rest:
                mine[parts[0]] = rest
            else:
                mine.pop(parts[0], None)
            return 202, "", text
        if b_404:
            return 404, "no rule groups found", text
        if not parts:
            listed = {ns: sorted(gs, key=lambda g: g["name"]) for ns, gs in mine.items() if gs}
            return (200, yaml.safe_dump(listed), "application/yaml") if listed else (404, "no rule groups found", text)
        group = next((g for g in mine.get(parts[0], []) if len(parts) == 2 and g["name"] == parts[1]), None)
        if group is None:
            return 404, "group does not exist", text
        return 200, yaml.safe_dump(group), "application/yaml"

    def evaluator_groups(self, tenant: str) -> list[dict]:
        """The tenant's rule files as vmalert v1.121.0 reports them (field for field what the
        suites read: name, file, interval, type; each rule's type, name, query, duration,
        labels, annotations, lastEvaluation)."""
        out = []
        for path in sorted((self.rules_root / tenant).glob("*.yml")):
            text = path.read_text()
            if "never-reloads" in self.defects:
                text = self.seen.setdefault((tenant, path.name), text)
            for g in (yaml.safe_load(text) or {}).get("groups") or []:
                rules = []
                for r in g.get("rules", []):
                    rule = {"type": "alerting" if "alert" in r else "recording", "name": r.get("alert") or r["record"],
                            "query": r["expr"], "duration": _seconds(r.get("for", "0s")),
                            "lastEvaluation": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".5Z"}
                    if r.get("labels"):
                        rule["labels"] = {**(g.get("labels") or {}), **r["labels"]}
                    if r.get("annotations"):
                        rule["annotations"] = r["annotations"]
                    if "labels-lost-on-restart" in self.defects and self.restarted:
                        rule.pop("labels", None)
                        rule.pop("annotations", None)
                    rules.append(rule)
                out.append({"name": g["name"], "file": str(path), "type": g.get("type", "vlogs"),
                            "interval": _seconds(g.get("interval", "1s")), "rules": rules})
        return out


def _seconds(duration: str) -> float:
    """A rule file's duration as vmalert reports it (seconds); the stand-in's own parser."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration the stand-in knows: {duration!r}"
    return float(sum(int(n) * units[u] for n, u in parts))


# -- running the suites' own tests against a stand-in ---------------------------------------

CONFTEST = '''\
from pathlib import Path

import pytest
import requests

from fixtures.alerting import log_rules_of

RULES = Path({rules_root!r})
CONTROL = {control!r}


class StandinProvider:
    """The provider's part of log rules, standing in: rule files in a directory (one per
    namespace), and the evaluator stopped and started through the stand-in platform."""

    def set_log_rules(self, tenant, namespace, text):
        d = RULES / tenant
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{{namespace}}.yml").write_text(text)

    def log_rules(self, tenant):
        return {{p.stem: p.read_text() for p in sorted((RULES / tenant).glob("*.yml"))}}

    def delete_log_rules(self, tenant, namespace):
        (RULES / tenant / f"{{namespace}}.yml").unlink(missing_ok=True)

    def kill_component(self, role):
        requests.post(CONTROL + "/standin/kill", timeout=10).raise_for_status()

    def start_component(self, role):
        requests.post(CONTROL + "/standin/start", timeout=10).raise_for_status()
        return 0.0


@pytest.fixture(scope="session")
def platform_control():
    return StandinProvider()


@pytest.fixture(scope="session")
def log_rules(target, platform_control):
    return log_rules_of(target, platform_control)
'''


def _target_file(where: Path, url: str, capabilities: list[str] | None = None) -> Path:
    data = {"name": "standin", "provider": "existing", "gateway_url": url,
            "tenants": [{"name": n, "token": t, "account_id": ACCOUNTS[n],
                         "role": {"stackproof-system": "system", "limited": "limited"}.get(n, "user")}
                        for t, n in TOKENS.items()],
            "capabilities": capabilities or ["metrics", "logs", "alerting", "log-alerting"],
            "alerting": {"logs_rules_path": "/vmalert", "evaluation_interval_s": 1, "poll_interval_s": 0.2,
                         "alertmanager_poll_interval_s": 0.2, "resend_delay_s": 1}}
    path = where / "standin.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run_suite_test(tmp_path: Path, defects: set[str], module: str, *names: str):
    """Run the suite ``module``'s tests ``names``, imported as they are, against a stand-in
    platform with ``defects``: (exit code, output)."""
    rules_root = tmp_path / "rules"
    rules_root.mkdir()
    platform = StandinPlatform(rules_root, defects)
    try:
        (tmp_path / "conftest.py").write_text(CONFTEST.format(rules_root=str(rules_root), control=platform.url))
        (tmp_path / "test_standin.py").write_text(f"from {module} import {', '.join(names)}  # noqa: F401\n")
        r = run_pytest(tmp_path, "test_standin.py", "--provider", "existing", "--target-file",
                       str(_target_file(tmp_path, platform.url)), timeout=300)
    finally:
        platform.close()
    return r.returncode, r.stdout + r.stderr


ISOLATION = "suites.alerting.test_isolation"
RULE_GROUPS = "test_another_tenant_cannot_see_or_touch_a_tenants_rule_groups"
AM_CONFIG = "test_another_tenant_cannot_see_or_touch_a_tenants_alertmanager_config"


def test_the_isolation_checks_pass_on_a_faithful_stand_in(tmp_path):
    code, out = _run_suite_test(tmp_path, set(), ISOLATION, RULE_GROUPS, AM_CONFIG)
    assert code == 0 and "2 passed" in out, out


def test_a_refused_read_with_the_clients_own_tenant_header_fails_the_rule_group_isolation_check(tmp_path):
    # before: a 500 to B's list with its own X-Scope-OrgID counted as "no namespace of A's"
    code, out = _run_suite_test(tmp_path, {"header-passed-on"}, ISOLATION, RULE_GROUPS)
    assert code == 1 and "1 failed" in out, out
    assert "B's list with X-Scope-OrgID: the read answers (a refusal shows nothing)" in out, out
    assert "multiple org IDs present" in out, out


def test_reads_of_the_other_tenant_that_answer_404_fail_the_isolation_checks(tmp_path):
    # before: B's list answering 404 was an empty list, and a 404 to the other tenant's
    # config read was "does not read the system tenant's config"
    code, out = _run_suite_test(tmp_path, {"b-reads-404"}, ISOLATION, RULE_GROUPS, AM_CONFIG)
    assert code == 1 and "2 failed" in out, out
    assert "B's list: the read answers (a refusal shows nothing)" in out, out
    assert "the other tenant's config read: the read answers (a refusal shows nothing)" in out, out


RULES_API = "suites.alerting.test_rules_api"
LOG_RULES = "test_log_rule_groups_set_list_get_delete"
DURABILITY = "suites.durability.test_alerting_state"
LOG_KILL = "test_log_rule_groups_survive_kill_9_of_the_log_rule_evaluator"


@pytest.mark.parametrize("module, name", [(RULES_API, LOG_RULES), (DURABILITY, LOG_KILL)], ids=["rules-api", "kill"])
def test_the_log_rule_checks_pass_on_a_faithful_evaluator(tmp_path, module, name):
    code, out = _run_suite_test(tmp_path, set(), module, name)
    assert code == 0 and "1 passed" in out, out


def test_an_evaluator_that_never_reloads_the_rule_files_fails_the_log_rule_groups_check(tmp_path):
    # before: the group was read back from the provider's files, which said what was set
    code, out = _run_suite_test(tmp_path, {"never-reloads"}, RULES_API, LOG_RULES)
    assert code == 1 and "1 failed" in out, out
    assert "the evaluator reports the replaced log group, the others as they were" in out, out
    assert '"interval_s": 3.0' in out and '"interval_s": 1.0' in out, out  # the diff: set, and still loaded


def test_an_evaluator_that_loses_labels_at_a_restart_fails_the_log_rule_kill_check(tmp_path):
    # before: the group was read back from the provider's files, and "loaded" was any group of that name
    code, out = _run_suite_test(tmp_path, {"labels-lost-on-restart"}, DURABILITY, LOG_KILL)
    assert code == 1 and "1 failed" in out, out
    assert "the log rule group the evaluator reports after kill -9" in out, out
    assert '"severity": "page"' in out, out  # the diff names what the evaluator lost


UPGRADE = "suites.upgrade.test_upgrade_alerting"
UPGRADE_PARTS = ("test_log_rule_groups_survive_the_upgrade_and_the_rollback",
                 "test_notifications_across_the_upgrade_and_the_rollback")


@pytest.mark.parametrize("no_skips", [False, True], ids=["plain", "no-skips"])
def test_upgrade_alerting_parts_a_target_lacks_are_skips_that_no_skips_names(tmp_path, no_skips):
    # before: one test that dropped log rules and notifications with an 'if' and passed
    (tmp_path / "conftest.py").write_text("")
    platform = StandinPlatform(tmp_path)
    try:
        target = _target_file(tmp_path, platform.url, ["metrics", "logs", "alerting"])
        # the parts and the module's own fixtures, as the suite module has them
        names = ", ".join(("across", "log_alerting", "upgrade_test_id") + UPGRADE_PARTS)
        (tmp_path / "test_upgrade_parts.py").write_text(f"from {UPGRADE} import {names}  # noqa: F401\n")
        r = run_pytest(tmp_path, "test_upgrade_parts.py", "--provider", "existing", "--target-file", str(target),
                       *(["--no-skips"] if no_skips else []), timeout=120)
    finally:
        platform.close()
    out = r.stdout + r.stderr
    assert "2 skipped" in out and "has no 'log-alerting' capability" in out, out
    assert "has no 'alerting-webhook' capability" in out, out  # each skip names what the target lacks
    lines = [ln for ln in out.splitlines() if ln.startswith("stackproof: --no-skips:")]
    if no_skips:
        assert r.returncode == 1, out
        assert lines == ["stackproof: --no-skips: 2 tests skipped: " + ", ".join(
            f"test_upgrade_parts.py::{name}" for name in UPGRADE_PARTS)], out
    else:
        assert r.returncode == 0 and not lines, out


# -- the notification judgements against a real receiver ----------------------------------

def _feed(receiver: Receiver, tenant: str, test_id: str, statuses_and_gaps: list[tuple[str, float]]) -> None:
    """POST an Alertmanager webhook of one alert to ``receiver`` for each (status, seconds
    to wait before it), as an Alertmanager would, from a thread of its own."""
    def run():
        for status, gap in statuses_and_gaps:
            time.sleep(gap)
            payload = {"version": "4", "status": status, "receiver": "standin", "groupKey": test_id,
                       "alerts": [{"status": status, "labels": {"alertname": "StackproofHigh", "test": test_id},
                                   "annotations": {}, "startsAt": "2026-12-04T00:00:00Z", "fingerprint": "f"}]}
            requests.post(receiver.url(tenant), json=payload, timeout=10).raise_for_status()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_one_firing_after_expiry_passes_a_single_notification(receiver, request):
    _feed(receiver, "tenant-a", "t1", [("firing", 0.2)])
    read = lambda: ReceiverClient(receiver.base_url).notifications("tenant-a", "t1")  # noqa: E731
    notes = one_firing_after(Checks(request), read, "after expiry", timeout=10, settle=1.5)
    assert [n["status"] for n in notes] == ["firing"]


def test_a_late_duplicate_after_expiry_fails_exactly_one_firing_notification(receiver, request):
    # before: judged at the first arrival, so the duplicate a second later was never read
    _feed(receiver, "tenant-a", "t2", [("firing", 0.2), ("firing", 1.0)])
    read = lambda: ReceiverClient(receiver.base_url).notifications("tenant-a", "t2")  # noqa: E731
    with pytest.raises(pytest.fail.Exception, match="exactly one firing notification, 2s after the first"):
        one_firing_after(Checks(request), read, "after expiry", timeout=10, settle=2.0)


# the run route's keys, its timings shortened so that a window of a few seconds holds several repeats
FAST_ROUTE = {"group_wait_s": 0.1, "group_interval_s": 0.1, "repeat_interval_s": 3600, "fast_repeat_interval_s": 1}
WINDOW_S = 4.3  # the alert's condition held this long: 4 or 5 firing notifications (repeat_bounds)


def _notification_record(request) -> dict:
    return next(v for k, v in request.node.user_properties if k == PROP_NOTIFICATIONS)


def test_repeats_that_follow_the_window_pass(receiver, request):
    thread = _feed(receiver, "tenant-a", "t3", [("firing", 0)] + [("firing", 1.05)] * 4 + [("resolved", 0.2)])
    thread.join()
    notes = ReceiverClient(receiver.base_url).notifications("tenant-a", "t3")
    judge_repeats(Checks(request), "metrics", "tenant-a", notes, WINDOW_S, FAST_ROUTE, 0.1)
    assert _notification_record(request) == {"signal": "metrics", "tenant": "tenant-a", "expected": 6,
                                             "received": 6, "duplicates": 0, "missing": 0}


def test_an_alert_resolved_long_before_its_window_ends_fails_the_repeat_count(receiver, request):
    # before: the allowed count came from the observed span (first firing to resolve, 0.3 s:
    # exactly one), and the expected count recorded was what arrived (len(fired) + 1)
    thread = _feed(receiver, "tenant-a", "t4", [("firing", 0), ("resolved", 0.3)])
    thread.join()
    notes = ReceiverClient(receiver.base_url).notifications("tenant-a", "t4")
    with pytest.raises(pytest.fail.Exception, match=r"condition held 4.3s, at a 1s repeat interval: 1, allowed 4..5"):
        judge_repeats(Checks(request), "metrics", "tenant-a", notes, WINDOW_S, FAST_ROUTE, 0.1)
    assert _notification_record(request) == {"signal": "metrics", "tenant": "tenant-a", "expected": 6,
                                             "received": 2, "duplicates": 0, "missing": 3}
