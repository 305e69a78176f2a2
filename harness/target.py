"""The target: a running platform the suites talk to.

A target serialises to a YAML *target file*, so any existing deployment can be
tested by writing one by hand. Example::

    name: prod-eu
    gateway_url: https://gateway.example.net
    ca_file: ca.pem                 # relative to the target file; omit for the system trust store
    metrics:
      write_path: /api/v1/push      # Prometheus remote write
      query_path: /prometheus       # PromQL API lives under <query_path>/api/v1/
      otlp_path: /api/v1/otlp/v1/metrics    # OTLP metrics over HTTP (protobuf or JSON)
      otlp_promoted: [deployment.environment]  # OTLP resource attributes the store makes labels of every series
    logs:
      api: victorialogs             # the logs dialect: victorialogs (LogsQL) or loki (LogQL)
      push_path: /insert/loki/api/v1/push    # Loki push (JSON, snappy protobuf); loki: /loki/api/v1/push
      query_path: /select/logsql    # LogsQL endpoints; loki: /loki/api/v1 (query_range, labels, tail, ...)
      otlp_path: /insert/opentelemetry/v1/logs   # OTLP logs over HTTP; loki: /otlp/v1/logs
    tenants:                        # account_id: VictoriaLogs' AccountID the gateway sets for the token
      - {name: team-a, token: "...", account_id: 1}
      - {name: team-b, token: "...", account_id: 2}
      - {name: platform, token: "...", role: system, account_id: 3}
    capabilities: [metrics, logs, tail, alerting, log-alerting]
    alerting:                       # paths with these defaults; intervals in seconds (upstream's defaults)
      rules_path: /api/v1/rules     # the metrics ruler's rule groups (Cortex, Loki-compatible)
      alertmanager_config_path: /api/v1/alerts
      alertmanager_path: /alertmanager        # the Alertmanager v2 API under <this>/api/v2/
      logs_rules_path: /vmalert     # the log evaluator's reads (<this>/api/v1/rules, alerts); loki: /loki/api/v1/rules
      evaluation_interval_s: 60     # how often rules are evaluated (metrics and logs)
      poll_interval_s: 60           # how long until a changed rule group is loaded
      alertmanager_poll_interval_s: 15    # how long until a changed Alertmanager config is loaded
      resend_delay_s: 60            # how often a firing alert is sent again to the Alertmanager
      evaluation_delay_s: 0         # rules read the data of this many seconds before their evaluation
      webhook_host: 127.0.0.1       # where a receiver on this machine listens for the Alertmanager to reach it
    durability:                     # declared, and proven by the durability suite
      logs: {crash_loss_seconds: 3} # acknowledged seconds a kill -9 may lose (default 0)
      metrics: {object_storage: true}   # data outlives the store's local disk
    agent_scrape_dir: /srv/scrape   # capability agent-scrape: *.json file service discovery lists the agent reads
    agent_scrape_host: 127.0.0.1    # where an exporter listed there listens for the agent to reach it (default)

Tokens are secrets: they are never part of ``repr`` and the CLI never prints them.
"""

from __future__ import annotations

import ipaddress
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
    "logs",  # Loki push + the logs dialect's reads (LogsQL or LogQL)
    "tail",  # live tail of a logs query
    "agent",  # a Prometheus agent remote-writes as the system tenant
    "restart",  # the provider can stop and restart components on the same data
    "alerting",  # metrics rules (a ruler and its API) and a multi-tenant Alertmanager with its API
    "log-alerting",  # log rules evaluated per tenant, alerting through the same Alertmanager
    "alerting-webhook",  # the platform's Alertmanager can reach a receiver on the harness's loopback
    "remote-write-2",  # the metrics write path takes Prometheus remote write 2.0 (else it must answer 415)
    "agent-scrape",  # the agent also scrapes exporters the harness lists in agent_scrape_dir (this machine)
    "otel-collector",  # an OpenTelemetry Collector ships files and OTLP for one tenant (otel_collector)
    "otlp",  # OTLP over HTTP through the gateway: metrics (metrics.otlp_path) and logs (logs.otlp_path)
}
ROLES = ("user", "system", "limited")
# the logs dialects and the paths each one has unless the target file says otherwise
LOGS_APIS = {
    "victorialogs": {"push_path": "/insert/loki/api/v1/push", "query_path": "/select/logsql",
                     "otlp_path": "/insert/opentelemetry/v1/logs"},
    "loki": {"push_path": "/loki/api/v1/push", "query_path": "/loki/api/v1", "otlp_path": "/otlp/v1/logs"},
}
# the metrics OTLP path unless the target file says otherwise (Cortex's and Mimir's)
METRICS_OTLP_PATH = "/api/v1/otlp/v1/metrics"
SIGNALS = ("metrics", "logs")
# the logs rules path of each dialect (alerting.logs_rules_path)
LOGS_RULES_PATHS = {"victorialogs": "/vmalert", "loki": "/loki/api/v1/rules"}


