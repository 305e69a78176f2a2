"""The release catalog (``releases.yaml``): named sets of component versions.

``STACKPROOF_RELEASES=/path/to/releases.yaml`` replaces the built-in catalog.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import ConfigError

BUILTIN = Path(__file__).with_name("releases.yaml")


def component_keys() -> tuple[str, ...]:
    """The keys a release pins: one per component of the catalog that has a release key."""
    from .components import COMPONENTS  # the components import the target model, not this module

    return tuple(c.release_key for c in COMPONENTS if c.release_key)
_SEMVER = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Release:
    name: str
    versions: dict[str, str]
    date: str = ""

    def version(self, component_key: str) -> str:
        return self.versions[component_key]

    def __str__(self) -> str:
        return f"{self.name} (" + ", ".join(f"{k} {v}" for k, v in self.versions.items()) + ")"


class Catalog:
    def __init__(self, releases: list[Release], source: str):
        self.releases = releases
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Catalog":
        path = Path(path or os.environ.get("STACKPROOF_RELEASES") or BUILTIN)
        src = f"release catalog {path}"
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{src}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{src}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict) or not isinstance(data.get("releases"), dict) or not data["releases"]:
            raise ConfigError(f"{src}: expected a non-empty 'releases' mapping")
        releases = []
        for name, body in data["releases"].items():
            name = str(name)
            if not isinstance(body, dict):
                raise ConfigError(f"{src}: release {name!r} must be a mapping")
            versions = {}
            for key in component_keys():
                v = body.get(key)
                if v is None:
                    raise ConfigError(f"{src}: release {name!r} has no '{key}' version")
                v = str(v)
                if key != "gateway" and not _SEMVER.match(v):
                    raise ConfigError(f"{src}: release {name!r}: {key} version {v!r} is not of the form vX.Y.Z")
                versions[key] = v
            extra = set(body) - set(component_keys()) - {"date"}
            if extra:
                raise ConfigError(f"{src}: release {name!r} has unknown keys: {', '.join(sorted(map(str, extra)))}")
            releases.append(Release(name, versions, str(body.get("date", ""))))
        return cls(releases, str(path))

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.releases]

    def get(self, name: str | None = None) -> Release:
        """A release by name; the newest (last) when ``name`` is None."""
        if name is None:
            return self.releases[-1]
        for r in self.releases:
            if r.name == name:
                return r
        raise ConfigError(f"unknown release {name!r}; known releases: {', '.join(self.names)}")

    def newest(self, n: int = 1) -> list[Release]:
        return self.releases[-n:]
