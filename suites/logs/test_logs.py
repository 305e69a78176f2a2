"""Logs pushed to Loki come back exactly: lines, nanosecond timestamps, order,
stream labels, structured metadata; LogQL selects exactly what it should."""

from __future__ import annotations

import time

import pytest

from harness.clients import LokiClient
from harness.clients.logs import logql_selector

pytestmark = pytest.mark.logs

WINDOW = 10 * 60 * 10**9  # queries look 10 minutes around the writes


def _lines(test_id: str, n: int, t0: int, prefix: str = "line") -> list[tuple[int, str]]:
    # distinct, irregular nanosecond timestamps: exactness to the nanosecond
    return [(t0 + i * 1_000_003 + (i * 7919) % 1000, f"{prefix} {i:05d} of {test_id}") for i in range(n)]


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_lines_timestamps_and_order_round_trip(target, tenant_a, test_id, check, encoding):
    loki = LokiClient(target, tenant_a)
    labels = {"stackproof_test": test_id, "encoding": encoding}
    t0 = time.time_ns() - 60 * 10**9
    written = _lines(test_id, 500, t0)
    push = loki.push_json if encoding == "json" else loki.push_proto
    check.status(push([(labels, written)]), 204, f"{encoding} push of {len(written)} lines")
    q = logql_selector(labels)
    check.query("stream", q)
    got = check.visible("logs", lambda: loki.streams(q, t0 - WINDOW, t0 + WINDOW),
                        lambda s: sum(len(v) for v in s.values()) >= len(written), f"{encoding} lines")
    check.equal(got, {q: [[ts, line] for ts, line in written]},
                "stream labels, and every (timestamp ns, line) in order")
    backward = loki.query_range(q, t0 - WINDOW, t0 + WINDOW, direction="backward")["data"]["result"]
    check.equal([[int(ts), line] for ts, line in backward[0]["values"]], [[ts, line] for ts, line in reversed(written)],
                "direction=backward gives the same lines newest first")


def test_many_streams_in_one_push(target, tenant_a, test_id, check):
    loki = LokiClient(target, tenant_a)
    t0 = time.time_ns() - 30 * 10**9
    streams = [({"stackproof_test": test_id, "app": f"app-{i % 10}", "pod": f"pod-{i}"},
                _lines(test_id, 20, t0 + i, prefix=f"s{i}")) for i in range(60)]
    check.status(loki.push_proto(streams), 204, "one push of 60 streams")
    q = logql_selector({"stackproof_test": test_id})
    got = check.visible("logs", lambda: loki.streams(q, t0 - WINDOW, t0 + WINDOW),
                        lambda s: sum(len(v) for v in s.values()) >= 60 * 20, "60 streams")
    check.equal(got, {logql_selector(lb): [[ts, line] for ts, line in e] for lb, e in streams},
                "every stream with exactly its lines")


def test_structured_metadata_is_kept_and_filterable(target, tenant_a, test_id, check):
    loki = LokiClient(target, tenant_a)
    labels = {"stackproof_test": test_id, "job": "metadata"}
    t0 = time.time_ns() - 20 * 10**9
    entries = [(t0 + i, f"request {i}", {"trace_id": f"t{i % 3}", "user": "ünï"}) for i in range(9)]
    check.status(loki.push_json([(labels, entries)]), 204, "push with structured metadata")
    q = logql_selector(labels)
    got = check.visible("logs", lambda: loki.streams(q, t0 - WINDOW, t0 + WINDOW),
                        lambda s: sum(len(v) for v in s.values()) >= len(entries), "lines with metadata")
    # Loki returns structured metadata as labels of the result streams
    expected: dict = {}
    for ts, line, md in entries:
        expected.setdefault(logql_selector({**labels, **md}), []).append([ts, line])
    check.equal(got, expected, "lines grouped by labels plus structured metadata")
    fq = q + ' | trace_id="t1"'
    check.query("metadata filter", fq)
    check.equal(loki.entries(fq, t0 - WINDOW, t0 + WINDOW), [(ts, line) for ts, line, md in entries
                                                             if md["trace_id"] == "t1"], "filter on metadata")


