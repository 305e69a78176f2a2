"""Continuous writers: a real client's write loop with every acknowledgement
recorded, so that after a crash or an upgrade each acknowledged write can be
looked for, and found exactly once.

Each writer sends one small request per tick, stamped with a sequence number
(the sample's value for metrics, ``seq=N`` in the line for logs), in one of the
signal's write protocols (:data:`PROTOCOLS`): remote write 1.0 or 2.0, or OTLP,
for metrics; the Loki push or OTLP for logs. Whatever the protocol, the series
(or stream) read back has exactly the writer's labels. A refused or
failed request is retried as remote write's rules say: 5xx, 429 and
connection errors again with exponential backoff, other 4xx never (recorded as
refused). Bounded by duration and request count; stops by itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests

from .clients import LogsPush, PromQLClient, RemoteWriteClient, Select, logs_reader
from .clients import otlp
from .clients.metrics import V2Series
from .target import Target, Tenant

# each signal's write protocols; the first is the signal's default
PROTOCOLS = {"metrics": ("remote-write", "remote-write-2", "otlp"), "logs": ("loki-push", "otlp")}


@dataclass
class Attempt:
    t: float  # wall clock, seconds
    seq: int
    status: int  # HTTP status, 0 for a connection error
    seconds: float  # request latency
    error: str = ""


@dataclass
class WriteLog:
    signal: str  # "metrics" or "logs"
    attempts: list[Attempt] = field(default_factory=list)
    acked: dict[int, int] = field(default_factory=dict)  # seq -> timestamp (ms for metrics, ns for logs)
    refused: dict[int, int] = field(default_factory=dict)  # seq -> HTTP status of a non-retryable 4xx
    sent: dict[int, int] = field(default_factory=dict)  # every seq that was tried -> its timestamp

    def outages(self) -> list[dict]:
        """Spans from the first failed attempt to the next success: when writes could not land."""
        out, start = [], None
        for a in self.attempts:
            ok = 200 <= a.status < 300
            if not ok and start is None:
                start = a
            elif ok and start is not None:
                out.append({"from": start.t, "to": a.t, "seconds": round(a.t - start.t, 3),
                            "first_error": start.error or str(start.status)})
                start = None
        if start is not None:
            out.append({"from": start.t, "to": None, "seconds": None, "first_error": start.error or str(start.status)})
        return out

    def summary(self) -> dict:
        fails = [a for a in self.attempts if not 200 <= a.status < 300]
        return {"signal": self.signal, "attempts": len(self.attempts), "acked": len(self.acked),
                "refused": len(self.refused), "failed_attempts": len(fails), "outages": self.outages()}


def retryable(status: int) -> bool:
    return status == 0 or status == 429 or status >= 500


class ContinuousWriter:
    """Writes one sequence-stamped request per ``interval`` in a thread, with
    ``protocol`` (one of the signal's :data:`PROTOCOLS`, its default if None)."""

    def __init__(self, signal: str, target: Target, tenant: Tenant, labels: dict[str, str],
                 interval: float = 0.05, max_seconds: float = 300.0, max_requests: int = 20_000,
                 timeout: float = 5.0, protocol: str | None = None):
        assert signal in PROTOCOLS
        self.protocol = protocol or PROTOCOLS[signal][0]
        if self.protocol not in PROTOCOLS[signal]:
            raise ValueError(f"{signal} has no write protocol {self.protocol!r} "
                             f"(known: {', '.join(PROTOCOLS[signal])})")
        self.signal = signal
        self.target, self.tenant = target, tenant
        self.labels = dict(labels)
        self.interval = interval
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.log = WriteLog(signal)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{signal}", daemon=True)
        if self.protocol == "otlp":
            self._client = otlp.OTLPClient(target, tenant)
        elif signal == "metrics":
            self._client = RemoteWriteClient(target, tenant)
        else:
            self._client = LogsPush(target, tenant)
        self._client.http.default_timeout = timeout  # keep-alive, as a real sender

    @property
    def name(self) -> str:
        """The signal, with the protocol when it is not the signal's default: 'metrics (otlp)'."""
        return self.signal if self.protocol == PROTOCOLS[self.signal][0] else f"{self.signal} ({self.protocol})"

    def _send(self, seq: int, ts: int) -> requests.Response:
        c, labels = self._client, self.labels
        if self.signal == "metrics":
            if self.protocol == "remote-write-2":
                return c.write_v2([V2Series(labels, [(ts, float(seq))])])
            if self.protocol == "otlp":  # a gauge with the labels as attributes, no resource: no job/instance
                attrs = {k: v for k, v in labels.items() if k != "__name__"}
                return c.metrics(otlp.metrics_request(
                    [otlp.gauge(labels["__name__"], [otlp.number_point(ts * 1_000_000, float(seq), attrs)])], {}))
            return c.write([(labels, [(ts, float(seq))])])
        if self.protocol == "otlp":  # the labels as the resource: the logs store's stream
            return c.logs(otlp.logs_request([otlp.log_record(ts, f"seq={seq}")], labels))
        return c.push_proto([(labels, [(ts, f"seq={seq}")])])

    def _run(self) -> None:
        t_end = time.monotonic() + self.max_seconds
        seq, requests_sent, backoff = 0, 0, 0.05
        last_ts = 0
        while not self._stop.is_set() and time.monotonic() < t_end and requests_sent < self.max_requests:
            seq += 1
            # strictly increasing timestamps, one per sequence number
            ts = max(time.time_ns() // (1_000_000 if self.signal == "metrics" else 1), last_ts + 1)
            last_ts = ts
            self.log.sent[seq] = ts
            while True:  # this seq until acked, refused, or told to stop
                t0 = time.monotonic()
                status, error = 0, ""
                try:
                    r = self._send(seq, ts)
                    status = r.status_code
                    if status >= 300:
                        error = f"HTTP {status}: {r.text.strip()[:120]}"
                except requests.RequestException as exc:
                    error = type(exc).__name__
                requests_sent += 1
                self.log.attempts.append(Attempt(time.time(), seq, status, time.monotonic() - t0, error))
                if 200 <= status < 300:
                    self.log.acked[seq] = ts
                    backoff = 0.05
                    break
                if not retryable(status):
                    self.log.refused[seq] = status
                    break
                if self._stop.is_set() or time.monotonic() >= t_end or requests_sent >= self.max_requests:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            self._stop.wait(self.interval)

    def start(self) -> "ContinuousWriter":
        self._thread.start()
        return self

    def stop(self) -> WriteLog:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.log

    def __enter__(self) -> "ContinuousWriter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_back(writer: "ContinuousWriter", since_ns: int):
    """The reader of what ``writer`` wrote since ``since_ns`` (wall clock), as its
    tenant, through the gateway: raw samples of its series (metrics) or the
    lines of its stream (logs), in the form :func:`verify` compares."""
    target, tenant, labels = writer.target, writer.tenant, writer.labels
    if writer.signal == "metrics":
        promql = PromQLClient(target, tenant)
        return lambda: promql.raw_samples(labels, time.time(),
                                          f"{max(60, int((time.time_ns() - since_ns) / 1e9) + 60)}s")
    reader, sel = logs_reader(target, tenant), Select.of(labels)
    return lambda: reader.entries(sel, since_ns - 10**9, time.time_ns() + 10**9)


def verify(log: WriteLog, read) -> dict:
    """:func:`verify_metrics` or :func:`verify_logs`, by the log's signal."""
    return (verify_metrics if log.signal == "metrics" else verify_logs)(log, read)


def verify_metrics(log: WriteLog, read_samples) -> dict:
    """Compare what was acknowledged with what the store returns.

    ``read_samples()`` gives the stored (timestamp ms, value) pairs of the
    writer's series. Returns counts and the lost, duplicated and unexpected seqs."""
    stored = read_samples()
    return _compare(log, [(int(v), ts) for ts, v in stored])


def verify_logs(log: WriteLog, read_entries) -> dict:
    """As :func:`verify_metrics`, for ``read_entries()`` giving (timestamp ns, line)."""
    stored = read_entries()
    return _compare(log, [(int(line.removeprefix("seq=")), ts) for ts, line in stored])


def _compare(log: WriteLog, stored: list[tuple[int, int]]) -> dict:
    seen: dict[int, list[int]] = {}
    for seq, ts in stored:
        seen.setdefault(seq, []).append(ts)
    lost = sorted(s for s in log.acked if s not in seen)
    dup = sorted(s for s, tss in seen.items() if len(tss) > 1)
    unexpected = sorted(s for s in seen if s not in log.sent)
    wrong_ts = sorted(s for s, tss in seen.items() if s in log.sent and tss[0] != log.sent[s])
    return {"acked": len(log.acked), "stored": len(stored), "lost": lost, "duplicated": dup,
            "unexpected": unexpected, "wrong_timestamp": wrong_ts,
            # sent but never acknowledged, yet stored: allowed (the ack was lost, not the write)
            "stored_unacked": len([s for s in seen if s in log.sent and s not in log.acked])}


def judge_crash_loss(log: WriteLog, result: dict, crash_ns: int, window_s: float) -> dict:
    """Judge a crash against a declared loss window: an acknowledged write may
    be lost only if it was stamped within ``window_s`` seconds before the crash
    (``crash_ns``, wall clock). ``result`` is :func:`verify_metrics` or
    :func:`verify_logs`. Returns the violating seqs and the measured loss window
    (seconds from the oldest lost write to the crash; 0 when nothing was lost)."""
    per_s = 1000 if log.signal == "metrics" else 10**9  # metrics stamp ms, logs ns
    crash = crash_ns // (10**9 // per_s)
    lost_ts = {seq: log.acked[seq] for seq in result["lost"]}
    violations = sorted(seq for seq, ts in lost_ts.items() if not crash - window_s * per_s <= ts <= crash)
    loss = (crash - min(lost_ts.values())) / per_s if lost_ts else 0.0
    return {"violations": violations, "lost": len(lost_ts), "loss_seconds": max(0.0, loss)}
