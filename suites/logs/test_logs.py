"""Logs pushed through the gateway come back exactly: lines, nanosecond
timestamps, order, stream labels, structured metadata; selections select
exactly what they should; counts equal what was written. Written in neither
dialect: the target file's logs api picks the reader."""

from __future__ import annotations

import time

import pytest

from fixtures.defects import known_defect
from harness.clients import LogsPush, Select, logs_reader
from harness.clients.logs import stream_key

pytestmark = pytest.mark.logs

WINDOW = 10 * 60 * 10**9  # reads look 10 minutes around the writes
DAY_NS = 86_400 * 10**9


def _lines(test_id: str, n: int, t0: int, prefix: str = "line") -> list[tuple[int, str]]:
    # distinct, irregular nanosecond timestamps: exactness to the nanosecond
    return [(t0 + i * 1_000_003 + (i * 7919) % 1000, f"{prefix} {i:05d} of {test_id}") for i in range(n)]


@pytest.fixture
def logs(target, tenant_a):
    return LogsPush(target, tenant_a), logs_reader(target, tenant_a)


def _acked_but_missing(check, response, stored: int, sent: int, what: str) -> None:
    """A 2xx for lines the store does not keep is a silent drop: a failure with the count."""
    if 200 <= response.status_code < 300:
        check.equal(stored, sent, f"{what}: lines stored of {sent} acknowledged (HTTP {response.status_code}); "
                                  f"{sent - stored} dropped silently")
    else:
        check.true(400 <= response.status_code < 500, f"{what}: refused with a 4xx",
                   f"HTTP {response.status_code}")
        check.equal(stored, 0, f"{what}: nothing of a refused push is stored")


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_lines_timestamps_and_order_round_trip(logs, test_id, check, encoding):
    push, reader = logs
    labels = {"stackproof_test": test_id, "encoding": encoding}
    t0 = time.time_ns() - 60 * 10**9
    written = _lines(test_id, 500, t0)
    send = push.push_json if encoding == "json" else push.push_proto
    check.status(send([(labels, written)]), 204, f"{encoding} push of {len(written)} lines")
    sel = Select.of(labels)
    check.query("stream", reader.query_text(sel))
    got = check.visible("logs", lambda: reader.streams(sel, t0 - WINDOW, t0 + WINDOW),
                        lambda s: sum(len(v) for v in s.values()) >= len(written), f"{encoding} lines")
    check.equal(got, {stream_key(labels): [[ts, line] for ts, line in written]},
                "stream labels, and every (timestamp ns, line) in order")
    check.equal(reader.newest(sel, t0 - WINDOW, t0 + WINDOW, 7), written[-7:],
                "a read limited to 7 lines gives the newest 7, in order")


def test_many_streams_in_one_push(logs, test_id, check):
    push, reader = logs
    t0 = time.time_ns() - 30 * 10**9
    streams = [({"stackproof_test": test_id, "app": f"app-{i % 10}", "pod": f"pod-{i}"},
                _lines(test_id, 20, t0 + i, prefix=f"s{i}")) for i in range(60)]
    check.status(push.push_proto(streams), 204, "one push of 60 streams")
    sel = Select.of({"stackproof_test": test_id})
    got = check.visible("logs", lambda: reader.streams(sel, t0 - WINDOW, t0 + WINDOW),
                        lambda s: sum(len(v) for v in s.values()) >= 60 * 20, "60 streams")
    check.equal(got, {stream_key(lb): [[ts, line] for ts, line in e] for lb, e in streams},
                "every stream with exactly its lines")
    check.equal(reader.stream_sets(sel, t0 - WINDOW, t0 + WINDOW), sorted((lb for lb, _ in streams), key=stream_key),
                "the store lists exactly the 60 streams")
    check.equal(reader.label_names(sel, t0 - WINDOW, t0 + WINDOW), ["app", "pod", "stackproof_test"],
                "stream label names")
    check.equal(reader.label_values("app", sel, t0 - WINDOW, t0 + WINDOW), sorted(f"app-{i}" for i in range(10)),
                "values of one stream label")


def test_structured_metadata_is_kept_and_filterable(logs, test_id, check):
    push, reader = logs
    labels = {"stackproof_test": test_id, "job": "metadata"}
    t0 = time.time_ns() - 20 * 10**9
    entries = [(t0 + i, f"request {i}", {"trace_id": f"t{i % 3}", "user": "ünï"}) for i in range(9)]
    check.status(push.push_json([(labels, entries)]), 204, "push with structured metadata")
    sel = Select.of(labels)
    got = check.visible("logs", lambda: reader.read(sel, t0 - WINDOW, t0 + WINDOW),
                        lambda e: len(e) >= len(entries), "lines with metadata")
    check.equal([(e.ts, e.line, e.labels, e.metadata) for e in got],
                [(ts, line, labels, md) for ts, line, md in entries],
                "each line with its stream labels and its own structured metadata")
    fsel = sel.meta("trace_id", "t1")
    check.query("metadata filter", reader.query_text(fsel))
    check.equal(reader.entries(fsel, t0 - WINDOW, t0 + WINDOW),
                [(ts, line) for ts, line, md in entries if md["trace_id"] == "t1"], "filter on metadata")


