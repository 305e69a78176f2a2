"""What every component shares."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from ..binaries import BinarySpec
from ..target import Tenant
from ..tls import TLSFiles


@dataclass
class PlatformContext:
    """Everything a component needs to render its configuration."""

    name: str
    root: Path  # the platform's state directory
    ports: dict[str, int]
    tenants: list[Tenant]
    tls: TLSFiles
    host: str = "127.0.0.1"
    # per-tenant limit overrides (runtime config): {"cortex": {tenant: {...}}, "loki": {...}}
    overrides: dict[str, dict] = field(default_factory=dict)
    # object storage: {"type": "filesystem"} or {"type": "s3", "endpoint": ..., "bucket": ..., ...}
    storage: dict = field(default_factory=lambda: {"type": "filesystem"})
    # where components listen; None means ``host``. In a cluster: all interfaces
    listen_host: str | None = None
    # how to reach a port by name when it is not on ``host`` (in a cluster: a
    # Service's DNS name); a port not named here is on ``host``
    hosts: dict[str, str] = field(default_factory=dict)

    @property
    def bind_host(self) -> str:
        return self.listen_host or self.host

    def host_for(self, port_name: str) -> str:
        return self.hosts.get(port_name, self.host)

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def bucket_dir(self) -> Path:
        """The filesystem 'object storage' bucket shared by the stores."""
        return self.root / "data" / "bucket"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def url(self, port_name: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.host_for(port_name)}:{self.ports[port_name]}"

    @property
    def gateway_url(self) -> str:
        return self.url("gateway", "https")


def cloud_bucket(storage: dict, store: str) -> str:
    """The bucket of ``store`` in a cloud account's object storage
    (``{"type": "s3"|"gcs", "bucket": ..., "buckets": {store: ...}}``, the
    Kubernetes deployer's): its own if ``buckets`` names one, else the shared one."""
    return (storage.get("buckets") or {}).get(store) or storage["bucket"]


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"v3.7.8"`` -> ``(3, 7, 8)``; unknown or missing -> ``()``, which sorts first."""
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(x) for x in m.groups() if x is not None) if m else ()


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def http_ready(url: str, verify: str | bool = True, expect: int = 200, timeout: float = 2.0):
    """A readiness check: GET ``url`` and expect a status code."""

    def check() -> tuple[bool, str]:
        try:
            r = requests.get(url, timeout=timeout, verify=verify)
        except requests.RequestException as exc:
            return False, f"{url}: {type(exc).__name__}"
        if r.status_code == expect:
            return True, "ready"
        return False, f"{url}: HTTP {r.status_code} {r.text.strip()[:120]!r}"

    return check


class Component:
    """One program of the platform."""

    name: str = ""
    # the key of this component's version in a release of releases.yaml;
    # None for a system program (nginx) whose version the release does not pin
    release_key: str | None = None
    spec: BinarySpec
    port_names: tuple[str, ...] = ()
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 60.0
    ready_timeout: float = 120.0

    def enabled(self, storage: dict) -> bool:
        """Whether this platform runs the component at all (e.g. the S3 server)."""
        return True

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        """Write the component's configuration for ``version`` (idempotent;
        called again on upgrade, where a new version's changes are made)."""
        raise NotImplementedError

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: PlatformContext) -> dict:
        """Extra environment of the process (for secrets: never on the command line)."""
        return {}

    def ready_check(self, ctx: PlatformContext):
        raise NotImplementedError

    def endpoint(self, ctx: PlatformContext) -> str:
        return ctx.url(self.port_names[0])

    def data_dirs(self, ctx: PlatformContext) -> list[Path]:
        """Local (non-bucket) data of this component: removed to prove
        that data is served from object storage."""
        return []


class Store(Component):
    """A Cortex/Loki-family store: one YAML config file plus a runtime
    overrides file, started with ``-config.file``, ready at ``/ready``, local
    data under ``data/<name>`` and its objects under ``data/bucket/<name>``."""

    data_subdirs: tuple[str, ...] = ()

    def config(self, ctx: PlatformContext, version: str | None) -> dict:
        raise NotImplementedError

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        for sub in ("", *self.data_subdirs):
            (ctx.data_dir / self.name / sub).mkdir(parents=True, exist_ok=True)
        (ctx.bucket_dir / self.name).mkdir(parents=True, exist_ok=True)
        write_yaml(ctx.config_dir / f"{self.name}.yaml", self.config(ctx, version))
        write_yaml(ctx.config_dir / f"{self.name}-overrides.yaml", {"overrides": ctx.overrides.get(self.name, {})})

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        return [str(binary), f"-config.file={ctx.config_dir / f'{self.name}.yaml'}"]

    def ready_check(self, ctx: PlatformContext):
        return http_ready(f"{ctx.url(self.name)}/ready")

    def data_dirs(self, ctx: PlatformContext) -> list[Path]:
        return [ctx.data_dir / self.name]
