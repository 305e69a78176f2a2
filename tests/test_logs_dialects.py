"""The logs dialects without a store: what each renders for a neutral
selection, how VictoriaLogs' rows are parsed, and how a crash is judged
against a declared loss window (so that a declaration is no bypass)."""

from __future__ import annotations

import pytest

from harness.clients.logs import (LogQLReader, LogsQLReader, Select, rfc3339_ns, logs_reader, parse_rfc3339_ns,
                                  parse_stream)
from harness.errors import StackproofError
from harness.target import Target, Tenant
from harness.writers import WriteLog, judge_crash_loss

SEL = (Select.of({"job": "api", "stackproof_test": "t1"}).where("app", "=~", "a.*|w.*").where("pod", "!=", "p\"1")
       .line("contains", "GET /x.y").line("not regex", "[0-9]{3}$").meta("trace_id", "t1"))


def _target(api: str) -> Target:
    return Target.from_dict({"name": "x", "gateway_url": "https://gw.example.net", "logs": {"api": api},
                             "tenants": [{"name": "a", "token": "t", "account_id": 1}]})


def test_logsql_rendering():
    reader = LogsQLReader(_target("victorialogs"), None)
    assert reader.query_text(SEL) == (
        '_stream:{job="api",stackproof_test="t1",app=~"a.*|w.*",pod!="p\\"1"} '
        '_msg:~"GET\\\\ /x\\\\.y" -_msg:~"[0-9]{3}$" "trace_id":="t1"')
    assert reader.query_text(Select()) == "*"


def test_logql_rendering():
    reader = LogQLReader(_target("loki"), None)
    assert reader.query_text(SEL) == (
        '{job="api",stackproof_test="t1",app=~"a.*|w.*",pod!="p\\"1"} |= "GET /x.y" !~ "[0-9]{3}$" | trace_id="t1"')


def test_the_target_picks_the_reader():
    assert type(logs_reader(_target("victorialogs"), None)) is LogsQLReader
    assert type(logs_reader(_target("loki"), None)) is LogQLReader
    t = _target("loki")
    t.logs_api = "elastic"
    with pytest.raises(StackproofError, match="unknown logs api 'elastic'"):
        logs_reader(t, None)


def test_bad_selections_are_refused():
    with pytest.raises(ValueError, match="label matcher '=='"):
        Select().where("a", "==", "b")
    with pytest.raises(ValueError, match="line filter 'startswith'"):
        Select().line("startswith", "b")


def test_victorialogs_rows_parse_exactly():
    row = {"_msg": "hello", "_stream": '{app="x y",job="q\\"z"}', "_stream_id": "00", "_time":
           "2026-12-01T19:28:21.613214944Z", "app": "x y", "job": 'q"z', "trace_id": "t1"}
    e = LogsQLReader.entry(row)
    assert (e.ts, e.labels, e.line, e.metadata) == (1796153301613214944, {"app": "x y", "job": 'q"z'}, "hello",
                                                    {"trace_id": "t1"})
    assert parse_stream("{}") == {}
    assert parse_rfc3339_ns("2026-12-01T19:28:21Z") == 1796153301_000000000
    assert parse_rfc3339_ns("2026-12-01T20:28:21.5+01:00") == 1796153301_500000000
    for ns in (0, 1, 1796153301613214944, 1796153301_000000000):
        assert parse_rfc3339_ns(rfc3339_ns(ns)) == ns
    with pytest.raises(ValueError):
        parse_rfc3339_ns("yesterday")


def _log(signal: str, acked: dict[int, int]) -> WriteLog:
    log = WriteLog(signal)
    log.acked, log.sent = dict(acked), dict(acked)
    return log


CRASH_NS = 1_800_000_000 * 10**9


@pytest.mark.parametrize("signal,per_s", [("logs", 10**9), ("metrics", 1000)])
def test_a_loss_within_the_declared_window_passes_and_beyond_it_fails(signal, per_s):
    crash = CRASH_NS // (10**9 // per_s)
    # acked writes 3 s, 2 s and 1 s before the crash and 1 s after the restart
    acked = {1: crash - 3 * per_s, 2: crash - 2 * per_s, 3: crash - per_s, 4: crash + per_s}
    log = _log(signal, acked)
    lost_last_two = {"lost": [2, 3]}
    assert judge_crash_loss(log, lost_last_two, CRASH_NS, 3.0) == {"violations": [], "lost": 2, "loss_seconds": 2.0}
    # the same loss against a smaller declaration: the declaration is no bypass
    assert judge_crash_loss(log, lost_last_two, CRASH_NS, 1.5)["violations"] == [2]
    assert judge_crash_loss(log, lost_last_two, CRASH_NS, 0.0)["violations"] == [2, 3]
    # a write acked after the restart may never be lost, whatever the window
    assert judge_crash_loss(log, {"lost": [4]}, CRASH_NS, 3600.0)["violations"] == [4]
    assert judge_crash_loss(log, {"lost": []}, CRASH_NS, 0.0) == {"violations": [], "lost": 0, "loss_seconds": 0.0}


def test_tenant_account_ids_reach_the_target_file(tmp_path):
    t = _target("victorialogs")
    t.tenants = [Tenant("a", "tok", "user", 7)]
    again = Target.load(t.save(tmp_path / "t.yaml"))
    assert again.tenants[0].account_id == 7
