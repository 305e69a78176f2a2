"""A run that should prove something never passes on skips.

``--no-skips`` (fixtures/plugin.py) fails a run in which any test was
skipped, naming them, with and without xdist; and ``platform_control`` fails,
never skips, on a target of a provider that makes platforms (every one of
which gives its targets 'restart'), while a user's own target file without
'restart' still skips. Each case is a real pytest run in a subprocess, on a
generated test file in ``tmp_path``, with the stackproof plugin loaded the
way a bare checkout's conftest.py loads it (``-p fixtures.plugin``, plugin
autoload off so nothing else is loaded).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

SKIPPING = """\
import pytest


def test_passes():
    pass


def test_skips():
    pytest.skip("nothing to do here")


@pytest.mark.xfail(reason="a known fault, not a skip", strict=True)
def test_known_fault():
    assert False
"""

NEEDS_CONTROL = """\
def test_needs_control(platform_control):
    assert platform_control is not None
"""


def run_pytest(where: Path, *args: str, timeout: float = 120, plugins: tuple[str, ...] = ()) -> \
        subprocess.CompletedProcess:
    """``pytest ARGS`` in ``where``, with only the stackproof plugin (and xdist, for ``-n``, and
    ``plugins``) loaded."""
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "STACKPROOF_STATE": str(where / "state")}
    for var in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        env.pop(var, None)
    loaded = ["fixtures.plugin", *(["xdist.plugin"] if "-n" in args else []), *plugins]
    return subprocess.run([sys.executable, "-m", "pytest", *(w for p in loaded for w in ("-p", p)),
                           "-p", "no:cacheprovider", "-rA",
                           "--rootdir", str(where), *args], cwd=where, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _summary_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("stackproof: --no-skips:")]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_no_skips_fails_a_run_with_a_skip_and_names_it(tmp_path, workers):
    (tmp_path / "test_generated.py").write_text(SKIPPING)

    plain = run_pytest(tmp_path, "test_generated.py", *workers)
    out = plain.stdout + plain.stderr
    assert plain.returncode == 0, out
    assert "1 passed, 1 skipped, 1 xfailed" in out, out
    assert not _summary_lines(out), out

    strict = run_pytest(tmp_path, "test_generated.py", "--no-skips", *workers)
    out = strict.stdout + strict.stderr
    assert strict.returncode == 1, out
    assert "1 passed, 1 skipped, 1 xfailed" in out, out  # the same results: only the verdict differs
    # one line naming the skipped test, and not the xfailed one
    assert _summary_lines(out) == ["stackproof: --no-skips: 1 test skipped: test_generated.py::test_skips"], out


def test_no_skips_passes_a_run_without_skips_and_counts_a_module_that_skips_itself(tmp_path):
    (tmp_path / "test_fine.py").write_text("def test_fine():\n    pass\n")
    ok = run_pytest(tmp_path, "test_fine.py", "--no-skips")
    assert ok.returncode == 0 and not _summary_lines(ok.stdout), ok.stdout + ok.stderr

    (tmp_path / "test_gone.py").write_text("import pytest\npytest.skip('not here', allow_module_level=True)\n")
    gone = run_pytest(tmp_path, "test_fine.py", "test_gone.py", "--no-skips", "-n", "2")
    assert gone.returncode == 1, gone.stdout + gone.stderr
    assert _summary_lines(gone.stdout) == ["stackproof: --no-skips: 1 test skipped: test_gone.py"], gone.stdout


# -- platform_control ----------------------------------------------------------------

class _Gateway(BaseHTTPRequestHandler):
    """Answers anything: the existing provider only checks that the gateway is reachable."""

    def do_GET(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _target_file(tmp_path: Path, gateway_url: str, provider: str) -> Path:
    """A target file as a provider writes one, but without the 'restart' capability."""
    data = {"name": f"{provider}-platform", "provider": provider, "gateway_url": gateway_url,
            "tenants": [{"name": "tenant-a", "token": "tok-a", "account_id": 1},
                        {"name": "tenant-b", "token": "tok-b", "account_id": 2},
                        {"name": "stackproof-system", "token": "tok-s", "role": "system", "account_id": 3}],
            "capabilities": ["metrics", "logs", "tail"]}
    path = tmp_path / f"{provider}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# every provider that makes platforms; the xdist path (the target file read on a worker) once, with kube
@pytest.mark.parametrize("provider, workers", [("kube", []), ("kube", ["-n", "2"]), ("aws", []), ("gcp", []),
                                               ("local-kube", []), ("local", [])],
                         ids=["kube", "kube-xdist", "aws", "gcp", "local-kube", "local"])
def test_platform_control_fails_not_skips_for_a_provider_target_without_restart(tmp_path, gateway_url, provider,
                                                                                  workers):
    (tmp_path / "test_control.py").write_text(NEEDS_CONTROL)
    target = _target_file(tmp_path, gateway_url, provider)
    r = run_pytest(tmp_path, "test_control.py", "--provider", "existing", "--target-file", str(target), *workers)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "skipped" not in out.lower(), out
    want = (f"target '{provider}-platform' comes from provider '{provider}', whose targets always have the "
            "'restart' capability, but it has none: this test cannot run")
    lines = [ln for ln in out.splitlines() if want in ln]
    assert lines, out
    assert all("Traceback" not in ln for ln in out.splitlines()), out  # one line, no stack
    assert "ERROR test_control.py::test_needs_control" in out, out  # the test did not pass, nor skip


def test_platform_control_skips_for_a_users_own_target_without_restart(tmp_path, gateway_url):
    (tmp_path / "test_control.py").write_text(NEEDS_CONTROL)
    target = _target_file(tmp_path, gateway_url, "existing")
    args = ("test_control.py", "--provider", "existing", "--target-file", str(target))
    r = run_pytest(tmp_path, *args)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "SKIPPED [1] test_control.py:1: target 'existing-platform' has no 'restart' capability" in out, out
    # and a gate run of the same refuses to pass on it
    strict = run_pytest(tmp_path, *args, "--no-skips")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert _summary_lines(strict.stdout) == [
        "stackproof: --no-skips: 1 test skipped: test_control.py::test_needs_control"], strict.stdout
