"""The Kubernetes deployer: the platform's components as StatefulSets in a
namespace of a cluster. The AWS (EKS) and GCP (GKE) providers make the cluster
and the bucket, then hand both to a :class:`KubeDeployer`.

What it makes, in one namespace (``stackproof`` unless told):

- a ConfigMap per component with its configuration, rendered by the same
  component classes the local provider uses, in a :class:`PlatformContext`
  for the cluster: components listen on all interfaces, reach each other by
  Service DNS names, keep their files under ``/stackproof`` (``config/``,
  ``data/``, ``tls/``, ``logs/``: the local state directory's layout), and use
  the bucket given as ``storage`` with credentials from the environment (the
  node role or workload identity: no key in any config);
- Secrets for everything secret: the gateway's token map and the tenants
  (``gateway-tokens``), the agent's token (``prometheus-token``), the platform
  CA and the gateway's certificate and key (``gateway-tls``). No ConfigMap
  holds a token: nginx.conf includes the token map from its Secret;
- a Service and a StatefulSet per component (Cortex, Loki, the nginx gateway,
  the Prometheus agent); the stores keep their data on a PersistentVolumeClaim;
  readiness probes on ``/ready`` (the agent: ``/-/ready``; the gateway: a
  plain-HTTP ``/healthz`` on a port of its own);
- the gateway's Service is a LoadBalancer; its address goes into the server
  certificate and the target's ``gateway_url``;
- a ServiceAccount for the pods (no API token mounted), annotated with the
  cloud identity for the bucket when ``storage`` names one
  (``aws_role_arn``: IRSA; ``gcp_service_account``: workload identity),
  else the node's role or service account reaches the bucket.

Everything is applied server-side (``application/apply-patch+yaml``, field
manager ``stackproof``, forced) through the kubernetes client's connection,
and waited for: a StatefulSet is rolled out when its controller has seen the
newest generation, every replica is updated and ready, and the current
revision is the update revision. A component's pod template carries a hash of
its configuration, so a changed config rolls the pods like a changed image.

The platform's state lives in the cluster (tenants in ``gateway-tokens``, TLS
in ``gateway-tls``), so a later process can upgrade, collect or delete it.
Tokens never appear in a message, a log line, an artifact or a ConfigMap.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import re
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import urlencode, urlsplit

from .. import say
from ..components import BY_NAME, Component, PlatformContext
from ..components.base import Store
from ..components.gateway import render_nginx_conf, render_token_map
from ..errors import ComponentError, ConfigError, StackproofError, one_line
from ..releases import Release
from ..target import DEFAULT_LIMITS, Target, Tenant
from ..tls import TLSFiles, make_ca, make_server_cert
from .base import SwapHook
from .local import LIMITED_OVERRIDES, new_tenants, state_root

FIELD_MANAGER = "stackproof"
PART_OF = "stackproof"
HASH_ANNOTATION = "stackproof/config-hash"

# ---------------------------------------------------------------------------
# images: the one place they are chosen

# nginx stable, pinned: the release's 'gateway' key is the version of
# stackproof's gateway *configuration*, not of nginx
GATEWAY_NGINX = "1.28.0"
GATEWAY_IMAGE = f"nginx:{GATEWAY_NGINX}"
# makes the stores' data directories on their volumes before they start
TOOLS_IMAGE = "busybox:1.37.0"
# component -> (repository, tag from the release's version: {version} as
# released, e.g. v3.7.8; {bare} without the 'v', e.g. 3.7.8)
IMAGES = {
    "cortex": ("cortexproject/cortex", "{version}"),
    "loki": ("grafana/loki", "{bare}"),
    "prometheus": ("prom/prometheus", "{version}"),
    "gateway": ("nginx", GATEWAY_NGINX),
}


def image_for(component: str, release: Release) -> str:
    repo, tag = IMAGES[component]
    version = release.version(BY_NAME[component].release_key)
    return f"{repo}:{tag.format(version=version, bare=version.lstrip('v'))}"


# ---------------------------------------------------------------------------
# how each component runs in the cluster

ROOT = PurePosixPath("/stackproof")  # the pod's 'state directory': config/, data/, tls/, logs/
# container ports (upstream's usual ones); Services publish the same numbers
CLUSTER_PORTS = {"cortex": 9009, "cortex-grpc": 9095, "loki": 3100, "loki-grpc": 9095,
                 "gateway": 443, "prometheus": 9090}
GATEWAY_HEALTH_PORT = 8080
TLS_DIR = ROOT / "tls"
CLUSTER_TLS = TLSFiles(Path(TLS_DIR / "ca.pem"), Path(TLS_DIR / "gateway.pem"), Path(TLS_DIR / "gateway-key.pem"))


class Workload:
    """A component's shape as a StatefulSet."""

    def __init__(self, name: str, binary: str, ports: dict[str, str], probe: tuple[str, str],
                 uid: int | None = None, volume: bool = False):
        self.name = name
        self.binary = binary  # the program's path in its image
        self.ports = ports  # container port name -> CLUSTER_PORTS key
        self.probe = probe  # (path, container port name) of the readiness probe
        self.uid = uid  # the image's user, who must own the data directories
        self.volume = volume  # a PersistentVolumeClaim for its data (the stores)

    @property
    def component(self) -> Component:
        return BY_NAME[self.name]


