"""The Kubernetes deployer (harness/providers/kube/).

Two kinds of test:

- rendering, no cluster: every manifest is checked against the Kubernetes API
  models of the ``kubernetes`` client (it must deserialise and round-trip
  without losing a field), against itself (every mounted ConfigMap and Secret
  exists, Services select pods that exist, every file a config names is
  mounted), against the components' cluster shapes (each container's command,
  ports, probe and volumes exactly), against releases.yaml (images), for
  secrets (no token in any ConfigMap), for object storage (only the stores
  that use a bucket get one) and for the upgrade between the two releases;
  the cluster-mode gateway configuration is run in a real nginx on loopback;
- a real kube-apiserver (built from its Go module) and etcd on loopback:
  manifests are applied server-side for real and validated by the server, and
  the deployer's waits run against it. The cluster has no controllers and no
  kubelet, so :class:`StandIn` writes StatefulSet and Service status through
  the status subresources, as the StatefulSet controller and a cloud's
  load-balancer controller would: that, and only that, is simulated.
"""

from __future__ import annotations

import ast
import base64
import copy
import hashlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest
import requests
import yaml
from kubernetes.client import ApiClient

from harness.components import (COMPONENTS, GATEWAY, LOGS_STORE, METRICS_STORE, SENDER, PlatformContext,
                                 by_role)
from harness.components.gateway import render_nginx_conf, render_token_maps
from harness.components.kubeapiserver import VERSION as KUBE_VERSION
from harness.components.kubeapiserver import LoopbackControlPlane, resolve_etcd, resolve_kube_apiserver
from harness.errors import ComponentError, ConfigError, StackproofError
from harness.ports import free_ports
from harness.providers.kube import (HASH_ANNOTATION, TENANTS_SECRET, TLS_SECRET, TOOLS_IMAGE, ApiError, KubeApi,
                                    KubeDeployer, cluster_components, image_for, is_dns1123_label, is_label_key,
                                    is_label_value)
from harness.releases import Catalog
from harness.target import Durability, Target, Tenant
from harness.tls import TLSFiles

CATALOG = Catalog.load()
OLD, NEW = CATALOG.get("2026.10"), CATALOG.get("2026.11")
S3 = {"type": "s3", "bucket": "sp-test-bucket", "region": "eu-west-1"}
GCS = {"type": "gcs", "bucket": "sp-test-gcs"}
LABELS = {"stackproof/owner": "ci", "stackproof/run-id": "r-123", "stackproof/expires": "2026-12-01T00.00Z"}
API = ApiClient()


def unreachable_kubeconfig(server: str = "https://127.0.0.1:9") -> dict:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}


def tenants() -> list[Tenant]:
    return [Tenant("tenant-a", "tokA-" + "a" * 40, "user", 11), Tenant("tenant-b", "tokB_" + "b" * 40, "user", 12),
            Tenant("tenant-limited", "tokL-" + "l" * 40, "limited", 13),
            Tenant("stackproof-system", "tokS_" + "s" * 40, "system", 14)]


def deployer(storage=S3, **kw) -> KubeDeployer:
    return KubeDeployer(unreachable_kubeconfig(), storage=storage, labels=LABELS, **kw)


