"""Tokens, tenant isolation, TLS and malformed input, through the gateway."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
import pytest
import requests

from harness.providers import get_provider
from harness.clients import (LogsPush, MetricsMetadataClient, PromQLClient, RemoteWriteClient, Select, TenantHTTP,
                             logs_reader)
from harness.clients import otlp
from harness.clients.http import scan
from harness.clients.logs import rfc3339_ns
from harness.clients.metrics import REMOTE_WRITE_V2_HEADERS, V2Series, selector
from harness.clients.alerting import Alertmanager, RuleGroups
from harness.clients.otlp import OTLPClient
from fixtures.defects import known_defect
from harness.errors import StackproofError
from harness.leaks import files_under, find_leaks, secrets_of
from harness.target import Tenant
from harness.tls import make_ca

from ..endpoints import ask, endpoint_names, request_endpoint, route_reads
from ..survival import acked_lines_survive, repeated_label_push

pytestmark = pytest.mark.security

WINDOW = 10 * 60 * 10**9


def _wrong_tokens(target) -> dict[str, str]:
    a = target.user_tenants[0].token
    return {
        "random token": secrets.token_urlsafe(32),
        "a tenant's token in other case": a.swapcase() if a.swapcase() != a else a + "x",
        "a tenant's token truncated": a[:-1],
        "empty bearer": "",
    }


def test_no_token_and_wrong_tokens_get_401(target, tenant_session, check):
    # the hand list of endpoints, and every read the components' routes declare
    reads = {f"route read {r.name}": r for r in route_reads(target) if not r.streaming}
    ctx = Seed("spk000000000000", int(time.time() * 1000), set()).context(1_000_001)

    def send(session, name):
        if name in reads:
            return ask(session, reads[name], ctx)[0]
        if name == "unknown path":
            return session.get("/no/such/path")
        return request_endpoint(session, target, name)

    for name in [*endpoint_names(target), *reads, "unknown path"]:
        check.status(send(tenant_session(None), name), 401, f"{name} without a token")
        for label, token in _wrong_tokens(target).items():
            s = tenant_session(None)
            s.headers["Authorization"] = f"Bearer {token}"
            check.status(send(s, name), 401, f"{name} with {label}")
        s = tenant_session(None)
        s.headers["Authorization"] = "Basic " + "dGVuYW50LWE6cGFzcw=="
        check.status(send(s, name), 401, f"{name} with basic auth")


def test_tail_needs_a_token(target, tenant_a, check):
    if not target.has("tail"):
        pytest.skip(f"target {target.name!r} has no 'tail' capability")
    sel = Select.of({"job": "x"})
    stranger = Tenant("stranger", secrets.token_urlsafe(32))
    for who, tenant, want in (("without a token", None, 401), ("with a wrong token", stranger, 401),
                              ("with a good token (control)", tenant_a, (101, 200))):
        with logs_reader(target, tenant).tail(sel) as tail:
            check.true(tail.status in ((want,) if isinstance(want, int) else want), f"tail {who}",
                       f"got {tail.status}")


# paths under the logs store that no tenant may reach, whatever its token: every
# tenant's ids, the other tenants' write path, the storage internals, and the
# same through path tricks the gateway must normalise first
FORBIDDEN_PATHS = ("/select/tenant_ids", "/insert/multitenant/loki/api/v1/push", "/internal/force_flush",
                   "/internal/force_merge", "/internal/partition/list", "/select/logsql/../tenant_ids",
                   "//select/tenant_ids", "/select/logsql/%2e%2e/tenant_ids", "/select/vmui/",
                   "/insert/jsonline", "/metrics", "/flags")


def test_paths_no_tenant_may_use_are_refused(target, tenant_a, tenant_session, check):
    s = tenant_session(tenant_a)
    for path in FORBIDDEN_PATHS:
        r = s.get(path)
        check.true(r.status_code in (403, 404), f"GET {path} with a good token is refused",
                   f"HTTP {r.status_code}: {r.text.strip()[:120]}")
        r = s.post(path, data=b"{}", headers={"Content-Type": "application/json"})
        check.true(r.status_code in (403, 404, 405), f"POST {path} with a good token is refused",
                   f"HTTP {r.status_code}: {r.text.strip()[:120]}")


@pytest.fixture
def a_data(target, tenant_a, test_id, check):
    """Tenant A writes one series and one stream and sees them (the positive control)."""
    t_ms = int(time.time() * 1000) - 5_000
    series = {"__name__": "stackproof_private", "stackproof_test": test_id, "owner": tenant_a.name}
    stream = {"stackproof_test": test_id, "owner": tenant_a.name}
    check.status(RemoteWriteClient(target, tenant_a).write([(series, [(t_ms, 7.0)])]), (200, 204), "A writes")
    check.status(LogsPush(target, tenant_a).push_json([(stream, [(t_ms * 10**6, "A's private line")])]), 204,
                 "A pushes")
    promql, reader = PromQLClient(target, tenant_a), logs_reader(target, tenant_a)
    check.visible("metrics", lambda: promql.query(selector(series), t_ms / 1000), bool, "A's series, for A")
    check.visible("logs", lambda: reader.entries(Select.of(stream), t_ms * 10**6 - WINDOW, t_ms * 10**6 + WINDOW),
                  bool, "A's stream, for A")
    return t_ms, series, stream


NOTHING_SEEN = {"logs read": [], "logs newest": [], "logs count": 0, "logs label names": [], "logs label values": [],
                "logs streams": []}


def _logs_seen(reader, stream: dict, t_ns: int) -> dict:
    """What a reader sees of ``stream`` through every logs read."""
    sel, lo, hi = Select.of({"stackproof_test": stream["stackproof_test"]}), t_ns - WINDOW, t_ns + WINDOW
    return {
        "logs read": reader.entries(sel, lo, hi),
        "logs newest": reader.newest(sel, lo, hi, 10),
        "logs count": reader.count(sel, lo, hi),
        "logs label names": [x for x in reader.label_names(sel, lo, hi) if x in stream],
        "logs label values": reader.label_values("owner", sel, lo, hi),
        "logs streams": reader.stream_sets(sel, lo, hi),
    }


def test_other_tenants_cannot_read_a_tenants_data_through_any_api(target, tenant_a, a_data, check):
    t_ms, series, stream = a_data
    sel = f'{{stackproof_test="{series["stackproof_test"]}"}}'
    for other in [t for t in target.tenants if t.name != tenant_a.name]:
        promql, meta = PromQLClient(target, other), MetricsMetadataClient(target, other)
        s, e = t_ms / 1000 - 600, t_ms / 1000 + 600
        seen = {
            "promql query": promql.query(sel, t_ms / 1000),
            "promql query_range": promql.query_range(sel, s, e, "15s"),
            "series": meta.series(sel, s, e),
            "labels": [x for x in meta.labels(sel, s, e) if x in series and x != "__name__"],
            "label values": meta.label_values("owner", sel, s, e),
        }
        check.equal(seen, {k: [] for k in seen}, f"what {other.name} sees of {tenant_a.name}'s metrics")
        check.equal(_logs_seen(logs_reader(target, other), stream, t_ms * 10**6), NOTHING_SEEN,
                    f"what {other.name} sees of {tenant_a.name}'s logs")


@dataclass
class Seed:
    """What tenant A wrote for the read paths to show: everything names one marker
    (a label's name and value, a metric's name, an exemplar, a rule group, a
    silence), so that any answer holding the marker holds A's data."""

    marker: str
    t_ms: int
    kinds: set = field(default_factory=set)  # what of it was written: Read.shows values

    @property
    def metric(self) -> str:
        return f"stackproof_{self.marker}_total"

    def context(self, nonce: int, marker: str | None = None) -> dict:
        """The values a Read's templates take, for one ask (``nonce``: fresh per ask, so no cache
        answers it from an earlier one; ``marker``: another one, for the answer about nobody's data)."""
        m = marker or self.marker
        pick = f'stackproof_test="{m}",stackproof_nonce!="{nonce}"'
        lo, hi = self.t_ms - 600_000, self.t_ms + 600_000
        return {"marker": m, "nonce": nonce, "metric": f"stackproof_{m}_total", "label": m,
                "series": "{" + pick + "}", "logsql": "_stream:{" + pick + "}",
                "time_s": f"{self.t_ms / 1000:.3f}", "start_s": f"{lo / 1000:.3f}", "end_s": f"{hi / 1000:.3f}",
                "start": rfc3339_ns(lo * 10**6), "end": rfc3339_ns(hi * 10**6)}


