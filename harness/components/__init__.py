"""Platform components: how to build, configure, start, tell ready and stop
each program of the platform. The local provider runs them as processes; the
Kubernetes deployer renders the same configuration into config maps."""

from .base import Component, PlatformContext, http_ready
from .cortex import Cortex
from .gateway import Gateway
from .loki import Loki
from .prometheus import PrometheusAgent
from .s3 import S3Server

# start order; stop order is the reverse
COMPONENTS: tuple[Component, ...] = (S3Server(), Cortex(), Loki(), Gateway(), PrometheusAgent())
BY_NAME = {c.name: c for c in COMPONENTS}


def release_builds(release) -> list[tuple[Component, str]]:
    """(component, version) of each program ``release`` pins and the harness builds
    (or fetches): not the system programs such as nginx, nor the unversioned S3 server."""
    return [(c, release.version(c.release_key)) for c in COMPONENTS
            if c.release_key and not c.spec.system_names]

__all__ = ["COMPONENTS", "BY_NAME", "release_builds", "Component", "PlatformContext", "http_ready",
           "Cortex", "Loki", "Gateway", "PrometheusAgent", "S3Server"]
