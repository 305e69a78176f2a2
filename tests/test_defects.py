"""A known defect is recognised by its signature, and by nothing else.

``known_defect`` (fixtures/defects.py) once turned any failure of a test into
the known XFAIL, so a failing control push, a timeout or a 5xx hid behind it.
Each case here is a real pytest run in a subprocess on a generated test file
(with the stackproof plugin, as tests/test_no_skip.py runs them), whose
requests go to a stand-in HTTP server of this test on 127.0.0.1 that answers
what the real store answers (204 and the line dropped), or something else (a
500 to the control push, a 502, no answer at all). The checks are the suites'
own (``_acked_but_missing`` of suites/logs, ``check.status``), so the messages
are the ones a real run produces. The signatures themselves are held against
the failure messages seen on the real platforms (``SEEN``)."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fixtures.defects import DEFECTS, Signature

from .test_no_skip import run_pytest


class _StandIn(BaseHTTPRequestHandler):
    """``POST /<status>`` answers that status; ``POST /hang`` answers nothing for 5 s."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        what = self.path.strip("/")
        if what == "hang":
            time.sleep(5)
            return
        self.send_response(int(what))
        body = {"204": b"", "502": b"<html><head><title>502 Bad Gateway</title></head></html>"}.get(
            what, b"upstream said no")  # a 502 as the gateway gives it
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def standin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


GENERATED = """\
import types

import requests

from fixtures.defects import known_defect
from suites.logs.test_logs import _acked_but_missing

URL = {url!r}
VICTORIALOGS = types.SimpleNamespace(name="t", logs_api="victorialogs", release=None)
LOKI = types.SimpleNamespace(name="t", logs_api="loki", release=None)
CORTEX_1_20 = types.SimpleNamespace(name="t", logs_api="victorialogs", release="2026.10")
CORTEX_1_21 = types.SimpleNamespace(name="t", logs_api="victorialogs", release="2026.11")
WHAT = "a line of 2097153 bytes"


def _oversize(request, check, target=VICTORIALOGS, control=204, stored=0, bad=204):
    known_defect(request, target, "oversize-line-dropped")
    r = requests.post(f"{{URL}}/{{bad}}", data=b"b" * 64)
    check.status(requests.post(f"{{URL}}/{{control}}", data=b"control"), 204, "a short line after it (control)")
    _acked_but_missing(check, r, stored, 1, WHAT)


def test_the_documented_drop(request, check):
    _oversize(request, check)


def test_a_failing_control_push(request, check):
    _oversize(request, check, control=500)


def test_a_5xx_where_the_defect_acknowledges(request, check):
    _oversize(request, check, bad=502)


def test_a_timeout(request, check):
    known_defect(request, VICTORIALOGS, "oversize-line-dropped")
    requests.post(f"{{URL}}/hang", data=b"x", timeout=0.5)


def test_another_assert(request, check):
    known_defect(request, VICTORIALOGS, "oversize-line-dropped")
    assert [1, 2] == [1, 3]


def test_the_defect_fixed(request, check):
    _oversize(request, check, stored=1)


def test_a_store_without_the_defect(request, check):
    _oversize(request, check, target=LOKI, stored=1)


def test_a_release_with_the_defect(request, check):
    known_defect(request, CORTEX_1_20, "prw2-bad-symbol-ref-panic")
    r = requests.post(f"{{URL}}/502", data=b"x")
    check.true(400 <= r.status_code < 500, "a reference past the symbol table gets a 4xx",
               f"{{r.status_code}} {{r.text.strip()[:200]}}")


def test_a_release_without_it(request, check):
    known_defect(request, CORTEX_1_21, "prw2-bad-symbol-ref-panic")
    r = requests.post(f"{{URL}}/400", data=b"x")
    check.true(400 <= r.status_code < 500, "a reference past the symbol table gets a 4xx", str(r.status_code))
"""

