"""A real Prometheus in agent mode: scrapes the platform's own ``/metrics``
and the exporters a test lists in its scrape directory (native histograms
too), and remote-writes them (2.0, with native histograms) through the
gateway with the system tenant's token.
In a cluster: the official image (it runs as ``nobody``), the token from a
Secret and the platform CA to trust the gateway. The exporters a test lists
are scraped there only where the node shares this machine's file system (the
local cluster): the scrape directory is a directory of this machine
(``agent-scrape`` under the provider's host directory) mounted read-only into
the pod, and the exporters listen where the pods reach this machine (the
target's ``agent_scrape_host``). Elsewhere the pod has no such directory, and
its configuration no exporters job: the agent scrapes the platform only, and
the target does not declare 'agent-scrape'."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from ..binaries import ArchiveRecipe, BinarySpec, GoRecipe
from .base import SENDER, ClusterPort, ClusterShape, Component, PlatformContext, http_ready, version_tuple, write_yaml


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


EXPORTERS_JOB = "stackproof-exporters"
SCRAPE = "agent-scrape"  # in a cluster: the scrape directory, under data/ (a directory of this machine)


def system_token(tenants) -> str:
    """The token the agent writes with: the system tenant's."""
    return next(t.token for t in tenants if t.role == "system")


class PrometheusAgent(Component):
    name = "prometheus"
    role = SENDER
    release_key = "prometheus"
    spec = SPEC
    port_names = ("prometheus",)
    ready_timeout = 60.0
    scrape_interval = "5s"
    version_flag = "--version"
    token_file = "prometheus-token"  # under config/: the system tenant's token
    cluster = ClusterShape(
        image="prom/prometheus", tag="{version}", binary="/bin/prometheus",
        ports=(ClusterPort("http", 9090, "prometheus"),), probe=("/-/ready", "http"), uid=65534,
        secrets=(token_file,), tls=("ca",), shared_dirs=(SCRAPE,))

    def config(self, ctx: PlatformContext) -> dict:
        from . import scraped  # the catalog imports this module
        # one job per role, so what the agent sends names no component
        jobs = [(c.role, c.scrape_port()) for c in scraped()]
        return {
            "global": {"scrape_interval": self.scrape_interval,
                       "external_labels": {"stackproof_platform": ctx.name}},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"{ctx.host_for(port)}:{ctx.ports[port]}"]}]}
                for job, port in jobs
            ] + [{
                # exporters a test starts: listed in files of the scrape directory (file service
                # discovery), scraped every second, native histograms and their classic buckets both
                "job_name": EXPORTERS_JOB, "scrape_interval": "1s",
                "file_sd_configs": [{"files": [str(self.scrape_dir(ctx) / "*.json")], "refresh_interval": "1s"}],
                "scrape_native_histograms": True, "always_scrape_classic_histograms": True,
            }],
            "remote_write": [{
                "url": f"{ctx.gateway_url}/api/v1/push",
                "authorization": {"type": "Bearer",
                                  "credentials_file": str(ctx.config_dir / self.token_file)},
                "tls_config": {"ca_file": str(ctx.tls.ca_cert)},
                "queue_config": {"batch_send_deadline": "1s"},
                # remote write 2.0 with native histograms (the metrics store takes 2.0)
                "protobuf_message": "io.prometheus.write.v2.Request",
                "send_native_histograms": True,
            }],
        }

    def scrape_dir(self, ctx: PlatformContext) -> Path:
        """Where a test lists the exporters it starts (file service discovery, ``*.json``): on this
        machine under config/; in a pod the directory of this machine mounted under data/."""
        return ctx.data_dir / SCRAPE if ctx.host_shared else ctx.config_dir / "scrape"

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        (ctx.data_dir / "prometheus").mkdir(parents=True, exist_ok=True)
        self.scrape_dir(ctx).mkdir(parents=True, exist_ok=True)
        token_file = ctx.config_dir / self.token_file
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(system_token(ctx.tenants))
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

    def cluster_files(self, ctx: PlatformContext, version: str | None) -> dict[str, str]:
        # the exporters job only where the scrape directory is one of this machine's (the node shares its
        # files): elsewhere nothing of the harness's can list targets in the pod's file system
        cfg = self.config(ctx)
        if not ctx.host_shared:
            cfg["scrape_configs"] = [sc for sc in cfg["scrape_configs"] if sc["job_name"] != EXPORTERS_JOB]
        return {"prometheus.yml": yaml.safe_dump(cfg, sort_keys=False)}

    def cluster_secrets(self, tenants) -> dict[str, dict[str, str]]:
        return {self.token_file: {self.token_file: system_token(tenants)}}

    def data_dirs(self, ctx: PlatformContext) -> list[Path]:
        return [ctx.data_dir / "prometheus"]