def test_label_matchers_and_line_filters_select_exactly(target, tenant_a, test_id, check):
    loki = LokiClient(target, tenant_a)
    t0 = time.time_ns() - 20 * 10**9
    streams = {
        "api": [(t0 + 1, "GET /users 200"), (t0 + 2, "POST /users 500 error"), (t0 + 3, "GET /health 200")],
        "db": [(t0 + 4, "query ok"), (t0 + 5, "deadlock error"), (t0 + 6, "Error: timeout")],
        "web": [(t0 + 7, "GET / 200"), (t0 + 8, "GET /missing 404")],
    }
    check.status(loki.push_json([({"stackproof_test": test_id, "app": app}, e) for app, e in streams.items()]), 204,
                 "push of three streams")
    base = f'stackproof_test="{test_id}"'
    every = [e for es in streams.values() for e in es]
    check.visible("logs", lambda: loki.entries("{" + base + "}", t0 - WINDOW, t0 + WINDOW),
                  lambda e: len(e) >= len(every), "all lines")
    cases = {
        "{" + base + ', app="api"}': streams["api"],
        "{" + base + ', app!="api"}': streams["db"] + streams["web"],
        "{" + base + ', app=~"a.*|w.*"}': streams["api"] + streams["web"],
        "{" + base + ', app!~"d.*"}': streams["api"] + streams["web"],
        "{" + base + '} |= "error"': [e for e in every if "error" in e[1]],
        "{" + base + '} != "GET"': [e for e in every if "GET" not in e[1]],
        "{" + base + '} |~ "(?i)error"': [e for e in every if "error" in e[1].lower()],
        "{" + base + '} !~ "[0-9]{3}$"': [e for e in every if not e[1][-3:].isdigit()],
        "{" + base + ', app="api"} |= "GET" != "health"': [streams["api"][0]],
    }
    got, want = {}, {}
    for q, expected in cases.items():
        check.query(q, q)
        got[q] = loki.entries(q, t0 - WINDOW, t0 + WINDOW)
        want[q] = sorted(expected)
    check.equal(got, want, "lines selected by each matcher and filter")


def test_count_over_time_equals_lines_written(target, tenant_a, test_id, check):
    loki = LokiClient(target, tenant_a)
    labels = {"stackproof_test": test_id, "job": "count"}
    t0 = time.time_ns() - 120 * 10**9
    written = _lines(test_id, 777, t0)
    check.status(loki.push_proto([(labels, written)]), 204, "push")
    at = written[-1][0] + 10**9
    q = f"sum(count_over_time({logql_selector(labels)}[10m]))"
    check.query("count_over_time", q)
    res = check.visible("logs", lambda: loki.query(q, at)["result"],
                        lambda r: bool(r) and r[0]["value"][1] == str(len(written)), "count_over_time")
    check.equal(res[0]["value"][1], str(len(written)), "count_over_time over the written lines")


def test_lines_at_the_size_limit_kept_and_over_it_refused_others_kept(target, tenant_a, test_id, check):
    limit = target.limits["logs_max_line_bytes"]
    loki = LokiClient(target, tenant_a)
    labels = {"stackproof_test": test_id, "job": "size"}
    t0 = time.time_ns() - 10 * 10**9
    at_limit = (t0 + 1, "a" * (limit - 1) + "z")  # exactly `limit` bytes
    assert len(at_limit[1].encode()) == limit
    check.status(loki.push_json([(labels, [at_limit])]), 204, f"a line of exactly {limit} bytes")
    good = [(t0 + 2, "kept before"), (t0 + 4, "kept after")]
    r = loki.push_json([(labels, [good[0], (t0 + 3, "b" * (limit + 1)), good[1]])])
    check.status(r, 400, f"a push holding a line of {limit + 1} bytes")
    check.true("max entry size" in r.text, "the refusal names the size limit", r.text[:200])
    q = logql_selector(labels)
    got = check.visible("logs", lambda: loki.entries(q, t0 - WINDOW, t0 + WINDOW), lambda e: len(e) >= 3, "lines")
    check.equal([(ts, len(line), line[:12]) for ts, line in got],
                [(ts, len(line), line[:12]) for ts, line in sorted([at_limit] + good)],
                "the line at the limit and the good lines of the refused push, nothing of the long one")