def _nonce() -> int:
    return 1_000_000 + secrets.randbelow(10**9)


@pytest.fixture
def seeded(request, target, tenant_a, check):
    """Tenant A writes one of every kind of data a read path shows, under a marker of
    its own: a series with an exemplar and metadata (remote write 2.0 if the target
    takes it), a stream, with 'alerting' a rule group and a silence, and with
    'log-alerting' a log rule group (all removed after). Not seeded: firing alerts
    (they would notify the alerting suite's receivers) and the Alertmanager's
    configuration (the alerting suite's run route): those reads are still asked as
    every tenant (each must answer), and suites/alerting/test_isolation.py proves the
    Alertmanager's configuration and alerts per tenant."""
    seed = Seed("spk" + secrets.token_hex(6), int(time.time() * 1000) - 5_000)
    m = seed.marker
    labels = {"__name__": seed.metric, "stackproof_test": m, m: m}
    metrics = RemoteWriteClient(target, tenant_a)
    if target.has("remote-write-2"):
        r = metrics.write_v2([V2Series(labels, [(seed.t_ms, 1.0)], exemplars=[({"trace_id": m}, 1.0, seed.t_ms)],
                                       type="counter", help=f"A's seed {m}")])
        seed.kinds |= {"exemplars", "metadata"}
    else:
        r = metrics.write([(labels, [(seed.t_ms, 1.0)])])
    check.status(r, (200, 204), "A writes the seed series")
    stream = {"stackproof_test": m, m: m}
    check.status(LogsPush(target, tenant_a).push_json([(stream, [(seed.t_ms * 10**6, f"A's line {m}")])]), 204,
                 "A pushes the seed stream")
    seed.kinds |= {"metrics", "logs"}
    undo = []
    if target.has("alerting"):
        groups, am = RuleGroups(target, tenant_a), Alertmanager(target, tenant_a)
        group = {"name": m, "rules": [{"record": f"stackproof_seed:{m}", "expr": "vector(1)"}]}
        check.status(groups.set_group(m, group), 202, "A sets the seed rule group")
        undo.append(lambda: groups.delete_namespace(m))
        now = time.time()
        r = am.silence_raw(Alertmanager.silence_body({"stackproof_test": m}, now, now + 900, f"A's seed {m}"))
        check.status(r, 200, "A sets the seed silence")
        sid = r.json()["silenceID"]
        undo.append(lambda: am.expire(sid))
        seed.kinds |= {"rules", "silences"}
    if any(r.shows == "log-rules" for r in route_reads(target)):  # a rule file of the log rule evaluator's
        log_rules = request.getfixturevalue("log_rules")(tenant_a)  # the alerting suite's: as it sets them
        rule = {"record": f"stackproof_seed:{m}", "expr": f'_stream:{{stackproof_test="{m}"}} | stats count() n'}
        try:
            log_rules.set_group(m, {"name": m, "rules": [rule]})
        except StackproofError as exc:
            pytest.fail(f"target {target.name!r} declares 'log-alerting', but A's log rule group cannot be set: {exc}",
                        pytrace=False)
        undo.append(lambda: log_rules.delete_namespace(m))
        seed.kinds.add("log-rules")
    yield seed
    for step in undo:
        step()


