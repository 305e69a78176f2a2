"""Tokens, tenant isolation, TLS and malformed input, through the gateway."""

from __future__ import annotations

import secrets
import ssl
import time
from pathlib import Path

import cramjam
import pytest
import requests
import websocket

from harness.clients import LokiClient, MetricsMetadataClient, PromQLClient, RemoteWriteClient, TenantHTTP
from harness.clients.logs import logql_selector
from harness.clients.metrics import selector
from harness.target import Tenant
from harness.tls import make_ca

from ..endpoints import ENDPOINTS, request_endpoint

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


@pytest.mark.parametrize("name", [*ENDPOINTS, "unknown path"])
def test_no_token_and_wrong_tokens_get_401(target, tenant_session, check, name):
    def send(session):
        if name == "unknown path":
            return session.get("/no/such/path")
        return request_endpoint(session, target, name)

    check.status(send(tenant_session(None)), 401, f"{name} without a token")
    for label, token in _wrong_tokens(target).items():
        s = tenant_session(None)
        s.headers["Authorization"] = f"Bearer {token}"
        check.status(send(s), 401, f"{name} with {label}")
    s = tenant_session(None)
    s.headers["Authorization"] = "Basic " + "dGVuYW50LWE6cGFzcw=="
    check.status(send(s), 401, f"{name} with basic auth")


