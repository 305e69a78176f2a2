"""Providers bring a target into being and take it away."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import Provider
from .existing import ExistingProvider
from .local import LocalProvider

NAMES = ("local", "existing", "aws", "gcp")


def get_provider(name: str, *, target_file: str | Path | None = None, platform: str = "local",
                 **options) -> Provider:
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
    raise ConfigError(f"unknown provider {name!r}; known providers: {', '.join(NAMES)}")


__all__ = ["Provider", "LocalProvider", "ExistingProvider", "get_provider", "NAMES"]
