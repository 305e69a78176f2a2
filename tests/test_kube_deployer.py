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

from harness.components import (COMPONENTS, GATEWAY, LOGS_RULER, LOGS_STORE, METRICS_STORE, OBJECT_STORE, SENDER,
                                 PlatformContext, by_role)
from harness.components.gateway import render_nginx_conf, render_token_maps
from harness.components.kubeapiserver import VERSION as KUBE_VERSION
from harness.components.kubeapiserver import LoopbackControlPlane, resolve_etcd, resolve_kube_apiserver
from harness.errors import ComponentError, ConfigError, StackproofError
from harness.ports import free_ports
from harness.providers.kube import (CAPABILITIES, HASH_ANNOTATION, OBJECT_STORAGE_SECRET, TENANTS_SECRET, TLS_SECRET,
                                    TOOLS_IMAGE, ApiError, KubeApi, KubeDeployer, cluster_components, image_for,
                                    is_dns1123_label, is_label_key, is_label_value, platform_images)
from harness.providers.base import Provider as StackproofProvider
from harness.releases import Catalog
from harness.target import Durability, Target, Tenant
from harness.tls import TLSFiles

CATALOG = Catalog.load()
OLD, NEW = CATALOG.get("2026.10"), CATALOG.get("2026.11")
S3 = {"type": "s3", "bucket": "sp-test-bucket", "region": "eu-west-1"}
GCS = {"type": "gcs", "bucket": "sp-test-gcs"}
LABELS = {"stackproof/owner": "ci", "stackproof/run-id": "r-123", "stackproof/expires": "2026-12-01T00.00Z"}
API = ApiClient()


def local_ref(upstream: str) -> str:
    """What a user who imported or mirrored the images maps an upstream reference to."""
    repo, _, tag = upstream.rpartition(":")
    return f"localhost/stackproof/{repo.rsplit('/', 1)[-1]}:{tag}"


# every image of every release, as the local cluster's image map has them
IMAGE_MAP = {ref: local_ref(ref) for ref in platform_images()}


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
@pytest.mark.parametrize("storage", [S3, GCS, None], ids=lambda s: s["type"] if s else "in-cluster-nodeport")
def test_every_manifest_is_a_valid_api_object_and_round_trips(release, storage):
    d = deployer(storage) if storage else deployer(None, gateway_service="NodePort", images=IMAGE_MAP)
    manifests = d.manifests(release, tenants())
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
    # 3 config maps (VictoriaLogs has no config file), the token maps, the agent's token, TLS twice, and
    # each tenant's log rule evaluator its kept rule files
    assert refs == 7 + len(tenants())
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
        if "configMap" in vol:
            sources = [{"configMap": vol["configMap"]}]
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
                files = container_files(manifests, name)  # a pattern ('-rule=<dir>/*.yml') matches one
                assert path in files or ("*" in path and any(PurePosixPath(f).match(path) for f in files)), (
                    name, path)
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
    evaluators = {f"vmalert-{t.name}": f"victoriametrics/vmalert:{release.version('vmalert')}" for t in tenants()}
    assert images == {**EXPECTED_IMAGES[release.name], **evaluators}
    assert images == {c.name: image_for(c, release) for c in deployer().components(tenants())}
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
                                                        "/rules-tmp", "/alerts", "/alertmanager")]
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
    assert [c.name for c in cluster_components()] == ["cortex", "victorialogs", "vmalert", "gateway", "prometheus"]
    assert set(EXPECTED_PODS) | {"vmalert"} == {c.name for c in cluster_components()}
    assert [c.role for c in cluster_components()] == [METRICS_STORE, LOGS_STORE, LOGS_RULER, GATEWAY, SENDER]
    # every component has a shape; the Collector (it tails files of this machine) runs only where the
    # node shares this machine's file system (local-kube); the object store only when no cloud bucket is
    # given; the log rule evaluator once per tenant, so not before the tenants are known
    assert [c.name for c in COMPONENTS if c.cluster is None] == []
    assert [c.name for c in COMPONENTS if c.cluster.host_dirs] == ["otelcol"]
    assert [c.role for c in deployer(None).components()] == [OBJECT_STORE, METRICS_STORE, LOGS_STORE, GATEWAY,
                                                              SENDER]
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
    for c in d.components(ts):
        o, n = old[("StatefulSet", c.name)]["spec"], new[("StatefulSet", c.name)]["spec"]
        for field in ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy"):
            assert o.get(field) == n.get(field)


