"""locustfile: Prometheus remote write through the gateway, fast patched payloads.

    STACKPROOF_TARGET_FILE=target.yaml locust -f loadgen/locustfiles/metrics.py

or `stackproof load --signal metrics`, which also checks objectives and completeness."""

from loadgen.locustfiles.common import setup

globals().update(setup("metrics"))  # RemoteWriteUser: locust runs the user classes it finds here
