"""What every stackproof locustfile does on import: read the target and the
workload from the environment, build the locustfile's user classes from them,
and pick the load shape if one is named.

    STACKPROOF_TARGET_FILE  the target file (tenants, tokens, CA)
    STACKPROOF_LOAD         the workload as JSON (harness.workload.Workload)
    STACKPROOF_LOAD_COUNTS  where each process leaves its counts for the completeness check
    STACKPROOF_LOAD_SHAPE   step:START:STEP:EVERY:MAX or ramp:PEAK:RAMP:HOLD (optional)
"""

from __future__ import annotations

import os
from pathlib import Path

from locust import events

from harness.target import Target
from harness.workload import Workload
from loadgen import shapes, users


def setup(signal: str, environ=os.environ) -> dict:
    """The names a locustfile of ``signal`` exports: its user classes and the shape class, if any."""
    path = environ.get("STACKPROOF_TARGET_FILE")
    if not path:
        raise SystemExit("stackproof locustfile: set STACKPROOF_TARGET_FILE to a target file "
                         "(stackproof load does; see 'stackproof load --help')")
    workload = Workload.from_env(environ).with_(signal=signal)  # the locustfile names what it sends
    tally = users.Tally()
    counts = environ.get("STACKPROOF_LOAD_COUNTS")
    if counts:
        # each process (master, every worker) leaves its counts when it quits
        events.quitting.add_listener(lambda **_kw: tally.write(Path(counts)))
    exported = {cls.__name__: cls for cls in users.user_classes(Target.load(path), workload, tally)}
    spec = environ.get("STACKPROOF_LOAD_SHAPE")
    return exported | ({"StackproofShape": shapes.from_spec(spec)} if spec else {})
