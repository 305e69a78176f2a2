"""What every component shares: the context a configuration is rendered in,
the roles, the component and store interfaces, and a component's shape in a
Kubernetes cluster (:class:`ClusterShape`), so that a deployer renders any
component from what it declares and names none."""

from __future__ import annotations

import copy
import dataclasses
import signal
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from ..binaries import BinarySpec, version_tuple
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
    # per-tenant limit overrides (runtime config) by component: {"cortex": {tenant: {...}}}
    overrides: dict[str, dict] = field(default_factory=dict)
    # object storage: {"type": "filesystem"} or {"type": "s3", "endpoint": ..., "bucket": ..., ...}
    storage: dict = field(default_factory=lambda: {"type": "filesystem"})
    # where components listen; None means ``host``. In a cluster: all interfaces
    listen_host: str | None = None
    # how to reach a port by name when it is not on ``host`` (in a cluster: a
    # Service's DNS name); a port not named here is on ``host``
    hosts: dict[str, str] = field(default_factory=dict)
    # in a cluster: its node shares this machine's file system, so a ClusterShape's shared_dirs are mounted
    host_shared: bool = False

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


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def http_ready(url: str, verify: str | bool = True, expect: int = 200, timeout: float = 2.0,
               headers: dict | None = None, contains: str = ""):
    """A readiness check: GET ``url`` and expect a status code (and ``contains`` in the body)."""

    def check() -> tuple[bool, str]:
        try:
            r = requests.get(url, timeout=timeout, verify=verify, headers=headers)
        except requests.RequestException as exc:
            return False, f"{url}: {type(exc).__name__}"
        if r.status_code == expect and contains in r.text:
            return True, "ready"
        return False, f"{url}: HTTP {r.status_code} {r.text.strip()[:120]!r}"

    return check


# what a component is for: providers, the gateway and the suites look components
# up by role, never by name, so a store is swapped by adding one component
METRICS_STORE = "metrics-store"
LOGS_STORE = "logs-store"
GATEWAY = "gateway"
SENDER = "sender"
OBJECT_STORE = "object-store"
# evaluates the logs store's rules (the metrics store has its own ruler), per tenant
LOGS_RULER = "logs-ruler"
# a second sender: ships files and OTLP through the gateway with one tenant's token
LOG_SHIPPER = "log-shipper"
ROLES = (OBJECT_STORE, METRICS_STORE, LOGS_STORE, LOGS_RULER, GATEWAY, SENDER, LOG_SHIPPER)


@dataclass(frozen=True)
class Read:
    """One harmless read a tenant makes through a route: what the security suite
    asks as every tenant to prove that none answers with another's data.

    ``params`` (and ``path``) are templates filled from what a test seeded,
    with a fresh ``{nonce}`` in each ask so that no cache can answer it from an
    earlier one: ``{series}`` (a PromQL selector of the seeded series),
    ``{metric}``, ``{label}`` (a label name only the seed has), ``{marker}``,
    ``{logsql}`` (a LogsQL filter of the seeded stream), ``{time_s}`` (when
    it was written), ``{start_s}``, ``{end_s}``, ``{start}``, ``{end}`` (RFC 3339),
    ``{nonce}``. ``shows`` is
    the kind of seeded data its answer holds (``metrics``, ``exemplars``,
    ``metadata``, ``logs``, ``rules``, ``log-rules``, ``silences``; "" for a read no test seeds,
    which is still asked as every tenant and must answer ``ok``); ``marked``
    whether the answer names the seed's marker (else it is compared with the
    answer for a marker nobody wrote); ``needs`` a capability the target must
    declare; ``body`` names a request body the suite builds (``remote-read``),
    ``decode`` how the answer is packed (``snappy``)."""

    name: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    shows: str = ""
    marked: bool = True
    needs: str = ""
    ok: tuple[int, ...] = (200,)
    method: str = "GET"
    body: str = ""
    decode: str = ""
    streaming: bool = False  # a live tail: proven by the tail test, not by one answer


@dataclass(frozen=True)
class Route:
    """One path (an nginx ``location`` match) the gateway passes to a store, and what it is
    to a tenant: a write path, the reads it serves, or both. Every route of every component
    the gateway fronts says which (tests/test_security_standins.py holds them to it); the
    security suite asks every read as each tenant."""

    match: str  # e.g. "= /api/v1/push" or "~ ^/select/logsql/(query|hits)$"
    streaming: bool = False  # a long-lived response (tail): no buffering, a long read timeout
    writes: bool = False
    reads: tuple[Read, ...] = ()