def test_apply_and_upgrade_order_is_the_local_providers():
    """Object store (without a cloud bucket), stores, then the gateway, then the agent."""
    shaped = [c.name for c in COMPONENTS if c.cluster is not None and not c.cluster.host_dirs]
    assert list(dict.fromkeys(c.template_name for c in deployer(None).components(tenants()))) == shaped
    assert [c.name for c in cluster_components()] == [n for n in shaped if by_role(OBJECT_STORE).name != n]
    evaluators = [f"vmalert-{t.name}" for t in tenants()]  # one per tenant, after the logs store
    sts = [m["metadata"]["name"] for m in deployer().manifests(NEW, tenants()) if m["kind"] == "StatefulSet"]
    assert sts == ["cortex", "victorialogs", *evaluators, "gateway", "prometheus"]
    sts = [m["metadata"]["name"] for m in deployer(None).manifests(NEW, tenants()) if m["kind"] == "StatefulSet"]
    assert sts == ["s3", "cortex", "victorialogs", *evaluators, "gateway", "prometheus"]


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
        "    upstream victorialogs { server victorialogs.stackproof.svc:9428; keepalive 32; }",
        *(f"    upstream vmalert-{t.name} {{ server vmalert-{t.name}.stackproof.svc:8880; keepalive 32; }}"
          for t in tenants())]
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
# an API that cannot be reached: one line (how quickly: benchmarks/failure_bounds.py)


def test_unreachable_api_is_one_line_naming_the_server():
    port = free_ports(1)[0]  # nothing listens there
    d = KubeDeployer(unreachable_kubeconfig(f"https://127.0.0.1:{port}"), storage=S3, api_timeout=2)
    for call in (lambda: d.deploy(NEW), lambda: d.upgrade(NEW), lambda: d.delete(),
                 lambda: d.collect_artifacts(Path("/nonexistent"))):
        with pytest.raises(StackproofError) as exc:
            call()
        assert str(exc.value) == f"cannot reach the Kubernetes API at https://127.0.0.1:{port}: connection refused"


def test_unresolvable_api_host_is_one_line():
    """What the AWS provider meets with moto: an EKS endpoint name that no DNS knows."""
    d = KubeDeployer(unreachable_kubeconfig("https://stackproof-test-cluster.invalid/"), storage=GCS, api_timeout=2)
    with pytest.raises(StackproofError) as exc:
        d.deploy(NEW)
    assert str(exc.value) in (
        "cannot reach the Kubernetes API at https://stackproof-test-cluster.invalid: "
        "cannot resolve the host name stackproof-test-cluster.invalid",
        # a resolver that does not answer at all: the bound still holds
        "cannot reach the Kubernetes API at https://stackproof-test-cluster.invalid: no answer within 2s")


