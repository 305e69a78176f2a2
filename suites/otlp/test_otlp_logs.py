"""OTLP logs (``logs.otlp_path``, protobuf) then the logs store's reads, exact
to the line and the nanosecond: the body, the record's time (else its observed
time), severity, trace and span ids, log and scope attributes as fields, and
resource attributes as the stream, as VictoriaLogs documents its OTLP mapping;
a JSON body is refused (VictoriaLogs takes OTLP protobuf only); a repeated
resource attribute is bad input, refused or kept once, that the store must
survive; tenants stay apart."""

from __future__ import annotations

import time

import pytest

from fixtures.defects import known_defect, store_version
from harness.binaries import version_tuple
from harness.clients import Select, logs_reader
from harness.clients import otlp as o
from harness.components import LOGS_STORE

from ..survival import acked_lines_survive, repeated_resource_attribute_export

pytestmark = [pytest.mark.otlp]

WINDOW = 60 * 10**9
# the text a record without one gets for its severity number: OpenTelemetry's short names
# (pdata's SeverityNumber.String()), which VictoriaLogs uses: 0 Unspecified, 1 Trace .. 24 Fatal4
SEVERITY_TEXT = ["Unspecified"] + [f"{level}{n if n > 1 else ''}" for level in ("Trace", "Debug", "Info", "Warn",
                                                                               "Error", "Fatal")
                                   for n in range(1, 5)]


def _text(v: object) -> str:
    """An attribute value as VictoriaLogs stores it: bools as true/false."""
    return str(v).lower() if isinstance(v, bool) else str(v)


@pytest.fixture(autouse=True)
def _needs_otlp_on_victorialogs(target):
    if not target.has("otlp"):
        pytest.skip(f"target {target.name!r} has no 'otlp' capability (OTLP through its gateway)")
    if target.logs_api != "victorialogs":
        pytest.skip(f"the OTLP logs mapping is written here for VictoriaLogs; target {target.name!r} "
                    f"has logs api {target.logs_api!r}")


def _resource(test_id: str) -> dict:
    return {"service.name": "stackproof-otlp", "service.instance.id": test_id, "host.name": "node-1"}


def _fields(rec, version: str | None, scope=("stackproof", "1")) -> dict:
    """The fields VictoriaLogs makes of one record, beside the stream, the time and the message:
    before v1.25 (VictoriaMetrics' app/vlinsert) one 'severity' field and no scope; since, the
    scope's name and version and the severity's number and text apart (a target of no known
    release is taken to be of the newer kind)."""
    severity = rec.severity_text or SEVERITY_TEXT[rec.severity_number]
    if version and version_tuple(version) < (1, 25):
        out = {"severity": severity}
    else:
        out = {"scope.name": scope[0], "scope.version": scope[1], "severity_number": str(rec.severity_number),
               "severity_text": severity}
    out.update({kv.key: _text(getattr(kv.value, kv.value.WhichOneof("value"))) for kv in rec.attributes})
    if rec.trace_id:
        out["trace_id"] = rec.trace_id.hex()
    if rec.span_id:
        out["span_id"] = rec.span_id.hex()
    return out


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_records_round_trip_with_their_fields_and_stream(target, tenant_a, test_id, check, compress):
    t0 = time.time_ns() - 20 * 10**9
    records = [o.log_record(t0 + i * 1_000_003, f"otlp line {i} of {test_id} \u00e9\u4e2d",
                            severity=(1, 5, 9, 13, 17, 21)[i % 6], severity_text="" if i % 2 else "Custom",
                            attrs={"stackproof_test": test_id, "seq": i, "ok": i % 3 == 0},
                            trace_id=bytes(range(i, i + 16)), span_id=bytes(range(i, i + 8)))
               for i in range(12)]
    req = o.logs_request(records, _resource(test_id))
    version = store_version(target, LOGS_STORE)
    check.status(o.OTLPClient(target, tenant_a).logs(req, compress=compress), (200, 204),
                 f"OTLP logs export{' (gzip)' if compress else ''}")
    reader = logs_reader(target, tenant_a)
    sel = Select.of(_resource(test_id))
    check.query("stream", reader.query_text(sel))
    got = check.visible("logs", lambda: reader.read(sel, t0 - WINDOW, t0 + WINDOW),
                        lambda e: len(e) >= len(records), "the OTLP records")
    check.equal([(e.ts, e.labels, e.line, e.metadata) for e in got],
                [(r.time_unix_nano, _resource(test_id), r.body.string_value, _fields(r, version)) for r in records],
                "every record: ns timestamp, resource attributes as the stream, body, and its fields")


