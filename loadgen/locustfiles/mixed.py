"""locustfile: Remote write and Loki push together, weighted by the workload's metrics_weight and logs_weight.

    STACKPROOF_TARGET_FILE=target.yaml locust -f loadgen/locustfiles/mixed.py

or `stackproof load --signal mixed`, which also checks objectives and completeness."""

from loadgen.locustfiles.common import setup
from loadgen.users import LokiPushUser, RemoteWriteUser  # noqa: F401  (locust runs the user classes it finds here)

globals().update(setup())
