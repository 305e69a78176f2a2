"""The platform as Kubernetes manifests, rendered without a cluster: pure
functions of the release, the tenants, the storage and the deployer's options.

Every component with a cluster shape (``Component.cluster``: image, program,
ports, probe, user, volume, secret mounts) becomes a ConfigMap of its
configuration files (if it has any), the Secrets it reads, a Service and a
StatefulSet, in the catalog's order; the renderer names no component and finds
the gateway by its role. Next to them: the namespace, the pods' ServiceAccount,
a Secret with the tenants (the platform's state) and one with the platform's
TLS. Tokens and keys are only ever in Secrets.

Where the platform meets the cluster it runs in, the deployer's options say:
the gateway's Service type (``gateway_service``: a cloud's ``LoadBalancer``, or
``NodePort`` on a cluster without a load-balancer controller), the storage
class of the volumes, an image map (``images``: upstream reference -> the
reference to pull, for a private registry or images imported into the
cluster) applied to every container and init container, and the object
storage: a cloud's bucket (``storage``), or, without one, the platform's own
S3 server as a pod with a bucket per store that uses one (credentials in a
Secret only, read by the pods through their environment).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path, PurePosixPath

from ...components import (COMPONENTS, GATEWAY, OBJECT_STORE, Component, PlatformContext, bucket_stores, by_role,
                           instances, stores)
from ...components.s3 import new_credentials
from ...errors import ConfigError
from ...releases import Catalog, Release
from ...target import Tenant
from ...tls import TLSFiles
from ..common import limited_overrides
from .client import FIELD_MANAGER
from .pki import GatewayPKI

PART_OF = "stackproof"
HASH_ANNOTATION = "stackproof/config-hash"
SERVICE_ACCOUNT = "stackproof"
TENANTS_SECRET = "stackproof-tenants"  # the tenants with their tokens: what a later process reads back
TLS_SECRET = "stackproof-tls"  # the platform CA, the gateway's certificate and key
# makes the data directories a component wants on its volume before it starts, and
# kills a store's process for the durability suite (sh, grep, kill)
TOOLS_IMAGE = "busybox:1.37.0"
# a component's files the provider keeps at run time (Component.cluster_kept): ConfigMap '<instance>-kept'
KEPT_SUFFIX = "-kept"
# the in-cluster object storage's credentials (keys: access_key_id, secret_access_key)
OBJECT_STORAGE_SECRET = "stackproof-object-storage"
OBJECT_STORAGE_REGION = "us-east-1"
# what an S3 client (the stores') reads its credentials from when its config has none
S3_CLIENT_ENV = {"AWS_ACCESS_KEY_ID": "access_key_id", "AWS_SECRET_ACCESS_KEY": "secret_access_key"}
# how the gateway is reached from outside the cluster. NodePort, not a port-forward, on a
# cluster without a load balancer: a port-forward carries every request through the API
# server and the kubelet's stream (another data path than a user's, a bottleneck for the
# load suite) and dies with the process that holds it
GATEWAY_SERVICES = ("LoadBalancer", "NodePort")

ROOT = PurePosixPath("/stackproof")  # the pod's 'state directory': config/, data/, tls/, logs/
TLS_DIR = ROOT / "tls"
CLUSTER_TLS = TLSFiles(Path(TLS_DIR / "ca.pem"), Path(TLS_DIR / "gateway.pem"), Path(TLS_DIR / "gateway-key.pem"))
# a component's TLS file -> (its key in the TLS Secret, its file under tls/)
TLS_ITEMS = {"cert": ("tls.crt", CLUSTER_TLS.server_cert.name), "key": ("tls.key", CLUSTER_TLS.server_key.name),
             "ca": ("ca.crt", CLUSTER_TLS.ca_cert.name)}

STORAGE_TYPES = ("s3", "gcs")
# a cloud identity for the stores' bucket access, as the pods' ServiceAccount
# annotation: IRSA on EKS, workload identity on GKE. Without one, the node's
# role (EKS) or service account (GKE) is used.
IDENTITY_ANNOTATIONS = {"aws_role_arn": "eks.amazonaws.com/role-arn",
                        "gcp_service_account": "iam.gke.io/gcp-service-account"}

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


def cluster_components(storage: dict | None = None, host_shared: bool = False) -> list[Component]:
    """The components that run in a cluster, in the local provider's start and
    upgrade order (object store, stores, gateway, agent), for ``storage`` as the
    components see it (``PlatformContext.storage``). None: a cloud's bucket, which
    does the object store's work, so that none runs in the cluster. A component the
    harness hands files on this machine (``host_dirs``) runs only where the node
    shares this machine's file system (``host_shared``)."""
    shaped = [c for c in COMPONENTS if c.cluster is not None and (host_shared or not c.cluster.host_dirs)]
    if storage is None:
        return [c for c in shaped if c.role != OBJECT_STORE]
    return [c for c in shaped if c.enabled(storage)]


