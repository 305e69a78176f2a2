"""What every stackproof locustfile does on import: read the target and the
workload from the environment, and pick the load shape if one is named.

    STACKPROOF_TARGET_FILE  the target file (tenants, tokens, CA)
    STACKPROOF_LOAD         the workload as JSON (harness.workload.Workload)
    STACKPROOF_LOAD_COUNTS  where each process leaves its counts for the completeness check
    STACKPROOF_LOAD_SHAPE   step:START:STEP:EVERY:MAX or ramp:PEAK:RAMP:HOLD (optional)
"""

from __future__ import annotations

import os

from loadgen import shapes, users


def setup() -> dict:
    """Configure the users; returns the names a locustfile exports (a shape class, if any)."""
    users.configure_from_env()
    spec = os.environ.get("STACKPROOF_LOAD_SHAPE")
    return {"StackproofShape": shapes.from_spec(spec)} if spec else {}