def test_a_record_without_a_time_takes_its_observed_time(target, tenant_a, test_id, check):
    observed = time.time_ns() - 10 * 10**9
    rec = o.log_record(0, f"observed only {test_id}", severity=9, observed_ns=observed,
                       attrs={"stackproof_test": test_id})
    check.status(o.OTLPClient(target, tenant_a).logs(o.logs_request([rec], _resource(test_id))), (200, 204),
                 "an export of a record with only an observed time")
    reader = logs_reader(target, tenant_a)
    got = check.visible("logs", lambda: reader.entries(Select.of(_resource(test_id)), observed - WINDOW,
                                                       observed + WINDOW), bool, "the record")
    check.equal(got, [(observed, f"observed only {test_id}")], "the record at its observed time, to the ns")


def test_a_json_body_is_refused_and_protobuf_exports_around_it_kept(target, tenant_a, test_id, check):
    t = time.time_ns() - 10 * 10**9
    client = o.OTLPClient(target, tenant_a)
    before, after = (o.log_record(t + i, f"{w} json {test_id}", attrs={"stackproof_test": test_id})
                     for i, w in ((0, "before"), (2, "after")))
    check.status(client.logs(o.logs_request([before], _resource(test_id))), (200, 204), "protobuf before")
    r = client.logs(o.logs_request([o.log_record(t + 1, "as json")], _resource(test_id)), o.JSON)
    check.status(r, 400, "an OTLP/JSON logs export (VictoriaLogs takes protobuf only)")
    for what, (body, ctype) in {"malformed protobuf": (b"\x0a\xff\xff\xff\xff\x0f", o.PROTOBUF),
                                "gzip header on a plain body": (b"\x0a\x00", o.PROTOBUF)}.items():
        headers = {"Content-Type": ctype, **({"Content-Encoding": "gzip"} if "gzip" in what else {})}
        bad = client.raw(target.logs_otlp_url, body, headers)
        check.true(400 <= bad.status_code < 500, f"the {what} gets a 4xx",
                   f"{bad.status_code} {bad.text.strip()[:200]}")
    check.status(client.logs(o.logs_request([after], _resource(test_id))), (200, 204), "protobuf after")
    reader = logs_reader(target, tenant_a)
    got = check.visible("logs", lambda: reader.entries(Select.of(_resource(test_id)), t - WINDOW, t + WINDOW),
                        lambda e: len(e) >= 2, "the protobuf records")
    check.equal(got, [(t, f"before json {test_id}"), (t + 2, f"after json {test_id}")],
                "the good exports around the refused ones, and nothing of those")


def test_a_tenant_reads_only_its_own_otlp_records(target, tenant_a, tenant_b, test_id, check):
    t = time.time_ns() - 10 * 10**9
    rec = o.log_record(t, f"private {test_id}", attrs={"stackproof_test": test_id})
    check.status(o.OTLPClient(target, tenant_a).logs(o.logs_request([rec], _resource(test_id))), (200, 204),
                 "tenant A's OTLP export")
    sel = Select.of(_resource(test_id))
    check.visible("logs", lambda: logs_reader(target, tenant_a).entries(sel, t - WINDOW, t + WINDOW), bool,
                  "A's record, for A")
    check.equal(logs_reader(target, tenant_b).entries(sel, t - WINDOW, t + WINDOW), [], "A's OTLP record, for B")


def test_a_repeated_resource_attribute_is_refused_or_keeps_the_last_value_and_the_store_survives(request, target,
                                                                                                 own_platform, check):
    """A resource with one attribute twice is bad input (OTLP keys are unique). On a
    platform of its own: the export must get a 4xx with nothing stored, or a 2xx with
    the record stored under the attribute's last value only (suites/survival.py); the
    store must keep running and serving, and no acknowledged line of any tenant may
    be lost."""
    known_defect(request, own_platform, "repeated-resource-attribute-crash")
    known_defect(request, own_platform, "repeated-resource-attribute-kept-twice")
    acked_lines_survive(check, own_platform, repeated_resource_attribute_export(own_platform))
