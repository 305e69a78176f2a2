"""The target: a running platform the suites talk to.

A target serialises to a YAML *target file*, so any existing deployment can be
tested by writing one by hand. Example::

    name: prod-eu
    gateway_url: https://gateway.example.net
    ca_file: ca.pem                 # relative to the target file; omit for the system trust store
    metrics:
      write_path: /api/v1/push      # Prometheus remote write
      query_path: /prometheus       # PromQL API lives under <query_path>/api/v1/
    logs:
      push_path: /loki/api/v1/push
      query_path: /loki/api/v1      # query, query_range, labels, series, tail
    tenants:
      - {name: team-a, token: "..."}
      - {name: team-b, token: "..."}
      - {name: platform, token: "...", role: system}
    capabilities: [metrics, logs, tail]

Tokens are secrets: they are never part of ``repr`` and the CLI never prints them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError

KNOWN_CAPABILITIES = {
    "metrics",  # remote write + PromQL
    "logs",  # Loki push + LogQL
    "tail",  # Loki websocket tail
    "agent",  # a Prometheus agent remote-writes as the system tenant
    "restart",  # the provider can stop and restart components on the same data
}
ROLES = ("user", "system", "limited")
# platform limits the suites check against; a target file may set them, else
# these upstream defaults (Cortex, Loki) and stackproof's gateway are assumed
DEFAULT_LIMITS = {
    "metrics_max_label_names_per_series": 30,
    "metrics_max_label_value_length": 2048,
    "logs_max_line_bytes": 256 * 1024,
    "max_request_bytes": 16 * 1024 * 1024,
    # ingestion burst, in samples, of the tenant with role 'limited'
    "limited_metrics_burst_samples": 100,
    # per-tenant ingestion rates of every other tenant: well above what the
    # local platform can take, so a capacity search finds the machine's limit,
    # not upstream's defaults (Cortex 25,000 samples/s, Loki 4 MB/s)
    "metrics_ingestion_rate_samples": 1_000_000,
    "logs_ingestion_rate_mb": 256,
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,150}$")  # Cortex/Loki tenant ID rules, minus '!' and friends


@dataclass(frozen=True)
class Tenant:
    name: str
    token: str = field(repr=False)
    role: str = "user"

    def to_dict(self) -> dict:
        return {"name": self.name, "token": self.token, "role": self.role}


@dataclass
class Target:
    name: str
    gateway_url: str
    tenants: list[Tenant]
    ca_file: str | None = None
    metrics_write_path: str = "/api/v1/push"
    metrics_query_path: str = "/prometheus"
    logs_push_path: str = "/loki/api/v1/push"
    logs_query_path: str = "/loki/api/v1"
    capabilities: list[str] = field(default_factory=lambda: ["metrics", "logs"])
    provider: str = "existing"
    release: str | None = None
    # Direct (behind-the-gateway) endpoints a provider may publish for
    # diagnostics, e.g. {"cortex": "http://127.0.0.1:9009"}. Suites must not
    # use them to bypass the gateway.
    components: dict[str, str] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    # where the provider keeps component logs, if it publishes them (for the
    # security suite's scan for leaked tokens)
    logs_dir: str | None = None
    # the platform's object storage, if the provider publishes it: {"type": "s3",
    # "endpoint", "buckets" (comma-separated), "access_key_id", "secret_access_key",
    # "region"} or {"type": "filesystem", "path"}
    object_storage: dict[str, str] | None = None
    path: Path | None = field(default=None, repr=False, compare=False)

    # -- tenants -------------------------------------------------------
    @property
    def user_tenants(self) -> list[Tenant]:
        return [t for t in self.tenants if t.role == "user"]

    @property
    def system_tenant(self) -> Tenant:
        for t in self.tenants:
            if t.role == "system":
                return t
        raise ConfigError(f"target {self.name!r} has no tenant with role 'system'")

    def tenant(self, name: str) -> Tenant:
        for t in self.tenants:
            if t.name == name:
                return t
        raise ConfigError(f"target {self.name!r} has no tenant named {name!r}")

    # -- endpoints -----------------------------------------------------
    def url(self, path: str) -> str:
        return self.gateway_url.rstrip("/") + "/" + path.lstrip("/")

    @property
    def metrics_write_url(self) -> str:
        return self.url(self.metrics_write_path)

    @property
    def metrics_query_url(self) -> str:
        """Base URL for PromQL: ``<this>/api/v1/query`` etc."""
        return self.url(self.metrics_query_path)

    @property
    def logs_push_url(self) -> str:
        return self.url(self.logs_push_path)

    @property
    def logs_query_url(self) -> str:
        """Base URL for LogQL: ``<this>/query_range`` etc."""
        return self.url(self.logs_query_path)

    @property
    def verify(self) -> str | bool:
        """What ``requests`` should pass as ``verify=``."""
        return self.ca_file if self.ca_file else True

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    # -- (de)serialisation --------------------------------------------
    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "name": self.name,
            "provider": self.provider,
            "gateway_url": self.gateway_url,
        }
        if self.release:
            d["release"] = self.release
        if self.ca_file:
            d["ca_file"] = self.ca_file
        d["metrics"] = {"write_path": self.metrics_write_path, "query_path": self.metrics_query_path}
        d["logs"] = {"push_path": self.logs_push_path, "query_path": self.logs_query_path}
        d["tenants"] = [t.to_dict() for t in self.tenants]
        d["capabilities"] = list(self.capabilities)
        if self.components:
            d["components"] = dict(self.components)
        d["limits"] = dict(self.limits)
        if self.logs_dir:
            d["logs_dir"] = self.logs_dir
        if self.object_storage:
            d["object_storage"] = dict(self.object_storage)
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write the target file with owner-only permissions (it holds tokens)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# stackproof target file: holds tenant tokens, keep it private\n")
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)
        os.replace(tmp, path)
        self.path = path
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "target") -> "Target":
        return _parse(data, source, base_dir=None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Target":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"target file {path}: no such file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(f"target file {path}: {problem}{where}") from None
        target = _parse(data, f"target file {path}", base_dir=path.parent)
        target.path = path
        return target


# ---------------------------------------------------------------------------
# validation: every error is one line naming the file and the field


def _parse(data: Any, source: str, base_dir: Path | None) -> Target:
    def bad(field_: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: field '{field_}' {why}")

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")

    known = {"name", "provider", "release", "gateway_url", "ca_file", "metrics", "logs",
             "tenants", "capabilities", "components", "limits", "logs_dir", "object_storage"}
    for key in data:
        if key not in known:
            raise bad(str(key), f"is not a target field (known: {', '.join(sorted(known))})")

    def req_str(key: str, d: dict = data, prefix: str = "") -> str:
        v = d.get(key)
        if v is None:
            raise bad(prefix + key, "is missing")
        if not isinstance(v, str) or not v.strip():
            raise bad(prefix + key, "must be a non-empty string")
        return v

    def opt_str(key: str, default: str | None, d: dict = data, prefix: str = "") -> str | None:
        v = d.get(key, default)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise bad(prefix + key, "must be a non-empty string")
        return v

    name = req_str("name")
    gateway_url = req_str("gateway_url")
    parts = urlsplit(gateway_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad("gateway_url", f"must be an http(s) URL with a host, got {gateway_url!r}")
    try:
        parts.port
    except ValueError:
        raise bad("gateway_url", f"has a bad port: {gateway_url!r}") from None

    ca_file = opt_str("ca_file", None)
    if ca_file:
        ca_path = Path(ca_file)
        if not ca_path.is_absolute() and base_dir is not None:
            ca_path = base_dir / ca_path
        if not ca_path.is_file():
            raise bad("ca_file", f"names {ca_path}, which does not exist")
        ca_file = str(ca_path)

    paths = {}
    for section, keys in (("metrics", ("write_path", "query_path")), ("logs", ("push_path", "query_path"))):
        sec = data.get(section, {}) or {}
        if not isinstance(sec, dict):
            raise bad(section, "must be a mapping")
        for k in sec:
            if k not in keys:
                raise bad(f"{section}.{k}", f"is not known (known: {', '.join(keys)})")
        for k in keys:
            v = opt_str(k, None, sec, f"{section}.")
            if v is not None and not v.startswith("/"):
                raise bad(f"{section}.{k}", f"must start with '/', got {v!r}")
            paths[f"{section}_{k}"] = v

    raw_tenants = data.get("tenants")
    if raw_tenants is None:
        raise bad("tenants", "is missing")
    if not isinstance(raw_tenants, list) or not raw_tenants:
        raise bad("tenants", "must be a non-empty list")
    tenants: list[Tenant] = []
    seen_names, seen_tokens = set(), set()
    for i, t in enumerate(raw_tenants):
        where = f"tenants[{i}]"
        if not isinstance(t, dict):
            raise bad(where, "must be a mapping with name and token")
        for k in t:
            if k not in ("name", "token", "role"):
                raise bad(f"{where}.{k}", "is not known (known: name, token, role)")
        tname = req_str("name", t, f"{where}.")
        if not _NAME_RE.match(tname):
            raise bad(f"{where}.name", f"{tname!r} is not a valid tenant ID (letters, digits, '_', '.', '-')")
        token = req_str("token", t, f"{where}.")
        role = t.get("role", "user")
        if role not in ROLES:
            raise bad(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if tname in seen_names:
            raise bad(f"{where}.name", f"repeats tenant {tname!r}")
        if token in seen_tokens:
            # never echo the token itself
            raise bad(f"{where}.token", "is the same token as another tenant's")
        seen_names.add(tname)
        seen_tokens.add(token)
        tenants.append(Tenant(tname, token, role))

    caps = data.get("capabilities", ["metrics", "logs"])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise bad("capabilities", "must be a list of strings")
    for c in caps:
        if c not in KNOWN_CAPABILITIES:
            raise bad("capabilities", f"has unknown capability {c!r} (known: {', '.join(sorted(KNOWN_CAPABILITIES))})")

    components = data.get("components", {}) or {}
    if not isinstance(components, dict) or not all(isinstance(v, str) for v in components.values()):
        raise bad("components", "must map component names to URLs")

    raw_limits = data.get("limits", {}) or {}
    if not isinstance(raw_limits, dict):
        raise bad("limits", "must be a mapping")
    limits = dict(DEFAULT_LIMITS)
    for k, v in raw_limits.items():
        if k not in DEFAULT_LIMITS:
            raise bad(f"limits.{k}", f"is not known (known: {', '.join(sorted(DEFAULT_LIMITS))})")
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise bad(f"limits.{k}", f"must be a positive integer, got {v!r}")
        limits[k] = v
    logs_dir = opt_str("logs_dir", None)
    object_storage = data.get("object_storage")
    if object_storage is not None and (not isinstance(object_storage, dict) or not all(
            isinstance(v, str) for v in object_storage.values())):
        raise bad("object_storage", "must map names to strings")

    kwargs = {k: v for k, v in paths.items() if v is not None}
    return Target(
        name=name,
        gateway_url=gateway_url.rstrip("/"),
        tenants=tenants,
        ca_file=ca_file,
        capabilities=caps,
        provider=opt_str("provider", "existing") or "existing",
        release=None if data.get("release") is None else str(data.get("release")),
        components=dict(components),
        limits=limits,
        logs_dir=logs_dir,
        object_storage=object_storage,
        **kwargs,
    )