@dataclass(frozen=True)
class ClusterPort:
    """A container port of a component in a cluster."""

    name: str  # the port's name: an IANA service name (at most 15 of a-z, 0-9, '-')
    number: int
    # the PlatformContext port it is (``ctx.ports[key]``); None: not one of the platform's ports
    key: str | None = None
    published: bool = True  # offered by the component's Service (a probe-only port is not)
    # reached from outside the cluster too: a node port, where the gateway is one (the harness sends to it)
    outside: bool = False


@dataclass(frozen=True)
class ClusterShape:
    """How a component runs as a container: what a deployer needs beyond its
    configuration. The pod's files are the local state directory's layout under
    one root (``config/``, ``data/``, ``tls/``, ``logs/``)."""

    image: str  # the image's repository, e.g. "cortexproject/cortex"
    # the tag for a release's version: {version} as released (v1.21.1), {bare} without
    # the 'v' (1.21.1); a tag without either is fixed (the gateway's nginx)
    tag: str
    binary: str  # the program's path in the image
    ports: tuple[ClusterPort, ...]
    probe: tuple[str, str]  # the readiness probe: (HTTP path, port name)
    # the image's user, who must own the data directory; None: the image runs as root
    uid: int | None = None
    volume: bool = False  # a PersistentVolumeClaim for data/ (else an emptyDir)
    # the Secrets it reads (as its ``cluster_secrets`` makes them): each key a file in config/
    secrets: tuple[str, ...] = ()
    tls: tuple[str, ...] = ()  # the platform's TLS files it reads: "cert", "key", "ca"
    prepare: tuple[str, ...] = ()  # directories under data/ to make before it starts
    scratch: tuple[str, ...] = ()  # further writable directories under the root (emptyDir), e.g. "logs"
    # tags of older releases: ((first version with ``tag``, the tag of every older version), ...), newest first
    older_tags: tuple[tuple[str, str], ...] = ()
    # directories under data/ the harness writes into on this machine (a test's inbox): each a directory
    # the node shares with this machine (hostPath). Only a cluster on this machine has one (local-kube);
    # elsewhere the component does not run
    host_dirs: tuple[str, ...] = ()
    # environment variables from its Secrets: (variable, Secret, key); a value is never in a manifest
    secret_env: tuple[tuple[str, str, str], ...] = ()
    # directories under data/ the harness writes into on this machine, as host_dirs, but which the component
    # does without: mounted where the node shares this machine's files (local-kube), absent elsewhere, where
    # the component runs all the same without what they serve (the agent's scrape list: only the platform)
    shared_dirs: tuple[str, ...] = ()

    def image_for(self, version: str | None) -> str:
        tag = self.tag
        for first, older in self.older_tags:
            if version and version_tuple(version) < version_tuple(first):
                tag = older
        v = version or ""
        return f"{self.image}:{tag.format(version=v, bare=v.removeprefix('v'))}"