def logs_fields(api: str) -> dict[str, str]:
    """A target's logs api and that dialect's default paths, as :class:`Target` keywords."""
    return {"logs_api": api, **{f"logs_{k}": v for k, v in LOGS_APIS[api].items()}}
MAX_ACCOUNT_ID = 2**32 - 1  # VictoriaLogs' AccountID is an unsigned 32-bit number
# platform limits the suites check against; a target file may set them, else
# these upstream defaults (Cortex, Loki) and stackproof's gateway are assumed
DEFAULT_LIMITS = {
    "metrics_max_label_names_per_series": 30,
    "metrics_max_label_value_length": 2048,
    # the longest line the platform keeps, and the length from which a line must
    # be refused (never acknowledged and dropped); between the two nothing is
    # promised. VictoriaLogs limits a whole entry (line, labels, metadata) to
    # 2 MiB as JSON; Loki's default line limit is 256 KiB
    "logs_max_line_bytes": 2_000_000,
    "logs_line_bytes_refused_from": 2 * 1024 * 1024 + 1,
    # how old and how far ahead a line may be stamped and still be kept: the
    # local platform's VictoriaLogs retention (7 d) and its -futureRetention (2 d)
    "logs_max_age_hours": 7 * 24,
    "logs_max_future_hours": 2 * 24,
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
    # the numeric tenant of stores that have one (VictoriaLogs' AccountID)
    account_id: int | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "token": self.token, "role": self.role}
        if self.account_id is not None:
            d["account_id"] = self.account_id
        return d


@dataclass(frozen=True)
class Durability:
    """What a store declares about its acknowledged writes."""

    crash_loss_seconds: float = 0.0  # seconds of acked writes a kill -9 may lose
    object_storage: bool = False  # data outlives the store's local disk

    def to_dict(self) -> dict:
        return {"crash_loss_seconds": self.crash_loss_seconds, "object_storage": self.object_storage}


@dataclass(frozen=True)
class Alerting:
    """Where a target's rules and Alertmanager APIs are, and how long it takes to act."""

    rules_path: str = "/api/v1/rules"
    alertmanager_config_path: str = "/api/v1/alerts"
    alertmanager_path: str = "/alertmanager"
    logs_rules_path: str | None = None  # None: the logs dialect's default (LOGS_RULES_PATHS)
    evaluation_interval_s: float = 60.0
    poll_interval_s: float = 60.0
    alertmanager_poll_interval_s: float = 15.0
    resend_delay_s: float = 60.0
    evaluation_delay_s: float = 0.0  # rules read the data of this many seconds before their evaluation
    # the address on this machine a webhook receiver listens on so that the platform's Alertmanager
    # reaches it (capability 'alerting-webhook'): loopback for the local platform
    webhook_host: str = "127.0.0.1"

    PATHS = ("rules_path", "alertmanager_config_path", "alertmanager_path", "logs_rules_path")
    SECONDS = ("evaluation_interval_s", "poll_interval_s", "alertmanager_poll_interval_s", "resend_delay_s",
               "evaluation_delay_s")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in (*self.PATHS, *self.SECONDS, "webhook_host")
                if getattr(self, k) is not None}

    def settle_s(self) -> float:
        """A bound on how long a changed rule group takes to be evaluated once."""
        return self.poll_interval_s + 2 * self.evaluation_interval_s + self.evaluation_delay_s


