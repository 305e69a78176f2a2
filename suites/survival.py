"""One check for bad input that may bring a logs store down: a stream that
names one label twice (a Loki push's stream, an OTLP resource's attributes).

Acknowledged lines of two tenants just before it, then the bad request, then:
the store still runs (asked of the provider that made the platform: its
process, or its container, is the one that ran before) and takes a fresh line
and serves it back (a write then a read, through the gateway, which also waits
out the flush of the bad row, where a crash comes); every acknowledged line of
both tenants is still there, exactly; and the bad request was either refused
with a 4xx, and nothing of it is stored, or acknowledged with a 2xx and stored
as the declared rule :data:`LAST_VALUE_WINS` says, read back exactly. A 5xx, a
2xx whose line is dropped or stored under another stream, fails, saying what
was stored. Run on a platform of the test's own (``own_platform``), so no
other test is harmed."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Callable

import requests

from fixtures import liveness
from harness.clients import LogsPush, Select, logs_reader
from harness.clients import otlp
from harness.clients.poll import poll_until

WINDOW = 60 * 10**9

# The rule a store that acknowledges a stream naming one label twice must follow: the
# stream has that label once, with the value given last, and the line is stored under
# it. It is Loki's own for its push: the stream object is read into a map, each name
# overwriting the one before (pkg/loghttp/labels.go, LabelSet.UnmarshalJSON), as Go's
# encoding/json and JavaScript read a JSON object with a repeated name (RFC 8259 leaves
# it to the reader); stackproof declares the same for an OTLP resource attribute given
# twice (OTLP says keys are unique, and says nothing of what a receiver keeps). Anything
# else is a 2xx for a stream no reader can select as it was sent: VictoriaLogs v1.24.0
# keeps both values, one stream {a="1",a="2"} found by either (a known defect), and
# v1.52.2 exits on it.
LAST_VALUE_WINS = "last value wins"


@dataclass(frozen=True)
class Repeated:
    """The bad request's stream: ``label`` named twice or more, with ``values`` in the
    order sent (each unique to the test, so the stream is found by them alone), and
    the one line it carries at ``ts`` (ns)."""

    label: str
    values: tuple[str, ...]
    ts: int
    line: str

    def select(self) -> Select:
        """Every stream that has ``label`` with any of the values sent."""
        return Select().where(self.label, "=~", "|".join(self.values))

    def stored(self, platform, tenant) -> dict:
        """What the store keeps of the bad request: the lines under any stream with one of
        its values, and the values of ``label`` those streams have."""
        reader = logs_reader(platform, tenant)
        lo, hi = self.ts - WINDOW, self.ts + WINDOW
        return {"lines": [list(e) for e in reader.entries(self.select(), lo, hi)],
                f"values of {self.label}": reader.label_values(self.label, self.select(), lo, hi)}

    def as_rule_says(self) -> dict:
        """What :data:`LAST_VALUE_WINS` says must be stored of it."""
        return {"lines": [[self.ts, self.line]], f"values of {self.label}": [self.values[-1]]}

    def nothing(self) -> dict:
        return {"lines": [], f"values of {self.label}": []}


@dataclass(frozen=True)
class BadRequest:
    """``send(tenant)`` sends it; ``what`` names it in every message; ``text`` is shown in
    the report; ``repeated`` is its stream."""

    send: Callable[[object], requests.Response]
    what: str
    text: str
    repeated: Repeated


def _repeated(label: str, kind: str) -> Repeated:
    mark = secrets.token_hex(6)  # the values are this request's alone
    return Repeated(label, (f"one-{mark}", f"two-{mark}"), time.time_ns(), f"repeated {kind} {mark}")


def repeated_label_push(platform) -> BadRequest:
    """A Loki push (JSON: it can name a label twice, where no dict can) of one line whose
    stream has the label ``repeated`` twice."""
    rep = _repeated("repeated", "label")
    stream = ",".join(f'"{rep.label}":"{v}"' for v in rep.values)
    body = b'{"streams":[{"stream":{%s},"values":[["%d","%s"]]}]}' % (stream.encode(), rep.ts, rep.line.encode())
    return BadRequest(lambda tenant: LogsPush(platform, tenant).push_raw(body, "application/json"),
                      f"the push to {platform.logs_push_path} with a repeated label", body.decode(), rep)


def repeated_resource_attribute_export(platform) -> BadRequest:
    """An OTLP logs export of one record whose resource has ``service.name`` twice."""
    rep = _repeated("service.name", "attribute")
    req = otlp.logs_request([otlp.log_record(rep.ts, rep.line)], [(rep.label, v) for v in rep.values])
    return BadRequest(lambda tenant: otlp.OTLPClient(platform, tenant).logs(req),
                      "the OTLP export with a repeated resource attribute", str(req), rep)


def store_takes_a_fresh_line(check, platform, tenant, after: str) -> None:
    """The store still runs and serves: a fresh line pushed now is read back, and every
    component of the platform is the one that ran before (a death is named first)."""
    now = time.time_ns()
    stream = {"job": "fresh", "owner": tenant.name, "at": str(now)}
    reader = logs_reader(platform, tenant)

    def read():
        return reader.entries(Select.of(stream), now - WINDOW, now + WINDOW)

    try:
        r, err = LogsPush(platform, tenant).push_json([(stream, [(now, "fresh")])]), None
    except requests.RequestException as exc:
        r, err = None, exc
    if r is not None and r.status_code == 204:
        poll_until(read, bool, timeout=30)  # judged below, once a death has been named
    liveness.require_running(check.node, platform, after)
    check.true(err is None, f"a fresh push after {after}", f"{type(err).__name__}: {err}")
    check.status(r, 204, f"a fresh push after {after}")
    got = check.visible("logs", read, bool, f"a fresh line pushed after {after}", timeout=5)
    check.equal(got, [(now, "fresh")], f"the fresh line, read back after {after}")


def acked_lines_survive(check, platform, bad: BadRequest) -> None:
    """``bad`` is sent as the platform's first user tenant, between the acknowledged lines
    and the checks."""
    a, b = platform.user_tenants[:2]
    t_ns = time.time_ns() - 5 * 10**9
    acked = {}
    for tenant in (a, b):  # acknowledged lines of two tenants, just before the bad request
        stream = {"job": "before", "owner": tenant.name}
        lines = [(t_ns + i, f"acked {i} of {tenant.name}") for i in range(50)]
        check.status(LogsPush(platform, tenant).push_proto([(stream, lines)]), 204, f"{tenant.name} pushes")
        acked[tenant.name] = (stream, lines)
    check.query(bad.what, bad.text)
    r = bad.send(a)
    what, after = bad.what, f"{bad.what} (HTTP {r.status_code})"
    store_takes_a_fresh_line(check, platform, b, after)
    for tenant in (a, b):
        stream, lines = acked[tenant.name]
        reader = logs_reader(platform, tenant)
        got = check.visible("logs", lambda: reader.entries(Select.of(stream), t_ns - WINDOW, t_ns + WINDOW),
                            lambda e: len(e) >= len(lines), f"{tenant.name}'s acked lines after {after}",
                            timeout=15, settle=True)
        check.equal(got, lines, f"every acknowledged line of {tenant.name} after {after}")
    rep = bad.repeated
    if 400 <= r.status_code < 500:
        check.equal(rep.stored(platform, a), rep.nothing(), f"{after}: nothing of a refused request is stored")
        return
    check.true(200 <= r.status_code < 300, f"{what} is refused with a 4xx, or taken with a 2xx",
               f"HTTP {r.status_code} {r.text.strip()[:200]}")
    want = rep.as_rule_says()
    got = check.visible("logs", lambda: rep.stored(platform, a), lambda s: s == want,
                        f"{after}: what is stored", timeout=10, settle=True)
    check.equal(got, want, f"{after}: acknowledged, so stored as the rule '{LAST_VALUE_WINS}' says")
