"""What a load run sends: the workload knobs, shared by the ``stackproof load``
command (which sets them) and the locust users in ``loadgen/`` (which read
them). A workload travels to locust processes as JSON in one environment
variable, so distributed workers get exactly the same knobs.

Metrics: ``series`` per user, each with ``labels`` extra labels of
``cardinality`` values each; ``samples`` per series per request, spaced
``scrape_interval`` seconds apart (0: at the request's own time); ``churn``:
the fraction of a user's series replaced by new ones every
``churn_interval`` seconds.

Logs: ``streams`` per user with ``stream_labels`` extra labels of
``cardinality`` values; ``lines`` per push spread over the streams; line
length drawn from ``line_length`` (``fixed:200``, ``uniform:50:500`` or
``lognormal:200:0.5``, the last as median bytes and sigma).

Both: ``rate`` requests per second per user (locust's ``constant_throughput``),
``tenants`` the users are spread over (empty: every user tenant), and
``max_requests`` per process, a hard bound besides the run time.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields

from .errors import ConfigError

ENV = "STACKPROOF_LOAD"
SIGNALS = ("metrics", "logs", "mixed")


@dataclass(frozen=True)
class LineLength:
    kind: str = "fixed"
    a: float = 200
    b: float = 0

    @classmethod
    def parse(cls, spec: str) -> "LineLength":
        parts = spec.split(":")
        try:
            nums = [float(x) for x in parts[1:]]
        except ValueError:
            nums = []
        shapes = {"fixed": 1, "uniform": 2, "lognormal": 2}
        if parts[0] not in shapes or len(nums) != shapes[parts[0]] or any(n < 0 for n in nums):
            raise ConfigError(f"line length {spec!r}: expected fixed:N, uniform:MIN:MAX or lognormal:MEDIAN:SIGMA")
        if parts[0] == "uniform" and nums[0] > nums[1]:
            raise ConfigError(f"line length {spec!r}: MIN is above MAX")
        return cls(parts[0], nums[0], nums[1] if len(nums) > 1 else 0)

    def __str__(self) -> str:
        return f"{self.kind}:{self.a:g}" + (f":{self.b:g}" if self.kind != "fixed" else "")

    @property
    def mean(self) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return self.a * math.exp(self.b ** 2 / 2)


def parse_shape(spec: str) -> tuple[str, list[float]]:
    """``step:START:STEP:EVERY:MAX`` or ``ramp:PEAK:RAMP:HOLD`` -> (kind, numbers); see loadgen.shapes."""
    kind, _, rest = spec.partition(":")
    try:
        nums = [float(x) for x in rest.split(":")] if rest else []
    except ValueError:
        nums = []
    if kind == "step" and len(nums) == 4 and nums[0] >= 1 and nums[1] >= 0 and nums[2] > 0 and nums[3] >= nums[0]:
        return kind, nums
    if kind == "ramp" and len(nums) == 3 and nums[0] >= 1 and nums[1] > 0 and nums[2] >= 0:
        return kind, nums
    raise ConfigError(f"load shape {spec!r}: expected step:START:STEP:EVERY:MAX or ramp:PEAK:RAMP:HOLD "
                      "(users and seconds)")


@dataclass
class Workload:
    signal: str = "metrics"
    run_id: str = "load"
    # metrics
    series: int = 500
    labels: int = 0
    cardinality: int = 10
    samples: int = 1
    scrape_interval: float = 0.0
    churn: float = 0.0
    churn_interval: float = 10.0
    # logs
    streams: int = 4
    stream_labels: int = 0
    lines: int = 100
    line_length: str = "fixed:200"
    # both
    rate: float = 5.0
    tenants: list[str] = field(default_factory=list)
    max_requests: int = 100_000
    # mixed: relative weights of metrics and logs users
    metrics_weight: int = 1
    logs_weight: int = 1

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ConfigError(f"signal {self.signal!r}: expected one of {', '.join(SIGNALS)}")
        for name in ("series", "samples", "streams", "lines", "cardinality", "max_requests"):
            if getattr(self, name) < 1:
                raise ConfigError(f"workload {name} must be at least 1 (got {getattr(self, name)})")
        for name in ("labels", "stream_labels", "scrape_interval", "metrics_weight", "logs_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"workload {name} must not be negative (got {getattr(self, name)})")
        if not 0 <= self.churn <= 1:
            raise ConfigError(f"workload churn is a fraction of the series, 0 to 1 (got {self.churn})")
        if self.churn and self.churn_interval <= 0:
            raise ConfigError("workload churn_interval must be positive")
        if self.rate <= 0:
            raise ConfigError(f"workload rate (requests per second per user) must be positive (got {self.rate})")
        if self.scrape_interval and self.rate * self.samples * self.scrape_interval > 1:
            raise ConfigError(
                f"workload: {self.samples} samples {self.scrape_interval:g}s apart per request at {self.rate:g} "
                f"requests/s per user would put a series' samples ahead of the clock; keep "
                f"rate x samples x scrape_interval <= 1 (use more users for more load)")
        if self.labels + 6 > 30:
            raise ConfigError(f"workload labels {self.labels}: a series would have more than 30 label names")
        LineLength.parse(self.line_length)

    # -- derived ------------------------------------------------------------
    @property
    def length(self) -> LineLength:
        return LineLength.parse(self.line_length)

    @property
    def signals(self) -> tuple[str, ...]:
        return ("metrics", "logs") if self.signal == "mixed" else (self.signal,)

    def tenants_in(self, target) -> list:
        """The target's tenants this workload writes as: those named, else every user tenant."""
        return [target.tenant(n) for n in self.tenants] if self.tenants else target.user_tenants

    @property
    def metric(self) -> str:
        """One metric name per run: runs never add up against a per-metric series limit."""
        return "stackproof_load_" + re.sub(r"[^A-Za-z0-9_]", "_", self.run_id)

    @property
    def samples_per_request(self) -> int:
        return self.series * self.samples

    def per_request(self) -> dict[str, int]:
        """Items (samples, lines) in one request of each kind."""
        return {"metrics": self.samples_per_request, "logs": self.lines}

    def per_user(self) -> dict[str, float]:
        """Offered items per second of one user of each kind."""
        return {sig: self.rate * n for sig, n in self.per_request().items()}

    # -- transport ------------------------------------------------------------
    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, environ=os.environ) -> "Workload":
        raw = environ.get(ENV)
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{ENV} is not valid JSON") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{ENV}: unknown workload knob(s) {', '.join(unknown)}")
        return cls(**data)

    def with_(self, **changes) -> "Workload":
        return Workload(**{**asdict(self), **changes})