@dataclass
class Target:
    name: str
    gateway_url: str
    tenants: list[Tenant]
    ca_file: str | None = None
    metrics_write_path: str = "/api/v1/push"
    metrics_query_path: str = "/prometheus"
    metrics_otlp_path: str = METRICS_OTLP_PATH
    # resource attributes the metrics store promotes to labels of every series of an OTLP export
    # (beyond service.name/namespace -> job and service.instance.id -> instance, which are always)
    metrics_otlp_promoted: list[str] = field(default_factory=list)
    logs_api: str = "victorialogs"
    logs_push_path: str = LOGS_APIS["victorialogs"]["push_path"]
    logs_query_path: str = LOGS_APIS["victorialogs"]["query_path"]
    logs_otlp_path: str = LOGS_APIS["victorialogs"]["otlp_path"]
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
    # per signal ("metrics", "logs"): what its store declares about acked writes
    durability: dict[str, Durability] = field(default_factory=lambda: {s: Durability() for s in SIGNALS})
    alerting: Alerting = field(default_factory=Alerting)
    # the platform's OpenTelemetry Collector (capability 'otel-collector'): {"tenant": whose token it
    # ships with, "inbox": the directory whose *.log files it tails, "otlp_url": its OTLP/HTTP receiver,
    # "service_name": the service.name of what it ships}
    otel_collector: dict[str, str] | None = None
    # capability 'agent-scrape': the directory whose *.json files (Prometheus file service discovery)
    # list exporters for the agent to scrape, as the system tenant
    agent_scrape_dir: str | None = None
    # the address of this machine an exporter listed there listens on so that the agent reaches it: loopback
    # where the agent runs on this machine; a cluster's pods reach it elsewhere (local-kube: its veth's end)
    agent_scrape_host: str = "127.0.0.1"
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
    def metrics_otlp_url(self) -> str:
        return self.url(self.metrics_otlp_path)

    @property
    def logs_push_url(self) -> str:
        return self.url(self.logs_push_path)

    @property
    def logs_query_url(self) -> str:
        """Base URL of the logs dialect's reads (``<this>/query``)."""
        return self.url(self.logs_query_path)

    @property
    def logs_otlp_url(self) -> str:
        return self.url(self.logs_otlp_path)

    @property
    def logs_rules_url(self) -> str:
        return self.url(self.alerting.logs_rules_path or LOGS_RULES_PATHS[self.logs_api])

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
        d["metrics"] = {"write_path": self.metrics_write_path, "query_path": self.metrics_query_path,
                        "otlp_path": self.metrics_otlp_path, "otlp_promoted": list(self.metrics_otlp_promoted)}
        d["logs"] = {"api": self.logs_api, "push_path": self.logs_push_path, "query_path": self.logs_query_path,
                     "otlp_path": self.logs_otlp_path}
        d["tenants"] = [t.to_dict() for t in self.tenants]
        d["capabilities"] = list(self.capabilities)
        if self.components:
            d["components"] = dict(self.components)
        d["limits"] = dict(self.limits)
        if self.logs_dir:
            d["logs_dir"] = self.logs_dir
        if self.object_storage:
            d["object_storage"] = dict(self.object_storage)
        d["durability"] = {s: dur.to_dict() for s, dur in self.durability.items()}
        d["alerting"] = self.alerting.to_dict()
        if self.otel_collector:
            d["otel_collector"] = dict(self.otel_collector)
        if self.agent_scrape_dir:
            d["agent_scrape_dir"] = self.agent_scrape_dir
        if self.agent_scrape_host != "127.0.0.1":
            d["agent_scrape_host"] = self.agent_scrape_host
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
             "tenants", "capabilities", "components", "limits", "logs_dir", "object_storage", "durability",
             "alerting", "otel_collector", "agent_scrape_dir", "agent_scrape_host"}
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

    logs_sec = data.get("logs", {}) or {}
    logs_api = logs_sec.get("api", "victorialogs") if isinstance(logs_sec, dict) else None
    if isinstance(logs_sec, dict) and logs_api not in LOGS_APIS:
        raise bad("logs.api", f"must be one of {', '.join(LOGS_APIS)}, got {logs_api!r}")
    paths = {}
    for section, keys, defaults in (("metrics", ("write_path", "query_path", "otlp_path"), {}),
                                    ("logs", ("push_path", "query_path", "otlp_path"), LOGS_APIS.get(logs_api, {}))):
        sec = data.get(section, {}) or {}
        if not isinstance(sec, dict):
            raise bad(section, "must be a mapping")
        extra = {"logs": "api", "metrics": "otlp_promoted"}[section]
        for k in sec:
            if k not in keys and k != extra:
                known_keys = ", ".join((*keys, extra))
                raise bad(f"{section}.{k}", f"is not known (known: {known_keys})")
        for k in keys:
            v = opt_str(k, defaults.get(k), sec, f"{section}.")
            if v is not None and not v.startswith("/"):
                raise bad(f"{section}.{k}", f"must start with '/', got {v!r}")
            paths[f"{section}_{k}"] = v

    promoted = (data.get("metrics") or {}).get("otlp_promoted", [])
    if not isinstance(promoted, list) or not all(isinstance(a, str) and a for a in promoted):
        raise bad("metrics.otlp_promoted", "must be a list of resource attribute names")

    raw_tenants = data.get("tenants")
    if raw_tenants is None:
        raise bad("tenants", "is missing")
    if not isinstance(raw_tenants, list) or not raw_tenants:
        raise bad("tenants", "must be a non-empty list")
    tenants: list[Tenant] = []
    seen_names, seen_tokens, seen_accounts = set(), set(), set()
    for i, t in enumerate(raw_tenants):
        where = f"tenants[{i}]"
        if not isinstance(t, dict):
            raise bad(where, "must be a mapping with name and token")
        for k in t:
            if k not in ("name", "token", "role", "account_id"):
                raise bad(f"{where}.{k}", "is not known (known: name, token, role, account_id)")
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
        account = t.get("account_id")
        if account is not None and (not isinstance(account, int) or isinstance(account, bool)
                                    or not 0 < account <= MAX_ACCOUNT_ID):
            raise bad(f"{where}.account_id", f"must be a whole number from 1 to {MAX_ACCOUNT_ID}, got {account!r}")
        if account is not None and account in seen_accounts:
            raise bad(f"{where}.account_id", f"repeats account id {account} of another tenant")
        seen_names.add(tname)
        seen_tokens.add(token)
        seen_accounts.add(account)
        tenants.append(Tenant(tname, token, role, account))

    caps = data.get("capabilities", ["metrics", "logs"])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise bad("capabilities", "must be a list of strings")
    for c in caps:
        if c not in KNOWN_CAPABILITIES:
            raise bad("capabilities", f"has unknown capability {c!r} (known: {', '.join(sorted(KNOWN_CAPABILITIES))})")
    if logs_api == "victorialogs" and "logs" in caps:
        for i, t in enumerate(tenants):
            if t.account_id is None:
                raise bad(f"tenants[{i}].account_id", "is missing: the victorialogs logs api needs a numeric "
                          "account id for every tenant (the AccountID the gateway sets for its token)")
    durability = _parse_durability(data.get("durability"), bad)
    alerting = _parse_alerting(data.get("alerting"), bad)

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

    otelcol = data.get("otel_collector")
    if otelcol is not None:
        if not isinstance(otelcol, dict) or not all(isinstance(v, str) for v in otelcol.values()):
            raise bad("otel_collector", "must map names to strings")
        for k in ("tenant", "inbox", "otlp_url", "service_name"):
            if k not in otelcol:
                raise bad(f"otel_collector.{k}", "is missing")
        if otelcol["tenant"] not in {t.name for t in tenants}:
            raise bad("otel_collector.tenant", f"names no tenant of this target: {otelcol['tenant']!r}")

    scrape_host = data.get("agent_scrape_host", "127.0.0.1")
    _check_host(scrape_host, "agent_scrape_host", bad)

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
        durability=durability,
        alerting=alerting,
        logs_api=logs_api,
        metrics_otlp_promoted=list(promoted),
        otel_collector=dict(otelcol) if otelcol else None,
        agent_scrape_dir=opt_str("agent_scrape_dir", None),
        agent_scrape_host=scrape_host,
        **kwargs,
    )


