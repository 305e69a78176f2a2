"""A durability declaration is no bypass: the same kill -9 of the logs store
that passes the durability suite with the platform's declared window fails it
when the target file declares a smaller one."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from harness.providers import LocalProvider
from harness.releases import Catalog

from .conftest import REPO

pytestmark = pytest.mark.platform


def _durability_run(target_file) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "suites/durability/test_crash.py", "-k",
                           "kill_9 and logs-store", "--target-file", str(target_file), "-p", "no:cacheprovider",
                           "-q", "-s", f"--rootdir={REPO}"], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_loss_beyond_a_smaller_declared_window_fails_the_suite(state_dir, tmp_path):
    provider = LocalProvider("declared")
    target = provider.deploy(Catalog.load().get())
    try:
        declared = target.durability["logs"].crash_loss_seconds
        assert declared > 0, "the local platform declares the loss window it configures"
        honest = _durability_run(target.path)
        assert honest.returncode == 0, honest.stdout[-3000:]
        data = yaml.safe_load(target.path.read_text())
        data["durability"]["logs"]["crash_loss_seconds"] = 0
        data["ca_file"] = target.ca_file
        strict = tmp_path / "declares-no-loss.yaml"
        strict.write_text(yaml.safe_dump(data))
        r = _durability_run(strict)
        assert r.returncode == 1, r.stdout[-3000:]
        assert "acked writes lost outside the declared 0.0 s window" in r.stdout, r.stdout[-3000:]
    finally:
        provider.destroy()