def platform_images(catalog: Catalog | None = None) -> list[str]:
    """Every upstream image a platform of any release in the catalog runs (and the tools image)."""
    cat = catalog or Catalog.load()
    found = {TOOLS_IMAGE}
    for release in cat.releases:
        found |= {image_for(c, release) for c in COMPONENTS if c.cluster is not None}
    return sorted(found)


def check_images(images: dict | None, catalog: Catalog | None = None) -> dict[str, str]:
    """The image map (upstream reference -> the reference to use), or a one-line
    :class:`ConfigError`: a key that is no image of the platform is a typo or a stale map."""
    if images is None:
        return {}
    if not isinstance(images, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                               for k, v in images.items()):
        raise ConfigError("images: expected a mapping of image references to image references")
    used = platform_images(catalog)
    unknown = sorted(set(images) - set(used))
    if unknown:
        raise ConfigError(f"images: {', '.join(unknown)} {'is no image' if len(unknown) == 1 else 'are no images'} "
                          f"of the platform (its images: {', '.join(used)})")
    return dict(images)


def version_of(c: Component, release: Release) -> str | None:
    """The release's version of ``c``; a component the release does not pin may pin its own (``version``)."""
    return release.version(c.release_key) if c.release_key else getattr(c, "version", None)


def image_for(c: Component, release: Release) -> str:
    assert c.cluster is not None
    return c.cluster.image_for(version_of(c, release))


def check_storage(storage: dict) -> dict:
    """The cloud's object storage as the deployer takes it: ``{"type": "s3"|"gcs",
    "bucket": ..., "buckets": {store: bucket}, "region": ...}``, with ``buckets``
    reduced to the stores that keep data in a bucket. A bucket named for a store
    this platform does not run (a cloud provider's bucket for a replaced store) is
    left out, as long as every store that uses a bucket is named too; otherwise the
    name is taken for a misspelling. One-line :class:`ConfigError` otherwise."""
    if not isinstance(storage, dict) or storage.get("type") not in STORAGE_TYPES:
        raise ConfigError(f"storage: 'type' must be one of {', '.join(STORAGE_TYPES)}, got "
                          f"{storage.get('type') if isinstance(storage, dict) else storage!r}")
    if not storage.get("bucket"):
        raise ConfigError(f"storage: {storage['type']} storage needs 'bucket'")
    if storage["type"] == "s3" and not storage.get("region"):
        raise ConfigError("storage: an s3 storage needs 'region'")
    for key in ("access_key_id", "secret_access_key", "service_account"):
        if key in storage:
            raise ConfigError(f"storage: {key!r} is not accepted: the stores take credentials from the node "
                              "role or workload identity, never from a config map")
    for key in IDENTITY_ANNOTATIONS:
        if key in storage and not (isinstance(storage[key], str) and storage[key]):
            raise ConfigError(f"storage: {key!r} must be a non-empty string")
    buckets = storage.get("buckets", {})
    bucketed = list(bucket_stores())
    if not isinstance(buckets, dict) or not all(isinstance(v, str) and v for v in buckets.values()):
        raise ConfigError(f"storage: 'buckets' must map stores ({', '.join(bucketed)}) to bucket names")
    on_volume = sorted(set(buckets) & {c.name for c in stores() if not c.uses_bucket})
    if on_volume:
        raise ConfigError(f"storage: 'buckets' names {', '.join(on_volume)}, which keeps its data on its volume, "
                          f"not in a bucket (stores with a bucket: {', '.join(bucketed)})")
    unknown = sorted(set(buckets) - set(bucketed))
    if unknown and not set(bucketed) <= set(buckets):
        raise ConfigError(f"storage: 'buckets' names {', '.join(unknown)}, which is no store of this platform "
                          f"(stores with a bucket: {', '.join(bucketed)})")
    out = dict(storage)
    if "buckets" in storage:
        out["buckets"] = {k: v for k, v in buckets.items() if k in bucketed}
    return out


