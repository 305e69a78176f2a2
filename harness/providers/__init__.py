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
    if name in ("aws", "gcp"):
        raise ConfigError(f"provider {name!r} is not available in this version of stackproof yet")
    raise ConfigError(f"unknown provider {name!r}; known providers: {', '.join(NAMES)}")


__all__ = ["Provider", "LocalProvider", "ExistingProvider", "get_provider", "NAMES"]