def test_silent_api_times_out_within_the_bound():
    """A server that accepts the connection and never answers: the /version
    check gives up after api_timeout, not after urllib3's defaults (none: it would
    wait for the test's own timeout), and says so. How long it takes is a figure
    (benchmarks/failure_bounds.py), not an assertion."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    try:
        d = KubeDeployer(unreachable_kubeconfig(f"https://127.0.0.1:{port}"), storage=GCS, api_timeout=1)
        with pytest.raises(StackproofError) as exc:
            d.deploy(NEW, timeout=600)
    finally:
        srv.close()
    assert str(exc.value) == f"cannot reach the Kubernetes API at https://127.0.0.1:{port}: no answer within 1s"


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
    root = tmp_path_factory.mktemp("kube")
    # privileged pods allowed, as every real cluster's API server does (kubeadm, k3s, EKS, GKE
    # standard): the durability suite's kill helper is one
    apiserver = root / "kube-apiserver"
    apiserver.write_text(f'#!/bin/sh\nexec {resolve_kube_apiserver(KUBE_VERSION)} "$@" --allow-privileged=true\n')
    apiserver.chmod(0o755)
    cp = LoopbackControlPlane(root, apiserver, resolve_etcd())
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
            # the moment is taken before the status is written: the deployer may read it before this
            # thread runs its next line
            self.marked.setdefault(name, []).append((gen, time.monotonic()))
            self._patch_status(f"/apis/apps/v1/namespaces/{self.ns}/statefulsets/{name}", {
                "observedGeneration": gen, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                "currentReplicas": 1, "availableReplicas": 1, "currentRevision": revision,
                "updateRevision": revision})
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
    assert target.capabilities == CAPABILITIES  # pinned in tests/test_cluster_capabilities.py
    assert target.release == NEW.name
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
            for c in cluster_components() if not c.per_tenant}  # the log rule evaluators: the same in both
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
        with pytest.raises(ComponentError) as exc:
            d.deploy(NEW, timeout=2)
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


# ---------------------------------------------------------------------------
# any cluster: a NodePort gateway, an image map, the S3 server in the cluster


def containers_of(manifests) -> list[dict]:
    return [c for _, spec in pod_specs(manifests) for c in spec["containers"] + spec.get("initContainers", [])]


def test_gateway_service_is_a_load_balancer_by_default_or_a_node_port():
    lb = by_key(deployer().manifests(NEW, tenants()))
    assert lb[("Service", "gateway")]["spec"]["type"] == "LoadBalancer"
    d = deployer(None, gateway_service="NodePort", service_annotations={"x.example/lb": "internal"})
    np = by_key(d.manifests(NEW, tenants()))
    gw = np[("Service", "gateway")]
    assert gw["spec"]["type"] == "NodePort" and [p["port"] for p in gw["spec"]["ports"]] == [443]
    assert "annotations" not in gw["metadata"]  # a load balancer's annotations mean nothing to a NodePort
    # the in-cluster S3 server at a node port too (the durability suite lists its bucket); the rest inside
    assert np[("Service", "s3")]["spec"]["type"] == "NodePort"
    assert {n for (k, n), m in np.items() if k == "Service" and m["spec"]["type"] == "ClusterIP"} == {
        "cortex", "victorialogs", "prometheus", *(f"vmalert-{t.name}" for t in tenants())}
    assert by_key(deployer(None).manifests(NEW, tenants()))[("Service", "s3")]["spec"]["type"] == "ClusterIP"
    # the address clients use goes into the certificate
    d.lb_host, d.gateway_port = "10.9.8.7", 31443
    assert "10.9.8.7" in d._pki().hosts()


@pytest.mark.parametrize("storage", [S3, None], ids=["cloud-bucket", "in-cluster"])
def test_image_map_is_applied_to_every_container_and_init_container(storage):
    d = deployer(storage, images=IMAGE_MAP)
    containers = containers_of(d.manifests(NEW, tenants()))
    # every container and init container (a log rule evaluator per tenant)
    assert len(containers) == (7 if storage is None else 5) + len(tenants())
    for c in containers:
        assert c["image"].startswith("localhost/stackproof/"), c["name"]
        assert c["image"] in IMAGE_MAP.values() and c["imagePullPolicy"] == "IfNotPresent"
    # exactly the upstream images each container would have run, mapped
    plain = containers_of(deployer(storage).manifests(NEW, tenants()))
    assert [IMAGE_MAP[c["image"]] for c in plain] == [c["image"] for c in containers]
    assert IMAGE_MAP[TOOLS_IMAGE] in {c["image"] for c in containers}
    # a partial map maps what it names and leaves the rest upstream
    part = containers_of(deployer(storage, images={TOOLS_IMAGE: "mirror.example/busybox:1"}).manifests(
        NEW, tenants()))
    assert {c["image"] for c in part if c["name"] == "prepare"} == {"mirror.example/busybox:1"}
    assert {c["image"] for c in part if c["name"] == "cortex"} == {"cortexproject/cortex:v1.21.1"}


def test_an_image_the_platform_does_not_use_is_refused_in_one_line():
    with pytest.raises(ConfigError) as exc:
        deployer(None, images={**IMAGE_MAP, "registry.k8s.io/pause:3.10": "localhost/stackproof/pause:3.10"})
    msg = str(exc.value)
    assert msg.startswith("images: registry.k8s.io/pause:3.10 is no image of the platform (its images: ")
    assert "\n" not in msg and "cortexproject/cortex:v1.21.1" in msg and TOOLS_IMAGE in msg
    assert "versitygw:v1.8.0" in msg
    with pytest.raises(ConfigError, match=r"^images: expected a mapping of image references"):
        deployer(None, images={"busybox:1.37.0": 3})


def test_in_cluster_s3_runs_as_a_pod_with_its_buckets_and_secret_only_credentials():
    d = deployer(None)
    manifests = d.manifests(NEW, tenants())
    objects = by_key(manifests)
    key_id, key = d.object_storage_keys
    assert len(key) >= 30 and key_id.startswith("sp")
    # the S3 server: its image, root, a volume, its buckets made before it starts, a readiness probe
    sts = objects[("StatefulSet", "s3")]
    spec = sts["spec"]["template"]["spec"]
    s3 = spec["containers"][0]
    assert s3["image"] == "versitygw:v1.8.0" and "securityContext" not in spec
    assert s3["command"] == ["/usr/local/bin/versitygw", "--region", "us-east-1", "--port", "0.0.0.0:7070",
                             "--health", "/health", "posix", "/stackproof/data/bucket/s3"]
    assert s3["readinessProbe"]["httpGet"] == {"path": "/health", "port": "s3"}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert spec["initContainers"] == [{"name": "prepare", "image": TOOLS_IMAGE, "imagePullPolicy": "IfNotPresent",
                                       "command": ["mkdir", "-p", *(f"/stackproof/data/bucket/s3/{b}" for b in (
                                           "cortex", "cortex-rules", "cortex-alerts"))],
                                       "volumeMounts": [{"name": "data", "mountPath": "/stackproof/data"}]}]
    # one per store that keeps its data in a bucket: the metrics store's blocks, rules and Alertmanager configs
    assert by_role(OBJECT_STORE).buckets() == ("cortex", "cortex-rules", "cortex-alerts")
    # credentials: in one Secret, read through the environment by the server and the stores with a bucket
    assert secret_files(manifests)[OBJECT_STORAGE_SECRET] == {"access_key_id": key_id, "secret_access_key": key}
    ref = {"secretKeyRef": {"name": OBJECT_STORAGE_SECRET, "key": None}}

    def env_of(name):
        return {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in
                objects[("StatefulSet", name)]["spec"]["template"]["spec"]["containers"][0].get("env", [])
                if e["valueFrom"] == {**ref, "secretKeyRef": {**ref["secretKeyRef"],
                                                              "key": e["valueFrom"]["secretKeyRef"]["key"]}}}

    assert env_of("s3") == {"ROOT_ACCESS_KEY_ID": "access_key_id", "ROOT_SECRET_ACCESS_KEY": "secret_access_key"}
    assert env_of("cortex") == {"AWS_ACCESS_KEY_ID": "access_key_id", "AWS_SECRET_ACCESS_KEY": "secret_access_key"}
    assert [env_of(n) for n in ("victorialogs", "gateway", "prometheus")] == [{}, {}, {}]
    # no credential in any ConfigMap, command, argument or env value: only in the Secret
    for m in manifests:
        if m["kind"] == "Secret":
            continue
        text = json.dumps(m)
        for value in (key_id, key, base64.b64encode(key.encode()).decode()):
            assert value not in text, f"an object storage credential is in {m['kind']} {m['metadata']['name']}"
    # the stores' config: the S3 server's Service, plain HTTP, path-style, the store's bucket, no keys
    cortex = yaml.safe_load(objects[("ConfigMap", "cortex-config")]["data"]["cortex.yaml"])
    assert cortex["blocks_storage"]["backend"] == "s3"
    assert cortex["blocks_storage"]["s3"] == {"endpoint": "s3.stackproof.svc:7070", "bucket_name": "cortex",
                                              "insecure": True, "region": "us-east-1",
                                              "bucket_lookup_type": "path"}
    # the credentials are made once and kept: a second rendering has the same
    assert secret_files(d.manifests(NEW, tenants()))[OBJECT_STORAGE_SECRET]["secret_access_key"] == key
    # with a cloud bucket: no server, no such Secret, no env
    cloud = deployer(S3).manifests(NEW, tenants())
    assert ("StatefulSet", "s3") not in by_key(cloud) and OBJECT_STORAGE_SECRET not in secret_files(cloud)
    assert all("env" not in c for c in containers_of(cloud))


def test_the_kill_pod_is_privileged_on_the_stores_node_in_the_hosts_pid_namespace():
    d = deployer(None, images=IMAGE_MAP)
    store = by_role(METRICS_STORE)
    pod = d.kill_pod(store, "node-7", "0123abcd" * 8, "stackproof-kill-x")
    assert model_round_trip(pod) == pod  # a valid Pod, every field known to the API
    spec = pod["spec"]
    assert spec["nodeName"] == "node-7" and spec["hostPID"] is True and spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False and spec["tolerations"] == [{"operator": "Exists"}]
    (c,) = spec["containers"]
    assert c["securityContext"] == {"privileged": True}
    assert c["image"] == IMAGE_MAP[TOOLS_IMAGE] == "localhost/stackproof/busybox:1.37.0"
    assert c["command"][:2] == ["/bin/sh", "-c"] and c["command"][-1] == "0123abcd" * 8
    script = c["command"][2]
    assert '"$d/cgroup"' in script and 'kill -9 "${d#/proc/}"' in script and '[ "$n" -gt 0 ]' in script
    # not one of the store's pods: the StatefulSet's selector does not match it
    selector = d.selector(store.name)
    assert not selector.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["namespace"] == "stackproof"


def test_kill_script_kills_exactly_the_processes_of_the_named_cgroup(tmp_path):
    """The helper's script, run by a real shell over a fake /proc: it picks the
    processes whose cgroup names the container, and fails when there is none."""
    script = deployer(None).kill_pod(by_role(LOGS_STORE), "n", "x", "k")["spec"]["containers"][0]["command"][2]
    proc = tmp_path / "proc"
    cid = "c0ffee" * 10
    for pid, cgroup in ((1, "0::/init.scope"), (4242, f"0::/kubepods.slice/cri-containerd-{cid}.scope"),
                        (4243, f"12:pids:/kubepods/besteffort/podX/{cid}"), (77, "0::/kubepods.slice/other.scope")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(cgroup + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kill").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/killed\n')
    (bin_dir / "kill").chmod(0o755)
    fake = script.replace("/proc/", f"{proc}/").replace("kill -9", f"{bin_dir}/kill -9")
    r = subprocess.run(["sh", "-c", fake, "stackproof-kill", cid], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted((tmp_path / "killed").read_text().split("\n")[:-1]) == ["-9 4242", "-9 4243"]
    assert r.stdout.strip() == f"killed 2 process(es) of container {cid}"
    r = subprocess.run(["sh", "-c", fake, "stackproof-kill", "f" * 64], capture_output=True, text=True)
    assert r.returncode == 1 and "killed 0 process(es)" in r.stdout


@pytest.mark.parametrize("options, expect", [
    ({"gateway_service": "ClusterIP"}, "gateway service type 'ClusterIP': expected one of LoadBalancer, NodePort"),
    ({"node_address": "10.0.0.1; rm"}, "node address '10.0.0.1; rm' is not a host name or an IP address"),
    ({"storage_class": "Fast SSD"}, "storage class 'Fast SSD' is not a valid name"),
])
def test_bad_cluster_options_are_one_clear_line(options, expect):
    with pytest.raises(ConfigError) as exc:
        deployer(None, **options)
    assert str(exc.value) == expect


def test_storage_class_goes_on_every_volume_claim():
    manifests = deployer(None, storage_class="local-path").manifests(NEW, tenants())
    claims = [v for m in manifests if m["kind"] == "StatefulSet" for v in m["spec"].get("volumeClaimTemplates", [])]
    assert len(claims) == 3 and {c["spec"]["storageClassName"] for c in claims} == {"local-path"}


def test_the_target_declares_restart_for_every_deployer_provider():
    """aws, gcp and kube all take their target from the deployer: 'restart' is in it."""
    from harness.providers.kube import CAPABILITIES
    assert CAPABILITIES == ["metrics", "logs", "tail", "agent", "restart", "remote-write-2", "otlp", "alerting",
                            "log-alerting", "alerting-webhook"]
    for module, cls in (("harness.providers.aws", "AWSProvider"), ("harness.providers.gcp", "GCPProvider"),
                        ("harness.providers.kubecluster", "KubeProvider")):
        provider = getattr(__import__(module, fromlist=[cls]), cls)
        for verb in ("stop_component", "kill_component", "start_component", "remove_local_data"):
            assert getattr(provider, verb) is not getattr(StackproofProvider, verb), (cls, verb)


def test_every_cluster_target_has_its_webhook_receiver_in_its_namespace(tmp_path):
    """No cluster's pods can be assumed to reach this machine: every cluster provider's
    target (kube, local-kube alike) has 'alerting-webhook' from a receiver in the
    platform's namespace, which the provider brings (``webhook_receiver``); none names a
    host address for it. (tests/test_cluster_webhook.py runs the receiver.)"""
    from harness.providers.common import declared_alerting
    from harness.providers.kube import CAPABILITIES
    from harness.providers.kubecluster import KubeProvider
    from harness.providers.localkube import LocalKubeProvider

    def deployers_target() -> Target:  # as KubeDeployer._target makes it
        return Target(name="lab", gateway_url="https://10.213.255.2:30443", tenants=tenants(),
                      capabilities=list(CAPABILITIES), alerting=declared_alerting())

    kube = KubeProvider("lab", kubeconfig=tmp_path / "kubeconfig", state_dir=tmp_path / "kube")
    local = LocalKubeProvider("lab", state_dir=tmp_path / "local-kube")
    for provider in (kube, local):
        provider._save_target(deployers_target(), NEW)
        again = Target.load(provider.target_file)
        assert again.capabilities == CAPABILITIES and again.has("alerting-webhook")
        assert again.alerting.webhook_host == "127.0.0.1"  # no receiver on this machine: it is not used
        assert again.has("log-alerting")  # vmalert per tenant, its rule files kept by the provider
        assert callable(provider.webhook_receiver)


def cli(argv: list[str]) -> int:
    """A command, in this process, as ``stackproof`` runs it (not through ``main``, which sets
    SIGPIPE's default action: that would end a pytest-xdist worker on a closed pipe)."""
    from harness.cli import build_parser
    args = build_parser().parse_args(argv)
    return args.func(args)


def test_up_provider_kube_help_teaches_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["up", "--provider", "kube", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--kubeconfig FILE", "--context NAME", "--namespace NAME", "--storage-class NAME",
                "--image-map FILE", "--gateway-service {LoadBalancer,NodePort}", "--node-address HOST",
                "$KUBECONFIG", "~/.kube/config", "stackproof up --provider kube"):
        assert opt in out, opt
    for command in ("status", "down"):
        with pytest.raises(SystemExit):
            cli([command, "--help"])
        assert "--provider {local,kube,local-kube}" in capsys.readouterr().out


def test_kube_provider_errors_are_one_line(tmp_path, monkeypatch):
    from harness.providers.kubecluster import KubeProvider
    monkeypatch.setenv("STACKPROOF_STATE", str(tmp_path / "state"))
    with pytest.raises(ConfigError) as exc:
        KubeProvider("p", kubeconfig=tmp_path / "nope").deployer
    assert str(exc.value) == (f"kubeconfig {tmp_path / 'nope'}: no such file (give one with --kubeconfig or "
                              "KUBECONFIG)")
    kc = tmp_path / "kc.yaml"
    kc.write_text(yaml.safe_dump(unreachable_kubeconfig()))
    with pytest.raises(ConfigError) as exc:
        KubeProvider("p", kubeconfig=kc, context="prod").deployer.api
    assert str(exc.value) == "kubeconfig: no context 'prod' (contexts: c)"
    bad_map = tmp_path / "images.json"
    bad_map.write_text(json.dumps({"images": {"nginx:latest": "mine/nginx:1"}}))
    with pytest.raises(ConfigError, match=r"^images: nginx:latest is no image of the platform \(its images: "):
        KubeProvider("p", kubeconfig=kc, image_map=bad_map)
    bad_map.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=rf"^image map {re.escape(str(bad_map))}: expected a mapping"):
        KubeProvider("p", kubeconfig=kc, image_map=bad_map)
    with pytest.raises(ConfigError, match="platform name"):
        KubeProvider("a b", kubeconfig=kc)
    # nothing deployed, nothing to take away: no cluster is asked
    assert KubeProvider("p").destroy() == {}
    assert KubeProvider("p").status()["state"] == "absent"


