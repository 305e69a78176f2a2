"""Cortex in single-binary mode (``-target=all``): auth enabled, blocks
storage with a write-ahead log, object storage in the platform's bucket.
In a cluster: the official image, its data directories made on the volume
before it starts (as the local provider makes them)."""

from __future__ import annotations

import re

import requests

from ..binaries import ArchiveRecipe, BinarySpec, GoRecipe
from ..target import DEFAULT_LIMITS, METRICS_OTLP_PATH
from .base import METRICS_STORE, ClusterPort, ClusterShape, PlatformContext, Read, Route, Store, cloud_bucket

SPEC = BinarySpec(
    name="cortex",
    go=GoRecipe(
        module="github.com/cortexproject/cortex",
        package="github.com/cortexproject/cortex/cmd/cortex",
        version_vars=("main.Version={version}",),
        # as Cortex's Makefile: Cortex casts its label slices to Prometheus'
        # labels.Labels, so it needs the slice implementation; without
        # 'slicelabels' the ingester panics on the first push
        tags=("netgo", "slicelabels"),
    ),
    archive=ArchiveRecipe(
        url="https://github.com/cortexproject/cortex/releases/download/{version}/cortex-linux-amd64",
        checksums_url="https://github.com/cortexproject/cortex/releases/download/{version}/cortex-linux-amd64-sha-256",
        member="",
    ),
)

MSG_SIZE = 100 << 20
# the ruler's and the Alertmanager's intervals on the platforms stackproof builds (upstream: 1m
# evaluation, 1m rule polling, 15s Alertmanager config polling, 1m resend)
EVALUATION_INTERVAL_S = 1
POLL_INTERVAL_S = 1
# a firing alert is sent to the Alertmanager with its end 4 resend delays ahead; at a restart
# the ruler stops before the Alertmanager of the same process, which resolves every alert whose
# end passes meanwhile and fires it again after: with 1 s, a rolling restart of Cortex on the
# local cluster sent 'firing, resolved, firing' for one alert (the upgrade suite). 10 s: 40 s
RESEND_DELAY_S = 10


# what a tenant reads under /prometheus/ (the gateway passes the whole prefix): every read API of
# Prometheus' that Cortex serves, each asked about the seeded series only
_RANGE = (("start", "{start_s}"), ("end", "{end_s}"))
PROMQL_READS = (
    Read("promql query", "/prometheus/api/v1/query", (("query", "{series}"), ("time", "{time_s}")), "metrics"),
    Read("promql query_range", "/prometheus/api/v1/query_range", (("query", "{series}"), *_RANGE, ("step", "15")),
         "metrics"),
    Read("promql series", "/prometheus/api/v1/series", (("match[]", "{series}"), *_RANGE), "metrics"),
    Read("promql labels", "/prometheus/api/v1/labels", (("match[]", "{series}"), *_RANGE), "metrics"),
    Read("promql labels of every series", "/prometheus/api/v1/labels", (*_RANGE, ("limit", "{nonce}")), "metrics"),
    Read("promql label values", "/prometheus/api/v1/label/stackproof_test/values", (("match[]", "{series}"),
                                                                                   *_RANGE), "metrics"),
    Read("promql label values of every series", "/prometheus/api/v1/label/{label}/values",
         (*_RANGE, ("limit", "{nonce}")), "metrics"),
    Read("promql exemplars", "/prometheus/api/v1/query_exemplars", (("query", "{series}"), *_RANGE), "exemplars"),
    Read("promql metadata", "/prometheus/api/v1/metadata", (("metric", "{metric}"), ("limit", "{nonce}")),
         "metadata"),
    Read("promql metadata of every metric", "/prometheus/api/v1/metadata", (("limit", "{nonce}"),), "metadata"),
    Read("prometheus remote read", "/prometheus/api/v1/read", shows="metrics", method="POST", body="remote-read",
         decode="snappy"),
    Read("prometheus rules", "/prometheus/api/v1/rules", (("rule_group[]", "{marker}"),), "rules",
         needs="alerting"),
    Read("prometheus alerts", "/prometheus/api/v1/alerts", needs="alerting"),
)
# the ruler's config API (Loki-compatible): every rule group of the tenant, and one namespace
RULER_READS = (
    Read("rule groups", "/api/v1/rules", shows="rules", needs="alerting", ok=(200, 404)),
    Read("rule groups of a namespace", "/api/v1/rules/{marker}", shows="rules", needs="alerting", ok=(200, 404)),
)
# the tenant's Alertmanager, its v2 API
ALERTMANAGER_READS = tuple(
    Read(f"alertmanager {what}", f"/alertmanager/api/v2/{path}", shows=shows, needs="alerting")
    for what, path, shows in (("alerts", "alerts", ""), ("alert groups", "alerts/groups", ""),
                              ("silences", "silences", "silences"), ("receivers", "receivers", ""),
                              ("status", "status", "")))


