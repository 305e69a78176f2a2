"""VictoriaLogs (Apache-2.0), the logs store of the platforms stackproof builds.

One binary, multi-tenant by two numeric headers (``AccountID``, ``ProjectID``),
fed by the Loki push protocol (JSON and snappy protobuf) and OTLP logs, read
with LogsQL. Data lives on its own volume (``-storageDataPath``), not in
object storage. Why each flag is set:

- ``-loki.disableMessageParsing``: a Loki line that is JSON is otherwise split
  into fields and the original line is lost; a Loki shipper expects its line
  back byte for byte.
- ``-inmemoryDataFlushInterval``: nothing is fsynced on acknowledgement; rows
  reach the disk at this interval (upstream 5 s). 1 s bounds what a kill -9
  loses; the window is published in the target file (``durability``) and the
  durability suite proves it.

Older releases (before v1.25) live in the VictoriaMetrics module under
``app/victoria-logs``, whose go.mod has replace directives: the resolver's
wrapper module repeats them.

In a cluster: the official image ``victoriametrics/victoria-logs``. Its tags
are the release (``v1.52.2``) since VictoriaLogs has its own repository
(v1.25.0); older ones, released from the VictoriaMetrics repository, carry a
``-victorialogs`` suffix (``v1.24.0-victorialogs``). The program is
``/victoria-logs-prod``; the image sets no user (Alpine until v1.51, distroless
``static`` from v1.52), so it runs as root and makes its data directory on
the volume itself.
"""

from __future__ import annotations

from pathlib import Path

from ..binaries import BinarySpec, GoRecipe
from .base import LOGS_STORE, ClusterPort, ClusterShape, Component, PlatformContext, Read, Route, StoreAPI, http_ready

_VERSION_VAR = ("github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-{version}",)

SPEC = BinarySpec(
    name="victoria-logs",
    go=GoRecipe(
        module="github.com/VictoriaMetrics/VictoriaLogs",
        package="github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs",
        version_vars=_VERSION_VAR,
    ),
    # VictoriaLogs v1.24.0 is app/victoria-logs of VictoriaMetrics v1.121.0 (same release day)
    older_go=(("v1.25.0", GoRecipe(
        module="github.com/VictoriaMetrics/VictoriaMetrics",
        package="github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-logs",
        module_version=lambda v: {"v1.24.0": "v1.121.0"}.get(v, v),
        version_vars=_VERSION_VAR,
    )),),
)

FLUSH_INTERVAL_S = 1
# LogsQL endpoints a tenant may use; /select/tenant_ids (lists every tenant) is not one
SELECT_PATHS = ("query", "hits", "stats_query", "stats_query_range", "field_names", "field_values",
                "streams", "stream_field_names", "stream_field_values", "stream_ids", "facets")

# one read per path of SELECT_PATHS, each asked about the seeded stream only; grouped by the seed's
# label where the path can group, so that its answer names the seed
_RANGE = (("start", "{start}"), ("end", "{end}"))
_STATS = "{logsql} | stats by (stackproof_test) count() n"
LOGSQL_READS = (
    Read("logsql query", "/select/logsql/query", (("query", "{logsql}"), *_RANGE), "logs"),
    Read("logsql hits", "/select/logsql/hits", (("query", "{logsql}"), *_RANGE, ("step", "1h"),
                                                ("field", "stackproof_test")), "logs"),
    Read("logsql stats_query", "/select/logsql/stats_query", (("query", _STATS), ("time", "{end}")), "logs"),
    Read("logsql stats_query_range", "/select/logsql/stats_query_range", (("query", _STATS), *_RANGE,
                                                                          ("step", "1h")), "logs"),
    Read("logsql field_names", "/select/logsql/field_names", (("query", "{logsql}"), *_RANGE), "logs"),
    Read("logsql field_values", "/select/logsql/field_values", (("query", "{logsql}"), *_RANGE,
                                                                ("field", "stackproof_test")), "logs"),
    Read("logsql streams", "/select/logsql/streams", (("query", "{logsql}"), *_RANGE), "logs"),
    Read("logsql stream_field_names", "/select/logsql/stream_field_names", (("query", "{logsql}"), *_RANGE), "logs"),
    Read("logsql stream_field_values", "/select/logsql/stream_field_values", (("query", "{logsql}"), *_RANGE,
                                                                              ("field", "stackproof_test")), "logs"),
    # a stream's id names no label: its answer is compared with the answer for a marker nobody wrote
    Read("logsql stream_ids", "/select/logsql/stream_ids", (("query", "{logsql}"), *_RANGE), "logs", marked=False),
    # facets leaves out a field of one value unless asked to keep it
    Read("logsql facets", "/select/logsql/facets", (("query", "{logsql}"), *_RANGE, ("keep_const_fields", "1")),
         "logs"),
)