def test_label_matchers_and_line_filters_select_exactly(logs, test_id, check):
    push, reader = logs
    t0 = time.time_ns() - 20 * 10**9
    streams = {
        "api": [(t0 + 1, "GET /users 200"), (t0 + 2, "POST /users 500 error"), (t0 + 3, "GET /health 200")],
        "db": [(t0 + 4, "query ok"), (t0 + 5, "deadlock error"), (t0 + 6, "Error: timeout")],
        "web": [(t0 + 7, "GET / 200"), (t0 + 8, "GET /missing 404")],
    }
    check.status(push.push_json([({"stackproof_test": test_id, "app": app}, e) for app, e in streams.items()]), 204,
                 "push of three streams")
    base = Select.of({"stackproof_test": test_id})
    every = sorted(e for es in streams.values() for e in es)
    check.visible("logs", lambda: reader.entries(base, t0 - WINDOW, t0 + WINDOW),
                  lambda e: len(e) >= len(every), "all lines")
    cases = {
        "app = api": (base.where("app", "=", "api"), streams["api"]),
        "app != api": (base.where("app", "!=", "api"), streams["db"] + streams["web"]),
        "app =~ a.*|w.*": (base.where("app", "=~", "a.*|w.*"), streams["api"] + streams["web"]),
        "app !~ d.*": (base.where("app", "!~", "d.*"), streams["api"] + streams["web"]),
        "line contains 'error'": (base.line("contains", "error"), [e for e in every if "error" in e[1]]),
        "line not contains 'GET'": (base.line("not contains", "GET"), [e for e in every if "GET" not in e[1]]),
        "line regex (?i)error": (base.line("regex", "(?i)error"), [e for e in every if "error" in e[1].lower()]),
        "line not regex [0-9]{3}$": (base.line("not regex", "[0-9]{3}$"),
                                     [e for e in every if not e[1][-3:].isdigit()]),
        "contains with a dot and slash '/ 2'": (base.line("contains", "/ 2"), [e for e in every if "/ 2" in e[1]]),
        "app = api, contains GET, not contains health": (
            base.where("app", "=", "api").line("contains", "GET").line("not contains", "health"), [streams["api"][0]]),
    }
    got, want = {}, {}
    for name, (sel, expected) in cases.items():
        check.query(name, reader.query_text(sel))
        got[name] = reader.entries(sel, t0 - WINDOW, t0 + WINDOW)
        want[name] = sorted(expected)
    check.equal(got, want, "lines selected by each matcher and filter")


