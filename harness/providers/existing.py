"""The ``existing`` provider: a platform someone else runs, described by a target file."""

from __future__ import annotations

from pathlib import Path

import requests

from ..errors import ConfigError, StackproofError
from ..releases import Release
from ..target import Target
from .base import Provider, SwapHook


class ExistingProvider(Provider):
    name = "existing"

    def __init__(self, target_file: str | Path):
        if not target_file:
            raise ConfigError("provider 'existing' needs a target file (--target-file)")
        self.target_file = Path(target_file)
        self.target: Target | None = None

    def create(self) -> None:
        self.target = Target.load(self.target_file)

    def deploy(self, release: Release | None = None) -> Target:
        if self.target is None:
            self.create()
        assert self.target is not None
        probe = self.target.url(self.target.metrics_query_path + "/api/v1/status/buildinfo")
        try:
            requests.get(probe, timeout=10, verify=self.target.verify)
        except requests.exceptions.SSLError:
            raise StackproofError(f"target {self.target.name!r}: TLS to {self.target.gateway_url} does not "
                                  "verify (set ca_file in the target file)") from None
        except requests.RequestException as exc:
            raise StackproofError(f"target {self.target.name!r}: gateway {self.target.gateway_url} is "
                                  f"unreachable ({type(exc).__name__})") from None
        return self.target

    def upgrade(self, release: Release, on_swap: SwapHook | None = None) -> Target:
        raise StackproofError("provider 'existing' cannot upgrade a platform it does not run")

    def destroy(self) -> None:
        """Nothing to take away: stackproof did not make this platform."""

    def status(self) -> dict:
        return {"provider": self.name, "target_file": str(self.target_file)}
