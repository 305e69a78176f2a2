"""Every provider-made target's capability list is pinned: a capability a provider
stops declaring turns its suites' tests into skips (and the run red only where
``--no-skips`` is given), so dropping one must turn a test red here first.

This file pins the local provider's (the default: ``make test`` and ``stackproof
up``), read from the target file the provider itself writes: ``create`` makes the
state directory, the CA, the tenants and the ports, and starts nothing. The
cluster providers' pins live in a file of their own.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.providers import get_provider
from harness.target import Target

LOCAL = ("metrics", "logs", "tail", "agent", "restart", "remote-write-2", "otlp", "otel-collector", "agent-scrape",
         "alerting", "log-alerting", "alerting-webhook")


def pin_mismatch(provider: str, target_file: Path, pinned: tuple[str, ...]) -> list[str]:
    """What the target file's capabilities differ from the pin by, one line each (empty: equal)."""
    found = Target.load(target_file).capabilities
    out = [f"{provider}: capability {c!r} dropped" for c in pinned if c not in found]
    out += [f"{provider}: capability {c!r} added (pin it here)" for c in found if c not in pinned]
    out += [f"{provider}: capability {c!r} listed twice" for c in set(found) if found.count(c) > 1]
    return out


def _local_target_file(state: Path, monkeypatch) -> Path:
    monkeypatch.setenv("STACKPROOF_STATE", str(state))
    provider = get_provider("local", platform="capabilities")
    provider.create()
    assert provider.running() == [], "create starts nothing"
    return provider.target_file


def test_the_local_providers_capabilities_are_pinned_exactly(tmp_path, monkeypatch):
    assert pin_mismatch("local", _local_target_file(tmp_path / "state", monkeypatch), LOCAL) == []


def test_a_dropped_capability_turns_the_pin_red(tmp_path, monkeypatch):
    """The stand-in: the local provider's own target file without 'otlp'."""
    path = _local_target_file(tmp_path / "state", monkeypatch)
    data = yaml.safe_load(path.read_text())
    data["capabilities"] = [c for c in data["capabilities"] if c != "otlp"]
    path.write_text(yaml.safe_dump(data))
    assert pin_mismatch("local", path, LOCAL) == ["local: capability 'otlp' dropped"]
    assert pin_mismatch("local", path, tuple(c for c in LOCAL if c != "tail")) == [
        "local: capability 'otlp' dropped", "local: capability 'tail' added (pin it here)"]