# node -> (the outcome word of -rA, a piece of its line)
EXPECTED = {
    "test_the_documented_drop": ("XFAIL", "known defect oversize-line-dropped (a line of 2097153 bytes: lines "
                                          "stored of 1 acknowledged (HTTP 204); 1 dropped silently"),
    "test_a_failing_control_push": ("FAILED", "failed, but not with known defect oversize-line-dropped's signature"
                                              " (a failing check matching"),
    "test_a_5xx_where_the_defect_acknowledges": ("FAILED", "saw a line of 2097153 bytes: refused with a 4xx: "
                                                           "HTTP 502"),
    "test_a_timeout": ("FAILED", "saw ReadTimeout: "),
    "test_another_assert": ("FAILED", "saw AssertionError: assert [1, 2] == [1, 3]"),
    "test_the_defect_fixed": ("FAILED", "[XPASS(strict)] known defect oversize-line-dropped did not show"),
    "test_a_store_without_the_defect": ("PASSED", ""),
    "test_a_release_with_the_defect": ("XFAIL", "known defect prw2-bad-symbol-ref-panic (a reference past the "
                                                "symbol table gets a 4xx: 502 <html><head><title>502 Bad Gateway"),
    "test_a_release_without_it": ("PASSED", ""),
}


def _outcomes(out: str) -> dict[str, str]:
    """node name -> its -rA summary line."""
    got = {}
    for line in out.splitlines():
        m = re.match(r"(PASSED|FAILED|XFAIL|XPASS|ERROR|SKIPPED) test_generated\.py::(\w+)", line)
        if m:
            got[m.group(2)] = line
    return got


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_defect_test_is_xfail_only_with_its_signature(tmp_path, standin, workers):
    (tmp_path / "test_generated.py").write_text(GENERATED.format(url=standin))
    r = run_pytest(tmp_path, "test_generated.py", "-vv", *workers)  # -vv: summary lines whole
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    got = _outcomes(out)
    assert set(got) == set(EXPECTED), out
    for name, (word, piece) in EXPECTED.items():
        assert got[name].startswith(f"{word} test_generated.py::{name}"), (name, got[name])
        assert piece in got[name], (name, piece, got[name])
    # the one-line verdict names the defect and what it saw: the control push's own failure
    assert ("saw a short line after it (control): POST /500 -> 500, expected 204: upstream said no"
            in got["test_a_failing_control_push"]), got["test_a_failing_control_push"]
    assert "5 failed, 2 passed, 2 xfailed" in out, out


# the failure message each defect's test gave on the real platforms (the local provider; release
# 2026.11, and --release 2026.10 for the defects of that release), as the check wrote it
SEEN = {
    "oversize-line-dropped": "a line of 2097153 bytes: lines stored of 1 acknowledged (HTTP 204); 1 dropped silently: "
                             "read back differs from what was written",
    "out-of-range-line-dropped": "a line further ahead than the store accepts: lines stored of 1 acknowledged (HTTP "
                                 "204); 1 dropped silently: read back differs from what was written",
    "repeated-label-crash": "the platform's components still run after the push to /insert/loki/api/v1/push with a "
                            "repeated label (HTTP 502): victorialogs (logs-store) died (platform 'own-7c55c542' "
                            "(provider local))",
    "repeated-resource-attribute-crash": "the platform's components still run after the OTLP export with a repeated "
                                         "resource attribute (HTTP 502): victorialogs (logs-store) died (platform "
                                         "'own-a256d0bf' (provider local))",
    "repeated-label-kept-twice": (
        "the push to /insert/loki/api/v1/push with a repeated label (HTTP 204): acknowledged, so stored as the rule "
        "'last value wins' says: read back differs from what was written\n--- expected (written)\n+++ actual (read "
        'back)\n@@ -7,4 +7,5 @@\n  ],\n  "values of repeated": [\n+  "one-b79fa1e5d4f8",\n   "two-b79fa1e5d4f8"\n  ]'),
    "repeated-resource-attribute-kept-twice": (
        "the OTLP export with a repeated resource attribute (HTTP 200): acknowledged, so stored as the rule 'last "
        "value wins' says: read back differs from what was written\n--- expected (written)\n+++ actual (read back)\n"
        '@@ -7,4 +7,5 @@\n  ],\n  "values of service.name": [\n+  "one-511ab4c0e745",\n   "two-511ab4c0e745"\n  ]'),
    "prw2-bad-symbol-ref-panic": ("a reference past the symbol table gets a 4xx: 502 <html>\n<head><title>502 Bad "
                                  "Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n"
                                  "<hr><center>nginx</center>\n</body>\n</html>"),
    "empty-promql-refusal": "the refusal of bad PromQL names the problem: 'parse' not in ''",
    "unknown-rule-field-dropped": "a group with an unknown field 'labeles' is refused: POST "
                                  "/api/v1/rules/ns-spae3c25d74d-2acf0b6a82 -> 202, expected 400: "
                                  '{"status":"success"}',
    "vague-rule-decode-refusal": "the refusal of an alert with a bad for names the problem: 'soon' not in 'unable to "
                                 "decoded rule group'",
    "silences-lost-on-kill": "the silence is active after kill -9",
    "alertmanager-first-request-wipes-config": (
        'the stored config is the one set: read back differs from what was written\n--- expected (written)\n'
        '+++ actual (read back)\n@@ -1,14 +1 @@\n-{\n- "receivers": [\n-  {\n-   "name": "first-request"\n-  }\n'
        '- ],\n- "route": {\n-  "group_by": [\n-   "alertname"\n-  ],\n-  "group_wait": "5s",\n'
        '-  "receiver": "first-request"\n- }\n-}\n+{}'),
    "negative-zero-sign-lost": (
        'the sign of a written -0.0, read back: read back differs from what was written\n--- expected (written)\n'
        '+++ actual (read back)\n@@ -1,8 +1,8 @@\n {\n- "1/x": "-Inf",\n+ "1/x": "+Inf",\n "raw sample": [\n  [\n'
        '   1796404411545,\n-   "8000000000000000"\n+   "0000000000000000"\n  ]\n ]'),
}


