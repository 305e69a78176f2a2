"""locustfile: Loki push (protobuf) through the gateway.

    STACKPROOF_TARGET_FILE=target.yaml locust -f loadgen/locustfiles/logs.py

or `stackproof load --signal logs`, which also checks objectives and completeness."""

from loadgen.locustfiles.common import setup
from loadgen.users import LokiPushUser  # noqa: F401  (locust runs the user classes it finds here)

globals().update(setup())