class Cortex(Store):
    name = "cortex"
    role = METRICS_STORE
    release_key = "cortex"
    spec = SPEC
    port_names = ("cortex", "cortex-grpc")
    data_subdirs = ("tsdb", "tsdb-sync", "compactor", "rules", "rules-tmp", "alerts", "alertmanager")
    # the rule store and the Alertmanager config store, in buckets of their own: in Cortex's
    # blocks bucket every top-level directory is taken for a tenant's blocks
    extra_buckets = ("cortex-rules", "cortex-alerts")
    # what the target file publishes (alerting)
    alerting = {"evaluation_interval_s": EVALUATION_INTERVAL_S, "poll_interval_s": POLL_INTERVAL_S,
                "alertmanager_poll_interval_s": POLL_INTERVAL_S, "resend_delay_s": RESEND_DELAY_S}
    ready_timeout = 120.0
    # remote write, OTLP metrics and the PromQL API (Prometheus' own paths under /prometheus, with the
    # ruler's rules and alerts reads), the ruler's config API, the Alertmanager's config
    # API and its v2 API (alerts, silences)
    routes = (Route("= /api/v1/push", writes=True), Route(f"= {METRICS_OTLP_PATH}", writes=True),
              Route("/prometheus/", reads=PROMQL_READS),
              Route("~ ^/api/v1/rules(/|$)", writes=True, reads=RULER_READS),
              Route("= /api/v1/alerts", writes=True, reads=(
                  Read("alertmanager config", "/api/v1/alerts", needs="alerting", ok=(200, 404)),)),
              Route("/alertmanager/api/v2/", writes=True, reads=ALERTMANAGER_READS))
    tenant_headers = {"X-Scope-OrgID": "$stackproof_tenant"}
    # OTLP resource attributes made labels of every series (published in the target file)
    otlp_promoted = ("deployment.environment",)
    # the official image (Alpine, runs as root); upstream's usual ports
    cluster = ClusterShape(
        image="cortexproject/cortex", tag="{version}", binary="/bin/cortex",
        ports=(ClusterPort("http", 9009, "cortex"), ClusterPort("grpc", 9095, "cortex-grpc")),
        probe=("/ready", "http"), volume=True,
        prepare=("cortex", *(f"cortex/{sub}" for sub in data_subdirs)))

    def config(self, ctx: PlatformContext, version: str | None) -> dict:
        d = ctx.data_dir / "cortex"
        ring = {"kvstore": {"store": "inmemory"}}
        return {
            "target": "all",
            "auth_enabled": True,
            # metric and label names may be any UTF-8 (quoted in PromQL), as in Prometheus 3
            "name_validation_scheme": "utf8",
            "server": {
                "http_listen_address": ctx.bind_host,
                "http_listen_port": ctx.ports["cortex"],
                "grpc_listen_address": ctx.bind_host,
                "grpc_listen_port": ctx.ports["cortex-grpc"],
                "grpc_server_max_recv_msg_size": MSG_SIZE,
                "grpc_server_max_send_msg_size": MSG_SIZE,
                "log_level": "info",
            },
            "distributor": {"shard_by_all_labels": True, "pool": {"health_check_ingesters": True},
                            # remote write 2.0 (both pinned releases have it, off by default): a 2.0
                            # request to a Cortex with it off is 415 on 1.21, and on 1.20 is decoded as
                            # 1.0, found empty and acknowledged (the metrics suite tells them apart)
                            "remote_writev2_enabled": True},
            "ingester_client": {"grpc_client_config": {"max_recv_msg_size": MSG_SIZE,
                                                       "max_send_msg_size": MSG_SIZE}},
            "ingester": {
                "lifecycler": {
                    "address": ctx.host,
                    "min_ready_duration": "0s",
                    "final_sleep": "0s",
                    "join_after": "0s",
                    "observe_period": "0s",
                    "num_tokens": 512,
                    "ring": {**ring, "replication_factor": 1},
                },
            },
            "blocks_storage": {
                **self.bucket_config(ctx),
                "tsdb": {
                    # the head block is written ahead to this WAL and replayed on restart
                    "dir": str(d / "tsdb"),
                    # a graceful stop cuts and ships the head to object storage
                    "flush_blocks_on_shutdown": True,
                },
                # the store-gateway sees new blocks through the bucket index; with
                # upstream's 15m sync a store that lost its disk serves nothing
                # from the bucket for up to 15 minutes (found by the durability suite)
                "bucket_store": {"sync_dir": str(d / "tsdb-sync"), "sync_interval": "30s"},
            },
            # the compactor's cleaner writes the bucket index: every minute, not 15
            "compactor": {"data_dir": str(d / "compactor"), "sharding_ring": ring, "cleanup_interval": "1m"},
            "store_gateway": {"sharding_ring": {**ring, "replication_factor": 1}},
            "frontend_worker": {"match_max_concurrent": True},
            # rules and Alertmanager configs through their APIs: writable stores (the 'local'
            # backend is read-only), in the platform's bucket when it has its own S3, else on disk.
            # Both releases read these YAML names; only the flags were renamed in 1.21
            # (-experimental.ruler.enable-api became -ruler.enable-api)
            "ruler": {
                "enable_api": True,
                "rule_path": str(d / "rules-tmp"),
                "alertmanager_url": f"http://{ctx.host_for('cortex')}:{ctx.ports['cortex']}/alertmanager",
                # short intervals, published in the target file (alerting), so checks wait seconds
                "evaluation_interval": f"{EVALUATION_INTERVAL_S}s",
                "poll_interval": f"{POLL_INTERVAL_S}s",
                "resend_delay": f"{RESEND_DELAY_S}s",
                "alertmanager_refresh_interval": "10s",
            },
            "ruler_storage": self.side_store(ctx, "rules", "cortex-rules"),
            "alertmanager": {
                "enable_api": True,
                "data_dir": str(d / "alertmanager"),
                "poll_interval": f"{POLL_INTERVAL_S}s",
                # a tenant without a config of its own gets this one (its alerts go nowhere), so
                # every tenant's Alertmanager API answers
                "fallback_config_file": str(ctx.config_dir / "alertmanager-fallback.yaml"),
                "external_url": f"http://{ctx.host_for('cortex')}:{ctx.ports['cortex']}/alertmanager",
                # no gossip cluster: it would listen on 0.0.0.0:9094, one platform per machine
                "cluster": {"listen_address": ""},
            },
            "alertmanager_storage": self.side_store(ctx, "alerts", "cortex-alerts"),
            "limits": {
                "max_label_names_per_series": DEFAULT_LIMITS["metrics_max_label_names_per_series"],
                "max_label_value_length": DEFAULT_LIMITS["metrics_max_label_value_length"],
                "ingestion_rate": DEFAULT_LIMITS["metrics_ingestion_rate_samples"],
                "ingestion_burst_size": 2 * DEFAULT_LIMITS["metrics_ingestion_rate_samples"],
                # native histograms (remote write 2.0, OTLP exponential histograms) are dropped with a
                # 2xx unless on, counted only in cortex_discarded_samples_total
                "enable_native_histograms": True,
                # exemplars are kept only up to this many per tenant (upstream 0: none, silently)
                "max_exemplars": 100_000,
                "promote_resource_attributes": list(self.otlp_promoted),
            },
            "runtime_config": {"file": str(ctx.config_dir / "cortex-overrides.yaml"), "period": "5s"},
        }

    @staticmethod
    def bucket_config(ctx: PlatformContext) -> dict:
        st = ctx.storage
        if st.get("bucket"):  # a cloud account's bucket (the Kubernetes deployer)
            return Cortex.cloud_bucket_config(st)
        if st.get("type") == "s3":  # the platform's own S3 server: on loopback, or a Service in a cluster
            s3 = {"endpoint": f"{ctx.host_for('s3')}:{ctx.ports['s3']}", "bucket_name": "cortex", "insecure": True,
                  "region": st.get("region", "us-east-1"), "bucket_lookup_type": "path"}
            # without keys, the S3 client reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the
            # environment (in a cluster: from a Secret, so that no key is in a config map)
            if st.get("access_key_id"):
                s3.update(access_key_id=st["access_key_id"], secret_access_key=st["secret_access_key"])
            return {"backend": "s3", "s3": s3}
        return {"backend": "filesystem", "filesystem": {"dir": str(ctx.bucket_dir / "cortex")}}

    # the services of the single binary that ``stackproof status`` shows: the alerting ones
    SHOWN_SERVICES = ("ruler", "alertmanager")

    def parts(self, ctx: PlatformContext) -> dict[str, str]:
        """Each shown service's state from Cortex's /services page (Running, Starting, Failed, ...)."""
        try:
            page = requests.get(f"{ctx.url('cortex')}/services", timeout=2).text
        except requests.RequestException as exc:
            return {s: f"unknown ({type(exc).__name__})" for s in self.SHOWN_SERVICES}
        states = dict(re.findall(r"<td>([\w-]+)</td>\s*<td>(\w+)</td>", page))
        return {s: states.get(s, "absent") for s in self.SHOWN_SERVICES}

    def extra_files(self, ctx: PlatformContext) -> dict[str, str]:
        # the Alertmanager config of a tenant without its own: one receiver that sends nowhere
        return {"alertmanager-fallback.yaml": "route: {receiver: discard}\nreceivers: [{name: discard}]\n"}

    @staticmethod
    def side_store(ctx: PlatformContext, subdir: str, bucket: str) -> dict:
        """The ruler's or the Alertmanager's store: the bucket ``bucket`` of the platform's own
        S3 server, else a directory (in a cloud account: on the volume, beside the head block)."""
        st = ctx.storage
        if st.get("type") == "s3" and not st.get("bucket"):
            cfg = Cortex.bucket_config(ctx)
            return {**cfg, "s3": {**cfg["s3"], "bucket_name": bucket}}
        return {"backend": "filesystem", "filesystem": {"dir": str(ctx.data_dir / "cortex" / subdir)}}

    @staticmethod
    def cloud_bucket_config(st: dict) -> dict:
        """S3 (EKS) or GCS (GKE) with credentials from the environment (node
        role, IRSA, workload identity): no key is ever in the config."""
        bucket = cloud_bucket(st, "cortex")
        if st["type"] == "s3":
            # the objstore S3 client requires an endpoint; AWS's regional one
            return {"backend": "s3", "s3": {"endpoint": st.get("endpoint") or f"s3.{st['region']}.amazonaws.com",
                                            "bucket_name": bucket, "region": st["region"]}}
        if st["type"] == "gcs":
            return {"backend": "gcs", "gcs": {"bucket_name": bucket}}
        raise ValueError(f"cortex: unknown object storage type {st['type']!r} (known: s3, gcs)")