def test_every_defect_has_a_signature_and_the_message_seen_on_the_real_platform():
    assert set(SEEN) == set(DEFECTS), sorted(set(DEFECTS) ^ set(SEEN))
    for key, seen in SEEN.items():
        assert DEFECTS[key].signature.matches(pytest.fail.Exception(seen, pytrace=False)), (key, seen)


# failures a defect's test can meet that are not the defect: none may match any signature
OTHER_FAILURES = [
    # the same checks, failing otherwise: a config lost another way, a sign kept but 1/x wrong
    'the stored config is the one set: read back differs from what was written\n-{\n- "route": {}\n-}\n'
    '+{\n+ "x": 1\n+}',
    'the sign of a written -0.0, read back: read back differs from what was written\n- "1/x": "-Inf",\n'
    '+ "1/x": "NaN",\n   "8000000000000000"',
    "a short line after it (control): POST /insert/loki/api/v1/push -> 500, expected 204: boom",
    "control: not visible after 30.0s (12 reads); last read: []",
    "a reference past the symbol table gets a 4xx: 504 gateway timeout",
    "a reference past the symbol table gets a 4xx: 502 upstream said no",  # a 502 of another make
    # a repeated label stored, but dropped or under the first value: not what v1.24.0 does
    'the push to /p with a repeated label (HTTP 204): acknowledged, so stored as the rule \'last value wins\' says: '
    'read back differs from what was written\n  "values of repeated": [\n-  "two-ab12"\n+  "one-ab12"\n  ]',
    "the good write before: POST /api/v1/push -> 502, expected 200/204: ",
    "set the config: POST /api/v1/alerts -> 500, expected 201: ",
    "the silence is active after a graceful stop",
    "a line of 2097153 bytes: refused with a 4xx: HTTP 502",
    "a line older than the retention: lines stored of 2 acknowledged (HTTP 204); 1 dropped silently: read back "
    "differs",
]


@pytest.mark.parametrize("message", OTHER_FAILURES)
def test_no_signature_matches_another_failure(message):
    exc = pytest.fail.Exception(message, pytrace=False)
    assert [k for k, d in DEFECTS.items() if d.signature.matches(exc)] == []


def test_only_a_checks_failure_can_match():
    sig = Signature(r"boom")
    assert sig.matches(pytest.fail.Exception("boom", pytrace=False))
    assert not sig.matches(AssertionError("boom"))
    assert not sig.matches(TimeoutError("boom"))
    assert not sig.matches(pytest.fail.Exception("a boom", pytrace=False))  # from the start of the message
    assert not Signature(r"boom", shows=r"bang").matches(pytest.fail.Exception("boom\nno", pytrace=False))
    with pytest.raises(re.error):
        Signature(r"(")
