"""The command line: --help teaches, bad input gets one clear line."""

from __future__ import annotations

import pytest

from .conftest import run_cli

COMMANDS = ["up", "status", "down", "run", "build", "doctor", "releases"]


def test_top_level_help_lists_every_command():
    r = run_cli("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert f"    {c} " in r.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command):
    r = run_cli(command, "--help")
    assert r.returncode == 0, r.stderr
    assert f"usage: stackproof {command}" in r.stdout


def test_unknown_release_is_one_line_and_starts_nothing(state_dir):
    r = run_cli("up", "--release", "1999.01")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "stackproof: error: unknown release '1999.01'; known releases: 2026.10, 2026.11"]
    assert not (state_dir / "local" / "state.json").exists()


def test_status_and_down_of_a_platform_that_is_not_there(state_dir):
    r = run_cli("status")
    assert r.returncode == 1 and "not running" in r.stdout
    r = run_cli("down")
    assert r.returncode == 0 and "nothing to do" in r.stdout


def test_run_with_a_malformed_target_file(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("name: x\ngateway_url: https://127.0.0.1:1\ntenants:\n  - {name: a}\n")
    r = run_cli("run", "--provider", "existing", "--target-file", str(bad), "--results", str(tmp_path / "res"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"stackproof: error: target file {bad}: field 'tenants[0].token' is missing")


def test_run_with_an_unreachable_existing_target(tmp_path):
    t = tmp_path / "t.yaml"
    t.write_text("name: gone\ngateway_url: https://127.0.0.1:9\ntenants:\n"
                 "  - {name: a, token: x1, account_id: 1}\n  - {name: b, token: x2, account_id: 2}\n")
    r = run_cli("run", "--provider", "existing", "--target-file", str(t), "--results", str(tmp_path / "res"))
    assert r.returncode == 2
    assert "gateway https://127.0.0.1:9 is unreachable" in r.stderr.strip().splitlines()[-1]


def test_unknown_suite(tmp_path):
    r = run_cli("run", "--suite", "nope", "--results", str(tmp_path / "res"))
    assert r.returncode == 2
    assert "unknown suite 'nope'; known suites:" in r.stderr


def test_doctor_reports_programs_and_cache():
    r = run_cli("doctor")
    assert "go toolchain" in r.stdout and "nginx (gateway)" in r.stdout
    assert "binary cache:" in r.stdout
    assert r.returncode in (0, 1)