class VictoriaLogs(StoreAPI, Component):
    name = "victorialogs"
    role = LOGS_STORE
    release_key = "victorialogs"
    dialect = "victorialogs"  # the target file's logs api: how suites read this store
    spec = SPEC
    port_names = ("victorialogs",)
    ready_timeout = 60.0
    stop_timeout = 60.0

    routes = (
        Route("= /insert/loki/api/v1/push", writes=True),
        Route("= /insert/opentelemetry/v1/logs", writes=True),
        Route(f"~ ^/select/logsql/({'|'.join(SELECT_PATHS)})$", reads=LOGSQL_READS),
        Route("= /select/logsql/tail", streaming=True, reads=(
            Read("logsql tail", "/select/logsql/tail", (("query", "{logsql}"),), "logs", streaming=True),)),
    )
    # every tenant's data (/select/tenant_ids, /insert/multitenant/*) and the
    # storage internals (/internal/*: force merge, flush, partitions)
    refused = ("/select/", "/insert/", "/internal/")
    # the tenant is the account id; X-Scope-OrgID is removed, since VictoriaLogs
    # takes a client's X-Scope-OrgID as the tenant whenever AccountID is 0
    tenant_headers = {"AccountID": "$stackproof_account", "ProjectID": "0", "X-Scope-OrgID": ""}
    uses_bucket = False
    # measured on the local platform with a 1 s flush interval: the last ~2 s of
    # acknowledged lines are gone after kill -9 (README, durability table)
    crash_loss_seconds = 3.0
    cluster = ClusterShape(
        image="victoriametrics/victoria-logs", tag="{version}",
        older_tags=(("v1.25.0", "{version}-victorialogs"),),
        binary="/victoria-logs-prod",
        ports=(ClusterPort("http", 9428, "victorialogs"),),
        probe=("/health", "http"), volume=True)

    def reported_version(self, version: str) -> str:
        return f"victoria-logs-{version}"  # -version prints the stamped buildinfo.Version alone

    def data_path(self, ctx: PlatformContext) -> Path:
        return ctx.data_dir / self.name

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        self.data_path(ctx).mkdir(parents=True, exist_ok=True)

    def flags(self, ctx: PlatformContext, data_path: str) -> list[str]:
        """Every flag but the binary: the same for a process and a container."""
        return [f"-httpListenAddr={ctx.bind_host}:{ctx.ports[self.name]}",
                f"-storageDataPath={data_path}",
                "-loki.disableMessageParsing",
                f"-inmemoryDataFlushInterval={FLUSH_INTERVAL_S}s",
                "-retentionPeriod=7d",
                "-loggerLevel=INFO"]

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        return [str(binary), *self.flags(ctx, str(self.data_path(ctx)))]

    def ready_check(self, ctx: PlatformContext):
        return http_ready(f"{ctx.url(self.name)}/health")

    def data_dirs(self, ctx: PlatformContext) -> list[Path]:
        return [self.data_path(ctx)]
