"""Clients of the platform's write and read paths, through the gateway, as one tenant."""

from .http import TenantHTTP
from .logs import LogsPush, LogsReader, Select, logs_reader
from .metrics import MetricsMetadataClient, PromQLClient, RemoteWriteClient
from .poll import Visibility, poll_until

__all__ = ["TenantHTTP", "LogsPush", "LogsReader", "Select", "logs_reader", "MetricsMetadataClient", "PromQLClient",
           "RemoteWriteClient", "Visibility", "poll_until"]
