"""The local provider with real Cortex, VictoriaLogs, nginx and Prometheus processes:
start, status, restart on the same data, and every bad-input case leaving
nothing running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.clients import LogsPush, PromQLClient, RemoteWriteClient, Select, logs_reader, poll_until
from harness.clients.metrics import selector
from harness.components import COMPONENTS
from harness.providers import LocalProvider
from harness.providers.common import DEFAULT_TENANTS
from harness.releases import Catalog
from harness.target import Target

from .conftest import REPO, pid_alive, run_cli

pytestmark = pytest.mark.platform


# what a local platform runs (filesystem storage): four programs, the logs rule evaluator once per tenant
PROCESSES = ("cortex", "victorialogs", "gateway", "prometheus", "otelcol",
             *(f"vmalert-{name}" for name, _, _ in DEFAULT_TENANTS))


def _pids(state_root: Path, platform: str = "local") -> list[int]:
    f = state_root / platform / "state.json"
    if not f.exists():
        return []
    return [c["pid"] for c in json.loads(f.read_text()).get("components", {}).values() if "pid" in c]


@pytest.fixture
def platform(state_dir):
    """A platform started with the CLI, torn down with the CLI."""
    r = run_cli("up")
    assert r.returncode == 0, r.stderr[-3000:]
    yield r
    run_cli("down")


def test_up_status_down(state_dir, platform):
    out = platform.stdout
    target_file = state_dir / "local" / "target.yaml"
    assert f"target file: {target_file}" in out
    target = Target.load(target_file)
    for t in target.tenants:  # tokens are never printed
        assert t.token not in out and t.token not in platform.stderr
    assert oct(target_file.stat().st_mode & 0o777) == "0o600"

    st = run_cli("status", "--json")
    assert st.returncode == 0, st.stdout
    status = json.loads(st.stdout)
    assert status["state"] == "running"
    # the logs rule evaluator runs once per tenant
    assert set(status["components"]) == set(PROCESSES)
    assert status["components"]["cortex"]["parts"] == {"ruler": "Running", "alertmanager": "Running"}
    assert all(c["ready"] for c in status["components"].values())
    assert status["components"]["cortex"]["version"] == Catalog.load().get().version("cortex")

    pids = _pids(state_dir)
    assert len(pids) == len(PROCESSES) and all(pid_alive(p) for p in pids)
    down = run_cli("down")
    assert down.returncode == 0
    assert not any(pid_alive(p) for p in pids)
    assert not (state_dir / "local").exists()


def test_second_up_on_a_running_platform_is_refused(state_dir, platform):
    pids = _pids(state_dir)
    r = run_cli("up")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("stackproof: error: platform 'local' is already running")
    assert str(state_dir / "local" / "target.yaml") in last
    assert all(pid_alive(p) for p in pids), "the first platform must be untouched"


def test_port_taken_is_refused_and_nothing_runs(state_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("up", "--gateway-port", str(port))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"stackproof: error: port 127.0.0.1:{port} for the gateway is already in use; "
        "pick another or stop what holds it")
    assert not any(pid_alive(p) for p in _pids(state_dir))


def test_component_that_fails_to_start_shows_its_log_and_stops_the_others(state_dir, tmp_path):
    broken = tmp_path / "victoria-logs"
    broken.write_text("#!/bin/sh\necho 'FATAL: boom: this logs store cannot start' >&2\nexit 1\n")
    broken.chmod(0o755)
    r = run_cli("up", env={"STACKPROOF_BIN_VICTORIA_LOGS": str(broken)})
    assert r.returncode == 2
    assert "stackproof: error: victorialogs exited during start-up with code 1" in r.stderr
    assert "boom: this logs store cannot start" in r.stderr  # the last log lines
    assert "stopping what was started" in r.stderr
    pids = _pids(state_dir)
    assert pids, "cortex was started before victorialogs"
    assert not any(pid_alive(p) for p in pids)


def test_a_collector_that_cannot_start_says_why_in_one_line_with_its_log(state_dir, tmp_path):
    """The real Collector, given a setting its file_log receiver does not have: the
    start fails in one line naming it, the Collector's own words under it."""
    from harness.binaries import BinaryResolver
    from harness.components import LOG_SHIPPER, by_role
    shipper = by_role(LOG_SHIPPER)
    real = BinaryResolver().resolve(shipper.spec, Catalog.load().newest(1)[0].version(shipper.release_key)).path
    wrapper = tmp_path / "otelcol-stackproof"
    wrapper.write_text(f'#!/bin/sh\nexec {real} "$@" --set=receivers::file_log::no_such_setting=1\n')
    wrapper.chmod(0o755)
    r = run_cli("up", env={"STACKPROOF_BIN_OTELCOL_STACKPROOF": str(wrapper)})
    assert r.returncode == 2
    assert "stackproof: error: otelcol exited during start-up with code 1" in r.stderr
    assert "no_such_setting" in r.stderr  # the Collector's reason, from its log
    assert not any(pid_alive(p) for p in _pids(state_dir))


def test_go_toolchain_missing(state_dir, tmp_path):
    empty_cache = tmp_path / "cache"
    py_dir = str(Path(sys.executable).parent)
    r = run_cli("up", env={"PATH": py_dir, "STACKPROOF_CACHE": str(empty_cache)})
    assert r.returncode == 2
    cortex = Catalog.load().get().version("cortex")
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"stackproof: error: cannot build cortex {cortex}: the Go toolchain is missing ('go' is not on PATH)")
    assert not _pids(state_dir)


