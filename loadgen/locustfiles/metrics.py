"""locustfile: Prometheus remote write through the gateway, fast patched payloads.

    STACKPROOF_TARGET_FILE=target.yaml locust -f loadgen/locustfiles/metrics.py

or `stackproof load --signal metrics`, which also checks objectives and completeness."""

from loadgen.locustfiles.common import setup
from loadgen.users import RemoteWriteUser  # noqa: F401  (locust runs the user classes it finds here)

globals().update(setup())
