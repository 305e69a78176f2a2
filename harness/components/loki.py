"""Loki in single-binary mode (``-target=all``): auth enabled, TSDB index,
ingester write-ahead log, chunks and index in the platform's bucket."""

from __future__ import annotations

from ..binaries import ArchiveRecipe, BinarySpec, GoRecipe
from ..target import DEFAULT_LIMITS
from .base import PlatformContext, Store, cloud_bucket, version_tuple

SPEC = BinarySpec(
    name="loki",
    go=GoRecipe(
        module="github.com/grafana/loki/v3",
        package="github.com/grafana/loki/v3/cmd/loki",
        version_vars=("github.com/grafana/loki/v3/pkg/util/build.Version={version}",),
        tags=("netgo",),  # as Loki's Makefile
    ),
    archive=ArchiveRecipe(
        url="https://github.com/grafana/loki/releases/download/{version}/loki-linux-amd64.zip",
        checksums_url="https://github.com/grafana/loki/releases/download/{version}/SHA256SUMS",
        member="loki-linux-amd64",
    ),
)

# the schema's first period: any fixed date in the past works, but it must
# never change for an existing store, so it is a constant
SCHEMA_FROM = "2024-01-01"


class Loki(Store):
    name = "loki"
    release_key = "loki"
    spec = SPEC
    port_names = ("loki", "loki-grpc")
    ready_timeout = 120.0

    def base_config(self, ctx: PlatformContext) -> dict:
        d = ctx.data_dir / "loki"
        return {
            "target": "all",
            "auth_enabled": True,
            "server": {
                "http_listen_address": ctx.bind_host,
                "http_listen_port": ctx.ports["loki"],
                "grpc_listen_address": ctx.bind_host,
                "grpc_listen_port": ctx.ports["loki-grpc"],
                "grpc_server_max_recv_msg_size": 100 << 20,
                "grpc_server_max_send_msg_size": 100 << 20,
                "log_level": "info",
            },
            "common": {
                "instance_addr": ctx.host,
                "path_prefix": str(d),
                "replication_factor": 1,
                "ring": {"kvstore": {"store": "inmemory"}},
                "storage": self.bucket_config(ctx),
            },
            "ingester": {
                "lifecycler": {"min_ready_duration": "0s", "final_sleep": "0s"},
                # every push is written ahead to this WAL and replayed on restart
                "wal": {"enabled": True, "dir": str(d / "wal"), "flush_on_shutdown": True},
            },
            "schema_config": {"configs": [{
                "from": SCHEMA_FROM, "store": "tsdb", "object_store": self.object_store(ctx.storage),
                "schema": "v13",
                "index": {"prefix": "index_", "period": "24h"},
            }]},
            "storage_config": {
                "tsdb_shipper": {"active_index_directory": str(d / "tsdb-index"),
                                 "cache_location": str(d / "tsdb-cache")},
            },
            "compactor": {"working_directory": str(d / "compactor")},
            "limits_config": {
                # streams keep exactly the labels they were pushed with: no
                # service_name / detected_level labels added by Loki
                "discover_service_name": [],
                "discover_log_levels": False,
                "allow_structured_metadata": True,
                "max_line_size": DEFAULT_LIMITS["logs_max_line_bytes"],
                # refuse a too-long line (the default truncates nothing either; said here on purpose)
                "max_line_size_truncate": False,
                "ingestion_rate_mb": DEFAULT_LIMITS["logs_ingestion_rate_mb"],
                "ingestion_burst_size_mb": 2 * DEFAULT_LIMITS["logs_ingestion_rate_mb"],
                "per_stream_rate_limit": f"{DEFAULT_LIMITS['logs_ingestion_rate_mb']}MB",
                "per_stream_rate_limit_burst": f"{2 * DEFAULT_LIMITS['logs_ingestion_rate_mb']}MB",
            },
            # results caching would hide what the store really returns
            "query_range": {"cache_results": False},
            "ruler": {"storage": {"type": "local", "local": {"directory": str(d / "rules")}},
                      "rule_path": str(d / "rules-tmp")},
            "pattern_ingester": {"enabled": False},
            "analytics": {"reporting_enabled": False},
            "runtime_config": {"file": str(ctx.config_dir / "loki-overrides.yaml"), "period": "5s"},
        }

    def config(self, ctx: PlatformContext, version: str | None) -> dict:
        cfg = self.base_config(ctx)
        if version_tuple(version) >= (3, 7):
            # find the in-process query scheduler within a second, not ten
            # (ready in 1.5 s instead of 10.5 s). On 3.6.4 the same setting
            # leaves every query hanging, so older releases keep the default.
            cfg["frontend"] = {"scheduler_dns_lookup_period": "1s"}
        return cfg

    @staticmethod
    def bucket_config(ctx: PlatformContext) -> dict:
        st = ctx.storage
        if st.get("bucket"):  # a cloud account's bucket (the Kubernetes deployer)
            return Loki.cloud_bucket_config(st)
        if st.get("type") == "s3":
            return {"s3": {"endpoint": f"{ctx.host}:{ctx.ports['s3']}", "bucketnames": "loki", "insecure": True,
                           "access_key_id": st["access_key_id"], "secret_access_key": st["secret_access_key"],
                           "region": st.get("region", "us-east-1"), "s3forcepathstyle": True}}
        b = ctx.bucket_dir / "loki"
        return {"filesystem": {"chunks_directory": str(b / "chunks"), "rules_directory": str(b / "rules")}}

    @staticmethod
    def cloud_bucket_config(st: dict) -> dict:
        """S3 (EKS) or GCS (GKE) with credentials from the environment (node
        role, IRSA, workload identity): no key is ever in the config."""
        bucket = cloud_bucket(st, "loki")
        if st["type"] == "s3":
            s3 = {"bucketnames": bucket, "region": st["region"]}
            if st.get("endpoint"):
                s3["endpoint"] = st["endpoint"]
            return {"s3": s3}
        if st["type"] == "gcs":
            return {"gcs": {"bucket_name": bucket}}
        raise ValueError(f"loki: unknown object storage type {st['type']!r} (known: s3, gcs)")

    @staticmethod
    def object_store(st: dict) -> str:
        """The schema's object_store for the platform's storage."""
        return st["type"] if st.get("type") in ("s3", "gcs") else "filesystem"
