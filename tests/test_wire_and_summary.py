"""Wire formats (decoded back with the same protobuf descriptors), PromQL and
stream-key quoting, the session summary, and the token scan."""

from __future__ import annotations

import json
import math

import cramjam

from harness import proto
from harness.leaks import find_leaks, secrets_of
from harness.clients.logs import encode_push_json, encode_push_proto, stream_key
from harness.clients.metrics import encode_write_request, promql_string, selector
from harness.summary import percentile, summarize
from harness.target import Target, Tenant


def test_remote_write_body_is_snappy_protobuf_with_sorted_labels():
    body = encode_write_request([({"z": "1", "__name__": "m", "a": "ü"}, [(1000, 1.5), (2000, -0.0)])])
    req = proto.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    ts = req.timeseries[0]
    assert [(label.name, label.value) for label in ts.labels] == [("__name__", "m"), ("a", "ü"), ("z", "1")]
    assert [(s.timestamp, s.value) for s in ts.samples] == [(1000, 1.5), (2000, 0.0)]
    assert math.copysign(1, ts.samples[1].value) == -1  # negative zero goes out as written


def test_loki_protocol_protobuf_push_carries_nanoseconds_and_structured_metadata():
    body = encode_push_proto([({"job": "x", "b": "2"}, [(1_700_000_000_123_456_789, "line", {"trace": "t1"})])])
    req = proto.PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    s = req.streams[0]
    assert s.labels == '{b="2",job="x"}'
    e = s.entries[0]
    assert (e.timestamp.seconds, e.timestamp.nanos, e.line) == (1_700_000_000, 123_456_789, "line")
    assert [(m.name, m.value) for m in e.structuredMetadata] == [("trace", "t1")]


def test_loki_protocol_json_push():
    body = json.loads(encode_push_json([({"job": "x"}, [(5, "a"), (6, "b", {"k": "v"})])]))
    assert body == {"streams": [{"stream": {"job": "x"}, "values": [["5", "a"], ["6", "b", {"k": "v"}]]}]}


def test_selectors_escape_what_needs_escaping():
    assert promql_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert selector({"__name__": "m", "v": 'q"'}) == '{__name__="m",v="q\\""}'
    assert stream_key({"v": 'q"', "a": "ü"}) == '{a="ü",v="q\\""}'


def test_percentiles_and_summary():
    vals = [float(i) for i in range(1, 101)]
    assert percentile(vals, 50) == 50.0 and percentile(vals, 95) == 95.0 and percentile(vals, 100) == 100.0
    s = summarize(7, {"metrics": [0.3, 0.1, 0.2], "logs": []})
    assert s == {"checks": 7, "visibility_seconds": {"metrics": {"n": 3, "p50": 0.2, "p95": 0.3, "max": 0.3}}}


def test_token_scan_names_the_file_never_the_token(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log.txt").write_text("Authorization: Bearer s3cr3t-token-value\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    (tmp_path / "s3.txt").write_text("key=very-secret-key\n")
    target = Target(name="t", gateway_url="https://gw", tenants=[Tenant("team-a", "s3cr3t-token-value", "user", 1),
                                                                 Tenant("team-b", "other-token", "user", 2)],
                    object_storage={"type": "s3", "secret_access_key": "very-secret-key"})
    leaks = find_leaks(sorted(p for p in tmp_path.rglob("*") if p.is_file()), secrets_of(target))
    assert leaks == [f"{tmp_path / 'a' / 'log.txt'} holds tenant team-a's token",
                     f"{tmp_path / 's3.txt'} holds the object storage secret key"]
    assert not any("s3cr3t" in x or "very-secret" in x for x in leaks)