def test_counts_equal_lines_written_in_total_and_per_window(logs, test_id, check):
    push, reader = logs
    labels = {"stackproof_test": test_id, "job": "count"}
    step = 10 * 10**9
    start = (time.time_ns() - 120 * 10**9) // step * step  # windows aligned to the step
    # 6 windows of 10 s with 0, 1, 10, 100, 7 and 1 lines
    per_window = [0, 1, 10, 100, 7, 1]
    written = [(start + w * step + i * (step // (n + 1)) + 1, f"w{w} {i}")
               for w, n in enumerate(per_window) for i in range(n)]
    check.status(push.push_proto([(labels, written)]), 204, "push")
    sel = Select.of(labels)
    end = start + len(per_window) * step
    check.visible("logs", lambda: reader.count(sel, start, end), lambda n: n >= len(written), "count")
    check.equal(reader.count(sel, start, end), len(written), "the store's count of the written lines")
    check.equal(reader.counts(sel, start, step, len(per_window)), per_window, "the store's count per 10 s window")
    check.equal(reader.count(sel, start + 3 * step, start + 4 * step), 100, "the count of one window alone")


def test_a_line_at_the_size_limit_is_kept_with_its_neighbours(target, logs, test_id, check):
    push, reader = logs
    limit = target.limits["logs_max_line_bytes"]
    labels = {"stackproof_test": test_id, "job": "size"}
    t0 = time.time_ns() - 10 * 10**9
    at_limit = (t0 + 1, "a" * (limit - 1) + "z")  # exactly `limit` bytes
    good = [(t0, "kept before"), (t0 + 2, "kept after")]
    check.status(push.push_json([(labels, [good[0], at_limit, good[1]])]), 204,
                 f"a line of exactly {limit} bytes between two short ones")
    got = check.visible("logs", lambda: reader.entries(Select.of(labels), t0 - WINDOW, t0 + WINDOW),
                        lambda e: len(e) >= 3, "lines")
    check.equal([(ts, len(line), line[-12:]) for ts, line in got],
                [(ts, len(line), line[-12:]) for ts, line in sorted([at_limit] + good)],
                "the line at the limit, whole, and both neighbours")


def test_a_line_over_the_size_limit_is_refused_never_dropped_silently(request, target, logs, test_id, check):
    known_defect(request, target, "oversize-line-dropped")
    push, reader = logs
    size = target.limits["logs_line_bytes_refused_from"]
    labels = {"stackproof_test": test_id, "job": "oversize"}
    t0 = time.time_ns() - 10 * 10**9
    r = push.push_json([(labels, [(t0, "b" * size)])])
    control = {"stackproof_test": test_id, "job": "control"}
    check.status(push.push_json([(control, [(t0, "control")])]), 204, "a short line after it (control)")
    check.visible("logs", lambda: reader.entries(Select.of(control), t0 - WINDOW, t0 + WINDOW), bool, "control")
    stored = len(reader.entries(Select.of(labels), t0 - WINDOW, t0 + WINDOW))
    _acked_but_missing(check, r, stored, 1, f"a line of {size} bytes")


@pytest.mark.parametrize("when", ["older than the retention", "further ahead than the store accepts"])
def test_too_old_and_too_future_lines_are_refused_never_dropped_silently(request, target, logs, test_id, check, when):
    known_defect(request, target, "out-of-range-line-dropped")
    push, reader = logs
    now = time.time_ns()
    ts = (now - target.limits["logs_max_age_hours"] * 3600 * 10**9 - DAY_NS if when.startswith("older")
          else now + target.limits["logs_max_future_hours"] * 3600 * 10**9 + DAY_NS)
    labels = {"stackproof_test": test_id, "job": "range"}
    r = push.push_json([(labels, [(ts, f"a line {when}")])])
    control = {"stackproof_test": test_id, "job": "control"}
    check.status(push.push_json([(control, [(now, "control")])]), 204, "a line of now after it (control)")
    check.visible("logs", lambda: reader.entries(Select.of(control), now - WINDOW, now + WINDOW), bool, "control")
    stored = len(reader.entries(Select.of(labels), ts - WINDOW, ts + WINDOW))
    _acked_but_missing(check, r, stored, 1, f"a line {when}")


def test_unicode_lines_round_trip(logs, test_id, check):
    push, reader = logs
    labels = {"stackproof_test": test_id, "script": "mixed ✓"}
    t0 = time.time_ns() - 10 * 10**9
    texts = ["日本語のログ行", "emoji 🚀🔥 and ZWJ 👩‍👩‍👧", "RTL: שלום עולם", "combining: e\u0301",
             "tab\tinside", "quotes \"' and backslash \\", "NUL-free control \u0007 bell", "Ω≈ç√∫˜µ≤≥÷",
             '{"json": "looking", "n": 1}']
    written = [(t0 + i, s) for i, s in enumerate(texts)]
    for enc, send in (("json", push.push_json), ("protobuf", push.push_proto)):
        sel = Select.of({**labels, "encoding": enc})
        check.status(send([({**labels, "encoding": enc}, written)]), 204, f"{enc} push of unicode lines")
        got = check.visible("logs", lambda sel=sel: reader.entries(sel, t0 - WINDOW, t0 + WINDOW),
                            lambda e: len(e) >= len(written), f"unicode lines ({enc})")
        check.equal(got, written, f"unicode lines byte for byte, a JSON-looking line unparsed ({enc})")


def test_out_of_order_lines_accepted_and_read_in_time_order(logs, test_id, check):
    push, reader = logs
    labels = {"stackproof_test": test_id, "job": "ooo"}
    t0 = time.time_ns() - 30 * 10**9
    check.status(push.push_json([(labels, [(t0 + 3_000, "third")])]), 204, "newest line first")
    check.status(push.push_json([(labels, [(t0 + 1_000, "first"), (t0 + 2_000, "second")])]), 204,
                 "older lines after it")
    got = check.visible("logs", lambda: reader.entries(Select.of(labels), t0 - WINDOW, t0 + WINDOW),
                        lambda e: len(e) >= 3, "out-of-order lines")
    check.equal(got, [(t0 + 1_000, "first"), (t0 + 2_000, "second"), (t0 + 3_000, "third")], "time order")


def test_tail_receives_every_line_pushed_after_it_opened(target, logs, test_id, check):
    if not target.has("tail"):
        pytest.skip(f"target {target.name!r} has no 'tail' capability")
    push, reader = logs
    labels = {"stackproof_test": test_id, "job": "tail"}
    sel = Select.of(labels)
    check.query("tail", f"{reader.query_text(sel)}\npromise: {reader.tail_promise()}")
    with reader.tail(sel) as tail:
        check.equal(tail.error, None, "the tail opened")
        time.sleep(1.0)  # the tail registers (Loki) or takes its first window (VictoriaLogs)
        written = []
        for batch in range(5):
            t0 = time.time_ns()  # lines stamped as they are sent, as a shipper does
            lines = [(t0 + i, f"tail {batch}.{i}") for i in range(20)]
            check.status(push.push_json([(labels, lines)]), 204, f"push {batch} while tailing")
            written += lines
            time.sleep(0.2)
        got = tail.wait_for(len(written), timeout=30)
    check.equal(tail.error, None, "the tail had no error")
    check.equal([(e.ts, e.line) for e in got], written, "every line pushed after the tail opened, once, in order")