def _holds(read, seed: Seed, session, ctx: dict, body: bytes) -> bool:
    """Whether an answer holds the seed: it names the marker; or, for a read whose answer names
    none (``marked=False``), it differs from the answer about a marker nobody wrote."""
    if read.marked:
        return seed.marker.encode() in body
    blank = "spk" + secrets.token_hex(6)
    _, other = ask(session, read, seed.context(ctx["nonce"], blank))
    return body != other.replace(blank.encode(), seed.marker.encode())


def _answer(read, seed: Seed, session, nonce: int, check, who: str) -> bool:
    """Ask ``read`` about the seed as ``session``'s tenant: check the status; whether the answer holds the seed."""
    ctx = seed.context(nonce)
    r, body = ask(session, read, ctx)
    check.true(r.status_code in read.ok, f"{read.name} answers {who}",
               f"HTTP {r.status_code}, expected {'/'.join(map(str, read.ok))}")
    return r.status_code == 200 and _holds(read, seed, session, ctx, body)


def _a_sees_its_own(read, seed: Seed, session, check) -> None:
    """The control: A's own answer holds A's seed (polled: a store makes it visible within seconds)."""
    def read_once():
        r, body = ask(session, read, ctx := seed.context(_nonce()))
        return r.status_code == 200 and _holds(read, seed, session, ctx, body)
    check.visible("metrics" if read.shows in ("metrics", "exemplars", "metadata", "rules") else "logs", read_once,
                  bool, f"{read.name}: A's own {read.shows}, for A (control)")