# in the local provider's start and upgrade order: stores first, then the
# gateway, then the agent (its S3 server has no place here: the cloud's bucket does that)
WORKLOADS = (
    Workload("cortex", "/bin/cortex", {"http": "cortex", "grpc": "cortex-grpc"}, ("/ready", "http"),
             volume=True),
    Workload("loki", "/usr/bin/loki", {"http": "loki", "grpc": "loki-grpc"}, ("/ready", "http"),
             uid=10001, volume=True),
    Workload("gateway", "/usr/sbin/nginx", {"https": "gateway"}, ("/healthz", "health")),
    Workload("prometheus", "/bin/prometheus", {"http": "prometheus"}, ("/-/ready", "http"), uid=65534),
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns1123_label(s: str) -> bool:
    return len(s) <= 63 and bool(_DNS1123_LABEL.fullmatch(s))


def is_label_value(s: str) -> bool:
    return len(s) <= 63 and bool(_LABEL_VALUE.fullmatch(s))


def is_label_key(s: str) -> bool:
    prefix, _, name = s.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.fullmatch(name))


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# ---------------------------------------------------------------------------
# the platform CA and the gateway's certificate

class GatewayPKI:
    """The platform CA and the gateway's server certificate (the chain, like
    the local provider's) for the names the gateway is reached by. The CA key
    is not kept: a new name means a new CA."""

    def __init__(self, ca_pem: bytes, cert_pem: bytes, key_pem: bytes):
        self.ca_pem, self.cert_pem, self.key_pem = ca_pem, cert_pem, key_pem

    @classmethod
    def issue(cls, platform: str, hosts: list[str]) -> "GatewayPKI":
        from cryptography.hazmat.primitives import serialization
        ca_key, ca = make_ca(f"stackproof {platform} CA")
        key, cert = make_server_cert(ca_key, ca, hosts)
        pem = serialization.Encoding.PEM
        return cls(ca.public_bytes(pem), cert.public_bytes(pem) + ca.public_bytes(pem),
                   key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def hosts(self) -> set[str]:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return set()
        return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
            str(n) for n in san.get_values_for_type(x509.IPAddress)}

    def not_after(self) -> dt.datetime:
        from cryptography import x509
        return x509.load_pem_x509_certificate(self.cert_pem).not_valid_after_utc

    def covers(self, hosts: list[str]) -> bool:
        """Valid for another day for every one of ``hosts`` (a damaged certificate covers nothing)."""
        try:
            have = self.hosts()
            fresh = self.not_after() - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=1)
        except ValueError:
            return False
        return fresh and all(h in have for h in hosts)


# ---------------------------------------------------------------------------
# the API: server-side apply and reads through the kubernetes client's connection

# (apiVersion, kind) -> (path prefix, plural, namespaced)
RESOURCES = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1", "statefulsets", True),
}


