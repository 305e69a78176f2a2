"""Loki push (JSON and snappy protobuf) and LogQL (query, query_range, labels,
series, tail), through the gateway, as one tenant."""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Iterable, Mapping, Sequence
from urllib.parse import urlencode

import cramjam
import requests
import websocket

from .. import proto
from ..target import Target, Tenant
from .http import USER_AGENT, TenantHTTP

# An entry is (timestamp_ns, line) or (timestamp_ns, line, structured_metadata)
Entry = tuple
# Stream: (labels, [entry, ...])
Stream = tuple[Mapping[str, str], Sequence[Entry]]


def logql_selector(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


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
        s = req.streams.add(labels=logql_selector(labels))
        for e in entries:
            entry = s.entries.add(line=e[1])
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(int(e[0]), 1_000_000_000)
            for k, v in (e[2].items() if len(e) > 2 and e[2] else ()):
                entry.structuredMetadata.add(name=k, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


class LokiClient:
    def __init__(self, target: Target, tenant: Tenant | None, session: TenantHTTP | None = None):
        self.target = target
        self.tenant = tenant
        self.http = session or TenantHTTP(target, tenant)

    # -- push ------------------------------------------------------------
    def push_json(self, streams: Iterable[Stream]) -> requests.Response:
        return self.http.post(self.target.logs_push_url, data=encode_push_json(streams),
                              headers={"Content-Type": "application/json"})

    def push_proto(self, streams: Iterable[Stream]) -> requests.Response:
        return self.http.post(self.target.logs_push_url, data=encode_push_proto(streams),
                              headers={"Content-Type": "application/x-protobuf"})

    # -- query -----------------------------------------------------------
    def get(self, path: str, params: dict) -> dict:
        r = self.http.get(f"{self.target.logs_query_url}/{path}", params=params)
        if r.status_code != 200:
            raise requests.HTTPError(f"GET {path} -> {r.status_code} {r.text.strip()[:300]}", response=r)
        return r.json()

    def query(self, q: str, time_ns: int | None = None, limit: int = 5000) -> dict:
        """Instant query (metric LogQL such as count_over_time)."""
        params = {"query": q, "limit": str(limit)}
        if time_ns is not None:
            params["time"] = str(time_ns)
        return self.get("query", params)["data"]

    def query_range(self, q: str, start_ns: int, end_ns: int, limit: int = 5000,
                    direction: str = "forward") -> dict:
        return self.get("query_range", {"query": q, "start": str(start_ns), "end": str(end_ns),
                                        "limit": str(limit), "direction": direction})

    def streams(self, q: str, start_ns: int, end_ns: int, limit: int = 5000) -> dict[str, list]:
        """{stream labels as a selector: [[ts_ns, line], ...]} of a log query."""
        data = self.query_range(q, start_ns, end_ns, limit)["data"]
        return {logql_selector(s["stream"]): [[int(v[0]), v[1]] for v in s["values"]]
                for s in data.get("result", [])}

    def entries(self, q: str, start_ns: int, end_ns: int, limit: int = 5000) -> list[tuple[int, str]]:
        """All (timestamp_ns, line) of a log query, oldest first, across its streams."""
        data = self.query_range(q, start_ns, end_ns, limit)["data"]
        out = [(int(ts), line) for s in data.get("result", []) for ts, line in s["values"]]
        return sorted(out, key=lambda e: e[0])

    def labels(self, start_ns: int, end_ns: int, query: str | None = None) -> list[str]:
        params = {"start": str(start_ns), "end": str(end_ns), **({"query": query} if query else {})}
        return self.get("labels", params).get("data") or []

    def label_values(self, name: str, start_ns: int, end_ns: int, query: str | None = None) -> list[str]:
        params = {"start": str(start_ns), "end": str(end_ns), **({"query": query} if query else {})}
        return self.get(f"label/{name}/values", params).get("data") or []

    def series(self, match: str, start_ns: int, end_ns: int) -> list[dict]:
        return self.get("series", {"match[]": match, "start": str(start_ns), "end": str(end_ns)}).get("data") or []

    # -- tail ------------------------------------------------------------
    def tail(self, q: str, start_ns: int | None = None) -> "Tail":
        return Tail(self, q, start_ns)


class Tail:
    """A live ``/tail`` websocket: collects every entry it receives in the background.

    Use as a context manager; ``wait_for(n)`` blocks until ``n`` entries arrived."""

    def __init__(self, client: LokiClient, q: str, start_ns: int | None = None):
        t = client.target
        params = {"query": q, "limit": "5000"}
        if start_ns is not None:
            params["start"] = str(start_ns)
        url = t.logs_query_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self.url = f"{url}/tail?{urlencode(params)}"
        headers = [f"User-Agent: {USER_AGENT}"]
        if client.tenant is not None:
            headers.append(f"Authorization: Bearer {client.tenant.token}")
        sslopt = {"cert_reqs": ssl.CERT_REQUIRED}
        if t.ca_file:
            sslopt["ca_certs"] = t.ca_file
        self.entries: list[tuple[dict, int, str]] = []
        self.dropped: list = []
        self.error: str | None = None
        self._cond = threading.Condition()
        self.ws = websocket.create_connection(self.url, header=headers, sslopt=sslopt, timeout=30)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                msg = self.ws.recv()
                if not msg:
                    break
                data = json.loads(msg)
                with self._cond:
                    for s in data.get("streams", []):
                        for ts, line in s.get("values", []):
                            self.entries.append((s.get("stream", {}), int(ts), line))
                    self.dropped.extend(data.get("dropped_entries") or [])
                    self._cond.notify_all()
        except (websocket.WebSocketConnectionClosedException, OSError):
            pass
        except Exception as exc:  # a protocol error is a finding, not a crash
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[tuple[dict, int, str]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.entries) < n and time.monotonic() < deadline and self._thread.is_alive():
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            return list(self.entries)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        self._thread.join(timeout=5)

    def __enter__(self) -> "Tail":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
