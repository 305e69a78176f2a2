"""A real Prometheus in agent mode: scrapes the platform's own ``/metrics``
and remote-writes them through the gateway with the system tenant's token."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..binaries import ArchiveRecipe, BinarySpec, GoRecipe
from .base import Component, PlatformContext, http_ready, version_tuple, write_yaml


def _module_version(version: str) -> str:
    """Prometheus v3.X.Y is tagged v0.3XX.Y on the Go module proxy (v2.X.Y as v0.X.Y)."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return version
    major, minor, patch = (int(x) for x in m.groups())
    return f"v0.{major * 100 + minor if major >= 3 else minor}.{patch}"


SPEC = BinarySpec(
    name="prometheus",
    go=GoRecipe(
        module="github.com/prometheus/prometheus",
        package="github.com/prometheus/prometheus/cmd/prometheus",
        module_version=_module_version,
        version_vars=("github.com/prometheus/common/version.Version={version}",),
        # .promu.yml also sets 'builtinassets', which embeds the web UI built
        # with npm; the Go module does not ship those assets and an agent needs no UI
        tags=("netgo",),
    ),
    archive=ArchiveRecipe(
        url="https://github.com/prometheus/prometheus/releases/download/{version}/prometheus-{bare}.linux-amd64.tar.gz",
        checksums_url="https://github.com/prometheus/prometheus/releases/download/{version}/sha256sums.txt",
        member="prometheus-{bare}.linux-amd64/prometheus",
    ),
)


class PrometheusAgent(Component):
    name = "prometheus"
    release_key = "prometheus"
    spec = SPEC
    port_names = ("prometheus",)
    ready_timeout = 60.0
    scrape_interval = "5s"

    def config(self, ctx: PlatformContext) -> dict:
        jobs = [("cortex", "cortex"), ("loki", "loki"), ("prometheus", "prometheus")]
        return {
            "global": {"scrape_interval": self.scrape_interval,
                       "external_labels": {"stackproof_platform": ctx.name}},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"{ctx.host_for(port)}:{ctx.ports[port]}"]}]}
                for job, port in jobs
            ],
            "remote_write": [{
                "url": f"{ctx.gateway_url}/api/v1/push",
                "authorization": {"type": "Bearer",
                                  "credentials_file": str(ctx.config_dir / "prometheus-token")},
                "tls_config": {"ca_file": str(ctx.tls.ca_cert)},
                "queue_config": {"batch_send_deadline": "1s"},
            }],
        }

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        (ctx.data_dir / "prometheus").mkdir(parents=True, exist_ok=True)
        token_file = ctx.config_dir / "prometheus-token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(next(t.token for t in ctx.tenants if t.role == "system"))
        write_yaml(ctx.config_dir / "prometheus.yml", self.config(ctx))

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        # agent mode is a flag since 3.0; a feature flag before
        agent = ["--agent"] if version_tuple(version or "v3") >= (3,) else ["--enable-feature=agent"]
        return [str(binary), *agent,
                f"--config.file={ctx.config_dir / 'prometheus.yml'}",
                f"--storage.agent.path={ctx.data_dir / 'prometheus'}",
                f"--web.listen-address={ctx.bind_host}:{ctx.ports['prometheus']}"]

    def ready_check(self, ctx: PlatformContext):
        return http_ready(f"{ctx.url('prometheus')}/-/ready")

    def data_dirs(self, ctx: PlatformContext) -> list[Path]:
        return [ctx.data_dir / "prometheus"]