def _checked_reads(target) -> list:
    reads = [r for r in route_reads(target) if not r.streaming]
    names = [r.name for r in reads]
    assert len(set(names)) == len(names), f"route reads with the same name: {names}"
    return reads


def test_every_read_path_answers_each_tenant_only_its_own(target, tenant_a, seeded, check):
    """Every read the gateway passes (from the components' routes: PromQL with
    exemplars, metadata and remote read, the ruler, the Alertmanager, LogsQL, the
    log rules), asked as every other tenant about A's data, answers nothing of it;
    asked as A, it answers A's (the control), for each kind of data A wrote."""
    a = TenantHTTP(target, tenant_a)
    others = [(t, TenantHTTP(target, t)) for t in target.tenants if t.name != tenant_a.name]
    for read in _checked_reads(target):
        check.query(read.name, f"{read.method} {read.path} {json.dumps(dict(read.params))}")
        if read.shows in seeded.kinds:
            _a_sees_its_own(read, seeded, a, check)
        for other, session in others:
            check.true(not _answer(read, seeded, session, _nonce(), check, other.name),
                       f"{read.name}: {other.name}'s answer holds nothing of {tenant_a.name}'s {read.shows or 'data'}")


def test_the_same_query_asked_by_two_tenants_in_a_row_answers_each_its_own(target, tenant_a, tenant_b, seeded,
                                                                           check):
    """The same request (the same nonce: byte for byte the same URL), asked by A then
    by B, and by B then A, on every read path: a results cache keyed without the
    tenant would answer the second with the first's answer (B gets A's data, or A
    gets B's empty answer)."""
    a, b = TenantHTTP(target, tenant_a), TenantHTTP(target, tenant_b)
    for read in _checked_reads(target):
        mine = read.shows in seeded.kinds
        if mine:
            _a_sees_its_own(read, seeded, a, check)
        nonce = _nonce()
        a_first = _answer(read, seeded, a, nonce, check, "A")
        b_after = _answer(read, seeded, b, nonce, check, "B")
        check.true(not b_after, f"{read.name} asked by B right after A asked the same: B's answer holds nothing of A's")
        if mine:
            check.true(a_first, f"{read.name} asked by A: A's answer holds A's {read.shows} (control)")
        nonce = _nonce()
        b_first = _answer(read, seeded, b, nonce, check, "B")
        a_after = _answer(read, seeded, a, nonce, check, "A")
        check.true(not b_first, f"{read.name} asked by B first: B's answer holds nothing of A's")
        if mine:
            check.true(a_after, f"{read.name} asked by A right after B asked the same: A's answer holds A's "
                                f"{read.shows}, not B's answer")