class PlatformManifests:
    """Renders the platform into one namespace. Holds no connection: the
    deployer subclasses it and adds the API. ``lb_host`` (the address the
    gateway is reached at, once known: its load balancer's, or a node's),
    ``pki`` and the in-cluster object storage's credentials are the only state.

    ``storage``: a cloud's bucket (:func:`check_storage`), or None for the
    platform's own S3 server in the cluster. ``gateway_service``: one of
    :data:`GATEWAY_SERVICES`; with ``NodePort`` the gateway is reached at
    ``node_address`` (default: a node's InternalIP, found by the deployer).
    ``images``: upstream image reference -> the reference to use (:func:`check_images`).
    """

    def __init__(self, namespace: str = "stackproof", storage: dict | None = None,
                 labels: dict[str, str] | None = None, *, platform: str | None = None,
                 service_annotations: dict[str, str] | None = None, volume_size: str = "10Gi",
                 storage_class: str | None = None, gateway_service: str = "LoadBalancer",
                 node_address: str | None = None, images: dict[str, str] | None = None,
                 host_dir: str | None = None):
        if not is_dns1123_label(namespace):
            raise ConfigError(f"namespace {namespace!r} is not a valid name (lowercase letters, digits, '-'; "
                              "at most 63)")
        self.namespace = namespace
        # None: the platform's own S3 server; the stores find it at its Service (ctx.hosts)
        self.in_cluster_storage = storage is None
        self.storage = (check_storage(storage) if storage is not None
                        else {"type": "s3", "region": OBJECT_STORAGE_REGION})
        if gateway_service not in GATEWAY_SERVICES:
            raise ConfigError(f"gateway service type {gateway_service!r}: expected one of "
                              f"{', '.join(GATEWAY_SERVICES)}")
        self.gateway_service = gateway_service
        if node_address is not None and (not isinstance(node_address, str) or not node_address
                                         or not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]+", node_address)):
            raise ConfigError(f"node address {node_address!r} is not a host name or an IP address")
        self.node_address = node_address.strip("[]") if node_address else None
        self.images = check_images(images)
        self.labels = dict(labels or {})
        for k, v in self.labels.items():
            if not is_label_key(str(k)):
                raise ConfigError(f"label key {k!r} is not a valid Kubernetes label name")
            if not isinstance(v, str) or not is_label_value(v):
                raise ConfigError(f"label {k}={v!r}: not a valid Kubernetes label value "
                                  "(at most 63 letters, digits, '-', '_', '.')")
        self.platform = platform or namespace
        self.service_annotations = dict(service_annotations or {})
        self.volume_size = volume_size
        if storage_class is not None and not (isinstance(storage_class, str)
                                              and _DNS1123_SUBDOMAIN.fullmatch(storage_class)):
            raise ConfigError(f"storage class {storage_class!r} is not a valid name")
        self.storage_class = storage_class
        self.pki: GatewayPKI | None = None
        self.lb_host: str | None = None
        self.gateway_port: int | None = None  # the node port, with a NodePort gateway
        # (access key id, secret key) of the in-cluster S3 server; made or read back on deploy
        self.object_storage_keys: tuple[str, str] | None = None
        # the platform's tenants, once known (the deployer reads them back from the cluster)
        self.tenants: list[Tenant] | None = None
        # a directory of this machine the node shares (a cluster on this machine): the parent of
        # the components' host directories (ClusterShape.host_dirs); None: no component has any
        if host_dir is not None and not (isinstance(host_dir, str) and host_dir.startswith("/")):
            raise ConfigError(f"host directory {host_dir!r} is not an absolute path")
        self.host_dir = host_dir

    def components(self, tenants: list[Tenant] | None = None) -> list[Component]:
        """What runs in the cluster, in order: the object store first when no cloud bucket is given;
        a per-tenant component once for each of ``tenants`` (default: the platform's, once known;
        none while they are not)."""
        found = cluster_components(self.storage if self.in_cluster_storage else None, self.host_dir is not None)
        return instances(tenants if tenants is not None else self.tenants or [], found)

    @property
    def object_store(self) -> Component | None:
        return next((c for c in self.components() if c.role == OBJECT_STORE), None)

    def image(self, ref: str) -> str:
        """The image to pull for the upstream ``ref``: the image map's, or ``ref`` itself."""
        return self.images.get(ref, ref)

    def _object_storage_keys(self) -> tuple[str, str]:
        if self.object_storage_keys is None:
            self.object_storage_keys = new_credentials()
        return self.object_storage_keys

    # -- names -------------------------------------------------------------------
    @property
    def gateway(self) -> Component:
        return by_role(GATEWAY)

    def service_host(self, name: str) -> str:
        return f"{name}.{self.namespace}.svc"

    def gateway_hosts(self) -> list[str]:
        """Every name the gateway's certificate must carry."""
        svc = self.gateway.name
        hosts = [svc, f"{svc}.{self.namespace}", f"{svc}.{self.namespace}.svc",
                 f"{svc}.{self.namespace}.svc.cluster.local", "localhost", "127.0.0.1"]
        if self.lb_host:
            hosts.insert(0, self.lb_host)
        return hosts

    def _pki(self) -> GatewayPKI:
        if self.pki is None or not self.pki.covers(self.gateway_hosts()):
            self.pki = GatewayPKI.issue(self.platform, self.gateway_hosts())
        return self.pki

    @staticmethod
    def selector(component: str) -> dict[str, str]:
        return {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/name": component}

    def _meta(self, name: str, component: str | None = None, namespaced: bool = True) -> dict:
        labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": FIELD_MANAGER}
        if component:
            labels["app.kubernetes.io/name"] = component
        labels.update(self.labels)
        meta = {"name": name, "labels": labels}
        if namespaced:
            meta["namespace"] = self.namespace
        return meta

    # -- the components' view of the cluster ----------------------------------------
    def context(self, tenants: list[Tenant]) -> PlatformContext:
        """Components listen on all interfaces, reach each other's ports by
        Service DNS names, keep their files under ``/stackproof`` (the local
        state directory's layout), and use the bucket given as ``storage`` with
        credentials from the environment (no key in any config)."""
        ports = {p.key: (c, p.number) for c in self.components(tenants) for p in c.cluster.ports if p.key}
        return PlatformContext(
            name=self.platform, root=Path(ROOT), ports={k: n for k, (_, n) in ports.items()}, tenants=tenants,
            tls=CLUSTER_TLS, host="127.0.0.1", listen_host="0.0.0.0", overrides=limited_overrides(tenants),
            storage=dict(self.storage), hosts={k: self.service_host(c.name) for k, (c, _) in ports.items()},
            host_shared=self.host_dir is not None)

    def component_configs(self, release: Release, tenants: list[Tenant]) -> dict[str, dict[str, str]]:
        """Every component's configuration files, by component: file name -> text.
        None of them holds a token or a key; a component without files is not listed."""
        ctx = self.context(tenants)
        out = {c.name: c.cluster_files(ctx, version_of(c, release)) for c in self.components(tenants)}
        return {name: files for name, files in out.items() if files}

    # -- manifests -----------------------------------------------------------------
    def render(self, release: Release, tenants: list[Tenant]) -> dict[str, list[dict]]:
        """Manifests by apply group: 'namespace' (with the ServiceAccount and the
        tenants), 'tls', 'kept' (the ConfigMaps of files the provider keeps, made only
        when absent), then each component in upgrade order (its ConfigMap, Secrets,
        Service, StatefulSet)."""
        if not tenants:
            raise ConfigError("a platform needs at least one tenant")
        if sum(1 for t in tenants if t.role == "system") != 1:
            raise ConfigError("a platform needs exactly one tenant with role 'system' (the agent's)")
        for c in stores():  # a store whose tenant is a number (VictoriaLogs' AccountID) needs one per tenant
            if any("$stackproof_account" in v for v in c.tenant_headers.values()):
                for t in tenants:
                    if t.account_id is None:
                        raise ConfigError(f"tenant {t.name!r} has no account_id: {c.name} takes a numeric tenant")
                if len({t.account_id for t in tenants}) != len(tenants):
                    raise ConfigError(f"tenants repeat an account_id: {c.name} would mix their data")
        ctx = self.context(tenants)
        configs = self.component_configs(release, tenants)
        pki = self._pki()
        sa_meta = self._meta(SERVICE_ACCOUNT)
        identity = {ann: self.storage[key] for key, ann in IDENTITY_ANNOTATIONS.items() if self.storage.get(key)}
        if identity:
            sa_meta["annotations"] = identity
        tls = self._secret(TLS_SECRET, {"tls.crt": pki.cert_pem, "tls.key": pki.key_pem, "ca.crt": pki.ca_pem},
                           kind="kubernetes.io/tls")
        ns_meta = self._meta(self.namespace, namespaced=False)
        # the kill helper of the durability suite is a privileged pod with the host's PID
        # namespace: Pod Security admission must let it in (most clusters' default anyway)
        ns_meta["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"
        groups: dict[str, list[dict]] = {
            "namespace": [{"apiVersion": "v1", "kind": "Namespace", "metadata": ns_meta},
                          # the pods' identity; they never call the Kubernetes API: no token mounted
                          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": sa_meta,
                           "automountServiceAccountToken": False},
                          self._secret(TENANTS_SECRET, {"tenants.json": json.dumps([t.to_dict() for t in tenants],
                                                                                   indent=1)})],
            "tls": [tls],
            # made once, then the provider's (see kept_configmap): the deployer applies them only when absent
            "kept": [cm for c in self.components(tenants) if (cm := self.kept_configmap(c, ctx)) is not None],
        }
        storage_secret = None
        if self.object_store is not None:  # read by the S3 server and the stores, through their environment
            key_id, key = self._object_storage_keys()
            storage_secret = self._secret(OBJECT_STORAGE_SECRET, {"access_key_id": key_id, "secret_access_key": key})
            groups["namespace"].append(storage_secret)
        for c in self.components(tenants):
            out: list[dict] = []
            if c.name in configs:
                out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": self._meta(f"{c.name}-config", c.name),
                            "data": configs[c.name]})
            out += [self._secret(name, data, c.name) for name, data in c.cluster_secrets(tenants).items()]
            # what the pods read, so that a changed file rolls them like a changed image
            read = [m["data"] for m in out] + ([tls["data"]] if c.cluster.tls else [])
            if self._credential_env(c):
                read.append(storage_secret["data"])
            digest = hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()[:32]
            groups[c.name] = [*out, self._service(c), self._statefulset(c, ctx, release, digest, c.name in configs)]
        return groups

    def _credential_env(self, c: Component) -> dict[str, str]:
        """The environment variables ``c`` reads the in-cluster object storage's credentials
        from -> their key in its Secret: the S3 server's own, an S3 client's for a store
        with a bucket; none with a cloud's bucket (node role, workload identity)."""
        if self.object_store is None:
            return {}
        if c is self.object_store:
            return dict(getattr(c, "credential_env", {}))
        if c.name in bucket_stores():
            return dict(S3_CLIENT_ENV)
        return {}

    def manifests(self, release: Release, tenants: list[Tenant]) -> list[dict]:
        """Every manifest, in apply order. Pure: no API call."""
        return [m for group in self.render(release, tenants).values() for m in group]

    def _secret(self, name: str, data: dict[str, str | bytes], component: str | None = None,
                kind: str = "Opaque") -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": self._meta(name, component),
                "data": {k: _b64(v) for k, v in data.items()}}

    def _service(self, c: Component) -> dict:
        ports = [{"name": p.name, "port": p.number, "targetPort": p.name, "protocol": "TCP"}
                 for p in c.cluster.ports if p.published]
        spec: dict = {"selector": self.selector(c.name), "ports": ports}
        meta = self._meta(c.name, c.name)
        if c is self.gateway:  # the platform's one way in: its address goes into the certificate
            spec["type"] = self.gateway_service
            if self.service_annotations and self.gateway_service == "LoadBalancer":
                meta["annotations"] = dict(self.service_annotations)
        elif (c is self.object_store or any(p.outside for p in c.cluster.ports)) and self.gateway_service == "NodePort":
            # reachable where the gateway is, so that the durability suite can list the bucket (or the
            # harness send to it)
            spec["type"] = "NodePort"
        else:
            spec["type"] = "ClusterIP"
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}

    def host_path(self, sub: str) -> str:
        """Where a component's host directory ``sub`` (under data/) is on this machine."""
        assert self.host_dir is not None
        return str(PurePosixPath(self.host_dir) / sub)

    def kept_configmap(self, c: Component, ctx: PlatformContext) -> dict | None:
        """The ConfigMap of ``c``'s kept files (:meth:`Component.cluster_kept`) as a deploy
        first makes it, or None; in :meth:`render`'s own group 'kept', which the deployer
        applies only where absent: the provider owns its contents once made, so that neither
        a deploy nor an upgrade rewrites them."""
        kept = c.cluster_kept(ctx)
        if kept is None:
            return None
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self._meta(f"{c.name}{KEPT_SUFFIX}", c.name),
                "data": dict(kept[1])}

    def _volumes(self, c: Component, has_config: bool,
                 ctx: PlatformContext | None = None) -> tuple[list[dict], list[dict]]:
        """(the pod's volumes, the container's mounts): its ConfigMap (if it has
        one) and Secrets projected into config/, its TLS files, data/ (from the
        claim template when it has a volume), its scratch directories and the
        ConfigMap of its kept files, where it reads them."""
        shape = c.cluster
        sources: list[dict] = [{"configMap": {"name": f"{c.name}-config"}}] if has_config else []
        sources += [{"secret": {"name": name}} for name in shape.secrets]
        volumes: list[dict] = []
        mounts: list[dict] = []
        if sources:
            config: dict = {"sources": sources}
            if shape.secrets:
                config["defaultMode"] = 0o440
            volumes.append({"name": "config", "projected": config})
            mounts.append({"name": "config", "mountPath": str(ROOT / "config"), "readOnly": True})
        if shape.tls:
            secret: dict = {"secretName": TLS_SECRET}
            if "key" in shape.tls:
                secret["defaultMode"] = 0o440
            secret["items"] = [{"key": key, "path": path} for f, (key, path) in TLS_ITEMS.items() if f in shape.tls]
            volumes.append({"name": "tls", "secret": secret})
            mounts.append({"name": "tls", "mountPath": str(TLS_DIR), "readOnly": True})
        if not shape.volume:
            volumes.append({"name": "data", "emptyDir": {}})
        mounts.append({"name": "data", "mountPath": str(ROOT / "data")})
        for sub in shape.scratch:
            volumes.append({"name": sub, "emptyDir": {}})
            mounts.append({"name": sub, "mountPath": str(ROOT / sub)})
        assert self.host_dir is not None or not shape.host_dirs, f"{c.name} runs only where the node shares files"
        # directories of this machine: the ones the component writes, and the ones it only reads (mounted
        # where the node shares this machine's files, left out elsewhere)
        for kind, subs, read_only in (("host", shape.host_dirs, False),
                                      ("shared", shape.shared_dirs if self.host_dir is not None else (), True)):
            for i, sub in enumerate(subs):
                volumes.append({"name": f"{kind}-{i}", "hostPath": {"path": self.host_path(sub),
                                                                    "type": "DirectoryOrCreate"}})
                mounts.append({"name": f"{kind}-{i}", "mountPath": str(ROOT / "data" / sub)}
                              | ({"readOnly": True} if read_only else {}))
        kept = c.cluster_kept(ctx) if ctx is not None else None
        if kept is not None:
            volumes.append({"name": "kept", "configMap": {"name": f"{c.name}{KEPT_SUFFIX}"}})
            mounts.append({"name": "kept", "mountPath": str(kept[0]), "readOnly": True})
        return volumes, mounts

    def _statefulset(self, c: Component, ctx: PlatformContext, release: Release, digest: str,
                     has_config: bool) -> dict:
        shape = c.cluster
        version = version_of(c, release)
        volumes, mounts = self._volumes(c, has_config, ctx)
        probe_path, probe_port = shape.probe
        container = {
            "name": c.name, "image": self.image(shape.image_for(version)), "imagePullPolicy": "IfNotPresent",
            "command": c.cluster_command(ctx, version),
            "ports": [{"name": p.name, "containerPort": p.number, "protocol": "TCP"} for p in shape.ports],
            "volumeMounts": mounts,
            "readinessProbe": {"httpGet": {"path": probe_path, "port": probe_port},
                               "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3},
        }
        env = self._credential_env(c)
        refs = [(var, OBJECT_STORAGE_SECRET, key) for var, key in env.items()] + list(shape.secret_env)
        if refs:  # never a value: a reference to the Secret's key
            container["env"] = [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                                for var, secret, key in refs]
        pod_spec: dict = {"containers": [container], "serviceAccountName": SERVICE_ACCOUNT,
                          "automountServiceAccountToken": False,
                          "terminationGracePeriodSeconds": int(c.stop_timeout) + 15, "enableServiceLinks": False}
        if volumes:
            pod_spec["volumes"] = volumes
        if shape.uid is not None:
            pod_spec["securityContext"] = {"fsGroup": shape.uid, "fsGroupChangePolicy": "OnRootMismatch"}
        if shape.prepare:
            # the directories the local provider makes before the component starts
            init = {"name": "prepare", "image": self.image(TOOLS_IMAGE), "imagePullPolicy": "IfNotPresent",
                    "command": ["mkdir", "-p", *(str(ROOT / "data" / d) for d in shape.prepare)],
                    "volumeMounts": [{"name": "data", "mountPath": str(ROOT / "data")}]}
            if shape.uid is not None:
                init["securityContext"] = {"runAsUser": shape.uid, "runAsGroup": shape.uid}
            pod_spec["initContainers"] = [init]
        template_labels = {**self.selector(c.name), "app.kubernetes.io/version": version}
        spec: dict = {
            "serviceName": c.name, "replicas": 1, "selector": {"matchLabels": self.selector(c.name)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": template_labels, "annotations": {HASH_ANNOTATION: digest}},
                         "spec": pod_spec},
        }
        if shape.volume:
            pvc_spec: dict = {"accessModes": ["ReadWriteOnce"],
                              "resources": {"requests": {"storage": self.volume_size}}}
            if self.storage_class:
                pvc_spec["storageClassName"] = self.storage_class
            # immutable once made: nothing here may change between releases
            spec["volumeClaimTemplates"] = [{"metadata": {"name": "data", "labels": self.selector(c.name)},
                                             "spec": pvc_spec}]
        meta = self._meta(c.name, c.name)
        meta["labels"]["app.kubernetes.io/version"] = version
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec}

    # -- single components (the durability suite's stop, kill and fresh disk) ------
    @staticmethod
    def data_claims(c: Component) -> list[str]:
        """The PersistentVolumeClaims of ``c``'s one replica (its volume claim template's)."""
        return [f"data-{c.name}-0"] if c.cluster is not None and c.cluster.volume else []

    def kill_pod(self, c: Component, node: str, container_id: str, name: str) -> dict:
        """A short-lived pod on ``node`` that SIGKILLs every process of the container
        ``container_id`` (as the runtime names it, without its ``containerd://``-style
        prefix). A signal sent from inside a container cannot kill its PID 1 (the kernel
        ignores a signal its init has no handler for), so the kill comes from the host's
        PID namespace (``hostPID``, privileged): it finds the processes whose
        ``/proc/<pid>/cgroup`` names the container (cgroup v1 and v2 alike) and kills them,
        exactly what an out-of-memory kill or a crash does to the program."""
        script = ('id="$1"; n=0; for d in /proc/[0-9]*; do '
                  'if grep -qF "$id" "$d/cgroup" 2>/dev/null; then kill -9 "${d#/proc/}" && n=$((n+1)); fi; done; '
                  'echo "killed $n process(es) of container $id"; [ "$n" -gt 0 ]')
        meta = self._meta(name)
        meta["labels"]["app.kubernetes.io/component"] = "kill"
        meta["labels"]["stackproof/kills"] = c.name
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
            "nodeName": node, "hostPID": True, "restartPolicy": "Never",
            "serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
            "enableServiceLinks": False, "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],  # wherever the store runs, tainted node or not
            "containers": [{"name": "kill", "image": self.image(TOOLS_IMAGE), "imagePullPolicy": "IfNotPresent",
                            "command": ["/bin/sh", "-c", script, "stackproof-kill", container_id],
                            "securityContext": {"privileged": True}}]}}