def test_unicode_lines_round_trip(target, tenant_a, test_id, check):
    loki = LokiClient(target, tenant_a)
    labels = {"stackproof_test": test_id, "script": "mixed ✓"}
    t0 = time.time_ns() - 10 * 10**9
    texts = ["日本語のログ行", "emoji 🚀🔥 and ZWJ 👩‍👩‍👧", "RTL: שלום עולם", "combining: e\u0301",
             "tab\tinside", "quotes \"' and backslash \\", "NUL-free control \u0007 bell", "Ω≈ç√∫˜µ≤≥÷"]
    written = [(t0 + i, s) for i, s in enumerate(texts)]
    for enc, push in (("json", loki.push_json), ("protobuf", loki.push_proto)):
        lb = {**labels, "encoding": enc}
        check.status(push([(lb, written)]), 204, f"{enc} push of unicode lines")
        q = logql_selector(lb)
        got = check.visible("logs", lambda q=q: loki.entries(q, t0 - WINDOW, t0 + WINDOW),
                            lambda e: len(e) >= len(written), f"unicode lines ({enc})")
        check.equal(got, written, f"unicode lines byte for byte ({enc})")


def test_out_of_order_lines_accepted_and_read_in_time_order(target, tenant_a, test_id, check):
    """The local platform runs Loki with unordered writes (its default): lines
    older than the stream's newest are accepted and read back in time order."""
    loki = LokiClient(target, tenant_a)
    labels = {"stackproof_test": test_id, "job": "ooo"}
    t0 = time.time_ns() - 30 * 10**9
    check.status(loki.push_json([(labels, [(t0 + 3_000, "third")])]), 204, "newest line first")
    check.status(loki.push_json([(labels, [(t0 + 1_000, "first"), (t0 + 2_000, "second")])]), 204,
                 "older lines after it")
    got = check.visible("logs", lambda: loki.entries(logql_selector(labels), t0 - WINDOW, t0 + WINDOW),
                        lambda e: len(e) >= 3, "out-of-order lines")
    check.equal(got, [(t0 + 1_000, "first"), (t0 + 2_000, "second"), (t0 + 3_000, "third")], "time order")


def test_tail_receives_every_line_pushed_after_it_opened(target, tenant_a, test_id, check):
    if not target.has("tail"):
        pytest.skip(f"target {target.name!r} has no 'tail' capability")
    loki = LokiClient(target, tenant_a)
    labels = {"stackproof_test": test_id, "job": "tail"}
    q = logql_selector(labels)
    check.query("tail", q)
    with loki.tail(q) as tail:
        time.sleep(1.0)  # the tailer registers with the ingester
        t0 = time.time_ns()
        written = []
        for batch in range(5):
            lines = [(t0 + batch * 1000 + i, f"tail {batch}.{i}") for i in range(20)]
            check.status(loki.push_json([(labels, lines)]), 204, f"push {batch} while tailing")
            written += lines
        got = tail.wait_for(len(written), timeout=30)
    check.true(tail.error is None, "tail websocket had no error", str(tail.error))
    check.equal([(ts, line) for _, ts, line in got], written, "every line pushed after tail opened, in order")
    check.equal(tail.dropped, [], "no dropped entries reported by tail")
