"""Fast remote-write payloads: encode a WriteRequest once with the protobuf
library, then for every request patch timestamps and values in place and
snappy-compress (cramjam) the buffer. Generation then costs a small fraction
of a core, so the load generator is not the bottleneck.

Patching in place works because every field that changes has a fixed width
in the encoding: a sample's value is a protobuf ``double`` (8 bytes,
little-endian) and its millisecond timestamp a varint that is 6 bytes for
every time between 1971 and 2109 (2^35 to 2^42 ms). Both are checked when
the template is built; the protobuf library does all of the encoding.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import cramjam
import numpy as np

from harness import proto

TS_MIN, TS_MAX = 1 << 35, 1 << 42  # millisecond timestamps whose varint is 6 bytes
_VARINT_SHIFTS = np.array([0, 7, 14, 21, 28, 35], dtype=np.int64)


class MetricsPayload:
    """A reusable remote-write body for fixed series, ``samples_per_series`` samples each."""

    def __init__(self, series: Sequence[Mapping[str, str]], samples_per_series: int = 1, t0_ms: int = TS_MIN * 40):
        if not TS_MIN <= t0_ms < TS_MAX:
            raise ValueError(f"t0_ms {t0_ms} outside the 6-byte varint range")
        self.n_series = len(series)
        self.k = samples_per_series
        req = proto.WriteRequest()
        sentinels = []
        for i, labels in enumerate(series):
            ts = req.timeseries.add()
            for name in sorted(labels):
                ts.labels.add(name=name, value=labels[name])
            for j in range(samples_per_series):
                # distinct sentinel doubles locate each sample in the encoding
                v = float(np.float64(1e-300) * (i * samples_per_series + j + 1))
                sentinels.append(v)
                ts.samples.add(value=v, timestamp=t0_ms)
        self.buf = np.frombuffer(bytearray(req.SerializeToString()), dtype=np.uint8).copy()
        raw = self.buf.tobytes()
        value_offsets, pos = [], 0
        for v in sentinels:
            needle = b"\x09" + np.float64(v).tobytes()  # field 1 (value), wire type fixed64
            at = raw.find(needle, pos)
            if at < 0 or raw[at + 9] != 0x10:  # field 2 (timestamp), varint, follows the value
                raise AssertionError("unexpected Sample encoding")
            value_offsets.append(at + 1)
            pos = at + 9
        self.value_off = np.array(value_offsets, dtype=np.int64)
        self.ts_off = self.value_off + 9
        self._v_idx = self.value_off[:, None] + np.arange(8)
        self._t_idx = self.ts_off[:, None] + np.arange(6)
        self.samples = len(sentinels)

    def patch(self, timestamps_ms: np.ndarray, values: np.ndarray) -> None:
        """Set every sample's timestamp and value (arrays of length ``samples``, series-major)."""
        ts = np.asarray(timestamps_ms, dtype=np.int64)
        if ts.min() < TS_MIN or ts.max() >= TS_MAX:
            raise ValueError("timestamps outside the 6-byte varint range")
        self.buf[self._v_idx] = np.asarray(values, dtype="<f8").view(np.uint8).reshape(-1, 8)
        groups = ((ts[:, None] >> _VARINT_SHIFTS) & 0x7F).astype(np.uint8)
        groups[:, :5] |= 0x80
        self.buf[self._t_idx] = groups

    def body(self) -> bytes:
        """The snappy-compressed body of the current contents."""
        return bytes(cramjam.snappy.compress_raw(self.buf))

    def next(self, t_ms: int, values: np.ndarray, step_ms: int = 1) -> bytes:
        """Samples at ``t_ms``, ``t_ms + step_ms``, ... per series with ``values``; returns the body."""
        ts = np.full(self.samples, t_ms, dtype=np.int64) + np.tile(np.arange(self.k) * step_ms, self.n_series)
        self.patch(ts, values)
        return self.body()
