"""A platform of its own beside a cloud provider's, in the same cluster.

A test that may break its platform (bad input that can bring a store down)
runs on a platform of its own (``own_platform``). The ``kube`` and
``local-kube`` providers make one in a namespace of its own
(:meth:`~harness.providers.kubecluster.KubeProvider.sibling`); the AWS and GCP
providers build their platforms with the same deployer, so theirs is the same:
a namespace named after the sibling, on the cluster they made, with the
platform's own S3 server in it (never the cloud bucket of the provider's
platform: two Cortexes writing one tenant's blocks into one bucket would
compact each other's data), and taken away with its namespace. Nothing of the
cloud is made or deleted: the cluster stays the provider's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..base import Provider, SwapHook
from ..common import state_root
from .verbs import DeployerVerbs


class SiblingPlatform(DeployerVerbs, Provider):
    """``deployer_of(namespace)`` gives a deployer on the provider's cluster (with a fresh
    credential each time: a cloud's token expires) for the namespace; the sibling's is
    named ``platform``. ``name``: the provider whose cluster it shares."""

    def __init__(self, platform: str, deployer_of: Callable[[str], object], provider: str, timeout: float = 900):
        self.platform = platform
        self.name = provider
        self.deployer_of = deployer_of
        self.timeout = timeout
        self.state_dir = state_root() / f"{provider}-sibling-{platform}"

    @property
    def deployer(self):
        """The sibling's deployer (what :mod:`fixtures.liveness` asks whether its components run)."""
        return self.deployer_of(self.platform)

    @property
    def target_file(self) -> Path:
        return self.state_dir / "target.yaml"

    def create(self) -> None:
        self.deployer.check_api()

    def deploy(self, release):
        target = self.deployer.deploy(release, timeout=self.timeout)
        target.save(self.target_file)  # owner-only: it holds the tenants' tokens
        return target

    def upgrade(self, release, on_swap: SwapHook | None = None):
        target = self.deployer.upgrade(release, on_swap=on_swap, timeout=self.timeout)
        target.save(self.target_file)
        return target

    def destroy(self) -> None:
        """Delete the sibling's namespace (and everything in it); idempotent."""
        import shutil

        self.deployer.delete(timeout=min(self.timeout, 600))
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def status(self) -> dict:
        return self.deployer.status()

    def collect_artifacts(self, dest: Path) -> list[Path]:
        return self.deployer.collect_artifacts(Path(dest))