def test_tail_of_another_tenant_receives_nothing(target, tenant_a, tenant_b, test_id, check):
    """B tails A's selector while A pushes: B's tail must open (a refused or broken
    tail receives nothing too, and would pass), stay open through the whole window
    in which A's own tail (the control) receives every line, and receive nothing."""
    if not target.has("tail"):
        pytest.skip(f"target {target.name!r} has no 'tail' capability")
    labels = {"stackproof_test": test_id, "owner": tenant_a.name}
    sel = Select.of(labels)
    with logs_reader(target, tenant_b).tail(sel) as b_tail, logs_reader(target, tenant_a).tail(sel) as a_tail:
        check.true(b_tail.status in b_tail.OPEN_STATUSES, "B's tail opens", b_tail.state())
        check.true(a_tail.status in a_tail.OPEN_STATUSES, "A's tail opens (control)", a_tail.state())
        time.sleep(1.0)
        t0 = time.time_ns()
        lines = [(t0 + i, f"secret {i}") for i in range(10)]
        check.status(LogsPush(target, tenant_a).push_json([(labels, lines)]), 204, "A pushes while both tail")
        a_got = a_tail.wait_for(len(lines), timeout=30)  # once A has them all, B had the same chance
        time.sleep(1.5)
        b_got, b_state, a_state = list(b_tail.entries), b_tail.state(), a_tail.state()
    check.equal(len(a_got), len(lines), f"A's own tail receives A's lines (control; A's tail: {a_state})")
    check.equal(b_state, "open", "B's tail stayed open through the window in which A's tail received A's lines")
    check.equal(b_got, [], "B's tail on the same selector receives nothing")


def _logs_spoofs(tenant_b) -> dict[str, dict]:
    """Headers a client may send to pick another tenant on a logs path."""
    return {"X-Scope-OrgID": {"X-Scope-OrgID": tenant_b.name},
            "X-Scope-OrgID account:project": {"X-Scope-OrgID": f"{tenant_b.account_id or 0}:0"},
            "AccountID": {"AccountID": str(tenant_b.account_id or 0)},
            "AccountID and ProjectID": {"AccountID": str(tenant_b.account_id or 0), "ProjectID": "0"},
            "ProjectID": {"ProjectID": "7"},
            "accountid in lower case": {"accountid": str(tenant_b.account_id or 0)}}


def test_client_sent_tenant_headers_cannot_switch_tenants_on_logs_paths(target, tenant_a, tenant_b, test_id, check):
    t_ns = time.time_ns() - 5 * 10**9
    reader_a, reader_b = logs_reader(target, tenant_a), logs_reader(target, tenant_b)
    for i, (name, headers) in enumerate(_logs_spoofs(tenant_b).items()):
        stream = {"stackproof_test": test_id, "spoof": str(i)}
        push = LogsPush(target, tenant_a)
        push.http.headers.update(headers)
        check.status(push.push_json([(stream, [(t_ns + i, f"pushed with A's token and {name}")])]), 204,
                     f"push with A's token and {name}")
        sel = Select.of(stream)
        where = check.visible("logs", lambda sel=sel: {
            "A": reader_a.entries(sel, t_ns - WINDOW, t_ns + WINDOW),
            "B": reader_b.entries(sel, t_ns - WINDOW, t_ns + WINDOW)}, lambda w: bool(w["A"] or w["B"]),
            f"spoofed push {i}")
        check.equal({k: len(v) for k, v in where.items()}, {"A": 1, "B": 0},
                    f"a line pushed with A's token and {name} (count per tenant)")
    # reads: A's token with B's headers reads A's data, never B's
    b_stream = {"stackproof_test": f"{test_id}-b", "owner": tenant_b.name}
    check.status(LogsPush(target, tenant_b).push_json([(b_stream, [(t_ns, "B's line")])]), 204, "B pushes")
    check.visible("logs", lambda: reader_b.entries(Select.of(b_stream), t_ns - WINDOW, t_ns + WINDOW), bool,
                  "B's line, for B")
    for name, headers in _logs_spoofs(tenant_b).items():
        spoofed = logs_reader(target, tenant_a)
        spoofed.http.headers.update(headers)
        check.equal(_logs_seen(spoofed, b_stream, t_ns), NOTHING_SEEN, f"what A's token with {name} sees of B's stream")


