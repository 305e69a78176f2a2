"""Protobuf messages of the write paths, built with the ``protobuf`` library
from descriptors declared here (no protoc step, no generated files to drift
from the installed runtime):

- Prometheus remote write 1.0 (``prometheus.WriteRequest``, from
  prometheus/prompb/remote.proto and types.proto; gogoproto options dropped,
  field numbers and types as upstream), and remote read's ``ReadRequest``;
- Prometheus remote write 2.0 (``io.prometheus.write.v2.Request``, from
  prometheus/prompb/io/prometheus/write/v2/types.proto at v0.308.1: the
  symbol table, label references, samples, native histograms, exemplars and
  metadata; gogoproto options dropped, field numbers and types as upstream);
- the Prometheus exposition format in protobuf (``io.prometheus.client.MetricFamily``,
  from client_model's metrics.proto, proto2), for an exporter a real Prometheus scrapes
  native histograms from;
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
    # remote read (remote.proto): a read request's queries and their matchers (hints left out)
    ("ReadRequest", [("queries", 1, F.TYPE_MESSAGE, _REP, ".prometheus.Query")]),
    ("Query", [("start_timestamp_ms", 1, F.TYPE_INT64, _OPT, None), ("end_timestamp_ms", 2, F.TYPE_INT64, _OPT, None),
               ("matchers", 3, F.TYPE_MESSAGE, _REP, ".prometheus.LabelMatcher")]),
    ("LabelMatcher", [("type", 1, F.TYPE_INT32, _OPT, None),  # enum Type: EQ 0, NEQ 1, RE 2, NRE 3
                      ("name", 2, F.TYPE_STRING, _OPT, None), ("value", 3, F.TYPE_STRING, _OPT, None)]),
], [])

_SINT32, _SINT64, _UINT32, _UINT64, _DOUBLE, _INT64 = (F.TYPE_SINT32, F.TYPE_SINT64, F.TYPE_UINT32, F.TYPE_UINT64,
                                                      F.TYPE_DOUBLE, F.TYPE_INT64)
_MSG = F.TYPE_MESSAGE
_PRW2 = ("io.prometheus.write.v2", "stackproof/prw2.proto", [
    ("Request", [("symbols", 4, F.TYPE_STRING, _REP, None),
                 ("timeseries", 5, _MSG, _REP, ".io.prometheus.write.v2.TimeSeries")]),
    ("TimeSeries", [("labels_refs", 1, _UINT32, _REP, None),
                    ("samples", 2, _MSG, _REP, ".io.prometheus.write.v2.Sample"),
                    ("histograms", 3, _MSG, _REP, ".io.prometheus.write.v2.Histogram"),
                    ("exemplars", 4, _MSG, _REP, ".io.prometheus.write.v2.Exemplar"),
                    ("metadata", 5, _MSG, _OPT, ".io.prometheus.write.v2.Metadata")]),
    ("Exemplar", [("labels_refs", 1, _UINT32, _REP, None), ("value", 2, _DOUBLE, _OPT, None),
                  ("timestamp", 3, _INT64, _OPT, None)]),
    ("Sample", [("value", 1, _DOUBLE, _OPT, None), ("timestamp", 2, _INT64, _OPT, None)]),
    ("Metadata", [("type", 1, F.TYPE_INT32, _OPT, None),  # enum MetricType on the wire
                  ("help_ref", 3, _UINT32, _OPT, None), ("unit_ref", 4, _UINT32, _OPT, None)]),
    # the oneofs count and zero_count are plain fields here: a sender sets one of each pair
    ("Histogram", [("count_int", 1, _UINT64, _OPT, None), ("count_float", 2, _DOUBLE, _OPT, None),
                   ("sum", 3, _DOUBLE, _OPT, None), ("schema", 4, _SINT32, _OPT, None),
                   ("zero_threshold", 5, _DOUBLE, _OPT, None), ("zero_count_int", 6, _UINT64, _OPT, None),
                   ("zero_count_float", 7, _DOUBLE, _OPT, None),
                   ("negative_spans", 8, _MSG, _REP, ".io.prometheus.write.v2.BucketSpan"),
                   ("negative_deltas", 9, _SINT64, _REP, None), ("negative_counts", 10, _DOUBLE, _REP, None),
                   ("positive_spans", 11, _MSG, _REP, ".io.prometheus.write.v2.BucketSpan"),
                   ("positive_deltas", 12, _SINT64, _REP, None), ("positive_counts", 13, _DOUBLE, _REP, None),
                   ("reset_hint", 14, F.TYPE_INT32, _OPT, None), ("timestamp", 15, _INT64, _OPT, None),
                   ("custom_values", 16, _DOUBLE, _REP, None)]),
    ("BucketSpan", [("offset", 1, _SINT32, _OPT, None), ("length", 2, _UINT32, _OPT, None)]),
], [])

# the Prometheus exposition format's protobuf (io/prometheus/client/metrics.proto of
# client_model v0.6.3, proto2: presence matters), the messages a scrape of a native histogram needs
_P = ".io.prometheus.client."
_CLIENT = ("io.prometheus.client", "stackproof/client_metrics.proto", [
    ("LabelPair", [("name", 1, F.TYPE_STRING, _OPT, None), ("value", 2, F.TYPE_STRING, _OPT, None)]),
    ("Gauge", [("value", 1, _DOUBLE, _OPT, None)]),
    ("Bucket", [("cumulative_count", 1, _UINT64, _OPT, None), ("upper_bound", 2, _DOUBLE, _OPT, None)]),
    ("BucketSpan", [("offset", 1, _SINT32, _OPT, None), ("length", 2, _UINT32, _OPT, None)]),
    ("Histogram", [("sample_count", 1, _UINT64, _OPT, None), ("sample_sum", 2, _DOUBLE, _OPT, None),
                   ("bucket", 3, _MSG, _REP, _P + "Bucket"), ("schema", 5, _SINT32, _OPT, None),
                   ("zero_threshold", 6, _DOUBLE, _OPT, None), ("zero_count", 7, _UINT64, _OPT, None),
                   ("negative_span", 9, _MSG, _REP, _P + "BucketSpan"), ("negative_delta", 10, _SINT64, _REP, None),
                   ("positive_span", 12, _MSG, _REP, _P + "BucketSpan"), ("positive_delta", 13, _SINT64, _REP, None)]),
    ("Metric", [("label", 1, _MSG, _REP, _P + "LabelPair"), ("gauge", 2, _MSG, _OPT, _P + "Gauge"),
                ("histogram", 7, _MSG, _OPT, _P + "Histogram")]),
    ("MetricFamily", [("name", 1, F.TYPE_STRING, _OPT, None), ("help", 2, F.TYPE_STRING, _OPT, None),
                      ("type", 3, F.TYPE_INT32, _OPT, None),  # enum MetricType: GAUGE 1, HISTOGRAM 4
                      ("metric", 4, _MSG, _REP, _P + "Metric")]),
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


def _build(spec, syntax: str = "proto3") -> dict:
    package, filename, messages, deps = spec
    fdp = descriptor_pb2.FileDescriptorProto(name=filename, package=package, syntax=syntax, dependency=deps)
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
_prw2 = _build(_PRW2)
_client = _build(_CLIENT, "proto2")

WriteRequest = _prom["WriteRequest"]
TimeSeries = _prom["TimeSeries"]
Label = _prom["Label"]
Sample = _prom["Sample"]
MetricMetadata = _prom["MetricMetadata"]
ReadRequest = _prom["ReadRequest"]

V2Request = _prw2["Request"]
V2TimeSeries = _prw2["TimeSeries"]
V2Histogram = _prw2["Histogram"]

MetricFamily = _client["MetricFamily"]

PushRequest = _loki["PushRequest"]
StreamAdapter = _loki["StreamAdapter"]
EntryAdapter = _loki["EntryAdapter"]
LabelPairAdapter = _loki["LabelPairAdapter"]
