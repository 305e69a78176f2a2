"""Helpers for the harness's own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.procs import proc_start_time

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    """An isolated state root for local platforms started by this test."""
    d = tmp_path / "state"
    monkeypatch.setenv("STACKPROOF_STATE", str(d))
    return d


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``stackproof ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def pid_alive(pid: int) -> bool:
    """Running (not gone, not a zombie): the harness's own test."""
    return proc_start_time(pid) is not None