def test_client_sent_scope_header_cannot_switch_tenants(target, tenant_a, tenant_b, test_id, check):
    t_ms = int(time.time() * 1000) - 5_000
    labels = {"__name__": "stackproof_spoof", "stackproof_test": test_id}
    spoofs = {"X-Scope-OrgID": tenant_b.name, "x-scope-orgid": tenant_b.name,
              "X-Scope-OrgID ": f"{tenant_b.name}|{tenant_a.name}"}
    # writes: A's token with B's header lands in A, never in B
    promql_a, promql_b = PromQLClient(target, tenant_a), PromQLClient(target, tenant_b)
    for i, (header, value) in enumerate(spoofs.items()):
        series = {**labels, "i": str(i)}
        r = RemoteWriteClient(target, tenant_a).write([(series, [(t_ms, float(i))])],
                                                      headers={header.strip(): value})
        check.status(r, (200, 204), f"write with A's token and {header.strip()}: {value}")
        where = check.visible("metrics", lambda sr=series: {"A": promql_a.query(selector(sr), t_ms / 1000),
                                                             "B": promql_b.query(selector(sr), t_ms / 1000)},
                              lambda w: bool(w["A"] or w["B"]), f"spoofed write {i}")
        check.equal({k: len(v) for k, v in where.items()}, {"A": 1, "B": 0},
                    f"series written with A's token and {header.strip()}: {value} (count per tenant)")
    # reads: A's token with B's header reads A's data, not B's
    b_labels = {"__name__": "stackproof_spoof_b", "stackproof_test": test_id}
    check.status(RemoteWriteClient(target, tenant_b).write([(b_labels, [(t_ms, 1.0)])]), (200, 204), "B writes")
    check.visible("metrics", lambda: promql_b.query(selector(b_labels), t_ms / 1000), bool, "B's series, for B")
    for header, value in spoofs.items():
        http = TenantHTTP(target, tenant_a)
        r = http.get(target.metrics_query_url + "/api/v1/query",
                     params={"query": selector(b_labels), "time": t_ms / 1000}, headers={header.strip(): value})
        check.status(r, 200, "query with a spoofed header")
        check.equal(r.json()["data"]["result"], [], f"A's token with {header.strip()}: {value} reads nothing of B")


def test_plain_http_is_refused(target, tenant_a, test_id, check):
    if not target.gateway_url.startswith("https://"):
        pytest.skip("target gateway is not HTTPS")
    plain = "http://" + target.gateway_url.removeprefix("https://")
    labels = {"stackproof_test": test_id, "job": "plain-http"}
    t_ns = time.time_ns()
    from harness.clients.logs import encode_push_json
    r = requests.post(plain + target.logs_push_path, data=encode_push_json([(labels, [(t_ns, "over plain http")])]),
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {tenant_a.token}"},
                      timeout=10)
    scan(r)  # a plain requests call: its body is scanned for tokens as a tenant session's are
    check.true(r.status_code >= 400, "a push over plain HTTP is refused", f"got {r.status_code}")
    time.sleep(2)
    check.equal(logs_reader(target, tenant_a).entries(Select.of(labels), t_ns - WINDOW, t_ns + WINDOW), [],
                "nothing of the plain-HTTP push is stored")


