"""Protobuf messages of the write paths, built with the ``protobuf`` library
from descriptors declared here (no protoc step, no generated files to drift
from the installed runtime):

- Prometheus remote write 1.0 (``prometheus.WriteRequest``, from
  prometheus/prompb/remote.proto and types.proto; gogoproto options dropped,
  field numbers and types as upstream);
- the Loki push protocol (``logproto.PushRequest``, from pkg/push/push.proto, an
  Apache-2.0 module of its own), which VictoriaLogs and Loki both accept.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import timestamp_pb2  # noqa: F401  (registers google/protobuf/timestamp.proto)

F = descriptor_pb2.FieldDescriptorProto
_REP, _OPT = F.LABEL_REPEATED, F.LABEL_OPTIONAL

# (message, [(field, number, type, label, type_name)])
_PROM = ("prometheus", "stackproof/prompb.proto", [
    ("WriteRequest", [("timeseries", 1, F.TYPE_MESSAGE, _REP, ".prometheus.TimeSeries"),
                      ("metadata", 3, F.TYPE_MESSAGE, _REP, ".prometheus.MetricMetadata")]),
    ("TimeSeries", [("labels", 1, F.TYPE_MESSAGE, _REP, ".prometheus.Label"),
                    ("samples", 2, F.TYPE_MESSAGE, _REP, ".prometheus.Sample"),
                    ("exemplars", 3, F.TYPE_MESSAGE, _REP, ".prometheus.Exemplar")]),
    ("Label", [("name", 1, F.TYPE_STRING, _OPT, None), ("value", 2, F.TYPE_STRING, _OPT, None)]),
    ("Sample", [("value", 1, F.TYPE_DOUBLE, _OPT, None), ("timestamp", 2, F.TYPE_INT64, _OPT, None)]),
    ("Exemplar", [("labels", 1, F.TYPE_MESSAGE, _REP, ".prometheus.Label"),
                  ("value", 2, F.TYPE_DOUBLE, _OPT, None), ("timestamp", 3, F.TYPE_INT64, _OPT, None)]),
    ("MetricMetadata", [("type", 1, F.TYPE_INT32, _OPT, None),  # enum MetricType on the wire
                        ("metric_family_name", 2, F.TYPE_STRING, _OPT, None),
                        ("help", 4, F.TYPE_STRING, _OPT, None), ("unit", 5, F.TYPE_STRING, _OPT, None)]),
], [])

_LOKI = ("logproto", "stackproof/push.proto", [
    ("PushRequest", [("streams", 1, F.TYPE_MESSAGE, _REP, ".logproto.StreamAdapter")]),
    ("StreamAdapter", [("labels", 1, F.TYPE_STRING, _OPT, None),
                       ("entries", 2, F.TYPE_MESSAGE, _REP, ".logproto.EntryAdapter"),
                       ("hash", 3, F.TYPE_UINT64, _OPT, None)]),
    ("EntryAdapter", [("timestamp", 1, F.TYPE_MESSAGE, _OPT, ".google.protobuf.Timestamp"),
                      ("line", 2, F.TYPE_STRING, _OPT, None),
                      ("structuredMetadata", 3, F.TYPE_MESSAGE, _REP, ".logproto.LabelPairAdapter")]),
    ("LabelPairAdapter", [("name", 1, F.TYPE_STRING, _OPT, None), ("value", 2, F.TYPE_STRING, _OPT, None)]),
], ["google/protobuf/timestamp.proto"])


def _build(spec) -> dict:
    package, filename, messages, deps = spec
    fdp = descriptor_pb2.FileDescriptorProto(name=filename, package=package, syntax="proto3", dependency=deps)
    for mname, fields in messages:
        m = fdp.message_type.add(name=mname)
        for fname, num, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label, json_name=fname)
            if type_name:
                f.type_name = type_name
    pool = descriptor_pool.Default()
    try:
        fd = pool.FindFileByName(filename)
    except KeyError:
        fd = pool.Add(fdp) and pool.FindFileByName(filename)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name]) for name, _ in messages}


_prom = _build(_PROM)
_loki = _build(_LOKI)

WriteRequest = _prom["WriteRequest"]
TimeSeries = _prom["TimeSeries"]
Label = _prom["Label"]
Sample = _prom["Sample"]
MetricMetadata = _prom["MetricMetadata"]

PushRequest = _loki["PushRequest"]
StreamAdapter = _loki["StreamAdapter"]
EntryAdapter = _loki["EntryAdapter"]
LabelPairAdapter = _loki["LabelPairAdapter"]
