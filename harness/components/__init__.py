"""Platform components: how to build, configure, start, tell ready and stop
each program of the platform. The local provider runs them as processes; the
Kubernetes deployer renders the same configuration into config maps.

The catalog is :data:`COMPONENTS`, in start order. Everything else finds a
component by its role (:func:`by_role`): a new logs or metrics store is one
module here plus its entry in the catalog and its key in ``releases.yaml``."""

from .base import (GATEWAY, LOG_SHIPPER, LOGS_RULER, LOGS_STORE, METRICS_STORE, OBJECT_STORE, ROLES, SENDER,
                   Component, PlatformContext, Read, Route, StoreAPI, http_ready)
from .cortex import Cortex
from .gateway import Gateway
from .otelcol import OtelCollector
from .prometheus import PrometheusAgent
from .s3 import S3Server
from .victorialogs import VictoriaLogs
from .vmalert import VMAlert

# start order; stop order is the reverse
COMPONENTS: tuple[Component, ...] = (S3Server(), Cortex(), VictoriaLogs(), VMAlert(), Gateway(), PrometheusAgent(),
                                     OtelCollector())
BY_NAME = {c.name: c for c in COMPONENTS}


def by_role(role: str) -> Component:
    """The catalog's component for ``role`` (one each)."""
    for c in COMPONENTS:
        if c.role == role:
            return c
    raise KeyError(f"no component has the role {role!r} (roles: {', '.join(ROLES)})")


def stores() -> list[Component]:
    """The stores the gateway fronts, metrics first."""
    return [by_role(METRICS_STORE), by_role(LOGS_STORE)]


def instances(tenants, components=COMPONENTS) -> list[Component]:
    """The processes of ``components`` in start order: a per-tenant one once for each tenant."""
    return [i for c in components for i in ([c.for_tenant(t) for t in tenants] if c.per_tenant else [c])]


def fronted() -> list[Component]:
    """What the gateway passes requests to: the stores, then the logs rule evaluator."""
    return [*stores(), by_role(LOGS_RULER)]


# the store of each signal, by role
SIGNAL_ROLES = {"metrics": METRICS_STORE, "logs": LOGS_STORE}


def bucket_stores() -> tuple[str, ...]:
    """Names of the stores that keep their data in object storage (the others on their volume)."""
    return tuple(c.name for c in stores() if c.uses_bucket)


def scraped() -> list[Component]:
    """What the sender scrapes: the stores and itself."""
    return [*stores(), by_role(SENDER)]


def release_builds(release) -> list[tuple[Component, str]]:
    """(component, version) of each program ``release`` pins and the harness builds
    (or fetches): not the system programs such as nginx, nor the unversioned S3 server."""
    return [(c, release.version(c.release_key)) for c in COMPONENTS
            if c.release_key and not c.spec.system_names]


__all__ = ["COMPONENTS", "BY_NAME", "by_role", "stores", "instances", "fronted", "LOGS_RULER", "VMAlert", "scraped",
           "bucket_stores", "SIGNAL_ROLES", "release_builds", "Component", "PlatformContext", "Read", "Route",
           "StoreAPI", "http_ready", "ROLES", "METRICS_STORE", "LOGS_STORE", "GATEWAY", "SENDER", "OBJECT_STORE",
           "LOG_SHIPPER", "OtelCollector", "Cortex", "VictoriaLogs", "Gateway", "PrometheusAgent", "S3Server"]
