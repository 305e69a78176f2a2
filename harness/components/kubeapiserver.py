"""A real Kubernetes API server (and its etcd) on loopback, for testing the
Kubernetes deployer without a cluster: the API server validates every
manifest, runs server-side apply and keeps object status, exactly as a
cluster's would. There are no controllers and no kubelet: nothing runs a pod,
so a test writes StatefulSet and Service status itself, standing in for them.

Not a platform component (it is not in ``COMPONENTS``): the harness's own
tests use it. Both are built from their Go modules into the binary cache like
the platform's components (``STACKPROOF_BIN_KUBE_APISERVER`` and
``STACKPROOF_BIN_ETCD`` name ready binaries instead, e.g. Debian's etcd).

kube-apiserver is built from the Go module ``k8s.io/kubernetes`` like the
platform's components are, through a wrapper module. That module's go.mod
replaces every ``k8s.io/*`` staging module with a directory of its own
repository (``./staging/src/k8s.io/api``), which is not in the module zip, and
requires them at ``v0.0.0``; so the wrapper replaces each with the published
staging module of the same release instead (Kubernetes v1.34.4 ->
``k8s.io/api v0.34.4``): the recipe's ``published_local``. etcd's server module needs nothing special: its
``../api``-style replaces are nested modules, which the plain wrapper swaps for
the published versions its go.mod requires.
"""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .base import http_ready
from ..binaries import BinaryResolver, BinarySpec, GoRecipe
from ..errors import ComponentError, StackproofError
from ..ports import free_ports
from ..procs import Supervised
from ..tls import make_ca, make_server_cert

VERSION = "v1.34.4"

# the etcd release Kubernetes 1.34 is tested with (3.6); any 3.5+ serves
ETCD_VERSION = "v3.6.8"

ETCD_SPEC = BinarySpec(
    name="etcd",
    go=GoRecipe(module="go.etcd.io/etcd/server/v3", package="go.etcd.io/etcd/server/v3"),
)


def staging_version(version: str) -> str:
    """Kubernetes vX.Y.Z publishes its staging modules (k8s.io/api, ...) as v0.Y.Z."""
    m = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if not m:
        raise StackproofError(f"kube-apiserver version {version!r} is not of the form v1.Y.Z")
    return f"v0.{m.group(1)}.{m.group(2)}"


SPEC = BinarySpec(
    name="kube-apiserver",
    go=GoRecipe(
        module="k8s.io/kubernetes",
        package="k8s.io/kubernetes/cmd/kube-apiserver",
        # the binary's version decides its API compatibility version: unset,
        # it is v0.0.0-master and refuses to emulate 1.34
        version_vars=("k8s.io/component-base/version.gitVersion={version}",),
        published_local=("./staging/src/", staging_version),
    ),
)


def resolve_kube_apiserver(version: str = VERSION, resolver: BinaryResolver | None = None) -> Path:
    return (resolver or BinaryResolver()).resolve(SPEC, version).path


def resolve_etcd(version: str = ETCD_VERSION, resolver: BinaryResolver | None = None) -> Path:
    return (resolver or BinaryResolver()).resolve(ETCD_SPEC, version).path


class LoopbackControlPlane:
    """etcd and kube-apiserver on free loopback ports, in ``root``; a static
    bearer token of group ``system:masters``; TLS from a CA of its own."""

    def __init__(self, root: Path, apiserver: Path, etcd: Path):
        self.root = Path(root)
        self.apiserver_bin = apiserver
        self.etcd_bin = etcd
        self.procs: list[Supervised] = []
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self.ca_pem = b""

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> float:
        """Start both; returns seconds until the API server said ready (stops both on failure)."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> float:
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        client_port, peer_port, self.port = free_ports(3)
        etcd_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        data = self.root / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        self.procs.append(Supervised.start("etcd", [
            str(self.etcd_bin), "--name", "default", "--data-dir", str(data),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}", "--log-level", "warn"], self.root / "etcd.log"))
        self.procs[-1].wait_ready(self._etcd_ready(etcd_url), 30)

        ca_key, ca = make_ca("stackproof test kube-apiserver CA")
        key, cert = make_server_cert(ca_key, ca, ["localhost", "127.0.0.1"])
        pem = serialization.Encoding.PEM
        pkcs8 = (serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.ca_pem = ca.public_bytes(pem)
        (self.root / "ca.pem").write_bytes(self.ca_pem)
        (self.root / "apiserver.pem").write_bytes(cert.public_bytes(pem))
        (self.root / "apiserver-key.pem").write_bytes(key.private_bytes(pem, *pkcs8))
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.root / "sa-key.pem").write_bytes(sa.private_bytes(pem, *pkcs8))
        (self.root / "tokens.csv").write_text(f'{self.token},stackproof-test,stackproof-test,"system:masters"\n')
        r = self.root
        self.procs.append(Supervised.start("kube-apiserver", [
            str(self.apiserver_bin),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={r / 'apiserver.pem'}", f"--tls-private-key-file={r / 'apiserver-key.pem'}",
            f"--token-auth-file={r / 'tokens.csv'}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={r / 'sa-key.pem'}",
            f"--service-account-signing-key-file={r / 'sa-key.pem'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # a loopback advertise address cannot be an Endpoints address
            "--endpoint-reconciler-type=none",
            "--profiling=false"], self.root / "kube-apiserver.log"))
        self.procs[-1].wait_ready(self._api_ready(), timeout)
        return time.monotonic() - t0

    @staticmethod
    def _etcd_ready(url: str):
        return http_ready(f"{url}/health", contains='"true"')

    def _api_ready(self):
        return http_ready(f"{self.server}/readyz", verify=str(self.root / "ca.pem"),
                          headers={"Authorization": f"Bearer {self.token}"})

    def kubeconfig(self) -> dict:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "loopback",
            "clusters": [{"name": "loopback", "cluster": {
                "server": self.server, "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "admin"}}],
        }

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.alive():
                p.stop(15)
        self.procs = []
        shutil.rmtree(self.root / "etcd", ignore_errors=True)

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                raise ComponentError(f"{p.name} exited", p.tail())
