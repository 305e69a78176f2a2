"""locustfile: remote write and logs push together, weighted by the workload's metrics_weight and logs_weight.

    STACKPROOF_TARGET_FILE=target.yaml locust -f loadgen/locustfiles/mixed.py

or `stackproof load --signal mixed`, which also checks objectives and completeness."""

from loadgen.locustfiles.common import setup

globals().update(setup("mixed"))  # RemoteWriteUser and LogsPushUser: locust runs the user classes it finds here
