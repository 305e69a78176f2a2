"""Load shapes (locust ``LoadTestShape``): how many users run over time.

    step:START:STEP:EVERY:MAX   START users, STEP more every EVERY seconds up to MAX users,
                                then hold MAX for one more EVERY and stop
    ramp:PEAK:RAMP:HOLD         0 to PEAK users over RAMP seconds, hold PEAK for HOLD seconds, stop

Both stop by themselves. A locustfile uses the shape named by
``STACKPROOF_LOAD_SHAPE`` (``stackproof load --shape``), e.g. ``step:2:2:20:10``.
"""

from __future__ import annotations

import math

from locust import LoadTestShape

from harness.workload import parse_shape


class StepShape(LoadTestShape):
    abstract = True  # concrete classes are made by from_spec
    start_users, step_users, every, max_users = 2, 2, 20.0, 10

    def users_at(self, t: float) -> int | None:
        n = self.start_users + self.step_users * int(t // self.every)
        steps = math.ceil((self.max_users - self.start_users) / self.step_users) if self.step_users else 0
        if t >= (steps + 1) * self.every:
            return None
        return min(n, self.max_users)

    def tick(self):
        n = self.users_at(self.get_run_time())
        return None if n is None else (n, max(n, 1))


class RampShape(LoadTestShape):
    abstract = True
    peak, ramp, hold = 10, 30.0, 30.0

    def users_at(self, t: float) -> int | None:
        if t >= self.ramp + self.hold:
            return None
        if t >= self.ramp:
            return self.peak
        return max(1, math.ceil(self.peak * t / self.ramp))

    def tick(self):
        n = self.users_at(self.get_run_time())
        return None if n is None else (n, max(1.0, self.peak / max(self.ramp, 1)))


def from_spec(spec: str) -> type[LoadTestShape]:
    """A concrete shape class from ``step:...`` or ``ramp:...``; errors say what is expected."""
    kind, nums = parse_shape(spec)
    if kind == "step":
        return type("StackproofStepShape", (StepShape,), {
            "abstract": False, "start_users": int(nums[0]), "step_users": int(nums[1]),
            "every": nums[2], "max_users": int(nums[3])})
    return type("StackproofRampShape", (RampShape,), {
        "abstract": False, "peak": int(nums[0]), "ramp": nums[1], "hold": nums[2]})
