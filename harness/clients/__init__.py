"""Clients of the platform's write and read paths, through the gateway, as one tenant."""

from .http import TenantHTTP
from .logs import LokiClient
from .metrics import MetricsMetadataClient, PromQLClient, RemoteWriteClient
from .poll import Visibility, poll_until

__all__ = ["TenantHTTP", "LokiClient", "MetricsMetadataClient", "PromQLClient", "RemoteWriteClient", "Visibility",
           "poll_until"]
