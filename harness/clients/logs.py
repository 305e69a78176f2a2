"""The logs signal, through the gateway, as one tenant.

Writing is the Loki push protocol (JSON and snappy protobuf), which every logs
store stackproof tests accepts. Reading is one interface, :class:`LogsReader`,
with one implementation per dialect: :class:`LogsQLReader` (VictoriaLogs) and
:class:`LogQLReader` (Loki). Suites describe what they select with a neutral
:class:`Select` and never hold a query string of either dialect;
:func:`logs_reader` picks the dialect the target file names (``logs.api``).

A read returns entries in a fixed order, oldest first: (timestamp ns, stream
labels, line), whatever order the store answers in.
"""

from __future__ import annotations

import json
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

import cramjam
import requests

from .. import leaks, proto
from ..errors import StackproofError
from ..target import Target, Tenant
from .http import TenantHTTP, scan

# An entry is (timestamp_ns, line) or (timestamp_ns, line, structured_metadata)
Entry = tuple
# Stream: (labels, [entry, ...])
Stream = tuple[Mapping[str, str], Sequence[Entry]]


def stream_key(labels: Mapping[str, str]) -> str:
    """A stream's labels as one canonical string: the key of :meth:`LogsReader.streams`."""
    return "{" + ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


# -- writing ------------------------------------------------------------------

def encode_push_json(streams: Iterable[Stream]) -> bytes:
    def value(e: Entry) -> list:
        v = [str(int(e[0])), e[1]]
        if len(e) > 2 and e[2]:
            v.append(dict(e[2]))
        return v

    return json.dumps({"streams": [{"stream": dict(labels), "values": [value(e) for e in entries]}
                                   for labels, entries in streams]}, ensure_ascii=False).encode()