# ---------------------------------------------------------------------------
# the real kube-apiserver again: a NodePort platform with its own S3 server,
# and single components stopped, killed, started and given a fresh volume

NODE, NODE_IP = "node-1", "10.1.2.3"


class NodeStandIn(StandIn):
    """The StandIn, and also what the StatefulSet controller and one node's kubelet
    would do with pods and claims: a pod ``<name>-0`` (and the claim of each volume
    claim template) while the StatefulSet wants a replica, deleted when it wants
    none; pod status (running, ready, a container id); a kill helper pod's work
    (its target container restarted with a new id, the helper Succeeded); and the
    protection finalizer of a deleted claim removed. No gateway load balancer: the
    platform's Services are NodePorts."""

    def __init__(self, kubeconfig: dict, namespace: str, **kw):
        super().__init__(kubeconfig, namespace, lb=None, **kw)
        self.helpers: list[dict] = []  # the kill helper pods, as the API server stored them
        self.killed: list[str] = []  # the container ids they named
        self.claims_made: list[str] = []

    def _tick(self):
        ns_obj = self.api.get("v1", "Namespace", self.ns)
        if ns_obj is None:
            return
        if ns_obj["metadata"].get("deletionTimestamp"):
            self._finalize_namespace(ns_obj)
            return
        base = f"/api/v1/namespaces/{self.ns}"
        for pvc in self.api.list(f"{base}/persistentvolumeclaims"):
            if pvc["metadata"].get("deletionTimestamp") and pvc["metadata"].get("finalizers"):
                self.api.request("PATCH", f"{base}/persistentvolumeclaims/{pvc['metadata']['name']}",
                                 body={"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
        for sts in self.api.list(f"/apis/apps/v1/namespaces/{self.ns}/statefulsets"):
            name, gen = sts["metadata"]["name"], sts["metadata"]["generation"]
            want = sts["spec"].get("replicas", 1)
            pod = self.api.get("v1", "Pod", f"{name}-0", self.ns)
            if want and pod is None and name not in self.hold:
                self._make_pod(sts)
            elif not want and pod is not None:
                self.api.delete("v1", "Pod", f"{name}-0", self.ns, grace_seconds=0)
            st = sts.get("status") or {}
            if name in self.hold or st.get("observedGeneration") == gen:
                continue
            revision = f"{name}-" + hashlib.sha256(json.dumps(sts["spec"]["template"], sort_keys=True)
                                                   .encode()).hexdigest()[:10]
            self.marked.setdefault(name, []).append((gen, time.monotonic()))  # before: as above
            self._patch_status(f"/apis/apps/v1/namespaces/{self.ns}/statefulsets/{name}", {
                "observedGeneration": gen, "replicas": want, "readyReplicas": want, "updatedReplicas": want,
                "currentReplicas": want, "availableReplicas": want, "currentRevision": revision,
                "updateRevision": revision})
        for helper in self.api.list(f"{base}/pods", "app.kubernetes.io/component=kill"):
            if (helper.get("status") or {}).get("phase") == "Succeeded":
                continue
            cid = helper["spec"]["containers"][0]["command"][-1]
            self.helpers.append(helper)
            self.killed.append(cid)
            for pod in self.api.list(f"{base}/pods"):
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                if any(s.get("containerID") == f"containerd://{cid}" for s in statuses):
                    for s in statuses:
                        s["restartCount"] += 1
                        s["containerID"] = f"containerd://{secrets_hex()}"
                    self._patch_status(f"{base}/pods/{pod['metadata']['name']}", {"containerStatuses": statuses})
            self._patch_status(f"{base}/pods/{helper['metadata']['name']}", {"phase": "Succeeded"})

    def _make_pod(self, sts: dict) -> None:
        name = sts["metadata"]["name"]
        base = f"/api/v1/namespaces/{self.ns}"
        tpl = copy.deepcopy(sts["spec"]["template"])
        spec = tpl["spec"]
        for vct in sts["spec"].get("volumeClaimTemplates", []):
            claim = f"{vct['metadata']['name']}-{name}-0"
            if self.api.get("v1", "PersistentVolumeClaim", claim, self.ns) is None:
                self.api.request("POST", f"{base}/persistentvolumeclaims", content_type="application/json", body={
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "labels": vct["metadata"].get("labels", {})}, "spec": vct["spec"]})
                self.claims_made.append(claim)
            spec.setdefault("volumes", []).append({"name": vct["metadata"]["name"],
                                                   "persistentVolumeClaim": {"claimName": claim}})
        spec["nodeName"] = NODE
        self.api.request("POST", f"{base}/pods", content_type="application/json", body={
            "apiVersion": "v1", "kind": "Pod", "spec": spec,
            "metadata": {"name": f"{name}-0", "labels": tpl["metadata"]["labels"]}})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._patch_status(f"{base}/pods/{name}-0", {
            "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"],
                                   "imageID": "", "containerID": f"containerd://{secrets_hex()}",
                                   "state": {"running": {"startedAt": now}}} for c in spec["containers"]]})

    def _finalize_namespace(self, ns_obj: dict) -> None:
        base = f"/api/v1/namespaces/{self.ns}"
        for pod in self.api.list(f"{base}/pods"):
            self.api.delete("v1", "Pod", pod["metadata"]["name"], self.ns, grace_seconds=0)
        for pvc in self.api.list(f"{base}/persistentvolumeclaims"):
            self.api.request("PATCH", f"{base}/persistentvolumeclaims/{pvc['metadata']['name']}",
                             body={"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
            self.api.delete("v1", "PersistentVolumeClaim", pvc["metadata"]["name"], self.ns)
        super()._finalize_namespace(ns_obj)


def secrets_hex() -> str:
    return hashlib.sha256(str(time.monotonic_ns()).encode() + bytes(8)).hexdigest()


@pytest.fixture(scope="module")
def node(control_plane):
    """One ready Node with an InternalIP (a kubelet would register it)."""
    api = KubeApi(control_plane.kubeconfig())
    api.request("POST", "/api/v1/nodes", content_type="application/json",
                body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}, allow=(409,))
    api.request("PATCH", f"/api/v1/nodes/{NODE}/status", content_type="application/merge-patch+json", body={
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}],
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
    yield NODE_IP
    api.delete("v1", "Node", NODE)


def live_text_outside_secrets(api: KubeApi, ns: str) -> str:
    """Everything the server stores in the namespace but its Secrets, as text."""
    objs = [o for (kind, _), o in live_objects(api, ns).items() if kind != "Secret"]
    objs += api.list(f"/api/v1/namespaces/{ns}/pods")
    return json.dumps(objs)


@pytest.mark.slow
def test_nodeport_platform_with_its_own_s3_and_single_component_control(control_plane, node, tmp_path):
    kc = control_plane.kubeconfig()
    api = KubeApi(kc)
    ns = "sp-node"
    d = KubeDeployer(kc, ns, storage=None, workdir=tmp_path, poll_interval=0.1, gateway_service="NodePort",
                     images=IMAGE_MAP, progress=lambda m: None)
    with NodeStandIn(kc, ns) as standin:
        target = d.deploy(NEW, timeout=60)
        node_ports = {n: api.get("v1", "Service", n, ns)["spec"]["ports"][0]["nodePort"] for n in ("gateway", "s3")}
        assert target.gateway_url == f"https://{NODE_IP}:{node_ports['gateway']}"
        assert NODE_IP in d.pki.hosts() and "restart" in target.capabilities
        key_id, key = d.object_storage_keys
        assert target.object_storage == {
            "type": "s3", "endpoint": f"http://{NODE_IP}:{node_ports['s3']}", "access_key_id": key_id,
            "secret_access_key": key, "region": "us-east-1", "buckets": "cortex,cortex-rules,cortex-alerts",
            "metrics_bucket": "cortex"}
        # every pod the stand-in made from the StatefulSets runs the mapped images
        pods = api.list(f"/api/v1/namespaces/{ns}/pods")
        assert sorted(p["metadata"]["name"] for p in pods) == sorted([
            "cortex-0", "gateway-0", "prometheus-0", "s3-0", "victorialogs-0",
            *(f"vmalert-{t.name}-0" for t in target.tenants)])
        assert {c["image"] for p in pods for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])
                } <= set(IMAGE_MAP.values())
        # the S3 server came first: rolled out before any store was applied
        s3_done = standin.marked["s3"][0][1]
        assert all(standin.marked[n][0][1] >= s3_done for n in ("cortex", "victorialogs"))
        # its credentials: in the Secret only, never in what else the server stores
        text = live_text_outside_secrets(api, ns)
        assert key not in text and key_id not in text and base64.b64encode(key.encode()).decode() not in text
        # a later process finds the same credentials (the S3 server's data keeps its keys)
        d2 = KubeDeployer(kc, ns, storage=None, workdir=tmp_path / "2", poll_interval=0.1,
                          gateway_service="NodePort", images=IMAGE_MAP, progress=lambda m: None)
        assert d2.deploy(NEW, timeout=60).object_storage["secret_access_key"] == key
        assert d2.status()["state"] == "running"

        # stop: scaled to 0, its pod gone
        assert d2.stop_component(METRICS_STORE) == "stopped"
        assert api.get("apps/v1", "StatefulSet", "cortex", ns)["spec"]["replicas"] == 0
        assert api.get("v1", "Pod", "cortex-0", ns) is None
        assert d2.status()["components"]["cortex"]["running"] is False
        # its local data: the volume claim deleted, and gone
        assert d2.remove_local_data(METRICS_STORE) == [f"PersistentVolumeClaim {ns}/data-cortex-0"]
        assert api.get("v1", "PersistentVolumeClaim", "data-cortex-0", ns) is None
        assert api.get("v1", "PersistentVolumeClaim", "data-s3-0", ns) is not None  # the bucket's volume stays
        # start: back to one replica, ready, on a fresh claim
        made = len(standin.claims_made)
        assert d2.start_component(METRICS_STORE) >= 0
        assert api.get("apps/v1", "StatefulSet", "cortex", ns)["spec"]["replicas"] == 1
        assert standin.claims_made[made:] == ["data-cortex-0"]
        with pytest.raises(StackproofError, match=r"^cortex \(metrics-store\) is running; stop it before removing"):
            d2.remove_local_data(METRICS_STORE)

        # kill: a helper pod on the store's node SIGKILLs the container; the kubelet restarts it
        vl = api.get("v1", "Pod", "victorialogs-0", ns)
        cid = vl["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        d2.kill_component(LOGS_STORE)
        assert standin.killed == [cid]
        (helper,) = standin.helpers
        assert helper["spec"]["nodeName"] == NODE and helper["spec"]["hostPID"] is True
        assert helper["spec"]["containers"][0]["securityContext"] == {"privileged": True}
        assert helper["spec"]["containers"][0]["image"] == IMAGE_MAP[TOOLS_IMAGE]
        assert api.get("v1", "Pod", helper["metadata"]["name"], ns) is None  # deleted afterwards
        assert api.get("v1", "Pod", "victorialogs-0", ns)["status"]["containerStatuses"][0]["restartCount"] == 1
        assert d2.start_component(LOGS_STORE) >= 0  # ready again
        assert d2.status()["components"]["victorialogs"]["restarts"] == 1
        with pytest.raises(StackproofError, match=r"^unknown role 'cortex'; roles: "):
            d2.stop_component("cortex")
    with NodeStandIn(kc, ns):
        d2.delete(timeout=60)
    assert api.get("v1", "Namespace", ns) is None


@pytest.mark.slow
def test_kube_provider_deploys_from_a_kubeconfig_context_and_a_later_process_controls_it(
        control_plane, node, tmp_path, monkeypatch, capsys):
    """``--provider kube``: a kubeconfig file whose current context is another
    (unreachable) cluster, the loopback API server's context chosen; an image map
    file; the target file written; then, as the durability suite does, a provider
    found again from the target file alone stops and starts a store."""
    from harness.providers import get_provider
    from harness.providers.kubecluster import KubeProvider

    monkeypatch.setenv("STACKPROOF_STATE", str(tmp_path / "state"))
    loop = control_plane.kubeconfig()
    other = unreachable_kubeconfig()
    kc = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
          "clusters": other["clusters"] + loop["clusters"], "users": other["users"] + loop["users"],
          "contexts": other["contexts"] + loop["contexts"]}
    kc_file = tmp_path / "kubeconfig"
    kc_file.write_text(yaml.safe_dump(kc))
    image_map = tmp_path / "images.yaml"
    image_map.write_text(yaml.safe_dump({"images": IMAGE_MAP}))
    p = KubeProvider("lab", kubeconfig=kc_file, context="loopback", namespace="sp-kube", image_map=image_map,
                     gateway_service="NodePort", storage_class="local-path", timeout=60, poll_interval=0.1,
                     progress=lambda m: None)
    with NodeStandIn(loop, "sp-kube"):
        target = p.deploy(NEW)
        assert target.provider == "kube" and target.name == "lab" and "restart" in target.capabilities
        assert target.path == tmp_path / "state" / "kube-lab" / "target.yaml"
        assert Target.load(target.path).gateway_url.startswith(f"https://{NODE_IP}:")
        api = KubeApi(loop)
        claim = api.get("apps/v1", "StatefulSet", "cortex", "sp-kube")["spec"]["volumeClaimTemplates"][0]
        assert claim["spec"]["storageClassName"] == "local-path"
        # the durability suite's platform_control: get_provider(target.provider, platform=, target_file=)
        later = get_provider(target.provider, platform=target.name, target_file=target.path)
        assert isinstance(later, KubeProvider)
        assert later.settings["context"] == "loopback" and later.settings["namespace"] == "sp-kube"
        assert later.settings["images"] == IMAGE_MAP
        assert later.stop_component(LOGS_STORE) == "stopped"
        assert later.start_component(LOGS_STORE) >= 0
        # the CLI's status finds it by its platform name alone
        assert cli(["status", "--provider", "kube", "--platform", "lab"]) == 0
        out = capsys.readouterr().out
        assert "platform 'lab' (kube): running" in out and "victorialogs" in out and "restarts" in out
        assert cli(["down", "--provider", "kube", "--platform", "lab"]) == 0
    assert api.get("v1", "Namespace", "sp-kube") is None
    assert not (tmp_path / "state" / "kube-lab").exists()
    assert KubeProvider("lab").status()["state"] == "absent"