def test_tls_verifies_with_the_platform_ca_and_fails_with_another(target, tenant_a, tmp_path, check):
    if not target.gateway_url.startswith("https://"):
        pytest.skip("target gateway is not HTTPS")
    url = target.metrics_query_url + "/api/v1/query?query=vector(1)"
    headers = {"Authorization": f"Bearer {tenant_a.token}"}
    r = requests.get(url, headers=headers, verify=target.verify, timeout=10)
    scan(r)  # a plain requests call: its body is scanned for tokens as a tenant session's are
    check.status(r, 200, "with the target's trust (its CA file, else the system store)")
    from cryptography.hazmat.primitives import serialization
    _, other = make_ca("stackproof unrelated CA")
    other_pem = tmp_path / "other-ca.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    others = [("another CA", str(other_pem))]
    if target.ca_file:  # a platform CA of its own: the public trust store must not verify it either
        others.append(("the system trust store", requests.certs.where()))
    for name, verify in others:
        try:
            outcome = f"HTTP {requests.get(url, headers=headers, verify=verify, timeout=10).status_code}"
        except requests.exceptions.SSLError as exc:
            outcome = "SSLError" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else f"SSLError: {str(exc)[:120]}"
        check.equal(outcome, "SSLError", f"TLS with {name} fails certificate verification")


def test_oversized_body_gets_413_and_the_platform_keeps_serving(target, tenant_a, test_id, check):
    big = b"\0" * (target.limits["max_request_bytes"] + 1)
    r = RemoteWriteClient(target, tenant_a).write_raw(big)
    check.status(r, 413, "remote write over the body limit")
    r = LogsPush(target, tenant_a).push_raw(big, "application/x-protobuf")
    check.status(r, 413, "logs push over the body limit")
    r = RemoteWriteClient(target, tenant_a).write_raw(big, REMOTE_WRITE_V2_HEADERS)
    check.status(r, 413, "remote write 2.0 over the body limit")
    if target.has("otlp"):
        client = OTLPClient(target, tenant_a)
        for what, url in (("OTLP metrics", target.metrics_otlp_url), ("OTLP logs", target.logs_otlp_url)):
            check.status(client.raw(url, big, {"Content-Type": otlp.PROTOBUF}), 413, f"{what} over the body limit")
    _good_writes_still_work(target, tenant_a, test_id, check)