def encode_push_proto(streams: Iterable[Stream]) -> bytes:
    req = proto.PushRequest()
    for labels, entries in streams:
        s = req.streams.add(labels=stream_key(labels))
        for e in entries:
            entry = s.entries.add(line=e[1])
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(int(e[0]), 1_000_000_000)
            for k, v in (e[2].items() if len(e) > 2 and e[2] else ()):
                entry.structuredMetadata.add(name=k, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


class LogsPush:
    """Loki push (JSON or snappy protobuf) to the target's logs push path."""

    def __init__(self, target: Target, tenant: Tenant | None, session: TenantHTTP | None = None):
        self.target = target
        self.tenant = tenant
        self.http = session or TenantHTTP(target, tenant)

    def push_json(self, streams: Iterable[Stream]) -> requests.Response:
        return self.http.post(self.target.logs_push_url, data=encode_push_json(streams),
                              headers={"Content-Type": "application/json"})

    def push_proto(self, streams: Iterable[Stream]) -> requests.Response:
        return self.http.post(self.target.logs_push_url, data=encode_push_proto(streams),
                              headers={"Content-Type": "application/x-protobuf"})

    def push_raw(self, body: bytes, content_type: str) -> requests.Response:
        return self.http.post(self.target.logs_push_url, data=body, headers={"Content-Type": content_type})


# -- selecting ----------------------------------------------------------------

LABEL_OPS = ("=", "!=", "=~", "!~")
LINE_OPS = ("contains", "not contains", "regex", "not regex")


@dataclass(frozen=True)
class Select:
    """What a read selects, in neither dialect: stream label matchers, line
    filters and structured-metadata equalities, all of which must hold.

    ``Select.of({"job": "x"})`` selects the streams with exactly these label
    values; ``.where("app", "=~", "a.*")``, ``.line("contains", "error")``
    and ``.meta("trace_id", "t1")`` narrow it. Regexes are RE2, anchored to
    the whole label value for labels and unanchored for lines (as both
    dialects have it)."""

    labels: tuple[tuple[str, str, str], ...] = ()  # (name, op, value)
    lines: tuple[tuple[str, str], ...] = ()  # (op, value)
    metadata: tuple[tuple[str, str], ...] = ()  # (name, value)

    @classmethod
    def of(cls, labels: Mapping[str, str]) -> "Select":
        return cls(tuple((k, "=", v) for k, v in sorted(labels.items())))

    def where(self, name: str, op: str, value: str) -> "Select":
        if op not in LABEL_OPS:
            raise ValueError(f"label matcher {op!r}: one of {', '.join(LABEL_OPS)}")
        return Select(self.labels + ((name, op, value),), self.lines, self.metadata)

    def line(self, op: str, value: str) -> "Select":
        if op not in LINE_OPS:
            raise ValueError(f"line filter {op!r}: one of {', '.join(LINE_OPS)}")
        return Select(self.labels, self.lines + ((op, value),), self.metadata)

    def meta(self, name: str, value: str) -> "Select":
        return Select(self.labels, self.lines, self.metadata + ((name, value),))


@dataclass(frozen=True)
class LogEntry:
    ts: int  # nanoseconds
    labels: dict  # the stream's labels
    line: str
    metadata: dict  # structured metadata (fields that are not stream labels)

    def sort_key(self):
        return self.ts, stream_key(self.labels), self.line


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def rfc3339_ns(ns: int) -> str:
    """Unix nanoseconds as RFC 3339 in UTC, all nine fraction digits."""
    s, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339_ns(text: str) -> int:
    """An RFC 3339 time with up to nine fraction digits, to Unix nanoseconds."""
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, frac, zone = m.groups()
    dt = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(dt.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


_STREAM_PAIR = re.compile(r'([^{},=\s]+)="((?:[^"\\]|\\.)*)"')


def parse_stream(text: str) -> dict[str, str]:
    """``{a="1",b="x \\"y\\""}`` (VictoriaLogs' ``_stream``) to a dict."""
    return {k: json.loads(f'"{v}"') for k, v in _STREAM_PAIR.findall(text)}


class LogsReader(ABC):
    """Reads of one tenant's logs. Time ranges are [start_ns, end_ns)."""

    dialect = ""

    def __init__(self, target: Target, tenant: Tenant | None, session: TenantHTTP | None = None):
        self.target = target
        self.tenant = tenant
        self.http = session or TenantHTTP(target, tenant)

    def get(self, path: str, params: dict, headers: dict | None = None) -> requests.Response:
        r = self.http.get(f"{self.target.logs_query_url}/{path}", params=params, headers=headers or {})
        if r.status_code != 200:
            raise requests.HTTPError(leaks.redact(f"GET {path} -> {r.status_code} {r.text.strip()[:300]}"),
                                     response=r)
        return r

    @abstractmethod
    def query_text(self, sel: Select) -> str:
        """The dialect's query for ``sel`` (for reports: what was asked)."""

    @abstractmethod
    def read(self, sel: Select, start_ns: int, end_ns: int) -> list[LogEntry]:
        """Every entry ``sel`` selects in the range, oldest first (ties: stream, then line)."""

    @abstractmethod
    def newest(self, sel: Select, start_ns: int, end_ns: int, n: int) -> list[tuple[int, str]]:
        """The newest ``n`` selected (timestamp ns, line), oldest first: a read with a limit."""

    def entries(self, sel: Select, start_ns: int, end_ns: int) -> list[tuple[int, str]]:
        """(timestamp ns, line) of every selected entry, oldest first, across streams."""
        return [(e.ts, e.line) for e in self.read(sel, start_ns, end_ns)]

    def streams(self, sel: Select, start_ns: int, end_ns: int) -> dict[str, list[list]]:
        """{stream_key(labels): [[ts_ns, line], ...]} in time order."""
        out: dict[str, list[list]] = {}
        for e in self.read(sel, start_ns, end_ns):
            out.setdefault(stream_key(e.labels), []).append([e.ts, e.line])
        return out

    @abstractmethod
    def count(self, sel: Select, start_ns: int, end_ns: int) -> int:
        """How many entries ``sel`` selects in the range, counted by the store."""

    @abstractmethod
    def counts(self, sel: Select, start_ns: int, step_ns: int, n: int) -> list[int]:
        """Entries per window [start + i*step, start + (i+1)*step) for i < n, counted by the store.
        ``start_ns`` must be a multiple of ``step_ns``."""

    @abstractmethod
    def label_names(self, sel: Select, start_ns: int, end_ns: int) -> list[str]:
        """Sorted names of the stream labels of the selected streams."""

    @abstractmethod
    def label_values(self, name: str, sel: Select, start_ns: int, end_ns: int) -> list[str]:
        """Sorted values of one stream label across the selected streams."""

    @abstractmethod
    def stream_sets(self, sel: Select, start_ns: int, end_ns: int) -> list[dict]:
        """The label sets of the selected streams, sorted."""

    @abstractmethod
    def tail(self, sel: Select) -> "Tail":
        """A live tail of ``sel``: entries pushed after it opened."""

    def tail_promise(self) -> str:
        """What the store promises of a tail, for reports."""
        return ""

    @abstractmethod
    def endpoints(self, now_ns: int) -> dict[str, tuple[str, dict]]:
        """One harmless read per read endpoint of the dialect: {name: (path under the query path, params)}."""


# -- VictoriaLogs: LogsQL -------------------------------------------------------

class LogsQLReader(LogsReader):
    """VictoriaLogs' LogsQL endpoints (``/select/logsql/*``)."""

    dialect = "victorialogs"
    # the tail asks for [now - offset - 5 s, now - offset) every second (upstream
    # defaults: offset 5 s, refresh 1 s); a line whose timestamp is already
    # behind that window when it becomes visible is never tailed
    TAIL_OFFSET = "2s"

    def query_text(self, sel: Select) -> str:
        parts = []
        if sel.labels:
            parts.append("_stream:{" + ",".join(f"{k}{op}{_q(v)}" for k, op, v in sel.labels) + "}")
        for op, value in sel.lines:
            rx = re.escape(value) if op.endswith("contains") else value
            parts.append(("-" if op.startswith("not") else "") + f"_msg:~{_q(rx)}")
        parts += [f"{_q(k)}:={_q(v)}" for k, v in sel.metadata]
        return " ".join(parts) or "*"

    def _range(self, start_ns: int, end_ns: int) -> dict:
        return {"start": rfc3339_ns(start_ns), "end": rfc3339_ns(end_ns)}

    @staticmethod
    def entry(row: dict) -> LogEntry:
        labels = parse_stream(row.get("_stream", "{}"))
        meta = {k: v for k, v in row.items() if not k.startswith("_") and k not in labels}
        return LogEntry(parse_rfc3339_ns(row["_time"]), labels, row.get("_msg", ""), meta)

    def read(self, sel: Select, start_ns: int, end_ns: int, limit: int | None = None) -> list[LogEntry]:
        params = {"query": self.query_text(sel), **self._range(start_ns, end_ns)}
        if limit is not None:
            params["limit"] = str(limit)  # the newest `limit` entries
        r = self.get("query", params)
        rows = [self.entry(json.loads(line)) for line in r.text.splitlines() if line.strip()]
        return sorted(rows, key=LogEntry.sort_key)

    def newest(self, sel: Select, start_ns: int, end_ns: int, n: int) -> list[tuple[int, str]]:
        return [(e.ts, e.line) for e in self.read(sel, start_ns, end_ns, limit=n)]

    def count(self, sel: Select, start_ns: int, end_ns: int) -> int:
        q = self.query_text(sel) + " | stats count() as n"
        r = self.get("stats_query", {"query": q, "time": rfc3339_ns(end_ns), **self._range(start_ns, end_ns)})
        result = r.json()["data"]["result"]
        return int(result[0]["value"][1]) if result else 0

    def counts(self, sel: Select, start_ns: int, step_ns: int, n: int) -> list[int]:
        if start_ns % step_ns:
            raise ValueError("counts: start_ns must be a multiple of step_ns")
        r = self.get("hits", {"query": self.query_text(sel), "step": f"{step_ns // 10**6}ms",
                              **self._range(start_ns, start_ns + n * step_ns)})
        out = [0] * n
        for series in r.json().get("hits", []):
            for ts, v in zip(series["timestamps"], series["values"]):
                i = (parse_rfc3339_ns(ts) - start_ns) // step_ns
                if 0 <= i < n:
                    out[i] += int(v)
        return out

    def _values(self, path: str, sel: Select, start_ns: int, end_ns: int, **extra) -> list[str]:
        r = self.get(path, {"query": self.query_text(sel), **self._range(start_ns, end_ns), **extra})
        return sorted(v["value"] for v in r.json().get("values", []))

    def label_names(self, sel: Select, start_ns: int, end_ns: int) -> list[str]:
        return self._values("stream_field_names", sel, start_ns, end_ns)

    def label_values(self, name: str, sel: Select, start_ns: int, end_ns: int) -> list[str]:
        return self._values("stream_field_values", sel, start_ns, end_ns, field=name)

    def stream_sets(self, sel: Select, start_ns: int, end_ns: int) -> list[dict]:
        return sorted((parse_stream(s) for s in self._values("streams", sel, start_ns, end_ns)), key=stream_key)

    def tail(self, sel: Select) -> "Tail":
        url = f"{self.target.logs_query_url}/tail"
        params = {"query": self.query_text(sel), "offset": self.TAIL_OFFSET}

        def lines(resp):
            for raw in resp.iter_lines():
                if raw.strip():
                    yield [self.entry(json.loads(raw))]
        # a session of its own: the tail's response holds its connection for as long as it runs
        return StreamTail(TenantHTTP(self.target, self.tenant), url, params, lines)

    def endpoints(self, now_ns: int) -> dict[str, tuple[str, dict]]:
        q, rng = '{job="none"}', self._range(now_ns - 60 * 10**9, now_ns)
        sq = {"query": "_stream:" + q, **rng}
        return {"logsql query": ("query", sq), "logsql hits": ("hits", {**sq, "step": "1m"}),
                "logsql stats_query": ("stats_query", {"query": "_stream:" + q + " | stats count()",
                                                       "time": rng["end"]}),
                "logsql field_names": ("field_names", sq),
                "logsql field_values": ("field_values", {**sq, "field": "a"}),
                "logsql streams": ("streams", sq), "logsql stream_field_names": ("stream_field_names", sq),
                "logsql stream_field_values": ("stream_field_values", {**sq, "field": "job"})}

    def tail_promise(self) -> str:
        return (f"lines stamped within the last {self.TAIL_OFFSET} + 5 s when they become visible; "
                "later or older lines are not tailed")


# -- Loki: LogQL ----------------------------------------------------------------

class LogQLReader(LogsReader):
    """Loki's LogQL endpoints (``/loki/api/v1/*``): for existing Loki platforms
    named by a target file. Proven against Loki 3.7.8 (README)."""

    dialect = "loki"
    # structured metadata apart from stream labels in query results (Loki 3)
    CATEGORIZE = {"X-Loki-Response-Encoding-Flags": "categorize-labels"}

    @staticmethod
    def selector(sel: Select) -> str:
        return "{" + ",".join(f"{k}{op}{_q(v)}" for k, op, v in sel.labels) + "}"

    def query_text(self, sel: Select) -> str:
        ops = {"contains": "|=", "not contains": "!=", "regex": "|~", "not regex": "!~"}
        q = self.selector(sel)
        q += "".join(f" {ops[op]} {_q(v)}" for op, v in sel.lines)
        q += "".join(f" | {k}={_q(v)}" for k, v in sel.metadata)
        return q

    @staticmethod
    def _ns(start_ns: int, end_ns: int) -> dict:
        return {"start": str(start_ns), "end": str(end_ns - 1)}  # Loki's end is inclusive

    def read(self, sel: Select, start_ns: int, end_ns: int) -> list[LogEntry]:
        out: list[LogEntry] = []
        q, limit = self.query_text(sel), 5000
        cursor = start_ns
        while True:  # forward pages of `limit` until a page is short
            data = self.get("query_range", {"query": q, "limit": str(limit), "direction": "forward",
                                            **self._ns(cursor, end_ns)}, self.CATEGORIZE).json()["data"]
            page = []
            for s in data.get("result", []):
                for v in s["values"]:
                    meta = (v[2].get("structuredMetadata") or {}) if len(v) > 2 and isinstance(v[2], dict) else {}
                    page.append(LogEntry(int(v[0]), dict(s["stream"]), v[1], dict(meta)))
            fresh = [e for e in page if e.ts >= cursor and e not in out]
            out += fresh
            if len(page) < limit or not fresh:
                break
            cursor = max(e.ts for e in page)
        return sorted(out, key=LogEntry.sort_key)

    def newest(self, sel: Select, start_ns: int, end_ns: int, n: int) -> list[tuple[int, str]]:
        data = self.get("query_range", {"query": self.query_text(sel), "limit": str(n), "direction": "backward",
                                        **self._ns(start_ns, end_ns)}).json()["data"]
        return sorted((int(v[0]), v[1]) for s in data.get("result", []) for v in s["values"])

    def _metric(self, sel: Select, at_ns: int, window_ns: int) -> list[dict]:
        q = f"sum(count_over_time({self.query_text(sel)}[{max(1, window_ns // 10**6)}ms]))"
        return self.get("query", {"query": q, "time": str(at_ns)}).json()["data"]["result"]

    def count(self, sel: Select, start_ns: int, end_ns: int) -> int:
        result = self._metric(sel, end_ns - 1, end_ns - start_ns)
        return int(float(result[0]["value"][1])) if result else 0

    def counts(self, sel: Select, start_ns: int, step_ns: int, n: int) -> list[int]:
        return [self.count(sel, start_ns + i * step_ns, start_ns + (i + 1) * step_ns) for i in range(n)]

    def label_names(self, sel: Select, start_ns: int, end_ns: int) -> list[str]:
        return sorted(self.get("labels", {"query": self.selector(sel), **self._ns(start_ns, end_ns)}).json()
                      .get("data") or [])

    def label_values(self, name: str, sel: Select, start_ns: int, end_ns: int) -> list[str]:
        return sorted(self.get(f"label/{name}/values", {"query": self.selector(sel), **self._ns(start_ns, end_ns)})
                      .json().get("data") or [])

    def stream_sets(self, sel: Select, start_ns: int, end_ns: int) -> list[dict]:
        data = self.get("series", {"match[]": self.selector(sel), **self._ns(start_ns, end_ns)}).json()
        return sorted((dict(s) for s in data.get("data") or []), key=stream_key)

    def tail(self, sel: Select) -> "Tail":
        import websocket  # Loki's tail is a websocket; only this dialect needs the client

        url = self.target.logs_query_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/tail"
        return WebsocketTail(self, websocket, url, {"query": self.query_text(sel), "limit": "5000"})

    def tail_promise(self) -> str:
        return "every line pushed after the tail opened"

    def endpoints(self, now_ns: int) -> dict[str, tuple[str, dict]]:
        q, rng = '{job="none"}', self._ns(now_ns - 60 * 10**9, now_ns)
        return {"logql query_range": ("query_range", {"query": q, **rng}), "logql labels": ("labels", rng),
                "logql label values": ("label/job/values", rng), "logql series": ("series", {"match[]": q, **rng})}


READERS = {r.dialect: r for r in (LogsQLReader, LogQLReader)}


def logs_reader(target: Target, tenant: Tenant | None, session: TenantHTTP | None = None) -> LogsReader:
    """The reader of the target's logs dialect."""
    try:
        cls = READERS[target.logs_api]
    except KeyError:
        raise StackproofError(f"target {target.name!r}: unknown logs api {target.logs_api!r} "
                              f"(known: {', '.join(READERS)})") from None
    return cls(target, tenant, session)


# -- tails ------------------------------------------------------------------------

class Tail:
    """A live tail: collects every entry it receives in a background thread.
    A context manager; ``wait_for(n)`` blocks until ``n`` entries arrived.

    It keeps nothing to itself, since a tail that was refused or broke receives
    nothing, which would pass for a tail that saw nothing: ``status`` is the
    server's answer to opening it, ``error`` what refused or broke it,
    ``closed_by_server`` whether the server ended it before :meth:`close`, and
    :meth:`state` says all of it in one word or line ("open" for a tail that
    opened and is still open)."""

    OPEN_STATUSES = (101, 200)  # a websocket's upgrade, a streamed response

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        self.error: str | None = None
        self.status: int | None = None
        self.closed_by_server = False
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
            if not self._closing:  # the stream ended, and not because we closed it
                self.closed_by_server = True
        except Exception as exc:  # a broken stream is a finding, not a crash
            if not self._closing:
                self.error = leaks.redact(f"{type(exc).__name__}: {exc}")
        finally:
            with self._cond:
                self._cond.notify_all()

    def state(self) -> str:
        """``open`` (opened, still open, nothing broke), else what happened: refused with its
        status, closed by the server, or broken with its error; and the entries so far."""
        if self.status not in self.OPEN_STATUSES:
            return f"refused: {self.error or f'HTTP {self.status}'}"
        if self.error:
            return f"broken after {len(self.entries)} entries: {self.error}"
        if self.closed_by_server:
            return f"closed by the server after {len(self.entries)} entries"
        if not self.alive():
            return f"not reading after {len(self.entries)} entries"
        return "open"

    def _read(self) -> None:
        """Receive until the stream ends, handing each batch to :meth:`_add`."""
        raise NotImplementedError

    def _shut(self) -> None:
        """Make the reading thread's blocked receive return."""
        raise NotImplementedError

    def _add(self, batch: list[LogEntry]) -> None:
        with self._cond:
            self.entries.extend(batch)
            self._cond.notify_all()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[LogEntry]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.entries) < n and time.monotonic() < deadline and self.alive():
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            return sorted(self.entries, key=LogEntry.sort_key)

    def close(self) -> None:
        self._closing = True
        try:
            self._shut()
        except Exception:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "Tail":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StreamTail(Tail):
    """A tail over a streaming HTTP response (VictoriaLogs' NDJSON ``/tail``)."""

    def __init__(self, http: TenantHTTP, url: str, params: dict, parse):
        super().__init__()
        # identity: a compressed stream is held back until the compressor's buffer fills;
        # a read timeout far beyond any test's tail ends a tail the server left hanging
        self._resp = http.get(url, params=params, stream=True, timeout=(10, 300),
                              headers={"Accept-Encoding": "identity"})
        self.status = self._resp.status_code
        if self.status != 200:
            scan(self._resp)
            self.error = leaks.redact(f"HTTP {self.status}: {self._resp.text.strip()[:200]}")
            self._resp.close()
            return
        self._parse = parse
        self._start()

    def _read(self) -> None:
        for batch in self._parse(self._scanned(self._resp)):
            self._add(batch)

    def _scanned(self, resp):
        """The response, whose lines are scanned for secrets as the parser reads them."""
        lines = resp.iter_lines

        def iter_lines(*args, **kwargs):
            for raw in lines(*args, **kwargs):
                scan(resp, raw)
                yield raw
        resp.iter_lines = iter_lines
        return resp

    def _shut(self) -> None:
        # shut the socket down first: closing it under the reading thread blocks on TLS
        self._resp.raw.shutdown()
        self._resp.close()


class WebsocketTail(Tail):
    """Loki's ``/tail`` websocket."""

    def __init__(self, reader: LogQLReader, websocket, url: str, params: dict):
        import ssl
        from urllib.parse import urlencode

        from .http import USER_AGENT

        super().__init__()
        self._ws_mod = websocket
        headers = [f"User-Agent: {USER_AGENT}"]
        if reader.tenant is not None:
            headers.append(f"Authorization: Bearer {reader.tenant.token}")
        sslopt = {"cert_reqs": ssl.CERT_REQUIRED, **({"ca_certs": reader.target.ca_file} if reader.target.ca_file
                                                      else {})}
        try:
            self._ws = websocket.create_connection(f"{url}?{urlencode(params)}", header=headers, sslopt=sslopt,
                                                   timeout=30)
        except websocket.WebSocketBadStatusException as exc:
            body = exc.resp_body or b""
            leaks.scan_response(f"GET /tail (websocket) -> {exc.status_code}", body)
            self.status = exc.status_code
            self.error = leaks.redact(f"HTTP {exc.status_code}: {body.decode(errors='replace').strip()[:200]}")
            return
        self.status = 101
        self._start()

    def _read(self) -> None:
        try:
            while True:
                msg = self._ws.recv()
                if not msg:
                    return  # the server ended it (or close() did: _run tells them apart)
                leaks.scan_response("GET /tail (websocket) -> 101", msg.encode() if isinstance(msg, str) else msg)
                data = json.loads(msg)
                self._add([LogEntry(int(ts), dict(s.get("stream", {})), line, {})
                           for s in data.get("streams", []) for ts, line in s.get("values", [])])
        except (self._ws_mod.WebSocketConnectionClosedException, OSError):
            pass  # the server or close() ended it: _run tells them apart

    def _shut(self) -> None:
        self._ws.close()
