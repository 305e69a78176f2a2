"""stackproof's library: target model, releases, binaries, clients, providers,
platform components, process supervision and the CLI.

Nothing in here imports from fixtures/, suites/, loadgen/ or reports/.
"""

import sys

__version__ = "0.1.0"


def say(msg: str) -> None:
    """Progress of long work (builds, start-up, cloud steps), on stderr, marked as stackproof's."""
    print(f"[stackproof] {msg}", file=sys.stderr, flush=True)