class Component:
    """One program of the platform."""

    name: str = ""
    role: str = ""
    # the key of this component's version in a release of releases.yaml;
    # None for a system program (nginx) whose version the release does not pin
    release_key: str | None = None
    spec: BinarySpec
    port_names: tuple[str, ...] = ()
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 60.0
    ready_timeout: float = 120.0
    # one process per tenant (its name and port ``<name>-<tenant>``), made by :meth:`for_tenant`
    per_tenant: bool = False
    tenant: Tenant | None = None  # the tenant of one such instance
    _template = ""  # an instance's component in the catalog

    @property
    def template_name(self) -> str:
        """The catalog's name of this component (for an instance: of the component it is one of)."""
        return self._template or self.name

    version_flag = "-version"  # prints the version the build stamped

    def reported_version(self, version: str) -> str:
        """What ``version_flag`` prints for a build of ``version`` (as upstream's release builds say it)."""
        return f"version {version} "

    def for_tenant(self, tenant: Tenant) -> "Component":
        """The instance of a per-tenant component that serves ``tenant``."""
        inst = copy.copy(self)
        inst.tenant = tenant
        inst._template = self.name
        inst.name = f"{self.name}-{tenant.name}"
        inst.port_names = (inst.name,)
        if self.cluster is not None:  # its container port is its own platform port, as its process's is
            inst.cluster = dataclasses.replace(self.cluster, ports=tuple(
                dataclasses.replace(p, key=inst.name) if p.key == self.name else p for p in self.cluster.ports))
        return inst

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

    def parts(self, ctx: PlatformContext) -> dict[str, str]:
        """The state of the services inside a running process that ``stackproof status``
        shows (Cortex: its ruler and Alertmanager); empty when it has none to tell."""
        return {}

    def data_dirs(self, ctx: PlatformContext) -> list[Path]:
        """Local (non-bucket) data of this component: removed to prove
        that data is served from object storage."""
        return []

    def scrape_port(self) -> str | None:
        """The port whose ``/metrics`` the sender scrapes (None: not scraped)."""
        return self.port_names[0] if self.port_names else None

    # -- in a Kubernetes cluster (a component without a shape has no place there)
    cluster: ClusterShape | None = None

    def cluster_command(self, ctx: PlatformContext, version: str | None) -> list[str]:
        """The container's command: what the process runs, with the image's program."""
        assert self.cluster is not None
        return [str(a) for a in self.args(ctx, Path(self.cluster.binary), version)]

    def cluster_files(self, ctx: PlatformContext, version: str | None) -> dict[str, str]:
        """Its configuration files (a ConfigMap, under ``config/``): name -> text. Never a secret."""
        return {}

    def cluster_secrets(self, tenants: list[Tenant]) -> dict[str, dict[str, str]]:
        """The Secrets its shape names: Secret name -> {key: text}."""
        return {}

    def cluster_kept(self, ctx: PlatformContext) -> tuple[Path, dict[str, str]] | None:
        """A directory of files the provider keeps while the platform runs (the logs rule
        evaluator's rule files, which have no API of their own): where the container reads
        them, and the files it starts with. In a cluster a ConfigMap of their own, made once
        and never rewritten by a deploy or an upgrade, so that what a tenant set survives both.
        None: the component has no such files."""
        return None


class StoreAPI:
    """What the gateway needs of a store: the paths it exposes, the paths it
    refuses outright, and the headers that carry the tenant (each set by the
    gateway; one with an empty value is removed from the client's request)."""

    routes: tuple[Route, ...] = ()
    refused: tuple[str, ...] = ()  # path prefixes answered 403 for every token
    # the upstream's tenant headers; values may use $stackproof_tenant (the name)
    # and $stackproof_account (the tenant's numeric account id)
    tenant_headers: dict[str, str] = {}
    # whether data outlives the local disk in object storage (a bucket)
    uses_bucket: bool = True
    # seconds of acknowledged writes a kill -9 may lose, as this platform
    # configures the store (0: a write-ahead log replays every acked write)
    crash_loss_seconds: float = 0.0
    # buckets beside the store's own (named by it), e.g. Cortex's rule and alert stores
    extra_buckets: tuple[str, ...] = ()
    # a metrics store's OTLP resource attributes promoted to labels of every series
    otlp_promoted: tuple[str, ...] = ()


class Store(StoreAPI, Component):
    """A Cortex-family store: one YAML config file plus a runtime
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
        for name, text in self.extra_files(ctx).items():
            (ctx.config_dir / name).write_text(text)

    def extra_files(self, ctx: PlatformContext) -> dict[str, str]:
        """Further files of its configuration (under ``config/``): name -> text. Never a secret."""
        return {}

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        return [str(binary), f"-config.file={ctx.config_dir / f'{self.name}.yaml'}"]

    def cluster_files(self, ctx: PlatformContext, version: str | None) -> dict[str, str]:
        return {f"{self.name}.yaml": yaml.safe_dump(self.config(ctx, version), sort_keys=False),
                f"{self.name}-overrides.yaml": yaml.safe_dump({"overrides": ctx.overrides.get(self.name, {})},
                                                              sort_keys=False),
                **self.extra_files(ctx)}

    def ready_check(self, ctx: PlatformContext):
        return http_ready(f"{ctx.url(self.name)}/ready")

    def data_dirs(self, ctx: PlatformContext) -> list[Path]:
        return [ctx.data_dir / self.name]