def by_key(manifests: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def model_round_trip(m: dict) -> dict:
    """The manifest through the API model of its kind and back."""
    model = API._ApiClient__deserialize(copy.deepcopy(m), f"V1{m['kind']}")
    return API.sanitize_for_serialization(model)


def pod_specs(manifests):
    for m in manifests:
        if m["kind"] == "StatefulSet":
            yield m, m["spec"]["template"]["spec"]


def secret_files(manifests) -> dict[str, dict[str, str]]:
    return {m["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in m["data"].items()}
            for m in manifests if m["kind"] == "Secret"}


# ---------------------------------------------------------------------------
# rendering against the API models


@pytest.mark.parametrize("release", [OLD, NEW], ids=lambda r: r.name)
@pytest.mark.parametrize("storage", [S3, GCS], ids=lambda s: s["type"])
def test_every_manifest_is_a_valid_api_object_and_round_trips(release, storage):
    manifests = deployer(storage).manifests(release, tenants())
    kinds = sorted({m["kind"] for m in manifests})
    assert kinds == ["ConfigMap", "Namespace", "Secret", "Service", "ServiceAccount", "StatefulSet"]
    for m in manifests:
        back = model_round_trip(m)
        # a misspelled or unknown field is dropped by the model: the dicts differ
        assert back == m, f"{m['kind']} {m['metadata']['name']} loses or changes fields in its API model"


def test_round_trip_check_catches_a_misspelled_field():
    """The check above can fail: a field the API does not know disappears."""
    m = by_key(deployer().manifests(NEW, tenants()))[("StatefulSet", "victorialogs")]
    assert model_round_trip(m) == m
    bad = copy.deepcopy(m)
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert model_round_trip(bad) != bad
    wrong_type = copy.deepcopy(m)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9428"
    try:  # kubernetes 37's models refuse it; older ones convert it, and the round trip differs
        assert model_round_trip(wrong_type) != wrong_type
    except ValueError as exc:
        assert "containerPort" in str(exc)


def test_names_and_labels_are_valid():
    d = deployer()
    for m in d.manifests(NEW, tenants()):
        name = m["metadata"]["name"]
        # every kind rendered here wants a DNS-1123 label (Services and StatefulSets strictly)
        assert is_dns1123_label(name), name
        assert m["kind"] == "Namespace" or m["metadata"]["namespace"] == "stackproof"
        labels = dict(m["metadata"]["labels"])
        if m["kind"] == "StatefulSet":
            tpl = m["spec"]["template"]["metadata"]
            labels.update(tpl["labels"])
            labels.update(m["spec"]["selector"]["matchLabels"])
            for vct in m["spec"].get("volumeClaimTemplates", []):
                labels.update(vct["metadata"]["labels"])
            for key in tpl["annotations"]:
                assert is_label_key(key), key
            for c in m["spec"]["template"]["spec"]["containers"] + m["spec"]["template"]["spec"].get(
                    "initContainers", []):
                assert is_dns1123_label(c["name"])
                for p in c.get("ports", []):  # IANA_SVC_NAME
                    assert len(p["name"]) <= 15 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", p["name"])
        for k, v in labels.items():
            assert is_label_key(k), k
            assert is_label_value(v), (k, v)
        for k, v in LABELS.items():  # owner, run id, expiry: on every object, for the janitor
            assert m["metadata"]["labels"][k] == v


def test_label_and_name_validators_refuse_bad_values():
    assert not is_dns1123_label("Gateway") and not is_dns1123_label("a" * 64) and not is_dns1123_label("-a")
    assert not is_label_value("has space") and not is_label_value("x" * 64) and is_label_value("")
    assert not is_label_key("bad/prefix/x") and not is_label_key("UPPER.example/x-") and is_label_key("a.b/c")


def test_every_mounted_configmap_and_secret_exists_with_its_keys():
    manifests = deployer().manifests(NEW, tenants())
    objects = by_key(manifests)

    def data_of(kind, name):
        assert (kind, name) in objects, f"{kind} {name} is referenced but not rendered"
        return objects[(kind, name)]["data"]

    refs = 0
    for sts, spec in pod_specs(manifests):
        mounted = {vm["name"] for c in spec["containers"] + spec.get("initContainers", [])
                   for vm in c.get("volumeMounts", [])}
        vct = {v["metadata"]["name"] for v in sts["spec"].get("volumeClaimTemplates", [])}
        assert mounted <= {v["name"] for v in spec.get("volumes", [])} | vct, sts["metadata"]["name"]
        for vol in spec.get("volumes", []):
            sources = vol.get("projected", {}).get("sources", [])
            if "configMap" in vol:
                sources = [{"configMap": vol["configMap"]}]
            if "secret" in vol:
                sources = [{"secret": {"name": vol["secret"]["secretName"], **vol["secret"]}}]
            for src in sources:
                kind, ref = ("ConfigMap", src["configMap"]) if "configMap" in src else ("Secret", src["secret"])
                data = data_of(kind, ref["name"])
                refs += 1
                for item in ref.get("items", []):
                    assert item["key"] in data, f"{kind} {ref['name']} has no key {item['key']}"
    # 3 config maps (VictoriaLogs has no config file), the token maps, the agent's token, TLS twice
    assert refs == 7
    # the tenants' Secret is state for a later process: no pod mounts it
    assert TENANTS_SECRET not in json.dumps([spec for _, spec in pod_specs(manifests)])
    for _, spec in pod_specs(manifests):
        assert ("ServiceAccount", spec["serviceAccountName"]) in objects
        assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("storage, annotation", [
    ({**S3, "aws_role_arn": "arn:aws:iam::123456789012:role/sp"}, {"eks.amazonaws.com/role-arn":
                                                                   "arn:aws:iam::123456789012:role/sp"}),
    ({**GCS, "gcp_service_account": "sp@proj.iam.gserviceaccount.com"},
     {"iam.gke.io/gcp-service-account": "sp@proj.iam.gserviceaccount.com"}),
    (S3, None),
], ids=["irsa", "workload-identity", "node-role"])
def test_cloud_identity_for_the_bucket_is_a_service_account_annotation(storage, annotation):
    manifests = deployer(storage).manifests(NEW, tenants())
    sa = by_key(manifests)[("ServiceAccount", "stackproof")]
    assert sa["metadata"].get("annotations") == annotation
    for m in manifests:  # and nowhere else
        if m is not sa and annotation:
            assert next(iter(annotation.values())) not in json.dumps(m)


def container_files(manifests, component: str) -> set[str]:
    """The files the component's container sees from ConfigMaps and Secrets."""
    objects = by_key(manifests)
    sts = objects[("StatefulSet", component)]
    spec = sts["spec"]["template"]["spec"]
    mounts = {vm["name"]: vm["mountPath"] for vm in spec["containers"][0]["volumeMounts"]}
    files = set()
    for vol in spec.get("volumes", []):
        if vol["name"] not in mounts:
            continue
        base = PurePosixPath(mounts[vol["name"]])
        sources = vol.get("projected", {}).get("sources", [])
        if "secret" in vol:
            sources = [{"secret": {"name": vol["secret"]["secretName"], **vol["secret"]}}]
        for src in sources:
            kind, ref = ("ConfigMap", src["configMap"]) if "configMap" in src else ("Secret", src["secret"])
            keys = [(i["key"], i["path"]) for i in ref["items"]] if "items" in ref else [
                (k, k) for k in objects[(kind, ref["name"])]["data"]]
            files |= {str(base / path) for _, path in keys}
    return files


def test_every_file_a_config_names_is_mounted():
    manifests = deployer().manifests(NEW, tenants())
    cms = {m["metadata"]["name"]: m["data"] for m in manifests if m["kind"] == "ConfigMap"}
    # nginx: its token map include and TLS files
    conf = cms["gateway-config"]["nginx.conf"]
    named = set(re.findall(r"(?:include|ssl_certificate|ssl_certificate_key) (/\S+);", conf))
    assert len(named) == 3
    assert named <= container_files(manifests, "gateway")
    sts = by_key(manifests)[("StatefulSet", "gateway")]
    assert "/stackproof/config/nginx.conf" in sts["spec"]["template"]["spec"]["containers"][0]["command"]
    # the agent: its token and the CA
    prom = yaml.safe_load(cms["prometheus-config"]["prometheus.yml"])
    rw = prom["remote_write"][0]
    assert {rw["authorization"]["credentials_file"], rw["tls_config"]["ca_file"]} <= container_files(
        manifests, "prometheus")
    assert "/stackproof/config/prometheus.yml" in container_files(manifests, "prometheus")
    # Cortex: its config and runtime overrides
    cfg = yaml.safe_load(cms["cortex-config"]["cortex.yaml"])
    assert {cfg["runtime_config"]["file"], "/stackproof/config/cortex.yaml"} <= container_files(manifests, "cortex")
    # every file a command names is mounted, every directory it names is on a mounted volume
    for sts, spec in pod_specs(manifests):
        name, container = sts["metadata"]["name"], spec["containers"][0]
        writable = [vm["mountPath"] for vm in container["volumeMounts"] if not vm.get("readOnly")]
        named = [v for arg in container["command"] for v in re.findall(r"(/stackproof/\S*)", arg)]
        assert named, name
        for path in named:
            if path.startswith(("/stackproof/config/", "/stackproof/tls/")):
                assert path in container_files(manifests, name), (name, path)
            else:  # data and logs: on a writable volume
                assert any(path == r or path.startswith(r + "/") for r in writable), (name, path)


def test_services_select_pods_that_exist_and_target_named_ports():
    manifests = deployer().manifests(NEW, tenants())
    templates = {m["metadata"]["name"]: m["spec"]["template"] for m in manifests if m["kind"] == "StatefulSet"}
    services = [m for m in manifests if m["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == set(templates)
    for svc in services:
        sel = svc["spec"]["selector"]
        matching = [n for n, t in templates.items() if sel.items() <= t["metadata"]["labels"].items()]
        assert matching == [svc["metadata"]["name"]], svc["metadata"]["name"]
        ports = {p["name"] for c in templates[matching[0]]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    for name, tpl in templates.items():  # each StatefulSet's selector matches its own pods
        sts = by_key(manifests)[("StatefulSet", name)]
        assert sts["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items()
        assert sts["spec"]["serviceName"] == name
    gw = by_key(manifests)[("Service", "gateway")]
    assert gw["spec"]["type"] == "LoadBalancer" and [p["port"] for p in gw["spec"]["ports"]] == [443]
    assert all(s["spec"]["type"] == "ClusterIP" for s in services if s is not gw)


# the official images (VictoriaLogs' tags lost their '-victorialogs' suffix at v1.25.0,
# when it left the VictoriaMetrics repository), and nginx pinned, never 'stable'
EXPECTED_IMAGES = {
    "2026.10": {"cortex": "cortexproject/cortex:v1.20.1",
                "victorialogs": "victoriametrics/victoria-logs:v1.24.0-victorialogs",
                "gateway": "nginx:1.28.0", "prometheus": "prom/prometheus:v3.15.1"},
    "2026.11": {"cortex": "cortexproject/cortex:v1.21.1", "victorialogs": "victoriametrics/victoria-logs:v1.52.2",
                "gateway": "nginx:1.28.0", "prometheus": "prom/prometheus:v3.16.0"},
}


@pytest.mark.parametrize("release", CATALOG.releases, ids=lambda r: r.name)
def test_images_are_the_releases_versions(release):
    manifests = deployer().manifests(release, tenants())
    images = {m["metadata"]["name"]: m["spec"]["template"]["spec"]["containers"][0]["image"]
              for m in manifests if m["kind"] == "StatefulSet"}
    assert images == EXPECTED_IMAGES[release.name]
    assert images == {c.name: image_for(c, release) for c in cluster_components()}
    inits = {c["image"] for _, spec in pod_specs(manifests) for c in spec.get("initContainers", [])}
    assert inits == {TOOLS_IMAGE} and re.fullmatch(r"busybox:\d+\.\d+\.\d+", TOOLS_IMAGE)


@pytest.mark.parametrize("version, image", [
    ("v1.24.0", "victoriametrics/victoria-logs:v1.24.0-victorialogs"),
    ("v1.24.9", "victoriametrics/victoria-logs:v1.24.9-victorialogs"),
    ("v1.25.0", "victoriametrics/victoria-logs:v1.25.0"),
    ("v1.52.2", "victoriametrics/victoria-logs:v1.52.2"),
])
def test_victorialogs_tag_follows_its_repository_move(version, image):
    assert by_role(LOGS_STORE).cluster.image_for(version) == image


# ---------------------------------------------------------------------------
# each component's pod, exactly as its cluster shape says

DATA_PVC = [{"metadata": {"name": "data", "labels": {"app.kubernetes.io/part-of": "stackproof",
                                                     "app.kubernetes.io/name": "{name}"}},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]
CONFIG_MOUNT = {"name": "config", "mountPath": "/stackproof/config", "readOnly": True}
TLS_MOUNT = {"name": "tls", "mountPath": "/stackproof/tls", "readOnly": True}
DATA_MOUNT = {"name": "data", "mountPath": "/stackproof/data"}
CORTEX_DIRS = [f"/stackproof/data/cortex{s}" for s in ("", "/tsdb", "/tsdb-sync", "/compactor", "/rules",
                                                        "/rules-tmp", "/alerts")]
NGINX_START = ('mkdir -p "$1" "$2" && ln -sf /dev/stderr "$2/gateway-error.log" && '
               'ln -sf /dev/stdout "$2/gateway-access.log" && shift 2 && exec "$@"')
EXPECTED_PODS = {
    "victorialogs": {
        "command": ["/victoria-logs-prod", "-httpListenAddr=0.0.0.0:9428",
                    "-storageDataPath=/stackproof/data/victorialogs", "-loki.disableMessageParsing",
                    "-inmemoryDataFlushInterval=1s", "-retentionPeriod=7d", "-loggerLevel=INFO"],
        "ports": [{"name": "http", "containerPort": 9428, "protocol": "TCP"}],
        "probe": {"path": "/health", "port": "http"},
        "mounts": [DATA_MOUNT], "volumes": None, "pvc": True, "grace": 75, "security": None, "init": None,
        "service": [{"name": "http", "port": 9428, "targetPort": "http", "protocol": "TCP"}],
    },
    "cortex": {
        "command": ["/bin/cortex", "-config.file=/stackproof/config/cortex.yaml"],
        "ports": [{"name": "http", "containerPort": 9009, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": 9095, "protocol": "TCP"}],
        "probe": {"path": "/ready", "port": "http"},
        "mounts": [CONFIG_MOUNT, DATA_MOUNT],
        "volumes": [{"name": "config", "projected": {"sources": [{"configMap": {"name": "cortex-config"}}]}}],
        "pvc": True, "grace": 75, "security": None,
        "init": [{"name": "prepare", "image": TOOLS_IMAGE, "imagePullPolicy": "IfNotPresent",
                  "command": ["mkdir", "-p", *CORTEX_DIRS], "volumeMounts": [DATA_MOUNT]}],
        "service": [{"name": "http", "port": 9009, "targetPort": "http", "protocol": "TCP"},
                    {"name": "grpc", "port": 9095, "targetPort": "grpc", "protocol": "TCP"}],
    },
    "gateway": {
        "command": ["/bin/sh", "-c", NGINX_START, "gateway-start", "/stackproof/data/gateway", "/stackproof/logs",
                    "/usr/sbin/nginx", "-e", "/stackproof/logs/gateway-error.log", "-p", "/stackproof/data/gateway",
                    "-c", "/stackproof/config/nginx.conf", "-g", "daemon off;"],
        "ports": [{"name": "https", "containerPort": 443, "protocol": "TCP"},
                  {"name": "health", "containerPort": 8080, "protocol": "TCP"}],
        "probe": {"path": "/healthz", "port": "health"},
        "mounts": [CONFIG_MOUNT, TLS_MOUNT, DATA_MOUNT, {"name": "logs", "mountPath": "/stackproof/logs"}],
        "volumes": [{"name": "config", "projected": {"sources": [{"configMap": {"name": "gateway-config"}},
                                                                 {"secret": {"name": "gateway-tokens"}}],
                                                     "defaultMode": 0o440}},
                    {"name": "tls", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o440, "items": [
                        {"key": "tls.crt", "path": "gateway.pem"}, {"key": "tls.key", "path": "gateway-key.pem"},
                        {"key": "ca.crt", "path": "ca.pem"}]}},
                    {"name": "data", "emptyDir": {}}, {"name": "logs", "emptyDir": {}}],
        "pvc": False, "grace": 30, "security": None, "init": None,
        # the health port is the probes' only: the load balancer offers 443 alone
        "service": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
    },
    "prometheus": {
        "command": ["/bin/prometheus", "--agent", "--config.file=/stackproof/config/prometheus.yml",
                    "--storage.agent.path=/stackproof/data/prometheus", "--web.listen-address=0.0.0.0:9090"],
        "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}],
        "probe": {"path": "/-/ready", "port": "http"},
        "mounts": [CONFIG_MOUNT, TLS_MOUNT, DATA_MOUNT],
        "volumes": [{"name": "config", "projected": {"sources": [{"configMap": {"name": "prometheus-config"}},
                                                                 {"secret": {"name": "prometheus-token"}}],
                                                     "defaultMode": 0o440}},
                    {"name": "tls", "secret": {"secretName": TLS_SECRET, "items": [{"key": "ca.crt",
                                                                                    "path": "ca.pem"}]}},
                    {"name": "data", "emptyDir": {}}],
        # the image runs as nobody: the volumes' group must let it read and write
        "pvc": False, "grace": 75, "security": {"fsGroup": 65534, "fsGroupChangePolicy": "OnRootMismatch"},
        "init": None,
        "service": [{"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"}],
    },
}


@pytest.mark.parametrize("name", list(EXPECTED_PODS))
def test_each_pod_is_exactly_its_components_cluster_shape(name):
    want = EXPECTED_PODS[name]
    objects = by_key(deployer().manifests(NEW, tenants()))
    sts = objects[("StatefulSet", name)]
    spec = sts["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    container = spec["containers"][0]
    assert container == {
        "name": name, "image": EXPECTED_IMAGES[NEW.name][name], "imagePullPolicy": "IfNotPresent",
        "command": want["command"], "ports": want["ports"], "volumeMounts": want["mounts"],
        "readinessProbe": {"httpGet": want["probe"], "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}}
    extra = {k: v for k, v in (("volumes", want["volumes"]), ("securityContext", want["security"]),
                               ("initContainers", want["init"])) if v is not None}
    assert spec == {"containers": [container], "serviceAccountName": "stackproof",
                    "automountServiceAccountToken": False, "terminationGracePeriodSeconds": want["grace"],
                    "enableServiceLinks": False, **extra}
    pvc = json.loads(json.dumps(DATA_PVC).replace("{name}", name)) if want["pvc"] else None
    assert sts["spec"].get("volumeClaimTemplates") == pvc
    assert objects[("Service", name)]["spec"]["ports"] == want["service"]


COMPONENT_WORDS = ("cortex", "victorialogs", "victoria", "loki", "prometheus", "nginx")


def component_words(source: str) -> set[str]:
    """Component names in the code of ``source`` (its strings, names and
    attributes; docstrings and comments may name them)."""
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        elif isinstance(node, (ast.Name, ast.Attribute)):
            text = node.id if isinstance(node, ast.Name) else node.attr
        else:
            continue
        found |= {w for w in COMPONENT_WORDS if w in text.lower()}
    return found


def test_the_deployer_names_no_component():
    """Image, program, ports, probe, user and volume are the components'; the
    deployer iterates the catalog and finds the gateway by its role."""
    assert [c.name for c in cluster_components()] == ["cortex", "victorialogs", "gateway", "prometheus"]
    assert set(EXPECTED_PODS) == {c.name for c in cluster_components()}
    assert [c.role for c in cluster_components()] == [METRICS_STORE, LOGS_STORE, GATEWAY, SENDER]
    assert [c.name for c in COMPONENTS if c.cluster is None] == ["s3"]
    for path in sorted(Path("harness/providers/kube").glob("*.py")):
        assert component_words(path.read_text()) == set(), path
    # the check can fail: the old deployer's words, but not a docstring's
    assert component_words('"""Cortex and nginx."""\nfirst = groups["cortex"] + groups[LOKI]\n') == {
        "cortex", "loki"}


def test_no_token_in_any_configmap_or_pod_spec_only_in_secrets():
    ts = tenants()
    manifests = deployer().manifests(NEW, ts)
    forms = {t.name: (t.token, base64.b64encode(t.token.encode()).decode()) for t in ts}
    for m in manifests:
        if m["kind"] == "Secret":
            continue
        text = json.dumps(m)
        for name, (token, b64) in forms.items():
            assert token not in text and b64 not in text, f"{name}'s token is in {m['kind']} {m['metadata']['name']}"
    secrets_ = secret_files(manifests)
    assert set(secrets_) == {TENANTS_SECRET, TLS_SECRET, "gateway-tokens", "prometheus-token"}
    # the gateway's two maps, included at the http level: token -> tenant name, token -> account id
    token_map = secrets_["gateway-tokens"]["token-map.conf"]
    assert set(secrets_["gateway-tokens"]) == {"token-map.conf"} and token_map == render_token_maps(ts) + "\n"
    assert re.findall(r"^    map \$http_authorization \$(\w+) \{$", token_map, re.M) == ["stackproof_tenant",
                                                                                        "stackproof_account"]
    for t in ts:
        assert re.search(rf'"~\^Bearer {re.escape(re.escape(t.token))}\$" "{t.name}";', token_map)
        assert re.search(rf'"~\^Bearer {re.escape(re.escape(t.token))}\$" "{t.account_id}";', token_map)
    assert secrets_["prometheus-token"] == {"prometheus-token": next(t.token for t in ts if t.role == "system")}
    assert secrets_[TENANTS_SECRET] == {"tenants.json": json.dumps([t.to_dict() for t in ts], indent=1)}
    assert [t["account_id"] for t in json.loads(secrets_[TENANTS_SECRET]["tenants.json"])] == [11, 12, 13, 14]
    assert set(secrets_[TLS_SECRET]) == {"tls.crt", "tls.key", "ca.crt"}


def test_tenants_need_distinct_account_ids_for_the_logs_store():
    ts = tenants()
    with pytest.raises(ConfigError, match=r"^tenant 'tenant-b' has no account_id: victorialogs takes a numeric "
                                          r"tenant$"):
        deployer().manifests(NEW, [ts[0], Tenant("tenant-b", ts[1].token, "user"), *ts[2:]])
    with pytest.raises(ConfigError, match=r"^tenants repeat an account_id: victorialogs would mix their data$"):
        deployer().manifests(NEW, [ts[0], Tenant("tenant-b", ts[1].token, "user", 11), *ts[2:]])


def paths_that_differ(a, b, prefix="") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = set()
        for k in set(a) | set(b):
            out |= paths_that_differ(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return set().union(*(paths_that_differ(x, y, f"{prefix}[{i}]") for i, (x, y) in enumerate(zip(a, b))))
    return set() if a == b else {prefix}


def test_upgrade_2026_10_to_2026_11_changes_exactly_what_it_should():
    d, ts = deployer(), tenants()
    old, new = by_key(d.manifests(OLD, ts)), by_key(d.manifests(NEW, ts))
    assert set(old) == set(new)
    changed = {key: paths_that_differ(old[key], new[key]) for key in old}
    changed = {k: v for k, v in changed.items() if v}
    version_label = "metadata.labels.app.kubernetes.io/version"
    tpl_version = "spec.template.metadata.labels.app.kubernetes.io/version"
    image = "spec.template.spec.containers[0].image"
    # Cortex 1.20.1 -> 1.21.1, VictoriaLogs 1.24.0 -> 1.52.2 (its new repository's tag, the same
    # flags) and Prometheus 3.15.1 -> 3.16.0: image and version only; the gateway not at all
    assert changed == {("StatefulSet", name): {version_label, tpl_version, image}
                       for name in ("cortex", "victorialogs", "prometheus")}
    assert (old[("StatefulSet", "victorialogs")]["spec"]["template"]["spec"]["containers"][0]["image"],
            new[("StatefulSet", "victorialogs")]["spec"]["template"]["spec"]["containers"][0]["image"]) == (
        "victoriametrics/victoria-logs:v1.24.0-victorialogs", "victoriametrics/victoria-logs:v1.52.2")
    # what must never change between releases: the StatefulSets' immutable fields
    for c in cluster_components():
        o, n = old[("StatefulSet", c.name)]["spec"], new[("StatefulSet", c.name)]["spec"]
        for field in ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy"):
            assert o.get(field) == n.get(field)


def test_apply_and_upgrade_order_is_the_local_providers():
    """Stores first, then the gateway, then the agent (the local S3 server has no place in a cluster)."""
    assert [c.name for c in cluster_components()] == [c.name for c in COMPONENTS if c.cluster is not None]
    sts = [m["metadata"]["name"] for m in deployer().manifests(NEW, tenants()) if m["kind"] == "StatefulSet"]
    assert sts == ["cortex", "victorialogs", "gateway", "prometheus"]


def test_a_changed_file_a_pod_reads_rolls_exactly_that_pod():
    """The pod template's hash covers what each pod reads: its ConfigMap, its
    Secrets and the TLS it mounts. A new system token changes the gateway's
    token maps and the agent's token; a new certificate changes what both read."""
    d, ts = deployer(), tenants()

    def hashes(tenant_list):
        return {m["metadata"]["name"]: m["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
                for m in d.manifests(NEW, tenant_list) if m["kind"] == "StatefulSet"}

    before = hashes(ts)
    assert hashes(ts) == before
    system = Tenant(ts[3].name, "tokN-" + "n" * 40, "system", ts[3].account_id)
    after = hashes([*ts[:3], system])
    assert {n for n in before if before[n] != after[n]} == {"gateway", "prometheus"}
    d.lb_host = "lb.example.test"  # the certificate is issued again for the new name
    renamed = hashes(ts)
    assert {n for n in before if before[n] != renamed[n]} == {"gateway", "prometheus"}


def test_rendering_is_stable_within_a_deployer_and_needs_a_system_tenant():
    d = deployer()
    ts = tenants()
    assert d.manifests(NEW, ts) == d.manifests(NEW, ts)
    with pytest.raises(ConfigError, match="role 'system'"):
        d.manifests(NEW, [Tenant("a", "x" * 30)])


# ---------------------------------------------------------------------------
# component configurations rendered for the cluster


@pytest.mark.parametrize("release", [OLD, NEW], ids=lambda r: r.name)
def test_s3_configs_parse_listen_everywhere_and_point_at_the_bucket(release):
    cfg = deployer(S3).component_configs(release, tenants())
    assert set(cfg) == {"cortex", "gateway", "prometheus"}  # VictoriaLogs runs on flags alone
    cortex = yaml.safe_load(cfg["cortex"]["cortex.yaml"])
    assert cortex["blocks_storage"]["backend"] == "s3"
    assert cortex["blocks_storage"]["s3"] == {"endpoint": "s3.eu-west-1.amazonaws.com",
                                              "bucket_name": "sp-test-bucket", "region": "eu-west-1"}
    assert "filesystem" not in cortex["blocks_storage"]
    assert cortex["server"]["http_listen_address"] == cortex["server"]["grpc_listen_address"] == "0.0.0.0"
    text = json.dumps(cortex)
    # no credentials in a config: the node role / IRSA provides them
    assert "access_key" not in text and "secret" not in text
    paths = [v for v in re.findall(r'"(/[^"]*)"', text)]
    assert paths and all(p.startswith("/stackproof/") for p in paths), paths
    assert cortex["ingester"]["lifecycler"]["address"] == "127.0.0.1"
    prom = yaml.safe_load(cfg["prometheus"]["prometheus.yml"])
    # one job per role, each at its Service
    assert [(sc["job_name"], sc["static_configs"][0]["targets"]) for sc in prom["scrape_configs"]] == [
        ("metrics-store", ["cortex.stackproof.svc:9009"]), ("logs-store", ["victorialogs.stackproof.svc:9428"]),
        ("sender", ["prometheus.stackproof.svc:9090"])]
    assert prom["remote_write"][0]["url"] == "https://gateway.stackproof.svc:443/api/v1/push"
    overrides = yaml.safe_load(cfg["cortex"]["cortex-overrides.yaml"])["overrides"]
    assert set(overrides) == {"tenant-limited"}
    nginx = cfg["gateway"]["nginx.conf"]
    assert re.findall(r"^    upstream .*$", nginx, re.M) == [
        "    upstream cortex { server cortex.stackproof.svc:9009; keepalive 32; }",
        "    upstream victorialogs { server victorialogs.stackproof.svc:9428; keepalive 32; }"]
    assert "listen 0.0.0.0:443 ssl;" in nginx and "listen 0.0.0.0:8080;" in nginx
    assert not re.search(r"^user ", nginx, re.M) and "~^Bearer" not in nginx
    # the maps are included at the http level, before any server
    assert nginx.index("\n    include /stackproof/config/token-map.conf;\n") < nginx.index("server {")


def test_only_the_stores_that_use_a_bucket_get_one():
    """Cortex writes its blocks to the bucket; VictoriaLogs keeps its data on its
    volume: no bucket in its pod, and the target says so."""
    manifests = deployer({**GCS, "buckets": {"cortex": "sp-metrics"}}).manifests(NEW, tenants())
    cortex = yaml.safe_load(by_key(manifests)[("ConfigMap", "cortex-config")]["data"]["cortex.yaml"])
    assert cortex["blocks_storage"]["backend"] == "gcs"
    assert cortex["blocks_storage"]["gcs"] == {"bucket_name": "sp-metrics"}
    for m in manifests:
        if m["metadata"]["name"] != "cortex-config":
            assert "sp-metrics" not in json.dumps(m) and "sp-test-gcs" not in json.dumps(m), m["metadata"]["name"]
    vl = by_key(manifests)[("StatefulSet", "victorialogs")]
    assert vl["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "-storageDataPath=/stackproof/data/victorialogs" in vl["spec"]["template"]["spec"]["containers"][0][
        "command"]


@pytest.mark.parametrize("storage", [
    {**S3, "bucket": "sp-run-cortex", "buckets": {"cortex": "sp-run-cortex", "loki": "sp-run-loki"}},
    {**GCS, "bucket": "sp-run-cortex", "buckets": {"cortex": "sp-run-cortex", "loki": "sp-run-loki"}},
], ids=["s3", "gcs"])
def test_cloud_providers_layout_keeps_working_and_a_loki_bucket_is_ignored(storage):
    """What the aws and gcp providers hand over (a bucket per store they made,
    'bucket' being Cortex's): Cortex gets its own; the bucket made for a store
    this platform does not run is left out of everything rendered."""
    d = deployer(storage)
    assert d.storage["buckets"] == {"cortex": "sp-run-cortex"}
    manifests = d.manifests(NEW, tenants())
    cortex = yaml.safe_load(by_key(manifests)[("ConfigMap", "cortex-config")]["data"]["cortex.yaml"])
    kind = storage["type"]
    assert cortex["blocks_storage"]["backend"] == kind and cortex["blocks_storage"][kind]["bucket_name"] == \
        "sp-run-cortex"
    rendered = json.dumps(manifests)
    assert "sp-run-loki" not in rendered


@pytest.mark.parametrize("bad, expect", [
    ({"type": "filesystem"}, "storage: 'type' must be one of s3, gcs, got 'filesystem'"),
    ({**GCS, "buckets": {"lokii": "sp-logs"}},
     "storage: 'buckets' names lokii, which is no store of this platform (stores with a bucket: cortex)"),
    ({**GCS, "buckets": {"cortex": ""}}, "storage: 'buckets' must map stores (cortex) to bucket names"),
    ({**GCS, "buckets": ["cortex"]}, "storage: 'buckets' must map stores (cortex) to bucket names"),
    ({**GCS, "buckets": {"cortex": "a", "victorialogs": "b"}},
     "storage: 'buckets' names victorialogs, which keeps its data on its volume, not in a bucket "
     "(stores with a bucket: cortex)"),
    ({"type": "s3", "region": "x"}, "storage: s3 storage needs 'bucket'"),
    ({"type": "s3", "bucket": "b"}, "storage: an s3 storage needs 'region'"),
    ({**S3, "secret_access_key": "K"}, "storage: 'secret_access_key' is not accepted: the stores take credentials "
                                       "from the node role or workload identity, never from a config map"),
])
def test_bad_storage_is_one_clear_line(bad, expect):
    with pytest.raises(ConfigError) as exc:
        deployer(bad)
    assert str(exc.value) == expect


def test_bad_namespace_and_labels_are_one_clear_line():
    with pytest.raises(ConfigError, match="namespace 'Stack_Proof' is not a valid name"):
        KubeDeployer(unreachable_kubeconfig(), "Stack_Proof", storage=S3)
    with pytest.raises(ConfigError, match="label owner='a b'"):
        KubeDeployer(unreachable_kubeconfig(), storage=S3, labels={"owner": "a b"})
    with pytest.raises(ConfigError, match="kubeconfig"):
        KubeDeployer({"nope": 1}, storage=S3).check_api()


# ---------------------------------------------------------------------------
# an API that cannot be reached: one line, quickly


def test_unreachable_api_is_one_line_naming_the_server():
    port = free_ports(1)[0]  # nothing listens there
    d = KubeDeployer(unreachable_kubeconfig(f"https://127.0.0.1:{port}"), storage=S3, api_timeout=2)
    t0 = time.monotonic()
    for call in (lambda: d.deploy(NEW), lambda: d.upgrade(NEW), lambda: d.delete(),
                 lambda: d.collect_artifacts(Path("/nonexistent"))):
        with pytest.raises(StackproofError) as exc:
            call()
        assert str(exc.value) == f"cannot reach the Kubernetes API at https://127.0.0.1:{port}: connection refused"
    assert time.monotonic() - t0 < 5


def test_unresolvable_api_host_is_one_line_within_the_bound():
    """What the AWS provider meets with moto: an EKS endpoint name that no DNS knows."""
    d = KubeDeployer(unreachable_kubeconfig("https://stackproof-test-cluster.invalid/"), storage=GCS, api_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(StackproofError) as exc:
        d.deploy(NEW)
    assert time.monotonic() - t0 < 4
    assert str(exc.value) in (
        "cannot reach the Kubernetes API at https://stackproof-test-cluster.invalid: "
        "cannot resolve the host name stackproof-test-cluster.invalid",
        # a resolver that does not answer at all: the bound still holds
        "cannot reach the Kubernetes API at https://stackproof-test-cluster.invalid: no answer within 2s")


def test_silent_api_times_out_within_the_bound():
    """A server that accepts the connection and never answers: the /version
    check gives up after api_timeout, not after urllib3's defaults."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    try:
        d = KubeDeployer(unreachable_kubeconfig(f"https://127.0.0.1:{port}"), storage=GCS, api_timeout=1)
        t0 = time.monotonic()
        with pytest.raises(StackproofError) as exc:
            d.deploy(NEW, timeout=600)
        took = time.monotonic() - t0
    finally:
        srv.close()
    assert str(exc.value) == f"cannot reach the Kubernetes API at https://127.0.0.1:{port}: no answer within 1s"
    assert took < 4


# ---------------------------------------------------------------------------
# the cluster's gateway configuration in a real nginx on loopback


class _Upstream(BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        self.seen.append({"path": self.path, "org": self.headers.get("X-Scope-OrgID"),
                          "auth": self.headers.get("Authorization"), "account": self.headers.get("AccountID"),
                          "project": self.headers.get("ProjectID")})
        body = b"upstream ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_cluster_gateway_config_runs_in_nginx(tmp_path):
    """The nginx.conf the deployer renders (token map included from a file,
    a health server, no 'user' line) with its own paths moved under tmp_path
    and the Services' names replaced by loopback: nginx loads it, /healthz
    answers, a token picks its tenant (Cortex: its name; VictoriaLogs: its
    account id, with the client's X-Scope-OrgID removed), no token is 401."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).is_file(), "nginx is not installed (scripts/system-deps.sh installs it)"
    d, ts = deployer(), tenants()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    gw_port, health = free_ports(2)
    pki = d._pki()
    (tmp_path / "tls").mkdir()
    tls = TLSFiles(tmp_path / "tls/ca.pem", tmp_path / "tls/gateway.pem", tmp_path / "tls/gateway-key.pem")
    tls.ca_cert.write_bytes(pki.ca_pem)
    tls.server_cert.write_bytes(pki.cert_pem)
    tls.server_key.write_bytes(pki.key_pem)
    cluster = d.context(ts)
    ctx = PlatformContext(name=cluster.name, root=tmp_path, tenants=ts, tls=tls, host="127.0.0.1",
                          listen_host="127.0.0.1", ports={**cluster.ports, "gateway": gw_port,
                                                          "cortex": upstream.server_address[1],
                                                          "victorialogs": upstream.server_address[1]})
    secret = by_key(d.manifests(NEW, ts))[("Secret", "gateway-tokens")]
    (tmp_path / "config").mkdir()
    (tmp_path / "config/token-map.conf").write_bytes(base64.b64decode(secret["data"]["token-map.conf"]))
    conf = render_nginx_conf(ctx, "1", token_map_file=str(tmp_path / "config/token-map.conf"), run_as_root=False,
                             health_port=health)
    # the same text as the ConfigMap's, but for the paths and addresses
    cm = by_key(d.manifests(NEW, ts))[("ConfigMap", "gateway-config")]["data"]["nginx.conf"]
    assert len(conf.splitlines()) == len(cm.splitlines())
    (tmp_path / "config/nginx.conf").write_text(conf)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "data/gateway" / sub).mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    proc = subprocess.Popen([nginx, "-e", str(tmp_path / "logs/gateway-error.log"), "-p",
                             str(tmp_path / "data/gateway"), "-c", str(tmp_path / "config/nginx.conf"),
                             "-g", "daemon off;"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{health}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.1)
        assert (r.status_code, r.text) == (200, "ok\n")
        assert requests.get(f"http://127.0.0.1:{health}/api/v1/push", timeout=2).status_code == 404
        url = f"https://localhost:{gw_port}/prometheus/api/v1/query"
        assert requests.get(url, verify=str(tls.ca_cert), timeout=2).status_code == 401
        wrong_case = ts[0].token.swapcase()
        assert requests.get(url, verify=str(tls.ca_cert), timeout=2,
                            headers={"Authorization": f"Bearer {wrong_case}"}).status_code == 401
        for t in ts:
            r = requests.get(url, verify=str(tls.ca_cert), timeout=2,
                             headers={"Authorization": f"Bearer {t.token}", "X-Scope-OrgID": "someone-else"})
            assert r.status_code == 200 and _Upstream.seen[-1]["org"] == t.name
            assert not _Upstream.seen[-1]["auth"]  # the token never reaches a store
            r = requests.get(f"https://localhost:{gw_port}/select/logsql/query?query=*", verify=str(tls.ca_cert),
                             timeout=2, headers={"Authorization": f"Bearer {t.token}", "X-Scope-OrgID": "7"})
            assert r.status_code == 200
            assert _Upstream.seen[-1] == {"path": "/select/logsql/query?query=*", "org": None, "auth": None,
                                          "account": str(t.account_id), "project": "0"}
        log = (tmp_path / "logs/gateway-access.log").read_text()
        assert all(t.token not in log for t in ts)
    finally:
        proc.terminate()
        proc.wait(10)
        upstream.shutdown()


def test_certificate_names_the_load_balancer_and_in_cluster_names():
    d = deployer()
    before = d._pki()
    assert {"gateway.stackproof.svc", "gateway.stackproof.svc.cluster.local"} <= before.hosts()
    d.lb_host = "abc.elb.eu-west-1.amazonaws.com"
    after = d._pki()
    assert after is not before and "abc.elb.eu-west-1.amazonaws.com" in after.hosts()
    assert d._pki() is after  # kept while it covers every name


# ---------------------------------------------------------------------------
# rollout logic on status documents (the real API server drives it below)


def sts_doc(gen=2, observed=2, replicas=1, ready=1, updated=1, current="r2", update="r2", present=1):
    return {"metadata": {"generation": gen}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": present, "readyReplicas": ready,
                       "updatedReplicas": updated, "currentRevision": current, "updateRevision": update}}


@pytest.mark.parametrize("doc, problem", [
    (sts_doc(), None),
    (sts_doc(observed=1), "the StatefulSet controller to observe generation 2 (observed 1)"),
    (sts_doc(ready=0), "1 updated and ready replica (1 present, 1 updated, 0 ready)"),
    (sts_doc(updated=0), "1 updated and ready replica (1 present, 0 updated, 1 ready)"),
    (sts_doc(current="r1"), "revision r2 to replace r1"),
    ({"metadata": {"generation": 1}, "spec": {"replicas": 1}}, "the StatefulSet controller to observe generation 1 "
                                                               "(observed 0)"),
    (None, "the StatefulSet to exist"),
])
def test_rollout_conditions(doc, problem):
    assert deployer().rollout_problem(doc) == problem


# ---------------------------------------------------------------------------
# a real kube-apiserver and etcd on loopback


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """kube-apiserver and etcd, built from their Go modules into the binary
    cache on first use (about 5 minutes on 2 cores with a cold Go cache;
    a cache hit after that)."""
    cp = LoopbackControlPlane(tmp_path_factory.mktemp("kube"), resolve_kube_apiserver(KUBE_VERSION), resolve_etcd())
    cp.start()
    yield cp
    cp.stop()


class StandIn:
    """Stands in for the controllers a real cluster runs and this one does
    not: the StatefulSet controller (marks every StatefulSet's newest
    generation as rolled out, through the status subresource, after
    ``delay`` seconds, except those in ``hold``), a cloud's load-balancer
    controller (gives the gateway Service an ingress hostname unless
    ``lb`` is None) and the namespace controller (empties a terminating
    namespace and removes its finalizer)."""

    def __init__(self, kubeconfig: dict, namespace: str, lb: str | None = "lb.stackproof.test",
                 hold: set[str] | None = None, delay: float = 0.0):
        self.api = KubeApi(kubeconfig)
        self.ns, self.lb, self.hold, self.delay = namespace, lb, set(hold or ()), delay
        self.marked: dict[str, list[tuple[int, float]]] = {}  # name -> [(generation, when)]
        self.first_seen: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(10)
        assert not self.errors, self.errors

    def _patch_status(self, path: str, status: dict) -> None:
        self.api.request("PATCH", path + "/status", body={"status": status},
                         content_type="application/merge-patch+json")

    def _run(self):
        while not self._stop.wait(0.1):
            try:
                self._tick()
            except ApiError as exc:
                if exc.status not in (404, 409):
                    self.errors.append(str(exc))

    def _tick(self):
        ns_obj = self.api.get("v1", "Namespace", self.ns)
        if ns_obj is None:
            return
        if ns_obj["metadata"].get("deletionTimestamp"):
            self._finalize_namespace(ns_obj)
            return
        for sts in self.api.list(f"/apis/apps/v1/namespaces/{self.ns}/statefulsets"):
            name, gen = sts["metadata"]["name"], sts["metadata"]["generation"]
            st = sts.get("status") or {}
            if name in self.hold or st.get("observedGeneration") == gen:
                continue
            seen = self.first_seen.setdefault((name, gen), time.monotonic())
            if time.monotonic() - seen < self.delay:
                continue
            revision = f"{name}-" + hashlib.sha256(json.dumps(sts["spec"]["template"], sort_keys=True)
                                                   .encode()).hexdigest()[:10]
            self._patch_status(f"/apis/apps/v1/namespaces/{self.ns}/statefulsets/{name}", {
                "observedGeneration": gen, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                "currentReplicas": 1, "availableReplicas": 1, "currentRevision": revision,
                "updateRevision": revision})
            self.marked.setdefault(name, []).append((gen, time.monotonic()))
        svc = self.api.get("v1", "Service", "gateway", self.ns)
        if self.lb and svc and svc["spec"].get("type") == "LoadBalancer" and not svc.get("status", {}).get(
                "loadBalancer", {}).get("ingress"):
            self._patch_status(f"/api/v1/namespaces/{self.ns}/services/gateway",
                               {"loadBalancer": {"ingress": [{"hostname": self.lb}]}})

    def _finalize_namespace(self, ns_obj: dict) -> None:
        for plural, prefix in (("statefulsets", "/apis/apps/v1"), ("services", "/api/v1"),
                               ("configmaps", "/api/v1"), ("secrets", "/api/v1"), ("serviceaccounts", "/api/v1")):
            for obj in self.api.list(f"{prefix}/namespaces/{self.ns}/{plural}"):
                self.api.request("DELETE", f"{prefix}/namespaces/{self.ns}/{plural}/{obj['metadata']['name']}",
                                 allow=(404,))
        ns_obj["spec"]["finalizers"] = []
        self.api.request("PUT", f"/api/v1/namespaces/{self.ns}/finalize", body=ns_obj,
                         content_type="application/json")


def live_objects(api: KubeApi, ns: str) -> dict[tuple[str, str], dict]:
    out = {}
    for kind, path in (("ServiceAccount", f"/api/v1/namespaces/{ns}/serviceaccounts"),
                       ("ConfigMap", f"/api/v1/namespaces/{ns}/configmaps"),
                       ("Secret", f"/api/v1/namespaces/{ns}/secrets"),
                       ("Service", f"/api/v1/namespaces/{ns}/services"),
                       ("StatefulSet", f"/apis/apps/v1/namespaces/{ns}/statefulsets")):
        for obj in api.list(path, "app.kubernetes.io/part-of=stackproof"):
            # a list's items do not repeat apiVersion and kind
            obj.update(apiVersion="apps/v1" if kind == "StatefulSet" else "v1", kind=kind)
            out[(kind, obj["metadata"]["name"])] = obj
    ns_obj = api.get("v1", "Namespace", ns)
    if ns_obj:
        out[("Namespace", ns)] = ns_obj
    return out


def contains(live, wanted, where="") -> list[str]:
    """Where ``live`` (what the server stored) lacks or changed something of ``wanted``."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return [where]
        return [p for k, v in wanted.items() for p in contains(live.get(k), v, f"{where}.{k}")]
    if isinstance(wanted, list):
        if not isinstance(live, list) or len(live) != len(wanted):
            return [where]
        return [p for i, (a, b) in enumerate(zip(live, wanted)) for p in contains(a, b, f"{where}[{i}]")]
    return [] if live == wanted else [where]


@pytest.mark.slow
def test_deploy_applies_server_side_for_real_and_is_idempotent(control_plane, tmp_path):
    kc = control_plane.kubeconfig()
    d = KubeDeployer(kc, "sp-deploy", storage=S3, labels=LABELS, workdir=tmp_path, provider="aws",
                     poll_interval=0.2, progress=lambda m: None)
    with StandIn(kc, "sp-deploy"):
        target = d.deploy(NEW, timeout=60)
    assert target.gateway_url == "https://lb.stackproof.test" and target.provider == "aws"
    assert target.capabilities == ["metrics", "logs"] and target.release == NEW.name
    assert [(t.name, t.role, t.account_id) for t in target.tenants] == [
        ("tenant-a", "user", 1), ("tenant-b", "user", 2), ("tenant-limited", "limited", 3),
        ("stackproof-system", "system", 4)]
    assert len({t.token for t in target.tenants}) == 4 and {len(t.token) for t in target.tenants} == {43}
    # the logs store's dialect and paths, and what each signal's store declares of its durability
    assert (target.logs_api, target.logs_push_path, target.logs_query_path, target.logs_otlp_path) == (
        "victorialogs", "/insert/loki/api/v1/push", "/select/logsql", "/insert/opentelemetry/v1/logs")
    assert target.durability == {"metrics": Durability(crash_loss_seconds=0.0, object_storage=True),
                                 "logs": Durability(crash_loss_seconds=3.0, object_storage=False)}
    # the target file a user gets round-trips, account ids and declarations included
    target.save(tmp_path / "target.yaml")
    assert Target.load(tmp_path / "target.yaml").durability == target.durability
    assert Path(target.ca_file).read_bytes() == d.pki.ca_pem
    assert "lb.stackproof.test" in d.pki.hosts()

    api = KubeApi(kc)
    live = live_objects(api, "sp-deploy")
    rendered = by_key(d.manifests(NEW, target.tenants))
    assert set(live) == set(rendered)
    for key, m in rendered.items():
        assert contains(live[key], m) == [], key  # the server kept every field we set
        managers = {(f["manager"], f["operation"]) for f in live[key]["metadata"]["managedFields"]}
        assert ("stackproof", "Apply") in managers, key
    # no token in any ConfigMap the server stores either
    for key, obj in live.items():
        if key[0] == "ConfigMap":
            assert all(t.token not in json.dumps(obj) for t in target.tenants)

    # applying the same manifests again changes nothing: no resourceVersion moves
    versions = {k: o["metadata"]["resourceVersion"] for k, o in live.items()}
    for m in d.manifests(NEW, target.tenants):
        api.apply(m)
    # and a second deploy from a new process keeps the tokens and the CA it finds there
    d2 = KubeDeployer(kc, "sp-deploy", storage=S3, labels=LABELS, workdir=tmp_path / "2", poll_interval=0.2,
                      progress=lambda m: None)
    with StandIn(kc, "sp-deploy"):
        again = d2.deploy(NEW, timeout=60)
    assert [t.to_dict() for t in again.tenants] == [t.to_dict() for t in target.tenants]
    assert Path(again.ca_file).read_bytes() == Path(target.ca_file).read_bytes()
    after = live_objects(api, "sp-deploy")
    assert {k: o["metadata"]["resourceVersion"] for k, o in after.items()} == versions

    # the server validates: a manifest it refuses is one line naming the object
    bad = copy.deepcopy(rendered[("Service", "cortex")])
    bad["spec"]["ports"][0]["port"] = 70000
    with pytest.raises(ApiError) as exc:
        api.apply(bad)
    assert str(exc.value).startswith("applying Service sp-deploy/cortex failed: ")
    assert "70000" in str(exc.value) and "\n" not in str(exc.value)

    # artifacts: the ConfigMaps and the events; no token anywhere in them
    files = d.collect_artifacts(tmp_path / "artifacts")
    names = {str(p.relative_to(tmp_path / "artifacts")) for p in files}
    assert {"config/cortex-config/cortex.yaml", "config/gateway-config/nginx.conf", "events.txt"} <= names
    for p in files:
        assert all(t.token not in p.read_text() for t in target.tenants)

    # delete: the LoadBalancer Service, then the namespace (emptied by the stand-in namespace controller)
    with StandIn(kc, "sp-deploy"):
        d.delete(timeout=60)
    assert api.get("v1", "Namespace", "sp-deploy") is None
    d.delete(timeout=10)  # idempotent


@pytest.mark.slow
def test_upgrade_rolls_each_changed_component_in_order_and_waits(control_plane, tmp_path):
    kc = control_plane.kubeconfig()
    d = KubeDeployer(kc, "sp-upgrade", storage=GCS, workdir=tmp_path, poll_interval=0.1, progress=lambda m: None)
    with StandIn(kc, "sp-upgrade"):
        first = d.deploy(OLD, timeout=60)
    api = KubeApi(kc)
    gens = {c.name: api.get("apps/v1", "StatefulSet", c.name, "sp-upgrade")["metadata"]["generation"]
            for c in cluster_components()}
    calls = []
    # a later process upgrades: it finds tenants and TLS in the cluster
    d2 = KubeDeployer(kc, "sp-upgrade", storage=GCS, workdir=tmp_path, poll_interval=0.1, progress=lambda m: None)
    with StandIn(kc, "sp-upgrade", delay=0.5) as standin:
        target = d2.upgrade(NEW, on_swap=lambda c, phase, info: calls.append((c, phase, dict(info), time.monotonic())),
                            timeout=60)
    assert [(c, p) for c, p, _, _ in calls] == [(c, p) for c in ("cortex", "victorialogs", "prometheus")
                                                for p in ("stopping", "starting", "ready")]
    info = {(c, p): i for c, p, i, _ in calls}
    assert info[("victorialogs", "stopping")] == {"from": "v1.24.0", "to": "v1.52.2",
                                               "image": "victoriametrics/victoria-logs:v1.52.2"}
    assert info[("cortex", "ready")]["from"] == "v1.20.1" and info[("cortex", "ready")]["rollout_seconds"] >= 0.4
    # each 'done' came only after the stand-in controller marked that component's new generation rolled out,
    # and the next component started only after it
    for comp in ("cortex", "victorialogs", "prometheus"):
        done_at = next(t for c, p, _, t in calls if (c, p) == (comp, "ready"))
        marked_at = next(t for gen, t in standin.marked[comp] if gen == gens[comp] + 1)
        assert marked_at <= done_at
    starts = [t for c, p, _, t in calls if p == "stopping"]
    dones = [t for c, p, _, t in calls if p == "ready"]
    assert dones[0] <= starts[1] and dones[1] <= starts[2]
    live = {n: api.get("apps/v1", "StatefulSet", n, "sp-upgrade") for n in gens}
    assert {n: s["spec"]["template"]["spec"]["containers"][0]["image"] for n, s in live.items()} == EXPECTED_IMAGES[
        NEW.name]
    assert {n: s["metadata"]["generation"] - gens[n] for n, s in live.items()} == {
        "cortex": 1, "victorialogs": 1, "gateway": 0, "prometheus": 1}
    assert [t.to_dict() for t in target.tenants] == [t.to_dict() for t in first.tenants]
    assert target.gateway_url == first.gateway_url and target.release == NEW.name
    with StandIn(kc, "sp-upgrade"):
        d2.delete(timeout=60)


@pytest.mark.slow
def test_rollout_and_load_balancer_timeouts_are_one_line(control_plane, tmp_path):
    kc = control_plane.kubeconfig()
    d = KubeDeployer(kc, "sp-timeout", storage=S3, workdir=tmp_path, poll_interval=0.2, progress=lambda m: None)
    with StandIn(kc, "sp-timeout", lb=None, hold={"victorialogs"}):
        t0 = time.monotonic()
        with pytest.raises(ComponentError) as exc:
            d.deploy(NEW, timeout=2)
        assert time.monotonic() - t0 < 6
    assert re.fullmatch(r"gateway \(Service sp-timeout/gateway, type LoadBalancer\) has no load-balancer address "
                        r"after [12]s: the cluster's load-balancer controller did not provision one", str(exc.value))
    with StandIn(kc, "sp-timeout", hold={"victorialogs"}):
        with pytest.raises(ComponentError) as exc:
            d.deploy(NEW, timeout=4)
    msg = str(exc.value)
    assert msg.startswith("victorialogs (StatefulSet sp-timeout/victorialogs) was not rolled out after ")
    assert "waiting for the StatefulSet controller to observe generation 1 (observed 0)" in msg
    assert "\n" not in msg
    with StandIn(kc, "sp-timeout"):
        d.delete(timeout=60)
