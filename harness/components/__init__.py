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

__all__ = ["COMPONENTS", "BY_NAME", "Component", "PlatformContext", "http_ready",
           "Cortex", "Loki", "Gateway", "PrometheusAgent", "S3Server"]