class ApiError(StackproofError):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class KubeApi:
    """The few calls the deployer makes, on the connection (TLS, client
    certificates, bearer tokens, exec plugins) that
    ``kubernetes.config.new_client_from_config_dict`` sets up. No retries:
    callers poll with deadlines of their own."""

    def __init__(self, kubeconfig: dict, timeout: float = 10.0):
        try:
            from kubernetes import config as kube_config
        except ImportError:  # pragma: no cover - the 'cloud' extra
            raise StackproofError("the kubernetes package is missing: pip install 'stackproof[cloud]'") from None
        if not isinstance(kubeconfig, dict) or not kubeconfig.get("clusters"):
            raise ConfigError("kubeconfig: expected a mapping with 'clusters', 'users' and 'contexts'")
        try:
            self.client = kube_config.new_client_from_config_dict(kubeconfig)
        except Exception as exc:  # the loader's errors name the bad field
            raise ConfigError(f"kubeconfig: {one_line(exc)}") from None
        self.server = self.client.configuration.host.rstrip("/")
        self.timeout = timeout

    def _headers(self, content_type: str | None) -> dict:
        headers = {"Accept": "application/json", "User-Agent": "stackproof"}
        if content_type:
            headers["Content-Type"] = content_type
        # refreshes an exec plugin's token when it expires
        auth = self.client.configuration.auth_settings().get("BearerToken")
        if auth and auth.get("value"):
            headers[auth.get("key", "authorization")] = auth["value"]
        return headers

    def request(self, method: str, path: str, *, query: dict | None = None, body: dict | None = None,
                content_type: str | None = None, timeout: float | None = None,
                ok: tuple[int, ...] = (200, 201), allow: tuple[int, ...] = ()) -> tuple[int, bytes]:
        """One request; a status in ``ok`` or ``allow`` is returned, anything
        else raises :class:`ApiError` with the server's one-line reason."""
        import urllib3

        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        t = timeout or self.timeout
        try:
            r = self.client.rest_client.pool_manager.request(
                method, url, body=json.dumps(body).encode() if body is not None else None,
                headers=self._headers(content_type), timeout=urllib3.Timeout(connect=min(t, 5.0), read=t),
                retries=False, preload_content=True)
        except Exception as exc:  # urllib3's connection errors: one line, no traceback
            raise ApiError(f"cannot reach the Kubernetes API at {self.server}: "
                           f"{self.reason(exc, t, urlsplit(self.server).hostname)}") from None
        if r.status in ok or r.status in allow:
            return r.status, r.data
        raise ApiError(f"{method} {path}: HTTP {r.status} {self.status_message(r.data) or r.reason}", r.status)

    def json(self, method: str, path: str, **kw) -> tuple[int, dict]:
        status, data = self.request(method, path, **kw)
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {}

    @staticmethod
    def status_message(data: bytes) -> str:
        try:
            return one_line(json.loads(data).get("message", ""))
        except (ValueError, AttributeError):
            return one_line(data.decode(errors="replace"), 200)

    @staticmethod
    def reason(exc: BaseException, timeout: float, host: str | None = None) -> str:
        """The root cause of a failed connection, in a few words."""
        seen = exc
        for _ in range(5):
            inner = getattr(seen, "reason", None)
            if not isinstance(inner, BaseException):
                break
            seen = inner
        text = str(seen)
        name = type(seen).__name__
        if "NameResolution" in name or re.search(r"Name or service not known|nodename nor servname|"
                                                 r"Temporary failure in name resolution|No address associated", text):
            return f"cannot resolve the host name {host}" if host else "cannot resolve the host name"
        if "Timeout" in name or "timed out" in text:
            return f"no answer within {timeout:g}s"
        if "refused" in text.lower():
            return "connection refused"
        if "SSL" in name or "certificate" in text.lower():
            return f"TLS: {one_line(text, 160)}"
        m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        return one_line(m.group(1), 160) if m else f"{name}: {one_line(text, 160)}"

    def check(self) -> dict:
        """GET /version with a short bounded timeout, or one line saying why not.
        The bound holds for name resolution too, which no socket timeout covers."""
        bound = min(self.timeout, 5.0)
        answer: dict = {}

        def ask() -> None:
            try:
                answer["ok"] = self.request("GET", "/version", timeout=bound, allow=(401, 403))
            except BaseException as exc:  # handed to the caller's thread
                answer["error"] = exc

        asker = threading.Thread(target=ask, name="stackproof-kube-version", daemon=True)
        asker.start()
        asker.join(bound + 1.0)
        if "error" in answer:
            raise answer["error"]
        if "ok" not in answer:
            raise ApiError(f"cannot reach the Kubernetes API at {self.server}: no answer within {bound:g}s")
        status, data = answer["ok"]
        if status != 200:
            raise ApiError(f"the Kubernetes API at {self.server} refused stackproof's credentials "
                           f"(HTTP {status} on /version)", status)
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError(f"cannot reach the Kubernetes API at {self.server}: /version did not answer JSON "
                           f"(not a Kubernetes API server?)") from None

    # -- objects -----------------------------------------------------------
    @staticmethod
    def path(api_version: str, kind: str, name: str, namespace: str | None = None) -> str:
        prefix, plural, namespaced = RESOURCES[(api_version, kind)]
        if namespaced:
            return f"{prefix}/namespaces/{namespace}/{plural}/{name}"
        return f"{prefix}/{plural}/{name}"

    def apply(self, manifest: dict) -> dict:
        """Server-side apply: the server merges, validates and owns the result."""
        meta = manifest["metadata"]
        path = self.path(manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace"))
        try:
            return self.json("PATCH", path, query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=manifest,
                             content_type="application/apply-patch+yaml")[1]
        except ApiError as exc:
            if exc.status:
                raise ApiError(f"applying {manifest['kind']} {meta.get('namespace', '') and meta['namespace'] + '/'}"
                               f"{meta['name']} failed: {str(exc).split(': ', 1)[-1]}", exc.status) from None
            raise

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        status, obj = self.json("GET", self.path(api_version, kind, name, namespace), allow=(404,))
        return None if status == 404 else obj

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        status, _ = self.request("DELETE", self.path(api_version, kind, name, namespace), ok=(200, 202),
                                 allow=(404,), body={"kind": "DeleteOptions", "apiVersion": "v1",
                                                     "propagationPolicy": "Background"},
                                 content_type="application/json")
        return status != 404

    def list(self, path: str, selector: str | None = None) -> list[dict]:
        status, obj = self.json("GET", path, query={"labelSelector": selector} if selector else None, allow=(404,))
        return [] if status == 404 else obj.get("items", [])


def _subset(live, wanted) -> bool:
    """Whether ``live`` (as the server stores it, defaults added) has every field of ``wanted``."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(_subset(live.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(_subset, live, wanted))
    return live == wanted


# ---------------------------------------------------------------------------
# the deployer

STORAGE_TYPES = ("s3", "gcs")
STORES = ("cortex", "loki")  # the stores that may have a bucket of their own (storage["buckets"])
SERVICE_ACCOUNT = "stackproof"
# a cloud identity for the stores' bucket access, as the pods' ServiceAccount
# annotation: IRSA on EKS, workload identity on GKE. Without one, the node's
# role (EKS) or service account (GKE) is used.
IDENTITY_ANNOTATIONS = {"aws_role_arn": "eks.amazonaws.com/role-arn",
                        "gcp_service_account": "iam.gke.io/gcp-service-account"}


def check_storage(storage: dict) -> dict:
    if not isinstance(storage, dict) or storage.get("type") not in STORAGE_TYPES:
        raise ConfigError(f"storage: 'type' must be one of {', '.join(STORAGE_TYPES)}, got "
                          f"{storage.get('type') if isinstance(storage, dict) else storage!r}")
    if not storage.get("bucket"):
        raise ConfigError(f"storage: a {storage['type']} storage needs 'bucket'")
    if storage["type"] == "s3" and not storage.get("region"):
        raise ConfigError("storage: an s3 storage needs 'region'")
    for key in ("access_key_id", "secret_access_key", "service_account"):
        if key in storage:
            raise ConfigError(f"storage: {key!r} is not accepted: the stores take credentials from the node "
                              "role or workload identity, never from a config map")
    for key in IDENTITY_ANNOTATIONS:
        if key in storage and not (isinstance(storage[key], str) and storage[key]):
            raise ConfigError(f"storage: {key!r} must be a non-empty string")
    # a bucket per store: a misspelt store would silently put both in 'bucket'
    buckets = storage.get("buckets", {})
    if not isinstance(buckets, dict) or any(k not in STORES or not (isinstance(v, str) and v)
                                            for k, v in buckets.items()):
        raise ConfigError(f"storage: 'buckets' must map {' and '.join(STORES)} to bucket names")
    return dict(storage)


class KubeDeployer:
    """Deploys, upgrades, collects and deletes the platform in one namespace."""

    def __init__(self, kubeconfig: dict, namespace: str = "stackproof",
                 storage: dict | None = None, labels: dict[str, str] | None = None,
                 api_timeout: float = 10.0, *, provider: str = "kube", platform: str | None = None,
                 workdir: Path | None = None, service_annotations: dict[str, str] | None = None,
                 volume_size: str = "10Gi", storage_class: str | None = None,
                 poll_interval: float = 2.0, progress: Callable[[str], None] = say):
        if not is_dns1123_label(namespace):
            raise ConfigError(f"namespace {namespace!r} is not a valid name (lowercase letters, digits, '-'; "
                              "at most 63)")
        self.namespace = namespace
        self.storage = check_storage(storage if storage is not None else {})
        self.labels = dict(labels or {})
        for k, v in self.labels.items():
            if not is_label_key(str(k)):
                raise ConfigError(f"label key {k!r} is not a valid Kubernetes label name")
            if not isinstance(v, str) or not is_label_value(v):
                raise ConfigError(f"label {k}={v!r}: not a valid Kubernetes label value "
                                  "(at most 63 letters, digits, '-', '_', '.')")
        self.api_timeout = api_timeout
        self.provider = provider
        self.platform = platform or namespace
        self.workdir = Path(workdir) if workdir else state_root() / "kube" / self.platform
        self.service_annotations = dict(service_annotations or {})
        self.volume_size = volume_size
        self.storage_class = storage_class
        self.poll_interval = poll_interval
        self.say = progress
        self._kubeconfig = kubeconfig
        self._api: KubeApi | None = None
        self.tenants: list[Tenant] | None = None
        self.pki: GatewayPKI | None = None
        self.lb_host: str | None = None

    # -- API ----------------------------------------------------------------
    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self._kubeconfig, self.api_timeout)
        return self._api

    @property
    def server(self) -> str:
        return self.api.server

    def check_api(self) -> dict:
        """GET /version, bounded; a one-line error if the API cannot be reached."""
        return self.api.check()

    # -- rendering (pure) ----------------------------------------------------
    def service_host(self, name: str) -> str:
        return f"{name}.{self.namespace}.svc"

    def gateway_hosts(self) -> list[str]:
        """Every name the gateway's certificate must carry."""
        svc = "gateway"
        hosts = [svc, f"{svc}.{self.namespace}", f"{svc}.{self.namespace}.svc",
                 f"{svc}.{self.namespace}.svc.cluster.local", "localhost", "127.0.0.1"]
        if self.lb_host:
            hosts.insert(0, self.lb_host)
        return hosts

    def _pki(self) -> GatewayPKI:
        if self.pki is None or not self.pki.covers(self.gateway_hosts()):
            self.pki = GatewayPKI.issue(self.platform, self.gateway_hosts())
        return self.pki

    def context(self, tenants: list[Tenant]) -> PlatformContext:
        """The components' view of the cluster (see the module's docstring)."""
        overrides = {comp: {t.name: dict(limits) for t in tenants if t.role == "limited"}
                     for comp, limits in LIMITED_OVERRIDES.items()}
        return PlatformContext(
            name=self.platform, root=Path(ROOT), ports=dict(CLUSTER_PORTS), tenants=tenants, tls=CLUSTER_TLS,
            host="127.0.0.1", listen_host="0.0.0.0", overrides=overrides, storage=dict(self.storage),
            hosts={n: self.service_host(n) for n in ("cortex", "loki", "gateway")})

    def component_configs(self, release: Release, tenants: list[Tenant]) -> dict[str, dict[str, str]]:
        """Every component's configuration files, by component: file name -> text.
        None of them holds a token or a key."""
        import yaml

        ctx = self.context(tenants)
        out: dict[str, dict[str, str]] = {}
        for name in ("cortex", "loki"):
            store = BY_NAME[name]
            out[name] = {
                f"{name}.yaml": yaml.safe_dump(store.config(ctx, release.version(name)), sort_keys=False),
                f"{name}-overrides.yaml": yaml.safe_dump({"overrides": ctx.overrides.get(name, {})}, sort_keys=False),
            }
        out["gateway"] = {"nginx.conf": render_nginx_conf(
            ctx, release.version("gateway"), token_map_file=str(ctx.config_dir / "token-map.conf"),
            run_as_root=False, health_port=GATEWAY_HEALTH_PORT)}
        out["prometheus"] = {"prometheus.yml": yaml.safe_dump(BY_NAME["prometheus"].config(ctx), sort_keys=False)}
        return out

    def _meta(self, name: str, component: str | None = None, namespaced: bool = True) -> dict:
        labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": FIELD_MANAGER}
        if component:
            labels["app.kubernetes.io/name"] = component
        labels.update(self.labels)
        meta = {"name": name, "labels": labels}
        if namespaced:
            meta["namespace"] = self.namespace
        return meta

    @staticmethod
    def selector(component: str) -> dict[str, str]:
        return {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/name": component}

    def render(self, release: Release, tenants: list[Tenant]) -> dict[str, list[dict]]:
        """Manifests by apply group: 'namespace', 'tls', then each workload
        in upgrade order (its ConfigMap, Secrets, Service, StatefulSet)."""
        if not tenants:
            raise ConfigError("a platform needs at least one tenant")
        if sum(1 for t in tenants if t.role == "system") != 1:
            raise ConfigError("a platform needs exactly one tenant with role 'system' (the agent's)")
        ctx = self.context(tenants)
        configs = self.component_configs(release, tenants)
        pki = self._pki()
        sa_meta = self._meta(SERVICE_ACCOUNT)
        identity = {ann: self.storage[key] for key, ann in IDENTITY_ANNOTATIONS.items() if self.storage.get(key)}
        if identity:
            sa_meta["annotations"] = identity
        groups: dict[str, list[dict]] = {
            "namespace": [{"apiVersion": "v1", "kind": "Namespace",
                           "metadata": self._meta(self.namespace, namespaced=False)},
                          # the pods' identity; they never call the Kubernetes API: no token mounted
                          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": sa_meta,
                           "automountServiceAccountToken": False}],
            "tls": [{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": self._meta("gateway-tls", "gateway"),
                     "data": {"tls.crt": _b64(pki.cert_pem), "tls.key": _b64(pki.key_pem),
                              "ca.crt": _b64(pki.ca_pem)}}],
        }
        tenants_doc = json.dumps([t.to_dict() for t in tenants], indent=1)
        secrets_of = {
            "gateway": [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": self._meta("gateway-tokens", "gateway"),
                         "data": {"token-map.conf": _b64(render_token_map(tenants) + "\n"),
                                  "tenants.json": _b64(tenants_doc)}}],
            "prometheus": [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": self._meta("prometheus-token", "prometheus"),
                            "data": {"prometheus-token": _b64(
                                next(t.token for t in tenants if t.role == "system"))}}],
        }
        for w in WORKLOADS:
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self._meta(f"{w.name}-config", w.name),
                  "data": configs[w.name]}
            own_secrets = secrets_of.get(w.name, [])
            digest = hashlib.sha256(json.dumps(
                [cm["data"]] + [s["data"] for s in own_secrets]
                + ([groups["tls"][0]["data"]] if w.name in ("gateway", "prometheus") else []),
                sort_keys=True).encode()).hexdigest()[:32]
            groups[w.name] = [cm, *own_secrets, self._service(w), self._statefulset(w, ctx, release, digest)]
        return groups

    def manifests(self, release: Release, tenants: list[Tenant]) -> list[dict]:
        """Every manifest, in apply order. Pure: no API call."""
        return [m for group in self.render(release, tenants).values() for m in group]

    def _service(self, w: Workload) -> dict:
        ports = [{"name": pname, "port": CLUSTER_PORTS[key], "targetPort": pname, "protocol": "TCP"}
                 for pname, key in w.ports.items()]
        spec: dict = {"selector": self.selector(w.name), "ports": ports}
        meta = self._meta(w.name, w.name)
        if w.name == "gateway":
            spec["type"] = "LoadBalancer"
            if self.service_annotations:
                meta["annotations"] = dict(self.service_annotations)
        else:
            spec["type"] = "ClusterIP"
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}

    def _volumes(self, w: Workload) -> tuple[list[dict], list[dict]]:
        """(volumes, the main container's mounts)."""
        config_sources: list[dict] = [{"configMap": {"name": f"{w.name}-config"}}]
        if w.name == "gateway":
            config_sources.append({"secret": {"name": "gateway-tokens",
                                              "items": [{"key": "token-map.conf", "path": "token-map.conf"}]}})
        if w.name == "prometheus":
            config_sources.append({"secret": {"name": "prometheus-token"}})
        secret_bearing = len(config_sources) > 1
        config: dict = {"sources": config_sources}
        if secret_bearing:
            config["defaultMode"] = 0o440
        volumes = [{"name": "config", "projected": config}]
        mounts = [{"name": "config", "mountPath": str(ROOT / "config"), "readOnly": True}]
        if w.name == "gateway":
            volumes.append({"name": "tls", "secret": {"secretName": "gateway-tls", "defaultMode": 0o440, "items": [
                {"key": "tls.crt", "path": CLUSTER_TLS.server_cert.name},
                {"key": "tls.key", "path": CLUSTER_TLS.server_key.name},
                {"key": "ca.crt", "path": CLUSTER_TLS.ca_cert.name}]}})
        elif w.name == "prometheus":
            volumes.append({"name": "tls", "secret": {"secretName": "gateway-tls", "items": [
                {"key": "ca.crt", "path": CLUSTER_TLS.ca_cert.name}]}})
        if w.name in ("gateway", "prometheus"):
            mounts.append({"name": "tls", "mountPath": str(TLS_DIR), "readOnly": True})
        if not w.volume:
            volumes.append({"name": "data", "emptyDir": {}})
        mounts.append({"name": "data", "mountPath": str(ROOT / "data")})
        if w.name == "gateway":
            volumes.append({"name": "logs", "emptyDir": {}})
            mounts.append({"name": "logs", "mountPath": str(ROOT / "logs")})
        return volumes, mounts

    def _statefulset(self, w: Workload, ctx: PlatformContext, release: Release, digest: str) -> dict:
        c = w.component
        version = release.version(c.release_key)
        args = [str(a) for a in c.args(ctx, Path(w.binary), version)]
        if w.name == "gateway":
            # nginx writes its logs to files: make them the container's stdout and
            # stderr (as the official image does), and its temp directories' parent
            script = ('mkdir -p "$1" "$2" && ln -sf /dev/stderr "$2/gateway-error.log" && '
                      'ln -sf /dev/stdout "$2/gateway-access.log" && shift 2 && exec "$@"')
            command = ["/bin/sh", "-c", script, "gateway-start", str(ROOT / "data" / "gateway"),
                       str(ROOT / "logs"), *args]
        else:
            command = args
        volumes, mounts = self._volumes(w)
        probe_path, probe_port = w.probe
        ports = [{"name": pname, "containerPort": CLUSTER_PORTS[key], "protocol": "TCP"}
                 for pname, key in w.ports.items()]
        if w.name == "gateway":
            ports.append({"name": "health", "containerPort": GATEWAY_HEALTH_PORT, "protocol": "TCP"})
        container = {
            "name": w.name, "image": image_for(w.name, release), "imagePullPolicy": "IfNotPresent",
            "command": command, "ports": ports, "volumeMounts": mounts,
            "readinessProbe": {"httpGet": {"path": probe_path, "port": probe_port},
                               "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3},
        }
        pod_spec: dict = {"containers": [container], "volumes": volumes,
                          "serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
                          "terminationGracePeriodSeconds": int(c.stop_timeout) + 15,
                          "enableServiceLinks": False}
        if w.uid is not None:
            pod_spec["securityContext"] = {"fsGroup": w.uid, "fsGroupChangePolicy": "OnRootMismatch"}
        if w.volume and isinstance(c, Store):
            # the directories the local provider makes before a store starts
            dirs = [str(ROOT / "data" / c.name)] + [str(ROOT / "data" / c.name / s) for s in c.data_subdirs]
            init = {"name": "prepare", "image": TOOLS_IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["mkdir", "-p", *dirs],
                    "volumeMounts": [{"name": "data", "mountPath": str(ROOT / "data")}]}
            if w.uid is not None:
                init["securityContext"] = {"runAsUser": w.uid, "runAsGroup": w.uid}
            pod_spec["initContainers"] = [init]
        template_labels = {**self.selector(w.name), "app.kubernetes.io/version": version}
        spec: dict = {
            "serviceName": w.name, "replicas": 1, "selector": {"matchLabels": self.selector(w.name)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": template_labels, "annotations": {HASH_ANNOTATION: digest}},
                         "spec": pod_spec},
        }
        if w.volume:
            pvc_spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": self.volume_size}}}
            if self.storage_class:
                pvc_spec["storageClassName"] = self.storage_class
            # immutable once made: nothing here may change between releases
            spec["volumeClaimTemplates"] = [{"metadata": {"name": "data", "labels": self.selector(w.name)},
                                             "spec": pvc_spec}]
        meta = self._meta(w.name, w.name)
        meta["labels"]["app.kubernetes.io/version"] = version
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec}

    # -- state in the cluster -----------------------------------------------
    def _read_state(self) -> None:
        """Tenants and TLS of a platform already in the namespace (a later process)."""
        if self.tenants is None:
            sec = self.api.get("v1", "Secret", "gateway-tokens", self.namespace)
            if sec and "tenants.json" in (sec.get("data") or {}):
                try:
                    raw = json.loads(base64.b64decode(sec["data"]["tenants.json"]))
                    self.tenants = [Tenant(t["name"], t["token"], t.get("role", "user")) for t in raw]
                except (ValueError, TypeError, KeyError):
                    raise StackproofError(f"Secret {self.namespace}/gateway-tokens has no readable tenants.json: "
                                          "not made by stackproof, or damaged") from None
        if self.pki is None:
            sec = self.api.get("v1", "Secret", "gateway-tls", self.namespace)
            if sec and all(k in (sec.get("data") or {}) for k in ("tls.crt", "tls.key", "ca.crt")):
                d = sec["data"]
                self.pki = GatewayPKI(base64.b64decode(d["ca.crt"]), base64.b64decode(d["tls.crt"]),
                                      base64.b64decode(d["tls.key"]))

    def _apply(self, manifests: list[dict]) -> None:
        for m in manifests:
            self.api.apply(m)

    # -- waiting --------------------------------------------------------------
    def rollout_problem(self, sts: dict | None) -> str | None:
        """None when the StatefulSet is rolled out, else what it waits on."""
        if sts is None:
            return "the StatefulSet to exist"
        meta, spec, st = sts.get("metadata", {}), sts.get("spec", {}), sts.get("status") or {}
        gen, observed = meta.get("generation", 0), st.get("observedGeneration", 0)
        if observed < gen:
            return f"the StatefulSet controller to observe generation {gen} (observed {observed})"
        want = spec.get("replicas", 1)
        updated, ready = st.get("updatedReplicas", 0), st.get("readyReplicas", 0)
        if not (updated == ready == want == st.get("replicas", 0)):
            return (f"{want} updated and ready replica{'s' if want != 1 else ''} "
                    f"({st.get('replicas', 0)} present, {updated} updated, {ready} ready)")
        if st.get("currentRevision") != st.get("updateRevision"):
            return f"revision {st.get('updateRevision')} to replace {st.get('currentRevision')}"
        return None

    def _pod_problem(self, component: str) -> str:
        """Why a component's pod is not ready, if a container says so (one clause)."""
        try:
            pods = self.api.list(f"/api/v1/namespaces/{self.namespace}/pods",
                                 ",".join(f"{k}={v}" for k, v in self.selector(component).items()))
        except StackproofError:
            return ""
        for pod in pods:
            st = pod.get("status") or {}
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                state = cs.get("state") or {}
                for kind in ("waiting", "terminated"):
                    if state.get(kind) and state[kind].get("reason") not in (None, "Completed"):
                        msg = state[kind].get("message") or ""
                        return (f"; pod {pod['metadata']['name']} container {cs.get('name')}: "
                                f"{state[kind]['reason']}" + (f" ({one_line(msg, 120)})" if msg else ""))
            for cond in st.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    return f"; pod {pod['metadata']['name']} not scheduled: {one_line(cond.get('message', ''), 120)}"
        return ""

    def wait_rollout(self, component: str, timeout: float) -> float:
        """Seconds until the component's StatefulSet is rolled out; a
        one-line :class:`ComponentError` naming what it waits on after ``timeout``."""
        t0 = time.monotonic()

        def probe():
            problem = self.rollout_problem(self.api.get("apps/v1", "StatefulSet", component, self.namespace))
            return problem is None, problem

        done, problem = self._poll(probe, t0 + timeout)
        if not done:
            raise ComponentError(f"{component} (StatefulSet {self.namespace}/{component}) was not rolled out "
                                 f"after {timeout:.0f}s: waiting for {problem}{self._pod_problem(component)}")
        return time.monotonic() - t0

    def wait_load_balancer(self, timeout: float) -> str:
        """The gateway Service's load-balancer address (hostname or IP)."""
        def probe():
            svc = self.api.get("v1", "Service", "gateway", self.namespace)
            ingress = (svc or {}).get("status", {}).get("loadBalancer", {}).get("ingress") or []
            host = next((h for h in (i.get("hostname") or i.get("ip") for i in ingress) if h), None)
            return host is not None, host

        done, host = self._poll(probe, time.monotonic() + timeout)
        if not done:
            raise ComponentError(f"gateway (Service {self.namespace}/gateway, type LoadBalancer) has no "
                                 f"load-balancer address after {timeout:.0f}s: the cluster's load-balancer "
                                 "controller did not provision one")
        return host

    # -- the deployer's interface ----------------------------------------------
    def deploy(self, release: Release, tenants: list[Tenant] | None = None, timeout: float = 900) -> Target:
        """Namespace, stores, the gateway's load balancer, then (with its
        address in the certificate) the gateway and the agent; waits for all."""
        deadline = time.monotonic() + timeout
        version = self.check_api()
        self.say(f"Kubernetes API at {self.server} ({version.get('gitVersion', '?')}); "
                 f"deploying release {release.name} into namespace {self.namespace}")
        if tenants is not None:
            self.tenants = list(tenants)
        self._read_state()  # a platform already there keeps its tokens and, if it still fits, its CA
        if self.tenants is None:
            self.tenants = new_tenants()
        groups = self.render(release, self.tenants)
        first = groups["namespace"] + groups["cortex"] + groups["loki"] + [
            m for m in groups["gateway"] if m["kind"] == "Service"]
        self._apply(first)
        self.say("waiting for the gateway's load balancer")
        self.lb_host = self.wait_load_balancer(max(1.0, deadline - time.monotonic()))
        groups = self.render(release, self.tenants)  # the certificate now names the load balancer
        self._apply(groups["tls"] + groups["gateway"] + groups["prometheus"])
        for w in WORKLOADS:
            secs = self.wait_rollout(w.name, max(1.0, deadline - time.monotonic()))
            self.say(f"{w.name} rolled out ({image_for(w.name, release)}) after {secs:.1f}s more")
        return self._target(release)

    def upgrade(self, release: Release, on_swap: SwapHook | None = None, timeout: float = 900) -> Target:
        """Apply the new release component by component in the local
        provider's order (stores first), each rolled out before the next;
        ``on_swap(component, 'start'|'done', info)`` around each that changes."""
        deadline = time.monotonic() + timeout
        self.check_api()
        self._read_state()
        if self.tenants is None or self.pki is None:
            raise StackproofError(f"no stackproof platform in namespace {self.namespace} at {self.server}: "
                                  "deploy first")
        self.lb_host = self.wait_load_balancer(max(1.0, min(60.0, deadline - time.monotonic())))
        groups = self.render(release, self.tenants)
        self._apply(groups["namespace"] + groups["tls"])
        for w in WORKLOADS:
            new_sts = groups[w.name][-1]
            live = self.api.get("apps/v1", "StatefulSet", w.name, self.namespace)
            # the server adds defaults to what it stores: changed means a field we set differs
            changed = live is None or not _subset(live["spec"]["template"], new_sts["spec"]["template"])
            info = {"from": (live or {}).get("metadata", {}).get("labels", {}).get("app.kubernetes.io/version"),
                    "to": release.version(w.component.release_key), "image": image_for(w.name, release)}
            if changed:
                if on_swap:
                    on_swap(w.name, "start", info)
                self.say(f"upgrading {w.name}: {info['from']} -> {info['to']}")
            self._apply(groups[w.name])
            secs = self.wait_rollout(w.name, max(1.0, deadline - time.monotonic()))
            if changed:
                info["rollout_seconds"] = round(secs, 2)
                if on_swap:
                    on_swap(w.name, "done", info)
        return self._target(release)

    def _target(self, release: Release) -> Target:
        assert self.tenants is not None and self.pki is not None and self.lb_host
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = self.workdir / "ca.pem"
        ca.write_bytes(self.pki.ca_pem)
        host = self.lb_host
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return Target(name=self.platform, provider=self.provider, gateway_url=f"https://{host}",
                      tenants=list(self.tenants), ca_file=str(ca), capabilities=["metrics", "logs"],
                      release=release.name, limits=dict(DEFAULT_LIMITS))

    def collect_artifacts(self, dest: Path) -> list[Path]:
        """Every container's log (and the previous one after a restart), the
        ConfigMaps (secret-free by construction) and the namespace's events.
        Any known token is blanked out of what is written."""
        dest = Path(dest)
        self.check_api()
        if self.tenants is None:
            try:
                self._read_state()
            except StackproofError:
                pass
        tokens = [t.token for t in self.tenants or []]

        def scrub(text: str) -> str:
            for tok in tokens:
                text = text.replace(tok, "<token>")
            return text

        out: list[Path] = []

        def write(rel: str, text: str) -> None:
            p = dest / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(scrub(text))
            out.append(p)

        ns = self.namespace
        notes = []
        for pod in self.api.list(f"/api/v1/namespaces/{ns}/pods"):
            name = pod["metadata"]["name"]
            statuses = {s["name"]: s for s in (pod.get("status", {}).get("initContainerStatuses") or [])
                        + (pod.get("status", {}).get("containerStatuses") or [])}
            spec = pod.get("spec", {})
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                runs = [False] + ([True] if statuses.get(c["name"], {}).get("restartCount", 0) else [])
                for previous in runs:
                    q = {"container": c["name"], "timestamps": "true", "limitBytes": str(50 << 20)}
                    if previous:
                        q["previous"] = "true"
                    try:
                        _, data = self.api.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}/log", query=q,
                                                   timeout=max(self.api_timeout, 30))
                    except StackproofError as exc:
                        notes.append(f"{name}/{c['name']}{' (previous)' if previous else ''}: {exc}")
                        continue
                    write(f"logs/{name}.{c['name']}{'.previous' if previous else ''}.log",
                          data.decode(errors="replace"))
        for cm in self.api.list(f"/api/v1/namespaces/{ns}/configmaps",
                                f"app.kubernetes.io/part-of={PART_OF}"):
            for key, text in (cm.get("data") or {}).items():
                write(f"config/{cm['metadata']['name']}/{key}", text)
        events = self.api.list(f"/api/v1/namespaces/{ns}/events")
        lines = []
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            obj = e.get("involvedObject", {})
            lines.append(f"{e.get('lastTimestamp') or e.get('eventTime') or '-'} {e.get('type', '')} "
                         f"{e.get('reason', '')} {obj.get('kind', '')}/{obj.get('name', '')}: "
                         f"{one_line(e.get('message', ''), 500)}")
        write("events.txt", "\n".join(lines) + ("\n" if lines else ""))
        if notes:
            write("collect-errors.txt", "\n".join(notes) + "\n")
        return out

    def delete(self, timeout: float = 300) -> None:
        """LoadBalancer Services first (so the cloud releases the load
        balancers while the cluster still runs its controller), then the
        namespace; waits until both are gone. Idempotent."""
        deadline = time.monotonic() + timeout
        self.check_api()
        ns = self.namespace
        if self.api.get("v1", "Namespace", ns) is None:
            return
        lbs = [s["metadata"]["name"] for s in self.api.list(f"/api/v1/namespaces/{ns}/services")
               if s.get("spec", {}).get("type") == "LoadBalancer"]
        for name in lbs:
            self.say(f"deleting LoadBalancer Service {ns}/{name}")
            self.api.delete("v1", "Service", name, ns)
        self._wait_gone(lambda: [n for n in lbs if self.api.get("v1", "Service", n, ns) is not None],
                        deadline, timeout, "LoadBalancer Service(s) {} still present (the cloud's load-balancer "
                                           "controller has not released them)")
        self.say(f"deleting namespace {ns}")
        self.api.delete("v1", "Namespace", ns)

        def ns_left() -> list[str]:
            obj = self.api.get("v1", "Namespace", ns)
            return [] if obj is None else [f"{ns} ({obj.get('status', {}).get('phase', '?')})"]

        self._wait_gone(ns_left, deadline, timeout, "namespace {} still present")
        self.tenants, self.pki, self.lb_host = None, None, None

    def _wait_gone(self, remaining: Callable[[], list[str]], deadline: float, timeout: float, what: str) -> None:
        def probe():
            left = remaining()
            return not left, left

        done, left = self._poll(probe, deadline)
        if not done:
            raise StackproofError(f"delete: {what.format(', '.join(left))} after {timeout:.0f}s")

    def _poll(self, probe: Callable[[], tuple[bool, object]], deadline: float) -> tuple[bool, object]:
        """Call ``probe`` (-> done, what it saw) every poll interval until it is done or
        ``deadline`` passes; returns its last answer. An API error is not swallowed: it ends the wait."""
        while True:
            done, seen = probe()
            if done or time.monotonic() >= deadline:
                return done, seen
            time.sleep(min(self.poll_interval, max(0.05, deadline - time.monotonic())))


__all__ = ["KubeDeployer", "KubeApi", "ApiError", "GatewayPKI", "IMAGES", "GATEWAY_IMAGE", "TOOLS_IMAGE",
           "WORKLOADS", "CLUSTER_PORTS", "image_for", "check_storage"]
