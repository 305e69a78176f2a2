"""The provider interface: bring a target into being and take it away.

Every provider (local, existing, aws, gcp) has the same shape, so suites and
the CLI never need to know which one made the target."""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

from ..errors import StackproofError
from ..releases import Release
from ..target import Target

def read_state(path: Path, what: str) -> dict:
    """A provider's JSON state file; ``{}`` when there is none. An unreadable one
    is a one-line error that starts with ``what`` and names the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise StackproofError(f"{what} {path} is unreadable: {type(exc).__name__}") from None


def write_state(path: Path, state: dict) -> None:
    """Write a provider's state atomically: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# called around each component swap during an upgrade: (component, phase, info),
# with the phases of SWAP_PHASES in this order for every provider, so that the
# upgrade suite and its report charge outages alike: STOPPING when the old
# version is about to go (local: before the graceful stop; kube: before the
# rollout is applied), STARTING when the new one is being started, READY when
# it is ready (local: its readiness check; kube: the rollout is complete)
SwapHook = Callable[[str, str, dict], None]
STOPPING, STARTING, READY = SWAP_PHASES = ("stopping", "starting", "ready")


class Provider(ABC):
    name: str = ""

    @abstractmethod
    def create(self) -> None:
        """Make the place the platform will run in (dirs, network, cluster)."""

    @abstractmethod
    def deploy(self, release: Release) -> Target:
        """Run ``release`` there and return the target once every component is ready."""

    @abstractmethod
    def upgrade(self, release: Release, on_swap: SwapHook | None = None) -> Target:
        """Replace components one at a time with those of ``release``, on the same data."""

    @abstractmethod
    def destroy(self) -> None:
        """Take everything away. Idempotent: safe after a failed create or deploy."""

    @abstractmethod
    def status(self) -> dict:
        """What runs, where, and whether it is ready."""

    def collect_artifacts(self, dest: Path) -> list[Path]:
        """Copy logs and (secret-free) configuration to ``dest``."""
        return []

    # -- single components, on the same data (capability 'restart') --------
    def _cannot(self, what: str):
        raise StackproofError(f"provider {self.name!r} cannot {what}")

    def stop_component(self, name: str) -> str:
        """Stop one component gracefully (it flushes what it flushes on shutdown)."""
        self._cannot("stop a single component")

    def kill_component(self, name: str) -> None:
        """Kill one component without warning (SIGKILL: a crash)."""
        self._cannot("kill a single component")

    def start_component(self, name: str) -> float:
        """Start a stopped component again on its data; returns seconds until ready."""
        self._cannot("start a single component")

    def remove_local_data(self, name: str) -> list[str]:
        """Delete a stopped component's local disk (not the bucket)."""
        self._cannot("remove a component's local data")

    # -- log rule groups (capability 'log-alerting' on a logs store without a rules API) --------
    # The logs rule evaluator (vmalert) has no write API: the provider that runs it keeps each
    # tenant's rule files, one per namespace (a YAML document with 'groups'), and it reloads them.
    def set_log_rules(self, tenant: str, namespace: str, text: str) -> None:
        """Install (or replace) ``tenant``'s rule file ``namespace``; a bad file is refused, one line."""
        self._cannot("keep log rule groups")

    def log_rules(self, tenant: str) -> dict[str, str]:
        """``tenant``'s rule files: namespace -> YAML text."""
        self._cannot("keep log rule groups")

    def delete_log_rules(self, tenant: str, namespace: str) -> None:
        """Remove ``tenant``'s rule file ``namespace`` (no error if there is none)."""
        self._cannot("keep log rule groups")