def _tail_status(target, tenant: Tenant | None, token: str | None = None) -> int:
    url = target.logs_query_url.replace("https://", "wss://", 1) + "/tail?query=" + '{job="x"}'
    headers = [f"Authorization: Bearer {token or tenant.token}"] if (token or tenant) else []
    try:
        ws = websocket.create_connection(url, header=headers, timeout=10,
                                         sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": target.ca_file})
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.close()
    return 101


def test_tail_websocket_needs_a_token(target, tenant_a, check):
    if not target.has("tail"):
        pytest.skip(f"target {target.name!r} has no 'tail' capability")
    check.equal(_tail_status(target, None), 401, "tail without a token")
    check.equal(_tail_status(target, None, token=secrets.token_urlsafe(32)), 401, "tail with a wrong token")
    check.equal(_tail_status(target, tenant_a), 101, "tail with a good token (control)")


@pytest.fixture
def a_data(target, tenant_a, test_id, check):
    """Tenant A writes one series and one stream and sees them (the positive control)."""
    t_ms = int(time.time() * 1000) - 5_000
    series = {"__name__": "stackproof_private", "stackproof_test": test_id, "owner": tenant_a.name}
    stream = {"stackproof_test": test_id, "owner": tenant_a.name}
    check.status(RemoteWriteClient(target, tenant_a).write([(series, [(t_ms, 7.0)])]), (200, 204), "A writes")
    check.status(LokiClient(target, tenant_a).push_json([(stream, [(t_ms * 10**6, "A's private line")])]), 204,
                 "A pushes")
    promql, loki = PromQLClient(target, tenant_a), LokiClient(target, tenant_a)
    check.visible("metrics", lambda: promql.query(selector(series), t_ms / 1000), bool, "A's series, for A")
    check.visible("logs", lambda: loki.entries(logql_selector(stream), t_ms * 10**6 - WINDOW,
                                               t_ms * 10**6 + WINDOW), bool, "A's stream, for A")
    return t_ms, series, stream


def test_other_tenants_cannot_read_a_tenants_data_through_any_api(target, tenant_a, a_data, check):
    t_ms, series, stream = a_data
    t_ns = t_ms * 10**6
    sel = f'{{stackproof_test="{series["stackproof_test"]}"}}'
    for other in [t for t in target.tenants if t.name != tenant_a.name]:
        promql, meta, loki = PromQLClient(target, other), MetricsMetadataClient(target, other), LokiClient(target, other)
        s, e = t_ms / 1000 - 600, t_ms / 1000 + 600
        seen = {
            "promql query": promql.query(sel, t_ms / 1000),
            "promql query_range": promql.query_range(sel, s, e, "15s"),
            "series": meta.series(sel, s, e),
            "labels": [x for x in meta.labels(sel, s, e) if x in series and x != "__name__"],
            "label values": meta.label_values("owner", sel, s, e),
            "logql query_range": loki.query_range(sel, t_ns - WINDOW, t_ns + WINDOW)["data"]["result"],
            "logql count_over_time": loki.query(f"count_over_time({sel}[1h])", t_ns + 10**9)["result"],
            "logql labels": [x for x in loki.labels(t_ns - WINDOW, t_ns + WINDOW, query=sel) if x in stream],
            "logql label values": loki.label_values("owner", t_ns - WINDOW, t_ns + WINDOW, query=sel),
            "logql series": loki.series(sel, t_ns - WINDOW, t_ns + WINDOW),
        }
        check.equal(seen, {k: [] for k in seen}, f"what {other.name} sees of {tenant_a.name}'s data")


def test_tail_of_another_tenant_receives_nothing(target, tenant_a, tenant_b, test_id, check):
    if not target.has("tail"):
        pytest.skip(f"target {target.name!r} has no 'tail' capability")
    labels = {"stackproof_test": test_id, "owner": tenant_a.name}
    q = logql_selector(labels)
    with LokiClient(target, tenant_b).tail(q) as b_tail, LokiClient(target, tenant_a).tail(q) as a_tail:
        time.sleep(1.0)
        t0 = time.time_ns()
        lines = [(t0 + i, f"secret {i}") for i in range(10)]
        check.status(LokiClient(target, tenant_a).push_json([(labels, lines)]), 204, "A pushes while both tail")
        a_got = a_tail.wait_for(len(lines), timeout=30)  # once A has them all, B had the same chance
        time.sleep(1.0)
        b_got = list(b_tail.entries)
    check.equal(len(a_got), len(lines), "A's own tail receives A's lines (control)")
    check.equal(b_got, [], "B's tail on the same selector receives nothing")


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
    r = LokiClient(target, tenant_a).http.get(target.logs_query_url + "/labels", headers={"X-Scope-OrgID": "x"})
    check.status(r, 200, "logs read with a spoofed header is answered as A")


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
    check.true(r.status_code >= 400, "a push over plain HTTP is refused", f"got {r.status_code}")
    time.sleep(2)
    check.equal(LokiClient(target, tenant_a).entries(logql_selector(labels), t_ns - WINDOW, t_ns + WINDOW), [],
                "nothing of the plain-HTTP push is stored")


def test_tls_verifies_with_the_platform_ca_and_fails_with_another(target, tenant_a, tmp_path, check):
    if not target.gateway_url.startswith("https://"):
        pytest.skip("target gateway is not HTTPS")
    url = target.metrics_query_url + "/api/v1/query?query=vector(1)"
    headers = {"Authorization": f"Bearer {tenant_a.token}"}
    check.status(requests.get(url, headers=headers, verify=target.verify, timeout=10), 200,
                 "with the target's trust (its CA file, else the system store)")
    from cryptography.hazmat.primitives import serialization
    _, other = make_ca("stackproof unrelated CA")
    other_pem = tmp_path / "other-ca.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    others = [("another CA", str(other_pem))]
    if target.ca_file:  # a platform CA of its own: the public trust store must not verify it either
        others.append(("the system trust store", requests.certs.where()))
    for name, verify in others:
        try:
            r = requests.get(url, headers=headers, verify=verify, timeout=10)
            check.true(False, f"TLS with {name} must fail", f"got HTTP {r.status_code}")
        except requests.exceptions.SSLError:
            check.true(True, f"TLS with {name} fails verification")


def test_oversized_body_gets_413_and_the_platform_keeps_serving(target, tenant_a, test_id, check):
    big = b"\0" * (target.limits["max_request_bytes"] + 1)
    r = RemoteWriteClient(target, tenant_a).write_raw(big)
    check.status(r, 413, "remote write over the body limit")
    r = LokiClient(target, tenant_a).http.post(target.logs_push_url, data=big,
                                               headers={"Content-Type": "application/x-protobuf"})
    check.status(r, 413, "logs push over the body limit")
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
    r = LokiClient(target, tenant_a).http.post(target.logs_push_url, data=body,
                                               headers={"Content-Type": "application/x-protobuf"})
    check.true(400 <= r.status_code < 500, f"logs push of {case} gets a 4xx", f"got {r.status_code}")
    _good_writes_still_work(target, tenant_a, test_id, check)


def test_wrong_content_type_gets_4xx(target, tenant_a, test_id, check):
    r = RemoteWriteClient(target, tenant_a).write_raw(bytes(cramjam.snappy.compress_raw(b"")),
                                                      headers={"Content-Type": "text/plain"})
    check.true(400 <= r.status_code < 500, "remote write as text/plain gets a 4xx", f"got {r.status_code}")
    r = LokiClient(target, tenant_a).http.post(target.logs_push_url, data=b"just text",
                                               headers={"Content-Type": "text/plain"})
    check.true(400 <= r.status_code < 500, "logs push as text/plain gets a 4xx", f"got {r.status_code}")
    r = LokiClient(target, tenant_a).http.post(target.logs_push_url, data=b'{"streams": [',
                                               headers={"Content-Type": "application/json"})
    check.true(400 <= r.status_code < 500, "logs push of truncated JSON gets a 4xx", f"got {r.status_code}")
    _good_writes_still_work(target, tenant_a, test_id, check)


def _good_writes_still_work(target, tenant, test_id, check):
    t_ms = int(time.time() * 1000)
    labels = {"__name__": "stackproof_after_bad_input", "stackproof_test": test_id, "at": str(t_ms)}
    check.status(RemoteWriteClient(target, tenant).write([(labels, [(t_ms, 1.0)])]), (200, 204), "a good write after")
    stream = {"stackproof_test": test_id, "at": str(t_ms)}
    check.status(LokiClient(target, tenant).push_json([(stream, [(t_ms * 10**6, "good")])]), 204, "a good push after")
    promql, loki = PromQLClient(target, tenant), LokiClient(target, tenant)
    check.visible("metrics", lambda: promql.query(selector(labels), t_ms / 1000 + 1), bool, "the good sample")
    check.visible("logs", lambda: loki.entries(logql_selector(stream), t_ms * 10**6 - WINDOW, t_ms * 10**6 + WINDOW),
                  bool, "the good line")


def _files_to_scan(config, target) -> list[Path]:
    files: list[Path] = []
    if target.logs_dir and Path(target.logs_dir).is_dir():
        files += sorted(Path(target.logs_dir).glob("*.log"))
    for opt in ("allure_report_dir", "stackproof_results"):
        d = getattr(config.option, opt, None)
        if d and Path(d).is_dir():
            files += sorted(p for p in Path(d).rglob("*") if p.is_file())
    junit = getattr(config.option, "xmlpath", None)
    if junit and Path(junit).is_file():
        files.append(Path(junit))
    return files


def test_no_secret_appears_in_any_log_report_or_attachment(target, pytestconfig, check):
    """Scans the component logs the provider publishes and everything this
    run has written so far (Allure results, stackproof results, JUnit)."""
    files = _files_to_scan(pytestconfig, target)
    check.true(bool(files), "there are logs or results to scan",
               "no logs_dir in the target and no --alluredir/--stackproof-results")
    tokens = {f"{t.name}'s token": t.token.encode() for t in target.tenants}
    if (target.object_storage or {}).get("secret_access_key"):
        tokens["the object storage secret key"] = target.object_storage["secret_access_key"].encode()
    leaks = []
    for f in files:
        data = f.read_bytes()
        leaks += [f"{f} holds {name}" for name, tok in tokens.items() if tok in data]
    check.equal(leaks, [], f"secret leaks in {len(files)} files")
