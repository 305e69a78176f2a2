"""The OpenTelemetry Collector (Apache-2.0) as a second real sender: a custom
build with the Collector's own builder holding only what the platform uses
(the filelog and OTLP receivers, the OTLP/HTTP exporter, the file and env
config providers), pinned in ``releases.yaml`` (``otelcol``).

It is the platform's tenant-scoped log and OTLP shipper: it tails the files in
its inbox (``data/otelcol/inbox/*.log``) and takes OTLP on its own loopback
port, and ships both through the gateway with one tenant's bearer token, as a
shipper outside the platform would. The token is in the process environment
(``STACKPROOF_OTELCOL_TOKEN``), never in its config file. Why each setting:

- ``file_log`` (the filelog receiver's name since v0.165) ``start_at: beginning``,
  ``poll_interval: 200ms``: a file the test writes is read whole, within a
  fraction of a second; ``include_file_name`` (upstream default) puts
  ``log.file.name`` on every record, so a test finds its lines by its own file.
- ``file_log``'s ``resource``: ``service.name`` is the shipper's, so its lines form one
  stream (the logs store makes the stream of the resource attributes).
- exporter ``sending_queue`` off, ``retry_on_failure`` on: a refused batch is
  retried, a batch is never held back in a queue a stop would lose.
- ``service.telemetry``: the Collector's own metrics server listens on :8888 of
  every interface by default; here on loopback at a port of the platform's.

In a cluster: only where the node shares this machine's file system (the local
cluster), since the suites write into its inbox here: the inbox is a directory
of this machine mounted into the pod, OTLP is a Service port reached from
outside at a node port, the token an environment variable from a Secret. The
image is the harness's own build (there is no upstream image of this custom
Collector): ``localhost/stackproof/otelcol-stackproof``, which a cluster
elsewhere would pull from a registry of the user's (``--image-map``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..binaries import BinarySpec, CollectorRecipe
from ..target import LOGS_APIS, METRICS_OTLP_PATH
from .base import LOG_SHIPPER, LOGS_STORE, ClusterPort, ClusterShape, Component, PlatformContext, http_ready

CORE = "go.opentelemetry.io/collector"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"
SPEC = BinarySpec(
    name="otelcol-stackproof",
    collector=CollectorRecipe(
        name="otelcol-stackproof",
        components=(("receivers", f"{CORE}/receiver/otlpreceiver", "core"),
                    ("receivers", f"{CONTRIB}/receiver/filelogreceiver", "contrib"),
                    ("exporters", f"{CORE}/exporter/otlphttpexporter", "core"),
                    ("providers", f"{CORE}/confmap/provider/fileprovider", "stable"),
                    ("providers", f"{CORE}/confmap/provider/envprovider", "stable")),
        # one Collector release: core v0.x, its stable modules v1.y, contrib v0.x(.z)
        versions={"v0.165.0": {"core": "v0.165.0", "stable": "v1.71.0", "contrib": "v0.165.1"}},
    ),
)
TOKEN_ENV = "STACKPROOF_OTELCOL_TOKEN"
SERVICE_NAME = "stackproof-otelcol"
TOKEN_SECRET = "otelcol-token"
INBOX = "otelcol/inbox"  # under data/


class OtelCollector(Component):
    name = "otelcol"
    role = LOG_SHIPPER
    release_key = "otelcol"
    spec = SPEC
    port_names = ("otelcol", "otelcol-telemetry")
    stop_timeout = 30.0
    ready_timeout = 60.0
    version_flag = "--version"

    def reported_version(self, version: str) -> str:
        return f"version {version.lstrip('v')}"

    def tenant_of(self, ctx: PlatformContext):
        """The tenant it ships as: the first user tenant."""
        return next(t for t in ctx.tenants if t.role == "user")

    def inbox(self, ctx: PlatformContext) -> Path:
        return ctx.data_dir / INBOX

    cluster = ClusterShape(
        image="localhost/stackproof/otelcol-stackproof", tag="{version}", binary="/otelcol-stackproof",
        ports=(ClusterPort("otlp", 4318, "otelcol", outside=True),
               ClusterPort("metrics", 8888, "otelcol-telemetry", published=False)),
        probe=("/metrics", "metrics"), tls=("ca",), host_dirs=(INBOX,),
        secret_env=((TOKEN_ENV, TOKEN_SECRET, "token"),))

    def cluster_files(self, ctx: PlatformContext, version: str | None) -> dict[str, str]:
        return {"otelcol.yaml": yaml.safe_dump(self.config(ctx), sort_keys=False)}

    def cluster_secrets(self, tenants) -> dict[str, dict[str, str]]:
        return {TOKEN_SECRET: {"token": next(t for t in tenants if t.role == "user").token}}

    def config(self, ctx: PlatformContext) -> dict:
        from . import by_role  # the catalog imports this module
        gw = ctx.gateway_url
        return {
            "receivers": {
                "file_log": {"include": [str(self.inbox(ctx) / "*.log")], "start_at": "beginning",
                            "poll_interval": "200ms", "include_file_name": True,
                            "resource": {"service.name": SERVICE_NAME}},
                "otlp": {"protocols": {"http": {"endpoint": f"{ctx.bind_host}:{ctx.ports['otelcol']}"}}},
            },
            "exporters": {
                "otlp_http": {
                    # the stores' OTLP paths, as the target file publishes them by default
                    "logs_endpoint": gw + LOGS_APIS[by_role(LOGS_STORE).dialect]["otlp_path"],
                    "metrics_endpoint": gw + METRICS_OTLP_PATH,
                    "headers": {"Authorization": "Bearer ${env:" + TOKEN_ENV + "}"},
                    "tls": {"ca_file": str(ctx.tls.ca_cert)},
                    "compression": "gzip",
                    "sending_queue": {"enabled": False},
                    "retry_on_failure": {"enabled": True, "initial_interval": "200ms", "max_interval": "2s",
                                         "max_elapsed_time": "60s"},
                },
            },
            "processors": {},
            "service": {
                "pipelines": {"logs": {"receivers": ["file_log", "otlp"], "exporters": ["otlp_http"]},
                              "metrics": {"receivers": ["otlp"], "exporters": ["otlp_http"]}},
                "telemetry": {
                    "resource": {"service.name": SERVICE_NAME},
                    "logs": {"level": "info", "encoding": "console"},
                    "metrics": {"level": "basic", "readers": [{"pull": {"exporter": {"prometheus": {
                        "host": ctx.bind_host, "port": ctx.ports["otelcol-telemetry"]}}}}]},
                },
            },
        }

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        self.inbox(ctx).mkdir(parents=True, exist_ok=True)
        ctx.config_dir.mkdir(parents=True, exist_ok=True)
        (ctx.config_dir / "otelcol.yaml").write_text(yaml.safe_dump(self.config(ctx), sort_keys=False))

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        return [str(binary), f"--config=file:{ctx.config_dir / 'otelcol.yaml'}"]

    def env(self, ctx: PlatformContext) -> dict:
        return {TOKEN_ENV: self.tenant_of(ctx).token}

    def ready_check(self, ctx: PlatformContext):
        # the OTLP/HTTP receiver answers a GET with 405 once the pipelines run
        return http_ready(f"{ctx.url('otelcol')}/v1/logs", expect=405)

    def scrape_port(self) -> str | None:
        return None

    def published(self, ctx: PlatformContext) -> dict:
        """What the target file says of it (the suites write into its inbox)."""
        return {"tenant": self.tenant_of(ctx).name, "inbox": str(self.inbox(ctx)),
                "otlp_url": ctx.url("otelcol"), "service_name": SERVICE_NAME}

