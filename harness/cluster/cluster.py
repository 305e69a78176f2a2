"""A real single-node Kubernetes cluster on this machine, without Docker:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
the kubelet, kube-proxy and CoreDNS, built from their modules (and Debian's
containerd, runc and CNI plugins), inside the node's own namespaces
(:mod:`.node`). Nothing runs a pod before the network guard is in place.

Layout under ``root``: ``pki/`` (a CA, the API server's certificate, its
client certificate for the kubelet, the service-account key, one token per
user), ``kubeconfig/`` (one per user; ``admin.yaml`` is the user's), ``etcd/``,
``containerd/``, ``kubelet/``, ``volumes/`` (the local PersistentVolumes),
``logs/`` (one per program) and ``state.json`` (pids, the host's sysctls as
they were), so a later process can stop it.

What this machine needs, and why (measured here): the kubelet with
``failCgroupV1: false`` and the cgroupfs driver (cgroups v1), ``failSwapOn:
false``; node IP and advertise address on the node's veth (a loopback
advertise address cannot be an Endpoints address); CoreDNS with no
``forward`` plugin, so no outside name is ever resolved; kube-proxy in
nftables mode, its table inside the node; the CNI bridge with ``ipMasq:
false`` and ``hairpinMode: true``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import say
from ..components.base import http_ready
from ..errors import ComponentError, StackproofError
from ..procs import Supervised
from ..tls import make_ca, make_client_cert, make_server_cert
from . import node
from .containerd import Containerd
from .kubernetes import VERSION, resolve_programs
from .node import (API_SERVICE_IP, BRIDGE, BRIDGE_IP, NODE_IP, POD_CIDR, SERVICE_CIDR, NodeNamespaces,
                   read_sysctl, write_sysctl)

NODE_NAME = "stackproof-node"
API_PORT = 6443
STORAGE_CLASS = "stackproof-local"
VOLUME_POOL = 24  # local PersistentVolumes made at start: three per platform, spares for fresh disks
VOLUME_SIZE = "10Gi"

# user -> (name, groups): each program's identity (static tokens; the kubelet's
# group is what the Node authorizer wants; the default RBAC binds the others)
USERS = {
    "admin": ("stackproof-admin", ("system:masters",)),
    "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "proxy": ("system:kube-proxy", ()),
    # CoreDNS lists and watches Services, EndpointSlices, Namespaces and Pods cluster-wide
    "coredns": ("stackproof-coredns", ("system:masters",)),
}
# start order; stopped in reverse
PROGRAMS = ("etcd", "kube-apiserver", "containerd", "kube-controller-manager", "kube-scheduler", "kubelet",
            "kube-proxy", "coredns")


def _pem(obj) -> bytes:
    if hasattr(obj, "public_bytes"):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class LocalCluster:
    """Start, inspect and stop the cluster in ``root`` (one per machine: its addresses are fixed)."""

    def __init__(self, root: Path, progress: Callable[[str], None] = say):
        self.root = Path(root)
        self.say = progress
        self.ns = NodeNamespaces()
        self.procs: dict[str, Supervised] = {}
        self.tokens: dict[str, str] = {}
        self._load()

    # -- paths and state -----------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def server(self) -> str:
        return f"https://{NODE_IP}:{API_PORT}"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    def containerd(self, sandbox_image: str = "") -> Containerd:
        return Containerd(self.root / "containerd", sandbox_image=sandbox_image,
                          cni_conf_dir=self.root / "cni", wrap=self.ns.wrap, progress=self.say)

    def _load(self) -> None:
        try:
            st = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return
        self.ns.holder_pid = st.get("holder_pid", 0)
        self.tokens = st.get("tokens", {})
        for name, p in st.get("procs", {}).items():
            self.procs[name] = Supervised.attach(name, p["pid"], p["start_time"], Path(p["log"]),
                                                 p.get("stop_signal", signal.SIGTERM))

    def _save(self, **extra) -> None:
        st = self._state()
        st.update(holder_pid=self.ns.holder_pid, tokens=self.tokens,
                  procs={n: p.to_dict() for n, p in self.procs.items()}, **extra)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=1))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.state_file)

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def running(self) -> bool:
        return self.ns.alive()

    # -- kubeconfig ------------------------------------------------------------
    def kubeconfig(self, user: str = "admin") -> dict:
        if user not in self.tokens:
            raise StackproofError(f"no local cluster in {self.root}: start it first")
        ca = (self.pki / "ca.pem").read_bytes()
        return {"apiVersion": "v1", "kind": "Config", "current-context": "stackproof-local",
                "clusters": [{"name": "stackproof-local", "cluster": {
                    "server": self.server, "certificate-authority-data": base64.b64encode(ca).decode()}}],
                "users": [{"name": user, "user": {"token": self.tokens[user]}}],
                "contexts": [{"name": "stackproof-local", "context": {"cluster": "stackproof-local", "user": user}}]}

    def kubeconfig_path(self, user: str = "admin") -> Path:
        return self.root / "kubeconfig" / f"{user}.yaml"

    def _request(self, method: str, path: str, body: dict | None, ok, allow) -> requests.Response:
        r = requests.request(method, self.server + path, json=body, timeout=10, verify=str(self.pki / "ca.pem"),
                             headers={"Authorization": f"Bearer {self.tokens['admin']}"})
        if r.status_code not in ok and r.status_code not in allow:
            raise StackproofError(f"{method} {path}: HTTP {r.status_code} {r.text[:200]}")
        return r

    def api(self, method: str, path: str, body: dict | None = None, ok=(200, 201), allow=()) -> dict:
        """One call of the admin's; the JSON answer."""
        r = self._request(method, path, body, ok, allow)
        return r.json() if r.content else {}

    def api_text(self, path: str) -> str:
        """A GET whose answer is text (a pod's log)."""
        return self._request("GET", path, None, (200,), ()).text

    # -- start -------------------------------------------------------------------
    def start(self, sandbox_image: str, images: list[Path] = (), timeout: float = 180) -> float:
        """Start every program, import ``images``, wait for the node to be Ready, make
        the storage class and its volumes; returns seconds from start to node Ready.
        On any failure everything started is stopped again."""
        if self.running():
            raise StackproofError(f"a local cluster already runs from {self.root} (holder pid {self.ns.holder_pid}): "
                                  "stop it first (stackproof down --provider local-kube)")
        if os.geteuid() != 0:
            raise StackproofError("the local cluster needs root (its own network and mount namespaces, nftables, "
                                  "containerd): run it as root, e.g. sudo -E env PATH=$PATH .venv/bin/pytest ...")
        node.check_address_space()  # another cluster here: one line, and it is left alone
        bins = {name: r.path for name, r in resolve_programs().items()}
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self._save(sysctls={name: read_sysctl(name) for name in node.HOST_SYSCTLS}, started=time.time())
        try:
            self.ns.start(self.logs / "node.log")
            self._save()
            node.setup_network(self.ns)
            self.say(f"node namespaces up (holder pid {self.ns.holder_pid}), network guarded: "
                     f"node {NODE_IP}, pods {POD_CIDR}, services {SERVICE_CIDR}")
            self._write_pki()
            self._start_control_plane(bins, timeout)
            cd = self.containerd(sandbox_image)
            self._write_cni()
            cd.start()
            self.procs["containerd"] = cd.proc
            self._save()
            for archive in images:
                cd.import_image(archive)
            self.say(f"imported {len(images)} image archive(s) into containerd")
            self._start_node(bins, timeout)
            ready = self.wait_node_ready(max(10.0, timeout - (time.monotonic() - t0)))
            self.say(f"node {NODE_NAME} Ready {time.monotonic() - t0:.1f}s after start")
            self._make_storage()
            return ready
        except BaseException:
            self.say("the local cluster did not come up: stopping what started")
            self.stop()
            raise

    def _write_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pki, 0o700)
        ca_key, ca = make_ca("stackproof local cluster CA", days=30)
        hosts = [NODE_IP, API_SERVICE_IP, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                 "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
        key, cert = make_server_cert(ca_key, ca, hosts)
        ckey, ccert = make_client_cert(ca_key, ca, "kube-apiserver-kubelet-client", ("system:masters",))
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files = {"ca.pem": _pem(ca), "apiserver.pem": _pem(cert), "apiserver-key.pem": _pem(key),
                 "kubelet-client.pem": _pem(ccert), "kubelet-client-key.pem": _pem(ckey), "sa-key.pem": _pem(sa)}
        for name, data in files.items():
            (self.pki / name).write_bytes(data)
        self.tokens = {user: secrets.token_urlsafe(24) for user in USERS}
        (self.pki / "tokens.csv").write_text("".join(
            f'{self.tokens[u]},{name},{name},"{",".join(groups)}"\n' for u, (name, groups) in USERS.items()))
        for user in USERS:
            p = self.kubeconfig_path(user)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(yaml.safe_dump(self.kubeconfig(user)))
            os.chmod(p, 0o600)
        self._save()

    def _spawn(self, name: str, args: list[str], stop_signal: int = signal.SIGTERM) -> Supervised:
        p = Supervised.start(name, self.ns.wrap([str(a) for a in args]), self.logs / f"{name}.log",
                             cwd=self.root, stop_signal=stop_signal)
        self.procs[name] = p
        self._save()
        return p

    def _start_control_plane(self, bins: dict[str, Path], timeout: float) -> None:
        r, pki = self.root, self.pki
        etcd = self._spawn("etcd", [
            bins["etcd"], "--name", NODE_NAME, "--data-dir", r / "etcd",
            "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", f"{NODE_NAME}=http://127.0.0.1:2380",
            "--listen-metrics-urls", f"http://{NODE_IP}:2381", "--log-level", "warn"])
        etcd.wait_ready(http_ready(f"http://{NODE_IP}:2381/health", contains='"true"'), 30)
        api = self._spawn("kube-apiserver", [
            bins["kube-apiserver"], "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}", f"--secure-port={API_PORT}",
            f"--tls-cert-file={pki / 'apiserver.pem'}", f"--tls-private-key-file={pki / 'apiserver-key.pem'}",
            f"--client-ca-file={pki / 'ca.pem'}", f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            f"--kubelet-client-certificate={pki / 'kubelet-client.pem'}",
            f"--kubelet-client-key={pki / 'kubelet-client-key.pem'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa-key.pem'}",
            f"--service-account-signing-key-file={pki / 'sa-key.pem'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--service-node-port-range=30000-32767",
            # the kubelet by its address, never by a name some resolver would be asked for
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false", "--shutdown-delay-duration=0s"])
        api.wait_ready(self._api_ready(), timeout)
        self.say(f"kube-apiserver {VERSION} ready at {self.server}")

    def _write_cni(self) -> None:
        conf = {"cniVersion": "1.0.0", "name": "stackproof", "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": str(POD_CIDR), "gateway": BRIDGE_IP}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.root / "cni-ipam")}},
            {"type": "loopback"}]}
        d = self.root / "cni"
        d.mkdir(parents=True, exist_ok=True)
        (d / "10-stackproof.conflist").write_text(json.dumps(conf, indent=1))

    def _start_node(self, bins: dict[str, Path], timeout: float) -> None:
        r, kc = self.root, self.kubeconfig_path
        self._spawn("kube-controller-manager", [
            bins["kube-controller-manager"], f"--kubeconfig={kc('controller-manager')}",
            f"--authentication-kubeconfig={kc('controller-manager')}",
            f"--authorization-kubeconfig={kc('controller-manager')}",
            f"--service-account-private-key-file={self.pki / 'sa-key.pem'}",
            f"--root-ca-file={self.pki / 'ca.pem'}", "--leader-elect=false", f"--bind-address={NODE_IP}",
            "--allocate-node-cidrs=false", "--use-service-account-credentials=true", "--profiling=false"])
        self._spawn("kube-scheduler", [
            bins["kube-scheduler"], f"--kubeconfig={kc('scheduler')}", f"--authentication-kubeconfig={kc('scheduler')}",
            f"--authorization-kubeconfig={kc('scheduler')}", "--leader-elect=false", f"--bind-address={NODE_IP}",
            "--profiling=false"])
        kubelet_dir = r / "kubelet"
        kubelet_dir.mkdir(parents=True, exist_ok=True)
        (r / "kubelet.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.root / 'containerd' / 'containerd.sock'}",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.pem")}},
            "authorization": {"mode": "Webhook"},
            "address": NODE_IP, "readOnlyPort": 0, "healthzBindAddress": NODE_IP, "healthzPort": 10248,
            "clusterDomain": "cluster.local", "clusterDNS": [BRIDGE_IP], "resolvConf": "",
            "podLogsDir": str(r / "pod-logs"), "staticPodPath": "", "serializeImagePulls": False,
            "rotateCertificates": False, "serverTLSBootstrap": False, "protectKernelDefaults": False,
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            # a shared machine's disk: evict nothing for space the harness is not using
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "evictionPressureTransitionPeriod": "10s", "maxPods": 110, "enableServer": True,
        }))
        kubelet = self._spawn("kubelet", [
            bins["kubelet"], f"--config={r / 'kubelet.yaml'}", f"--kubeconfig={kc('kubelet')}",
            f"--root-dir={kubelet_dir}", f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}", "--v=1"])
        kubelet.wait_ready(http_ready(f"http://{NODE_IP}:10248/healthz", contains="ok"), timeout)
        (r / "kube-proxy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "nftables", "clientConnection": {"kubeconfig": str(kc("proxy"))},
            "clusterCIDR": str(POD_CIDR), "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"{NODE_IP}:10256", "metricsBindAddress": f"{NODE_IP}:10249",
            # conntrack's table size is the host's (one per kernel): left as it is
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "nodePortAddresses": [f"{NODE_IP}/32"],
        }))
        self._spawn("kube-proxy", [bins["kube-proxy"], f"--config={r / 'kube-proxy.yaml'}"])
        (r / "Corefile").write_text(
            f".:53 {{\n  bind {BRIDGE_IP}\n  errors\n  ready {NODE_IP}:8181\n"
            f"  kubernetes cluster.local in-addr.arpa ip6.arpa {{\n    kubeconfig {kc('coredns')} stackproof-local\n"
            "    pods insecure\n    fallthrough in-addr.arpa ip6.arpa\n  }\n  cache 30\n}\n")
        dns = self._spawn("coredns", [bins["coredns"], "-conf", r / "Corefile"])
        dns.wait_ready(http_ready(f"http://{NODE_IP}:8181/ready", contains="OK"), timeout)
        self.procs["kube-proxy"].wait_ready(http_ready(f"http://{NODE_IP}:10256/healthz"), timeout)

    def _api_ready(self):
        return http_ready(f"{self.server}/readyz", verify=str(self.pki / "ca.pem"),
                          headers={"Authorization": f"Bearer {self.tokens['admin']}"})

    def node_problem(self) -> str | None:
        """None when the node is Ready, else why not (one clause)."""
        obj = self.api("GET", f"/api/v1/nodes/{NODE_NAME}", allow=(404,))
        if not obj.get("status"):
            return "the node is not registered yet"
        for c in obj["status"].get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") != "True":
                return f"Ready={c.get('status')}: {c.get('message', '')}"
            if c.get("type") == "Ready":
                # the node controller lifts its not-ready taint a few seconds after: until then nothing schedules
                taints = [t["key"] for t in (obj.get("spec") or {}).get("taints") or []]
                return f"still tainted {', '.join(taints)}" if taints else None
        return "no Ready condition yet"

    def wait_node_ready(self, timeout: float) -> float:
        t0 = time.monotonic()
        problem = None
        while time.monotonic() - t0 < timeout:
            self.check_alive()
            problem = self.node_problem()
            if problem is None:
                return time.monotonic() - t0
            time.sleep(0.25)
        raise ComponentError(f"node {NODE_NAME} not Ready after {timeout:.0f}s: {problem}",
                             self.procs["kubelet"].tail() if "kubelet" in self.procs else "")

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if not p.alive():
                raise ComponentError(f"{name} of the local cluster exited; log: {p.log_path}", p.tail())

    def _make_storage(self) -> None:
        """A storage class with no provisioner and a pool of local volumes on this disk
        (bound when a pod is scheduled; a deleted claim leaves its volume Released, never reused)."""
        self.api("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": STORAGE_CLASS},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain"})
        for i in range(VOLUME_POOL):
            path = self.volumes / f"pv{i:02d}"
            path.mkdir(parents=True, exist_ok=True)
            self.api("POST", "/api/v1/persistentvolumes", {
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"stackproof-pv{i:02d}"},
                "spec": {"capacity": {"storage": VOLUME_SIZE}, "accessModes": ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                         "local": {"path": str(path)},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}}})

    # -- stop --------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop everything and put the host back as it was; idempotent. Returns what it did."""
        done = []
        st = self._state()
        for name in ("kubelet", "kube-proxy", "coredns", "kube-scheduler", "kube-controller-manager"):
            p = self.procs.get(name)
            if p and p.alive():
                done.append(f"{name}: {p.stop(10)}")
        if "containerd" in self.procs or (self.root / "containerd").exists():
            cd = self.containerd()
            cd.proc = self.procs.get("containerd")
            cd.stop()
            done.append("containerd: stopped, its tasks and shims killed")
        for name in ("kube-apiserver", "etcd"):
            p = self.procs.get(name)
            if p and p.alive():
                # kube-apiserver drains its watches for about a minute on SIGTERM: its state goes away anyway
                p.kill()
                done.append(f"{name}: killed")
        if self.ns.alive():
            self.ns.stop()
            done.append("node namespaces: removed")
        done += [f"{what}: removed" for what in node.teardown_host_network()]
        removed = node.remove_kube_cgroups()
        if removed:
            done.append(f"pod cgroups: {len(removed)} removed")
        for name, value in (st.get("sysctls") or {}).items():
            if value is not None and read_sysctl(name) != value:
                write_sysctl(name, value)
                done.append(f"sysctl {name}: {value} again")
        self.procs = {}
        self.ns.holder_pid = 0
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        return done
