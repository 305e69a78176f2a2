"""Providers bring a target into being and take it away."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import Provider
from .existing import ExistingProvider
from .local import LocalProvider

NAMES = ("local", "existing", "aws", "gcp", "kube", "local-kube")


def _run_id_of(target_file: str | Path | None, cloud: str) -> dict:
    """A cloud provider's run id from its target file's directory (``<state>/aws-<run id>/target.yaml``):
    how a later process (the durability suite's control of single components) finds the run again."""
    if target_file is None:
        return {}
    parent = Path(target_file).parent.name
    return {"run_id": parent[len(cloud) + 1:]} if parent.startswith(f"{cloud}-") else {}


def get_provider(name: str, *, target_file: str | Path | None = None, platform: str = "local",
                 **options) -> Provider:
    if name in ("aws", "gcp") and options.get("run_id") is None:
        options = {**options, **_run_id_of(target_file, name)}
    if name == "local":
        return LocalProvider(platform, **options)
    if name == "existing":
        return ExistingProvider(target_file)
    if name == "aws":
        from .aws import AWSProvider  # needs boto3 (the 'cloud' extra): imported only when asked for

        return AWSProvider(**options)
    if name == "gcp":
        from .gcp import GCPProvider  # needs google-cloud-container (the 'cloud' extra)

        return GCPProvider(**options)
    if name == "kube":
        from .kubecluster import KubeProvider  # needs the kubernetes package (the 'cloud' extra)

        return KubeProvider(platform, target_file=target_file, **options)
    if name == "local-kube":
        from .localkube import LocalKubeProvider  # the kube provider, on a cluster it starts here

        return LocalKubeProvider(platform, target_file=target_file, **options)
    raise ConfigError(f"unknown provider {name!r}; known providers: {', '.join(NAMES)}")


__all__ = ["Provider", "LocalProvider", "ExistingProvider", "get_provider", "NAMES"]
