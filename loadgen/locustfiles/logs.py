"""locustfile: logs push (Loki protocol, snappy protobuf) through the gateway.

    STACKPROOF_TARGET_FILE=target.yaml locust -f loadgen/locustfiles/logs.py

or `stackproof load --signal logs`, which also checks objectives and completeness."""

from loadgen.locustfiles.common import setup

globals().update(setup("logs"))  # LogsPushUser: locust runs the user classes it finds here