def _parse_durability(raw: Any, bad) -> dict[str, Durability]:
    out = {s: Durability() for s in SIGNALS}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        raise bad("durability", "must be a mapping of signal to its declaration")
    for sig, decl in raw.items():
        if sig not in SIGNALS:
            raise bad(f"durability.{sig}", f"is not a signal (known: {', '.join(SIGNALS)})")
        if not isinstance(decl, dict):
            raise bad(f"durability.{sig}", "must be a mapping (crash_loss_seconds, object_storage)")
        for k in decl:
            if k not in ("crash_loss_seconds", "object_storage"):
                raise bad(f"durability.{sig}.{k}", "is not known (known: crash_loss_seconds, object_storage)")
        loss = decl.get("crash_loss_seconds", 0)
        if not isinstance(loss, (int, float)) or isinstance(loss, bool) or loss < 0:
            raise bad(f"durability.{sig}.crash_loss_seconds", f"must be a number of seconds >= 0, got {loss!r}")
        bucket = decl.get("object_storage", False)
        if not isinstance(bucket, bool):
            raise bad(f"durability.{sig}.object_storage", f"must be true or false, got {bucket!r}")
        out[sig] = Durability(float(loss), bucket)
    return out


def _check_host(value: Any, field_name: str, bad) -> None:
    """An IP address written as text: YAML's bare ``7`` is a number, which Python would read as 0.0.0.7."""
    try:
        ipaddress.ip_address(value if isinstance(value, str) else None)
    except (TypeError, ValueError):
        raise bad(field_name, f"must be an IP address of this machine, got {value!r}") from None


def _parse_alerting(raw: Any, bad) -> Alerting:
    if raw is None:
        return Alerting()
    if not isinstance(raw, dict):
        raise bad("alerting", "must be a mapping of paths and intervals")
    known = (*Alerting.PATHS, *Alerting.SECONDS, "webhook_host")
    out = {}
    for k, v in raw.items():
        if k not in known:
            raise bad(f"alerting.{k}", f"is not known (known: {', '.join(known)})")
        if k == "webhook_host":
            _check_host(v, "alerting.webhook_host", bad)
        elif k in Alerting.PATHS:
            if not isinstance(v, str) or not v.startswith("/"):
                raise bad(f"alerting.{k}", f"must be a path starting with '/', got {v!r}")
        elif not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or (v == 0 and k != "evaluation_delay_s"):
            raise bad(f"alerting.{k}", f"must be a number of seconds > 0, got {v!r}")
        out[k] = float(v) if k in Alerting.SECONDS else v
    return Alerting(**out)
