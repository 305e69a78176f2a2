"""loadgen's patch-in-place remote-write payloads decode, with the protobuf
library, to exactly what was asked for."""

from __future__ import annotations

import math

import cramjam
import numpy as np
import pytest

from harness import proto
from loadgen.payloads import TS_MAX, MetricsPayload


def decode(body: bytes):
    req = proto.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    return [({lb.name: lb.value for lb in ts.labels}, [(s.timestamp, s.value) for s in ts.samples])
            for ts in req.timeseries]


def test_patched_payload_decodes_exactly_request_after_request():
    series = [{"__name__": "m", "i": str(i), "z": "ü"} for i in range(50)]
    p = MetricsPayload(series, samples_per_series=3, t0_ms=1_700_000_000_000)
    rng = np.random.default_rng(7)
    for t in (1_795_000_000_000, 1_795_000_000_017, 2**42 - 10):
        values = rng.normal(size=p.samples) * 1e6
        values[:4] = [-0.0, math.inf, -math.inf, 5e-324]
        got = decode(p.next(t, values))
        want = [(series[i], [(t + j, float(values[i * 3 + j])) for j in range(3)]) for i in range(50)]
        assert [lb for lb, _ in got] == [lb for lb, _ in want]
        for (_, gs), (_, ws) in zip(got, want):
            assert [(a, np.float64(b).tobytes()) for a, b in gs] == [(a, np.float64(b).tobytes()) for a, b in ws]


def test_timestamps_outside_the_fixed_width_range_are_refused():
    p = MetricsPayload([{"__name__": "m"}], t0_ms=1_795_000_000_000)
    with pytest.raises(ValueError, match="6-byte varint"):
        p.next(TS_MAX, np.array([1.0]))


@pytest.mark.platform
def test_patched_payloads_are_accepted_and_read_back_by_a_real_cortex(state_dir):
    import time

    from harness.clients import PromQLClient, RemoteWriteClient, poll_until
    from harness.providers import LocalProvider
    from harness.releases import Catalog

    provider = LocalProvider("payloads")
    target = provider.deploy(Catalog.load().get())
    try:
        tenant = target.user_tenants[0]
        run = str(time.time_ns())
        p = MetricsPayload([{"__name__": "stackproof_payload", "run": run, "i": str(i)} for i in range(100)])
        rw = RemoteWriteClient(target, tenant)
        t0 = int(time.time() * 1000) - 5_000
        for k in range(3):
            r = rw.write_raw(p.next(t0 + k * 1000, np.arange(100, dtype=float) + k))
            assert r.status_code == 200, r.text
        promql = PromQLClient(target, tenant)
        vis = poll_until(lambda: promql.query(f'stackproof_payload{{run="{run}"}}[1m]', t0 / 1000 + 3),
                         lambda res: len(res) == 100, timeout=30)
        assert vis.ok, vis.detail
        got = {s["metric"]["i"]: s["values"] for s in vis.value}
        assert got == {str(i): [[(t0 + k * 1000) / 1000, str(i + k)] for k in range(3)] for i in range(100)}
    finally:
        provider.destroy()