BAD_BODIES = {
    "bad snappy": lambda: b"\x00\xff not snappy at all",
    "snappy of bad protobuf": lambda: bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff\x01garbage")),
    "snappy of random bytes": lambda: bytes(cramjam.snappy.compress_raw(secrets.token_bytes(256))),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_malformed_bodies_get_4xx_and_good_writes_still_work(target, tenant_a, test_id, check, case):
    body = BAD_BODIES[case]()
    r = RemoteWriteClient(target, tenant_a).write_raw(body)
    check.true(400 <= r.status_code < 500, f"remote write of {case} gets a 4xx", f"got {r.status_code}")
    r = LogsPush(target, tenant_a).push_raw(body, "application/x-protobuf")
    check.true(400 <= r.status_code < 500, f"logs push of {case} gets a 4xx", f"got {r.status_code}")
    _good_writes_still_work(target, tenant_a, test_id, check)


def test_wrong_content_type_gets_4xx(target, tenant_a, test_id, check):
    r = RemoteWriteClient(target, tenant_a).write_raw(bytes(cramjam.snappy.compress_raw(b"")),
                                                      headers={"Content-Type": "text/plain"})
    check.true(400 <= r.status_code < 500, "remote write as text/plain gets a 4xx", f"got {r.status_code}")
    r = LogsPush(target, tenant_a).push_raw(b"just text", "text/plain")
    check.true(400 <= r.status_code < 500, "logs push as text/plain gets a 4xx", f"got {r.status_code}")
    r = LogsPush(target, tenant_a).push_raw(b'{"streams": [', "application/json")
    check.true(400 <= r.status_code < 500, "logs push of truncated JSON gets a 4xx", f"got {r.status_code}")
    _good_writes_still_work(target, tenant_a, test_id, check)


def _good_writes_still_work(target, tenant, test_id, check):
    t_ms = int(time.time() * 1000)
    labels = {"__name__": "stackproof_after_bad_input", "stackproof_test": test_id, "at": str(t_ms)}
    check.status(RemoteWriteClient(target, tenant).write([(labels, [(t_ms, 1.0)])]), (200, 204), "a good write after")
    stream = {"stackproof_test": test_id, "at": str(t_ms)}
    check.status(LogsPush(target, tenant).push_json([(stream, [(t_ms * 10**6, "good")])]), 204, "a good push after")
    promql, reader = PromQLClient(target, tenant), logs_reader(target, tenant)
    check.visible("metrics", lambda: promql.query(selector(labels), t_ms / 1000 + 1), bool, "the good sample")
    check.visible("logs", lambda: reader.entries(Select.of(stream), t_ms * 10**6 - WINDOW, t_ms * 10**6 + WINDOW),
                  bool, "the good line")


def test_a_push_with_a_repeated_label_is_refused_or_keeps_the_last_value_and_the_store_survives(request, target,
                                                                                                own_platform, check):
    """A stream with one label name twice is bad input. On a platform of its
    own (the push may bring the store down): the push must get a 4xx with
    nothing stored, or a 2xx with the line stored under the label's last value
    only (Loki's rule, suites/survival.py); the store must keep running and
    serving, and no acknowledged line of any tenant may be lost. A gateway
    cannot cheaply mend this: it would have to decode every snappy protobuf and
    JSON push (nginx has no parser for either), and the same crash comes
    through OTLP resource attributes."""
    known_defect(request, own_platform, "repeated-label-crash")
    known_defect(request, own_platform, "repeated-label-kept-twice")
    acked_lines_survive(check, own_platform, repeated_label_push(own_platform))


# providers that publish no logs directory but collect their components' logs on request (the pods' logs)
COLLECTING_PROVIDERS = ("kube", "local-kube", "aws", "gcp")


def _files_to_scan(config, target, scratch: Path) -> list[Path]:
    files: list[Path] = []
    if target.logs_dir and Path(target.logs_dir).is_dir():
        files += sorted(Path(target.logs_dir).glob("*.log"))
    elif target.provider in COLLECTING_PROVIDERS:
        provider = get_provider(target.provider, platform=target.name, target_file=target.path)
        files += [p for p in provider.collect_artifacts(scratch) if p.is_file()]
    # what this run has written so far (the reports plugin scans the same again once all is written)
    return files + files_under(*(getattr(config.option, o, None) for o in ("allure_report_dir", "stackproof_results",
                                                                           "xmlpath")))


def test_no_secret_appears_in_any_log_report_or_attachment(target, pytestconfig, check, tmp_path):
    """Scans the component logs the provider publishes (or, in a cluster, the pods'
    logs, configs and events it collects) and everything this run has written so
    far (Allure results, stackproof results, JUnit). What is written after this
    test (JUnit, report.json and report.html at the session's end) is scanned by
    the reports plugin once everything is written, and by ``stackproof run``."""
    files = _files_to_scan(pytestconfig, target, tmp_path)
    check.true(bool(files), "there are logs or results to scan",
               "no logs_dir in the target, no provider that collects logs, and no --alluredir/--stackproof-results")
    check.equal(find_leaks(files, secrets_of(target)), [], f"secret leaks in {len(files)} files")
