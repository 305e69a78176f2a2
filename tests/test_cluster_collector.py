"""'otel-collector' on the local cluster: the Collector runs where the node shares this
machine's file system (local-kube), with its inbox a directory of this machine mounted
where its config tails, its OTLP port a node port, and its token only in a Secret; on
any other cluster it does not run (the suites write its inbox here, which a cloud's node
cannot see), and its capability is not declared there.

The stand-ins that turn it red: a platform whose Collector tails a directory the
inbox is not mounted at, or reads its token from a value in the manifest, fails the
first test (the paths and the env are compared with what the config names)."""

from __future__ import annotations

import json

import yaml

from harness.providers.kube import CAPABILITIES as KUBE
from harness.providers.localkube import CAPABILITIES as LOCAL_KUBE

from .test_kube_deployer import NEW, by_key, deployer, tenants

HOST = "/var/lib/stackproof-test/host"


def _collector(objects: dict) -> tuple[dict, dict]:
    sts = objects[("StatefulSet", "otelcol")]
    return sts, sts["spec"]["template"]["spec"]


def test_on_a_node_sharing_this_machines_files_the_collector_tails_the_host_inbox():
    ts = tenants()
    objects = by_key(deployer(None, gateway_service="NodePort", host_dir=HOST).manifests(NEW, ts))
    sts, spec = _collector(objects)
    c = spec["containers"][0]
    config = yaml.safe_load(objects[("ConfigMap", "otelcol-config")]["data"]["otelcol.yaml"])
    (include,) = config["receivers"]["file_log"]["include"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] + "/*.log" == include)
    vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert vol == {"name": mount["name"], "hostPath": {"path": f"{HOST}/otelcol/inbox", "type": "DirectoryOrCreate"}}
    # the token: a reference to its Secret, the value nowhere but there
    env = {e["name"]: e for e in c["env"]}
    assert env["STACKPROOF_OTELCOL_TOKEN"] == {"name": "STACKPROOF_OTELCOL_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "otelcol-token", "key": "token"}}}
    token = next(t for t in ts if t.role == "user").token
    outside = [m for k, m in objects.items() if k[0] != "Secret"]
    assert token not in json.dumps(outside)
    # OTLP from this machine at a node port; the probe on its telemetry port, not offered by the Service
    svc = objects[("Service", "otelcol")]
    assert svc["spec"]["type"] == "NodePort" and [p["name"] for p in svc["spec"]["ports"]] == ["otlp"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    # it ships through the gateway's Service, trusting the platform CA it mounts
    exporter = config["exporters"]["otlp_http"]
    assert exporter["logs_endpoint"].startswith("https://gateway.stackproof.svc:443/")
    assert exporter["tls"]["ca_file"] in {m["mountPath"] + "/ca.pem" for m in c["volumeMounts"]}
    assert c["image"] == "localhost/stackproof/otelcol-stackproof:v0.165.0"


def test_elsewhere_the_collector_does_not_run_and_is_not_declared():
    for d in (deployer(), deployer(None), deployer(None, gateway_service="NodePort")):
        objects = by_key(d.manifests(NEW, tenants()))
        assert not [k for k in objects if k[1].startswith("otelcol")]
    assert "otel-collector" not in KUBE
    assert LOCAL_KUBE[:len(KUBE)] == KUBE and "otel-collector" in LOCAL_KUBE  # all of it: test_cluster_capabilities
