"""The target file: load, validate with one-line errors naming the field, save."""

from __future__ import annotations

import os

import pytest
import yaml

from harness.errors import ConfigError
from harness.target import Target

GOOD = {
    "name": "prod",
    "gateway_url": "https://gw.example.net:8443",
    "metrics": {"write_path": "/api/v1/push", "query_path": "/prometheus", "otlp_promoted": ["deployment.environment"]},
    "logs": {"api": "victorialogs", "push_path": "/insert/loki/api/v1/push", "query_path": "/select/logsql"},
    "tenants": [{"name": "a", "token": "tok-a-secret", "account_id": 1},
                {"name": "b", "token": "tok-b-secret", "account_id": 2},
                {"name": "sys", "token": "tok-s-secret", "role": "system", "account_id": 3}],
    "capabilities": ["metrics", "logs"],
    "durability": {"logs": {"crash_loss_seconds": 3}, "metrics": {"object_storage": True}},
}
# an existing Loki platform: names, no account ids, Loki's paths by default
LOKI = {"name": "loki-prod", "gateway_url": "https://loki.example.net", "logs": {"api": "loki"},
        "tenants": [{"name": "a", "token": "tok-a-secret"}, {"name": "b", "token": "tok-b-secret"}]}


def write(tmp_path, data, name="t.yaml"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def test_round_trip(tmp_path):
    t = Target.load(write(tmp_path, GOOD))
    assert [x.name for x in t.user_tenants] == ["a", "b"]
    assert t.system_tenant.name == "sys"
    assert t.metrics_query_url == "https://gw.example.net:8443/prometheus"
    assert t.metrics_otlp_url == "https://gw.example.net:8443/api/v1/otlp/v1/metrics"  # the default path
    assert t.metrics_otlp_promoted == ["deployment.environment"]
    saved = t.save(tmp_path / "out" / "t2.yaml")
    assert oct(os.stat(saved).st_mode & 0o777) == "0o600"
    again = Target.load(saved)
    assert again.to_dict() == t.to_dict()
    assert [x.account_id for x in again.tenants] == [1, 2, 3]
    assert (again.durability["logs"].crash_loss_seconds, again.durability["logs"].object_storage) == (3.0, False)
    assert (again.durability["metrics"].crash_loss_seconds, again.durability["metrics"].object_storage) == (0.0, True)


def test_each_logs_api_has_its_own_default_paths(tmp_path):
    t = Target.load(write(tmp_path, LOKI))
    assert (t.logs_api, t.logs_push_path, t.logs_query_path, t.logs_otlp_path) == (
        "loki", "/loki/api/v1/push", "/loki/api/v1", "/otlp/v1/logs")
    assert [x.account_id for x in t.tenants] == [None, None]
    t = Target.load(write(tmp_path, {**GOOD, "logs": {"api": "victorialogs"}}))
    assert (t.logs_push_path, t.logs_query_path, t.logs_otlp_path) == (
        "/insert/loki/api/v1/push", "/select/logsql", "/insert/opentelemetry/v1/logs")
    assert Target.load(write(tmp_path, {**GOOD, "logs": {}})).logs_api == "victorialogs"  # the default


def test_tokens_never_in_repr(tmp_path):
    t = Target.load(write(tmp_path, GOOD))
    assert "tok-a-secret" not in repr(t)
    assert "tok-a-secret" not in repr(t.tenants[0])


def test_relative_ca_file_resolves_next_to_the_target_file(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    t = Target.load(write(tmp_path, {**GOOD, "ca_file": "ca.pem"}))
    assert t.ca_file == str(tmp_path / "ca.pem")
    assert t.verify == str(tmp_path / "ca.pem")


def _without(d, *path):
    d = yaml.safe_load(yaml.safe_dump(d))
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    del cur[path[-1]]
    return d


def _with(d, value, *path):
    d = yaml.safe_load(yaml.safe_dump(d))
    cur = d
    for k in path[:-1]:
        cur = cur.setdefault(k, {}) if isinstance(cur, dict) else cur[k]
    cur[path[-1]] = value
    return d


BAD = [
    (_without(GOOD, "gateway_url"), "field 'gateway_url' is missing"),
    (_with(GOOD, "ftp://x", "gateway_url"), "field 'gateway_url' must be an http(s) URL"),
    (_with(GOOD, "https://x:notaport", "gateway_url"), "field 'gateway_url' has a bad port"),
    (_without(GOOD, "tenants", 1, "token"), "field 'tenants[1].token' is missing"),
    (_with(GOOD, "admin", "tenants", 0, "role"), "field 'tenants[0].role' must be one of"),
    (_with(GOOD, "tok-a-secret", "tenants", 1, "token"), "field 'tenants[1].token' is the same token"),
    (_with(GOOD, "a b", "tenants", 1, "name"), "field 'tenants[1].name' 'a b' is not a valid tenant ID"),
    (_with(GOOD, [], "tenants"), "field 'tenants' must be a non-empty list"),
    (_with(GOOD, "prometheus", "metrics", "query_path"), "field 'metrics.query_path' must start with '/'"),
    (_with(GOOD, "api/v1/otlp/v1/metrics", "metrics", "otlp_path"), "field 'metrics.otlp_path' must start with '/'"),
    (_with(GOOD, "service.name", "metrics", "otlp_promoted"),
     "field 'metrics.otlp_promoted' must be a list of resource attribute names"),
    (_with(GOOD, "/x", "metrics", "remote_write_v2"), "field 'metrics.remote_write_v2' is not known (known: "
                                                      "write_path, query_path, otlp_path, otlp_promoted)"),
    (_with(GOOD, ["metrics", "teleport"], "capabilities"), "unknown capability 'teleport'"),
    (_with(GOOD, "missing.pem", "ca_file"), "field 'ca_file' names"),
    ({**GOOD, "gateway": "x"}, "field 'gateway' is not a target field"),
    (_with(GOOD, "elastic", "logs", "api"), "field 'logs.api' must be one of victorialogs, loki, got 'elastic'"),
    (_without(GOOD, "tenants", 1, "account_id"), "field 'tenants[1].account_id' is missing: the victorialogs "
                                                 "logs api needs a numeric account id"),
    (_with(GOOD, "two", "tenants", 0, "account_id"), "field 'tenants[0].account_id' must be a whole number"),
    (_with(GOOD, 0, "tenants", 0, "account_id"), "field 'tenants[0].account_id' must be a whole number from 1"),
    (_with(GOOD, 2**32, "tenants", 0, "account_id"), "field 'tenants[0].account_id' must be a whole number"),
    (_with(GOOD, 1, "tenants", 1, "account_id"), "field 'tenants[1].account_id' repeats account id 1"),
    (_with(GOOD, {"traces": {}}, "durability"), "field 'durability.traces' is not a signal"),
    (_with(GOOD, {"tenant": "nobody", "inbox": "/x", "otlp_url": "http://127.0.0.1:1", "service_name": "s"},
           "otel_collector"), "field 'otel_collector.tenant' names no tenant of this target: 'nobody'"),
    (_with(GOOD, -1, "durability", "logs", "crash_loss_seconds"),
     "field 'durability.logs.crash_loss_seconds' must be a number of seconds >= 0"),
    (_with(GOOD, "yes", "durability", "metrics", "object_storage"),
     "field 'durability.metrics.object_storage' must be true or false"),
    (_with(GOOD, 1, "durability", "logs", "fsync"), "field 'durability.logs.fsync' is not known"),
    (_with(GOOD, [], "alerting"), "field 'alerting' must be a mapping"),
    (_with(GOOD, 1, "alerting", "ruler_url"), "field 'alerting.ruler_url' is not known"),
    (_with(GOOD, "api/v1/rules", "alerting", "rules_path"), "field 'alerting.rules_path' must be a path starting"),
    (_with(GOOD, 0, "alerting", "evaluation_interval_s"),
     "field 'alerting.evaluation_interval_s' must be a number of seconds > 0"),
    (_with(GOOD, "alertmanager.example", "alerting", "webhook_host"),
     "field 'alerting.webhook_host' must be an IP address of this machine"),
    # a bare number in YAML, which Python's ipaddress would take as 0.0.0.7
    (_with(GOOD, 7, "alerting", "webhook_host"),
     "field 'alerting.webhook_host' must be an IP address of this machine, got 7"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m for _, m in BAD])
def test_malformed_target_gets_one_line_naming_the_field(tmp_path, data, message):
    p = write(tmp_path, data)
    with pytest.raises(ConfigError) as ei:
        Target.load(p)
    text = str(ei.value)
    assert message in text
    assert text.startswith(f"target file {p}")
    assert "\n" not in text
    assert "tok-a-secret" not in text


def test_not_yaml_names_line_and_column(tmp_path):
    p = write(tmp_path, "name: x\ntenants: [\n  - {")
    with pytest.raises(ConfigError, match=r"at line \d+, column \d+"):
        Target.load(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        Target.load(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        Target.load(write(tmp_path, "- a\n- b\n"))


def test_limits_default_and_override(tmp_path):
    t = Target.load(write(tmp_path, {**GOOD, "limits": {"logs_max_line_bytes": 1000}}))
    assert t.limits["logs_max_line_bytes"] == 1000
    assert t.limits["metrics_max_label_value_length"] == 2048
    with pytest.raises(ConfigError, match=r"field 'limits.nope' is not known"):
        Target.load(write(tmp_path, {**GOOD, "limits": {"nope": 1}}))
    with pytest.raises(ConfigError, match=r"field 'limits.logs_max_line_bytes' must be a positive integer"):
        Target.load(write(tmp_path, {**GOOD, "limits": {"logs_max_line_bytes": -1}}))
