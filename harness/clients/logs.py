"""Loki push (JSON and snappy protobuf) and LogQL, through the gateway, as one tenant."""

from __future__ import annotations

import json
from typing import Iterable, Mapping, Sequence

import cramjam
import requests

from .. import proto
from ..target import Target, Tenant
from .http import TenantHTTP

# Stream: (labels, [(timestamp_ns, line), ...])
Stream = tuple[Mapping[str, str], Sequence[tuple[int, str]]]


def logql_selector(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


def encode_push_json(streams: Iterable[Stream]) -> bytes:
    return json.dumps({"streams": [
        {"stream": dict(labels), "values": [[str(int(ts)), line] for ts, line in entries]}
        for labels, entries in streams
    ]}, ensure_ascii=False).encode()


def encode_push_proto(streams: Iterable[Stream]) -> bytes:
    req = proto.PushRequest()
    for labels, entries in streams:
        s = req.streams.add(labels=logql_selector(labels))
        for ts, line in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(int(ts), 1_000_000_000)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


class LokiClient:
    def __init__(self, target: Target, tenant: Tenant | None, session: TenantHTTP | None = None):
        self.target = target
        self.http = session or TenantHTTP(target, tenant)

    # -- push ------------------------------------------------------------
    def push_json(self, streams: Iterable[Stream]) -> requests.Response:
        return self.http.post(self.target.logs_push_url, data=encode_push_json(streams),
                              headers={"Content-Type": "application/json"})

    def push_proto(self, streams: Iterable[Stream]) -> requests.Response:
        return self.http.post(self.target.logs_push_url, data=encode_push_proto(streams),
                              headers={"Content-Type": "application/x-protobuf"})

    # -- query -----------------------------------------------------------
    def _get(self, path: str, params: dict) -> dict:
        r = self.http.get(f"{self.target.logs_query_url}/{path}", params=params)
        r.raise_for_status()
        return r.json()

    def query_range(self, q: str, start_ns: int, end_ns: int, limit: int = 5000,
                    direction: str = "forward") -> dict:
        return self._get("query_range", {"query": q, "start": str(start_ns), "end": str(end_ns),
                                         "limit": str(limit), "direction": direction})

    def entries(self, q: str, start_ns: int, end_ns: int, limit: int = 5000) -> list[tuple[int, str]]:
        """All (timestamp_ns, line) of a log query, oldest first, across its streams."""
        data = self.query_range(q, start_ns, end_ns, limit)["data"]
        out = [(int(ts), line) for s in data.get("result", []) for ts, line in s["values"]]
        return sorted(out, key=lambda e: e[0])