def test_nginx_missing(state_dir):
    go_dir = str(Path(shutil.which("go")).resolve().parent)
    py_dir = str(Path(sys.executable).parent)
    r = run_cli("up", env={"PATH": os.pathsep.join([py_dir, go_dir])})
    assert r.returncode == 2
    assert "stackproof: error: nginx not found on PATH: install it (Debian: apt-get install nginx)" in r.stderr
    assert not _pids(state_dir)


def test_restart_components_on_the_same_data(state_dir):
    """Graceful restart of the metrics store and kill -9 of the logs store, after
    the logs store's flush interval: what was written is still there."""
    provider = LocalProvider("restart")
    target = provider.deploy(Catalog.load().get())
    try:
        tenant = target.user_tenants[0]
        t_ms = int(time.time() * 1000)
        labels = {"__name__": "stackproof_restart_test", "run": str(t_ms)}
        assert RemoteWriteClient(target, tenant).write([(labels, [(t_ms, 42.0)])]).status_code == 200
        stream = {"job": "restart-test", "run": str(t_ms)}
        assert LogsPush(target, tenant).push_json([(stream, [(t_ms * 1_000_000, "before restart")])]
                                                   ).status_code == 204
        reader = logs_reader(target, tenant)
        sel, lo, hi = Select.of(stream), (t_ms - 60_000) * 10**6, (t_ms + 60_000) * 10**6
        assert poll_until(lambda: reader.entries(sel, lo, hi), bool, timeout=30).ok
        time.sleep(target.durability["logs"].crash_loss_seconds)  # past the window a crash may lose
        old_pid = provider.procs["cortex"].pid
        provider.restart_component("metrics-store")
        assert provider.procs["cortex"].pid != old_pid
        provider.kill_component("logs-store")
        provider.start_component("logs-store")

        promql = PromQLClient(target, tenant)
        vis = poll_until(lambda: promql.query(selector(labels) + "[10m]", t_ms / 1000 + 1), bool, timeout=60)
        assert vis.ok, vis.detail
        assert vis.value[0]["values"] == [[t_ms / 1000, "42"]]
        vis = poll_until(lambda: reader.entries(sel, lo, hi), bool, timeout=60)
        assert vis.ok, vis.detail
        assert vis.value == [(t_ms * 1_000_000, "before restart")]
    finally:
        provider.destroy()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_pytest_run_tears_down_on_interrupt(state_dir, tmp_path, sig):
    """Interrupt a suite run in the middle: the platform it provisioned goes away."""
    slow = tmp_path / "test_slow.py"
    slow.write_text("import time\n\ndef test_waits(target):\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", str(slow), "--provider", "local",
                             "-p", "no:cacheprovider", f"--rootdir={REPO}", "-s"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ},
                            # as in a terminal: a worker process may carry SIGINT ignored (seen in the
                            # full run: the run never saw the ctrl-c), and a child inherits that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    platform_dir = None
    while time.monotonic() < deadline:
        dirs = [d for d in state_dir.glob("pytest-*") if (d / "state.json").exists()]
        if dirs and len(_pids(state_dir, dirs[0].name)) == len(PROCESSES) and (dirs[0] / "target.yaml").exists() \
                and json.loads((dirs[0] / "state.json").read_text()).get("release"):
            platform_dir = dirs[0]
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    assert platform_dir is not None, "the platform never came up"
    pids = _pids(state_dir, platform_dir.name)
    time.sleep(1)
    proc.send_signal(sig)
    # teardown stops each component gracefully, up to its stop timeout: on a loaded machine
    # (a cluster test on the other worker) that is the bound, not a quick exit
    try:
        out, _ = proc.communicate(timeout=sum(c.stop_timeout for c in COMPONENTS) + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("the interrupted run did not end; its last output:\n" + out[-4000:]) from None
    assert proc.returncode != 0
    assert not any(pid_alive(p) for p in pids), out[-3000:]
    assert not platform_dir.exists(), out[-3000:]


def test_a_store_that_exits_during_a_test_is_named_with_the_request_before(state_dir, tmp_path):
    """A push that makes the logs store exit (VictoriaLogs v1.52.2 and a repeated
    label name): the test errors in one line naming what died and the last
    requests, and the run's platform is torn down, nothing left running."""
    crash = tmp_path / "test_crash_push.py"
    crash.write_text(
        "import time\nfrom harness.clients import LogsPush\n\n"
        "def test_push(target, tenant_a):\n"
        "    body = b'{\"streams\":[{\"stream\":{\"a\":\"1\",\"a\":\"2\"},\"values\":[[\"%d\",\"x\"]]}]}'"
        " % time.time_ns()\n"
        "    LogsPush(target, tenant_a).push_raw(body, 'application/json')\n")
    r = subprocess.run([sys.executable, "-m", "pytest", str(crash), "--provider", "local", "-p", "no:cacheprovider",
                        "-q", f"--rootdir={REPO}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout[-3000:]
    said = [ln for ln in r.stdout.splitlines() if "exited during this test" in ln]
    assert said and said[0].split("exited during this test")[0].endswith("victorialogs (logs-store) "), r.stdout[-3000:]
    assert "the last requests before: POST /insert/loki/api/v1/push -> 502" in said[0], said[0]
    assert not [d for d in state_dir.glob("pytest-*")], "the run's platform is gone"


def test_built_binaries_report_their_release_version():
    """The version is stamped at build time (-ldflags -X), as upstream's release builds do."""
    from harness.binaries import BinaryResolver
    from harness.components import release_builds

    release = Catalog.load().get()
    for c, version in release_builds(release):
        path = BinaryResolver().resolve(c.spec, version).path
        out = subprocess.run([str(path), c.version_flag], capture_output=True, text=True, timeout=60)
        assert c.reported_version(version) in out.stdout + out.stderr, (c.name, (out.stdout + out.stderr)[:300])
