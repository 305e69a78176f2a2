"""The gateway's endpoints, one harmless request each: shared by the smoke and
security suites. The logs reads are the target's dialect's own (its reader
lists them).

:func:`route_reads` is every read the gateway passes, taken from the routes the
components declare (``harness.components.Read``), not from a list of
this file's: a store that adds a path adds its read there, and the security
suite asks it as every tenant. :func:`ask` sends one of them, filled in from
what a test seeded."""

from __future__ import annotations

import time

import cramjam

from harness.clients import logs_reader
from harness.components import LOGS_RULER, LOGS_STORE, Read, by_role, fronted
from harness.clients import otlp
from harness.clients.logs import encode_push_json
from harness.clients.metrics import REMOTE_READ_HEADERS, REMOTE_WRITE_HEADERS, encode_read_request, encode_write_request

# name -> (method, url(target, now), body(now), headers): one request per
# gateway endpoint that succeeds for any tenant and writes nothing others read
# (the push carries one line under a label no test reads)
WRITE_AND_PROMQL = {
    "metrics write": ("POST", lambda t, now: t.metrics_write_url, lambda now: encode_write_request([]),
                      REMOTE_WRITE_HEADERS),
    "promql query": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/query?query=vector(1)",
                     lambda now: None, {}),
    "promql query_range": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/query_range?query=vector(1)"
                           f"&start={now - 60}&end={now}&step=15", lambda now: None, {}),
    "promql series": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/series?match[]=up"
                      f"&start={now - 60}&end={now}", lambda now: None, {}),
    "promql labels": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/labels", lambda now: None, {}),
    "promql label values": ("GET", lambda t, now: f"{t.metrics_query_url}/api/v1/label/__name__/values",
                            lambda now: None, {}),
    "logs push": ("POST", lambda t, now: t.logs_push_url,
                  lambda now: encode_push_json([({"job": "stackproof-smoke-endpoint"}, [(now * 10**9, "ping")])]),
                  {"Content-Type": "application/json"}),
}


# OTLP over HTTP (capability 'otlp'): an empty export of each signal, in protobuf
OTLP = {
    "otlp metrics": ("POST", lambda t, now: t.metrics_otlp_url,
                     lambda now: otlp.encode(otlp.metrics_request([], {}))[0], {"Content-Type": otlp.PROTOBUF}),
    "otlp logs": ("POST", lambda t, now: t.logs_otlp_url,
                  lambda now: otlp.encode(otlp.logs_request([], {}))[0], {"Content-Type": otlp.PROTOBUF}),
}


def _writes(target) -> dict:
    return {**WRITE_AND_PROMQL, **(OTLP if target.has("otlp") else {})}


# the rules and Alertmanager reads (capability 'alerting'): name -> (url(target), what a tenant gets:
# a tenant without rule groups or an Alertmanager config of its own gets 404 from those two)
ALERTING = {
    "rule groups": (lambda t: t.url(t.alerting.rules_path), (200, 404)),
    "alertmanager config": (lambda t: t.url(t.alerting.alertmanager_config_path), (200, 404)),
    "prometheus rules": (lambda t: f"{t.metrics_query_url}/api/v1/rules", (200,)),
    "prometheus alerts": (lambda t: f"{t.metrics_query_url}/api/v1/alerts", (200,)),
    "alertmanager alerts": (lambda t: t.url(t.alerting.alertmanager_path) + "/api/v2/alerts", (200,)),
    "alertmanager silences": (lambda t: t.url(t.alerting.alertmanager_path) + "/api/v2/silences", (200,)),
}
LOG_ALERTING = {
    "log rules": (lambda t: f"{t.logs_rules_url}/api/v1/rules", (200,)),
    "log alerts": (lambda t: f"{t.logs_rules_url}/api/v1/alerts", (200,)),
}


def _alerting(target) -> dict:
    return {**(ALERTING if target.has("alerting") else {}),
            **(LOG_ALERTING if target.has("log-alerting") and target.logs_api == "victorialogs" else {})}


def endpoint_names(target) -> list[str]:
    return [*_writes(target), *logs_reader(target, None).endpoints(time.time_ns()), *_alerting(target)]


def ok_statuses(target, name: str) -> tuple[int, ...]:
    """What a tenant's request to the named endpoint is answered with."""
    return _alerting(target)[name][1] if name in _alerting(target) else (200, 204)


def request_endpoint(session, target, name: str):
    """Send the named endpoint's request with ``session`` (a tenant's, or anonymous)."""
    now = int(time.time())
    if name in _writes(target):
        method, url, body, headers = _writes(target)[name]
        return session.request(method, url(target, now), data=body(now), headers=headers)
    if name in _alerting(target):
        return session.get(_alerting(target)[name][0](target))
    path, params = logs_reader(target, None).endpoints(time.time_ns())[name]
    return session.get(f"{target.logs_query_url}/{path}", params=params)


# -- every read a route declares ------------------------------------------------------------

def route_reads(target) -> list[Read]:
    """Every read of every route the gateway passes, for this target: the metrics store's; the logs
    store's and its rule evaluator's if the target speaks that store's dialect; only those whose
    capability the target declares."""
    logs_dialect = getattr(by_role(LOGS_STORE), "dialect", None)
    out = []
    for c in fronted():
        if c.role in (LOGS_STORE, LOGS_RULER) and target.logs_api != logs_dialect:
            continue
        out += [r for route in c.routes for r in route.reads
                if not r.needs or target.has(r.needs)]
    return out


def ask(session, read: Read, ctx: dict):
    """Send ``read`` with ``session`` (a tenant's), its templates filled from ``ctx`` (what a test
    seeded and a nonce): (the response, the answer's bytes, unpacked if packed)."""
    params = [(k, v.format(**ctx)) for k, v in read.params]
    data, headers = None, {}
    if read.body == "remote-read":
        data = encode_read_request([(0, "stackproof_test", ctx["marker"]), (1, "stackproof_nonce", str(ctx["nonce"]))],
                                int(float(ctx["start_s"]) * 1000), int(float(ctx["end_s"]) * 1000))
        headers = REMOTE_READ_HEADERS
    elif read.body:
        raise ValueError(f"read {read.name!r}: unknown body {read.body!r}")
    r = session.request(read.method, read.path.format(**ctx), params=params, data=data, headers=headers)
    body = r.content
    if read.decode == "snappy" and r.status_code == 200:
        body = bytes(cramjam.snappy.decompress_raw(body))
    return r, body
