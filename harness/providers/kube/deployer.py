"""The Kubernetes deployer's verbs: deploy, upgrade, collect artifacts and
delete the platform in one namespace of a cluster, through :class:`KubeApi`,
from the manifests :class:`PlatformManifests` renders; and stop, kill, start a
single component and remove its volume (capability 'restart'), for the
durability suite.

Everything is applied server-side and waited for: a StatefulSet is rolled out
when its controller has seen the newest generation, every replica is updated
and ready, and the current revision is the update revision. The in-cluster
object store (when no cloud bucket is given) is rolled out before the stores
that write to it. The gateway's Service is applied before the TLS-reading
components, since its address (its load balancer's, or with a NodePort
Service a node's) goes into the certificate they mount. The platform's state
lives in the cluster (the tenants, the TLS and object storage Secrets), so a
later process can upgrade, control, collect or delete it. Tokens never appear
in a message, a log line or an artifact.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import time
from pathlib import Path
from typing import Callable

from ... import say
from ...errors import ComponentError, StackproofError, one_line
from ...releases import Release
from ...binaries import BinaryResolver
from ...components import LOGS_RULER, LOGS_STORE, ROLES, SIGNAL_ROLES, Component, by_role
from ...components.vmalert import BASE_RULES, checked_rule_file, rule_file_name
from ...target import DEFAULT_LIMITS, Target, Tenant, logs_fields
from ..base import READY, STARTING, STOPPING, SwapHook
from ..common import declared_alerting, declared_durability, declared_otlp, new_tenants, state_root
from .client import ApiError, KubeApi
from .manifests import (KEPT_SUFFIX, OBJECT_STORAGE_SECRET, PART_OF, TENANTS_SECRET, TLS_SECRET, PlatformManifests,
                        version_of)
from .pki import GatewayPKI

# what a target made by this deployer can do: both signals, live tail through the gateway, the platform's own
# agent as a real sender, and single components stopped, killed and started by the provider; the
# metrics store's ruler and Alertmanager, and the log rule evaluator (vmalert) per tenant with its
# rule files kept by the provider, as they run locally; and a webhook receiver the Alertmanager
# reaches on any cluster: in the namespace, read through the API (.webhook; tests/test_cluster_capabilities.py
# pins the list). Not 'otel-collector' or 'agent-scrape': files a test writes on this machine, which only a
# node sharing its file system sees (local-kube adds both)
CAPABILITIES = ["metrics", "logs", "tail", "agent", "restart", "remote-write-2", "otlp", "alerting", "log-alerting",
                "alerting-webhook"]


def _subset(live, wanted) -> bool:
    """Whether ``live`` (as the server stores it, defaults added) has every field of ``wanted``."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(_subset(live.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(_subset, live, wanted))
    return live == wanted


class KubeDeployer(PlatformManifests):
    """Deploys, upgrades, controls, collects and deletes the platform in one namespace.

    ``kubeconfig`` (a parsed kubeconfig) and ``context`` (default: its current
    one) say which cluster and credentials; ``storage`` is the cloud's bucket
    (see :func:`check_storage`), or None for the platform's own S3 server in the
    cluster; ``labels`` go on every object (owner, run id, expiry: for a
    janitor). ``gateway_service`` ("LoadBalancer" or "NodePort"), ``node_address``,
    ``storage_class``, ``volume_size`` and ``images`` (upstream image -> image
    to use) fit the platform to the cluster: see :class:`PlatformManifests`."""

    def __init__(self, kubeconfig: dict, namespace: str = "stackproof",
                 storage: dict | None = None, labels: dict[str, str] | None = None,
                 api_timeout: float = 10.0, *, provider: str = "kube", platform: str | None = None,
                 workdir: Path | None = None, service_annotations: dict[str, str] | None = None,
                 volume_size: str = "10Gi", storage_class: str | None = None,
                 gateway_service: str = "LoadBalancer", node_address: str | None = None,
                 images: dict[str, str] | None = None, context: str | None = None,
                 poll_interval: float = 2.0, progress: Callable[[str], None] = say, host_dir: str | None = None):
        super().__init__(namespace, storage, labels, platform=platform, service_annotations=service_annotations,
                         volume_size=volume_size, storage_class=storage_class, gateway_service=gateway_service,
                         node_address=node_address, images=images, host_dir=host_dir)
        self.context_name = context
        self.api_timeout = api_timeout
        self.provider = provider
        self.workdir = Path(workdir) if workdir else state_root() / "kube" / self.platform
        self.poll_interval = poll_interval
        self.say = progress
        self._kubeconfig = kubeconfig
        self._api: KubeApi | None = None
        self.tenants: list[Tenant] | None = None

    # -- API ----------------------------------------------------------------
    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self._kubeconfig, self.api_timeout, context=self.context_name)
        return self._api

    @property
    def server(self) -> str:
        return self.api.server

    def check_api(self) -> dict:
        """GET /version, bounded; a one-line error if the API cannot be reached."""
        return self.api.check()

    # -- state in the cluster -----------------------------------------------
    def _read_state(self) -> None:
        """Tenants and TLS of a platform already in the namespace (a later process)."""
        if self.tenants is None:
            sec = self.api.get("v1", "Secret", TENANTS_SECRET, self.namespace)
            if sec and "tenants.json" in (sec.get("data") or {}):
                try:
                    raw = json.loads(base64.b64decode(sec["data"]["tenants.json"]))
                    self.tenants = [Tenant(t["name"], t["token"], t.get("role", "user"), t.get("account_id"))
                                    for t in raw]
                except (ValueError, TypeError, KeyError):
                    raise StackproofError(f"Secret {self.namespace}/{TENANTS_SECRET} has no readable tenants.json: "
                                          "not made by stackproof, or damaged") from None
        if self.pki is None:
            sec = self.api.get("v1", "Secret", TLS_SECRET, self.namespace)
            if sec and all(k in (sec.get("data") or {}) for k in ("tls.crt", "tls.key", "ca.crt")):
                d = sec["data"]
                self.pki = GatewayPKI(base64.b64decode(d["ca.crt"]), base64.b64decode(d["tls.crt"]),
                                      base64.b64decode(d["tls.key"]))
        if self.object_storage_keys is None and self.object_store is not None:
            sec = self.api.get("v1", "Secret", OBJECT_STORAGE_SECRET, self.namespace)
            d = (sec or {}).get("data") or {}
            if "access_key_id" in d and "secret_access_key" in d:  # the S3 server's data keeps its keys
                self.object_storage_keys = (base64.b64decode(d["access_key_id"]).decode(),
                                            base64.b64decode(d["secret_access_key"]).decode())

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
        name = self.gateway.name

        def probe():
            svc = self.api.get("v1", "Service", name, self.namespace)
            ingress = (svc or {}).get("status", {}).get("loadBalancer", {}).get("ingress") or []
            host = next((h for h in (i.get("hostname") or i.get("ip") for i in ingress) if h), None)
            return host is not None, host

        done, host = self._poll(probe, time.monotonic() + timeout)
        if not done:
            raise ComponentError(f"{name} (Service {self.namespace}/{name}, type LoadBalancer) has no "
                                 f"load-balancer address after {timeout:.0f}s: the cluster's load-balancer "
                                 "controller did not provision one")
        return host

    def node_address_of_cluster(self) -> str:
        """The ``node_address`` given, or the InternalIP of the first ready node (by name)."""
        if self.node_address:
            return self.node_address
        try:
            nodes = self.api.list("/api/v1/nodes")
        except ApiError as exc:
            if exc.status in (401, 403):
                raise ApiError(f"cannot list the cluster's nodes to find the gateway's address ({exc}); "
                               "give one with --node-address", exc.status) from None
            raise
        for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            st = node.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            ip = next((a["address"] for a in st.get("addresses") or [] if a.get("type") == "InternalIP"), None)
            if ready and ip:
                return ip
        raise StackproofError(f"no ready node with an InternalIP at {self.server} to reach the gateway's NodePort "
                              "Service by; give an address with --node-address")

    def wait_gateway_address(self, timeout: float) -> tuple[str, int | None]:
        """(host, port) the gateway is reached at from outside the cluster: its load
        balancer's address (port 443), or with a NodePort Service a node's address and
        the node port the API server allocated."""
        if self.gateway_service == "LoadBalancer":
            return self.wait_load_balancer(timeout), None
        name = self.gateway.name
        svc = self.api.get("v1", "Service", name, self.namespace) or {}
        port = next((p.get("nodePort") for p in (svc.get("spec") or {}).get("ports") or [] if p.get("nodePort")),
                    None)
        if not port:
            raise ComponentError(f"{name} (Service {self.namespace}/{name}, type NodePort) has no node port")
        return self.node_address_of_cluster(), int(port)

    def _node_port(self, c: Component) -> int | None:
        svc = self.api.get("v1", "Service", c.name, self.namespace) or {}
        return next((p.get("nodePort") for p in (svc.get("spec") or {}).get("ports") or [] if p.get("nodePort")),
                    None)

    # -- the deployer's interface ----------------------------------------------
    def deploy(self, release: Release, tenants: list[Tenant] | None = None, timeout: float = 900) -> Target:
        """The namespace and, when no cloud bucket is given, the object store (rolled
        out first: the stores write to it from their start); the components that read
        no TLS file (the stores) and the gateway's Service; then, once the gateway's
        address is in the certificate, the TLS and the components that read it (the
        gateway and the agent); waits for every one to roll out, in the catalog's order."""
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
        components = self.components()
        reads_tls = [c.name for c in components if c.cluster.tls]
        first = self.object_store
        self._apply(groups["namespace"])
        self._ensure_kept(groups["kept"])
        if first is not None:
            self._apply(groups[first.name])
            secs = self.wait_rollout(first.name, max(1.0, deadline - time.monotonic()))
            self.say(f"{first.name} rolled out ({self._image_of(first, release)}) after {secs:.1f}s")
        self._apply([m for c in components if c.name not in reads_tls and c is not first for m in groups[c.name]]
                    + [m for m in groups[self.gateway.name] if m["kind"] == "Service"])
        if self.gateway_service == "LoadBalancer":
            self.say(f"waiting for the {self.gateway.name}'s load balancer")
        self.lb_host, self.gateway_port = self.wait_gateway_address(max(1.0, deadline - time.monotonic()))
        groups = self.render(release, self.tenants)  # the certificate now names the gateway's address
        self._apply(groups["tls"] + [m for name in reads_tls for m in groups[name]])
        for c in components:
            secs = self.wait_rollout(c.name, max(1.0, deadline - time.monotonic()))
            self.say(f"{c.name} rolled out ({self._image_of(c, release)}) after {secs:.1f}s more")
        return self._target(release)

    def _ensure_kept(self, kept: list[dict]) -> None:
        """Make each ConfigMap of kept files (render's group 'kept') that is not there yet;
        one that is, is the provider's and stays as it is."""
        for cm in kept:
            if self.api.get("v1", "ConfigMap", cm["metadata"]["name"], self.namespace) is None:
                self.api.apply(cm)

    def _image_of(self, c: Component, release: Release) -> str:
        """The image ``c`` runs for ``release``, after the image map."""
        return self.image(c.cluster.image_for(version_of(c, release)))

    def upgrade(self, release: Release, on_swap: SwapHook | None = None, timeout: float = 900) -> Target:
        """Apply the new release component by component in the local
        provider's order (stores first), each rolled out before the next;
        ``on_swap(component, phase, info)`` with each of ``SWAP_PHASES`` around each that changes."""
        deadline = time.monotonic() + timeout
        self.check_api()
        self._read_state()
        if self.tenants is None or self.pki is None:
            raise StackproofError(f"no stackproof platform in namespace {self.namespace} at {self.server}: "
                                  "deploy first")
        self.lb_host, self.gateway_port = self.wait_gateway_address(
            max(1.0, min(60.0, deadline - time.monotonic())))
        groups = self.render(release, self.tenants)
        self._apply(groups["namespace"] + groups["tls"])
        self._ensure_kept(groups["kept"])  # a component new in this release starts with its own
        for c in self.components():
            new_sts = groups[c.name][-1]
            live = self.api.get("apps/v1", "StatefulSet", c.name, self.namespace)
            # the server adds defaults to what it stores: changed means a field we set differs
            changed = live is None or not _subset(live["spec"]["template"], new_sts["spec"]["template"])
            info = {"from": (live or {}).get("metadata", {}).get("labels", {}).get("app.kubernetes.io/version"),
                    "to": version_of(c, release), "image": self._image_of(c, release)}
            if changed:
                if on_swap:
                    on_swap(c.name, STOPPING, info)
                self.say(f"upgrading {c.name}: {info['from']} -> {info['to']}")
            self._apply(groups[c.name])
            if changed and on_swap:
                on_swap(c.name, STARTING, info)  # the StatefulSet now rolls the new pod out
            secs = self.wait_rollout(c.name, max(1.0, deadline - time.monotonic()))
            if changed:
                info["rollout_seconds"] = round(secs, 2)
                if on_swap:
                    on_swap(c.name, READY, info)
        return self._target(release)

    def _target(self, release: Release) -> Target:
        assert self.tenants is not None and self.pki is not None and self.lb_host
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = self.workdir / "ca.pem"
        ca.write_bytes(self.pki.ca_pem)
        host = self._url_host(self.lb_host)
        port = f":{self.gateway_port}" if self.gateway_port else ""
        # the logs dialect and its paths: the logs store's, as the local provider's
        return Target(name=self.platform, provider=self.provider, gateway_url=f"https://{host}{port}",
                      tenants=list(self.tenants), ca_file=str(ca), capabilities=list(CAPABILITIES),
                      release=release.name, limits=dict(DEFAULT_LIMITS), durability=declared_durability(),
                      alerting=declared_alerting(),
                      object_storage=self._published_storage(), **logs_fields(by_role(LOGS_STORE).dialect),
                      **declared_otlp())

    @staticmethod
    def _url_host(host: str) -> str:
        try:
            if ipaddress.ip_address(host).version == 6:
                return f"[{host}]"
        except ValueError:
            pass
        return host

    def _published_storage(self) -> dict | None:
        """The in-cluster bucket as the target file says it (for the durability suite's
        listing), when it is reachable from outside: at a node port beside the gateway's."""
        store = self.object_store
        if store is None or self.gateway_service != "NodePort" or self.object_storage_keys is None:
            return None
        port = self._node_port(store)
        if not port:
            return None
        named = {f"{signal}_bucket": by_role(role).name for signal, role in SIGNAL_ROLES.items()
                 if by_role(role).uses_bucket}
        key_id, key = self.object_storage_keys
        return {"type": "s3", "endpoint": f"http://{self._url_host(self.lb_host)}:{port}",
                "access_key_id": key_id, "secret_access_key": key, "region": self.storage["region"],
                "buckets": ",".join(getattr(store, "buckets", tuple)()), **named}

    # -- single components, on the same data (capability 'restart') ---------------
    def of_role(self, role: str) -> list[Component]:
        """What runs in the cluster for ``role``: one component, or one instance per tenant
        (the logs rule evaluator), acted on together as the local provider does; or a
        one-line error."""
        if role not in ROLES:
            raise StackproofError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        self._read_state()  # the tenants: a per-tenant component's instances
        found = [c for c in self.components() if c.role == role]
        if not found:
            raise StackproofError(f"no component with the role {role!r} runs in namespace {self.namespace} "
                                  f"(roles there: {', '.join(dict.fromkeys(c.role for c in self.components()))})")
        return found

    def component(self, role: str) -> Component:
        """The (first) component of ``role`` that runs in the cluster, or a one-line error."""
        return self.of_role(role)[0]

    def _pods(self, c: Component) -> list[dict]:
        return self.api.list(f"/api/v1/namespaces/{self.namespace}/pods",
                             ",".join(f"{k}={v}" for k, v in self.selector(c.name).items()))

    def _live_statefulset(self, c: Component) -> dict:
        sts = self.api.get("apps/v1", "StatefulSet", c.name, self.namespace)
        if sts is None:
            raise StackproofError(f"no StatefulSet {self.namespace}/{c.name} at {self.server}: deploy first")
        return sts

    @staticmethod
    def _container_status(pod: dict, name: str) -> dict:
        return next((s for s in (pod.get("status") or {}).get("containerStatuses") or [] if s.get("name") == name),
                    {})

    def stop_component(self, role: str) -> str:
        """Scale the StatefulSet of each of the role's components to 0 and wait until its pod
        is gone: the kubelet sends the stop signal and waits the grace period (the
        component's stop timeout and a margin) before a SIGKILL. For each, "stopped", or
        "killed" when its container was seen to end by SIGKILL (exit code 137)."""
        return ", ".join(self._stop(c, role) for c in self.of_role(role))

    def _stop(self, c: Component, role: str) -> str:
        self._live_statefulset(c)
        self.api.scale("apps/v1", "StatefulSet", c.name, self.namespace, 0)
        timeout = c.stop_timeout + 15 + 60  # the grace period, and time for the kubelet to see the change
        seen_kill = False

        def probe():
            nonlocal seen_kill
            pods = self._pods(c)
            for pod in pods:
                term = (self._container_status(pod, c.name).get("state") or {}).get("terminated") or {}
                seen_kill = seen_kill or term.get("exitCode") == 137
            return not pods, [p["metadata"]["name"] for p in pods]

        done, left = self._poll(probe, time.monotonic() + timeout)
        if not done:
            raise ComponentError(f"{c.name} ({role}) did not stop within {timeout:.0f}s: pod(s) "
                                 f"{', '.join(left)} still present{self._pod_problem(c.name)}")
        self.say(f"{c.name} stopped (StatefulSet {self.namespace}/{c.name} scaled to 0)")
        return "killed" if seen_kill else "stopped"

    def start_component(self, role: str, timeout: float | None = None) -> float:
        """Scale the StatefulSet of each of the role's components to 1 (a no-op after a kill,
        whose pod the kubelet restarts) and wait until it is rolled out and its pod ready;
        seconds until then (summed over the role's components, as the local provider's)."""
        return sum(self._start(c, role, timeout) for c in self.of_role(role))

    def _start(self, c: Component, role: str, timeout: float | None) -> float:
        sts = self._live_statefulset(c)
        t0 = time.monotonic()
        if (sts.get("spec") or {}).get("replicas", 1) != 1:
            self.api.scale("apps/v1", "StatefulSet", c.name, self.namespace, 1)
        deadline = t0 + (timeout or c.ready_timeout + 120)  # time to schedule, attach the volume, pull

        def probe():
            problem = self.rollout_problem(self.api.get("apps/v1", "StatefulSet", c.name, self.namespace))
            if problem is None:  # the controller's count can lag the pod: ask the pod itself
                pods = [p for p in self._pods(c) if not p["metadata"].get("deletionTimestamp")]
                ready = [p for p in pods if any(k.get("type") == "Ready" and k.get("status") == "True"
                                                for k in (p.get("status") or {}).get("conditions") or [])
                         and self._container_status(p, c.name).get("ready")]
                if len(ready) != 1:
                    problem = f"pod {c.name}-0 to be ready"
            return problem is None, problem

        done, problem = self._poll(probe, deadline)
        if not done:
            raise ComponentError(f"{c.name} ({role}) was not ready {deadline - t0:.0f}s after its start: waiting "
                                 f"for {problem}{self._pod_problem(c.name)}")
        secs = time.monotonic() - t0
        self.say(f"{c.name} ready after {secs:.1f}s")
        return secs

    def kill_component(self, role: str, timeout: float = 120) -> None:
        """SIGKILL the component's process (a crash: no flush, no goodbye), from a
        short-lived privileged pod in the host's PID namespace on the component's node
        (:meth:`kill_pod`); returns once the kubelet restarted the container (its
        restart count went up). The helper pod is deleted afterwards. Every component
        of the role (each tenant's instance of a per-tenant one), one after another."""
        for c in self.of_role(role):
            self._kill(c, role, timeout)

    def _kill(self, c: Component, role: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pods = [p for p in self._pods(c) if not p["metadata"].get("deletionTimestamp")]
        running = [p for p in pods if (self._container_status(p, c.name).get("state") or {}).get("running")]
        if not running:
            raise StackproofError(f"{c.name} ({role}) has no running container to kill in namespace "
                                  f"{self.namespace}{self._pod_problem(c.name)}")
        pod = running[0]
        pod_name, node = pod["metadata"]["name"], (pod.get("spec") or {}).get("nodeName")
        status = self._container_status(pod, c.name)
        container_id = (status.get("containerID") or "").split("://", 1)[-1]
        if not node or not container_id:
            raise StackproofError(f"pod {self.namespace}/{pod_name} names no node or container id: cannot kill "
                                  f"{c.name}")
        restarts = status.get("restartCount", 0)
        helper = self.kill_pod(c, node, container_id, f"stackproof-kill-{c.name}-{secrets.token_hex(3)}")
        name = helper["metadata"]["name"]
        self.say(f"killing {c.name} (container {container_id[:12]} on node {node}) with SIGKILL")
        try:
            try:
                self.api.apply(helper)
            except ApiError as exc:
                if exc.status in (403, 422):
                    raise ApiError(f"{exc} (the kill of {c.name} needs a privileged pod with the host's PID "
                                   "namespace on its node: the API server's --allow-privileged and Pod Security "
                                   f"'privileged' for namespace {self.namespace})", exc.status) from None
                raise

            def helper_done():
                phase = ((self.api.get("v1", "Pod", name, self.namespace) or {}).get("status") or {}).get("phase")
                return phase in ("Succeeded", "Failed"), phase

            done, phase = self._poll(helper_done, deadline)
            if phase != "Succeeded":
                raise ComponentError(f"the kill helper pod {self.namespace}/{name} for {c.name} "
                                     + (f"failed{self._helper_log(name)}" if done else
                                        f"did not finish within {timeout:.0f}s (phase {phase or 'unknown'})"
                                        f"{self._pod_problem_of(name)}"))

            def restarted():
                now = self._container_status(self.api.get("v1", "Pod", pod_name, self.namespace) or {}, c.name)
                return now.get("restartCount", 0) > restarts, now.get("restartCount", 0)

            done, _ = self._poll(restarted, deadline)
            if not done:
                raise ComponentError(f"{c.name} ({role}) was killed but the kubelet did not restart it within "
                                     f"{timeout:.0f}s (restart count {restarts}){self._pod_problem(c.name)}")
        finally:
            try:
                self.api.delete("v1", "Pod", name, self.namespace, grace_seconds=0)
            except StackproofError as exc:
                self.say(f"could not delete the kill helper pod {self.namespace}/{name}: {exc}")

    def _helper_log(self, name: str) -> str:
        try:
            _, data = self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/pods/{name}/log",
                                       query={"limitBytes": "2000"})
        except StackproofError:
            return ""
        text = one_line(data.decode(errors="replace"), 200)
        return f": {text}" if text else ""

    def _pod_problem_of(self, name: str) -> str:
        pod = self.api.get("v1", "Pod", name, self.namespace) or {}
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                return f"; {waiting['reason']}" + (f" ({one_line(waiting['message'], 120)})"
                                                   if waiting.get("message") else "")
        return ""

    def remove_local_data(self, role: str, timeout: float = 120) -> list[str]:
        """Delete a stopped component's volume (its PersistentVolumeClaims; the storage
        class's reclaim policy decides what becomes of the disk) and wait until they are
        gone, so that its next start gets a fresh, empty one. What was removed."""
        return [r for c in self.of_role(role) for r in self._remove_data(c, role, timeout)]

    def _remove_data(self, c: Component, role: str, timeout: float) -> list[str]:
        sts = self._live_statefulset(c)
        if (sts.get("spec") or {}).get("replicas", 1) != 0 or self._pods(c):
            raise StackproofError(f"{c.name} ({role}) is running; stop it before removing its local data")
        removed = []
        for claim in self.data_claims(c):
            if self.api.delete("v1", "PersistentVolumeClaim", claim, self.namespace):
                removed.append(f"PersistentVolumeClaim {self.namespace}/{claim}")

        def gone():
            left = [n for n in self.data_claims(c)
                    if self.api.get("v1", "PersistentVolumeClaim", n, self.namespace) is not None]
            return not left, left

        done, left = self._poll(gone, time.monotonic() + timeout)
        if not done:
            raise StackproofError(f"{c.name} ({role}): PersistentVolumeClaim(s) {', '.join(left)} still present "
                                  f"after {timeout:.0f}s")
        if removed:
            self.say(f"{c.name}: removed {', '.join(removed)}")
        return removed

    # -- log rule files (capability 'log-alerting'): the kept files of a tenant's evaluator ------
    # The evaluator (vmalert) has no write API: each tenant's instance reads its rule files
    # from a ConfigMap of its own (its kept files). A file is checked first by the release's
    # own vmalert ('-dryRun', as the local provider does), then patched into the ConfigMap;
    # the instance's pod is annotated with the files' digest, which makes the kubelet sync
    # its volumes now rather than at its next periodic sync (about a minute), and vmalert
    # reads the changed files at its next config check (every second). set and delete return
    # once the evaluator reports the namespace's groups as the file has them.
    rules_checker: Path | None = None  # a vmalert binary for '-dryRun' (default: the release's, built or cached)
    rules_wait_s = 120.0

    def _evaluator(self, tenant: str) -> Component:
        self._read_state()
        inst = next((c for c in self.components() if c.role == LOGS_RULER and c.tenant and c.tenant.name == tenant),
                    None)
        if inst is None:
            raise StackproofError(f"the platform in namespace {self.namespace} has no tenant {tenant!r} with a log "
                                  "rule evaluator")
        return inst

    def _kept_files(self, c: Component) -> dict[str, str]:
        cm = self.api.get("v1", "ConfigMap", f"{c.name}{KEPT_SUFFIX}", self.namespace)
        if cm is None:
            raise StackproofError(f"no ConfigMap {self.namespace}/{c.name}{KEPT_SUFFIX} (the rule files of "
                                  f"{c.name}) at {self.server}: deploy first")
        return dict(cm.get("data") or {})

    def set_log_rules(self, tenant: str, namespace: str, text: str) -> None:
        """Install (or replace) ``tenant``'s rule file ``namespace``; a bad file is refused in
        one line (what vmalert's own check says), and nothing is changed."""
        key, groups = checked_rule_file(tenant, namespace, text, lambda: self._rules_checker(self._evaluator(tenant)))
        inst = self._evaluator(tenant)
        self.api.merge_patch("v1", "ConfigMap", f"{inst.name}{KEPT_SUFFIX}", self.namespace, {"data": {key: text}})
        self._sync_kept(inst, key, [g["name"] for g in groups])

    def log_rules(self, tenant: str) -> dict[str, str]:
        """``tenant``'s rule files as the provider keeps them: namespace -> YAML text."""
        files = self._kept_files(self._evaluator(tenant))
        return {k.removesuffix(".yml"): v for k, v in sorted(files.items())
                if k.endswith(".yml") and k != f"{BASE_RULES}.yml"}

    def delete_log_rules(self, tenant: str, namespace: str) -> None:
        """Remove ``tenant``'s rule file ``namespace`` (no error if there is none)."""
        inst = self._evaluator(tenant)
        key = rule_file_name(tenant, namespace)
        if key not in self._kept_files(inst):
            return
        self.api.merge_patch("v1", "ConfigMap", f"{inst.name}{KEPT_SUFFIX}", self.namespace, {"data": {key: None}})
        self._sync_kept(inst, key, [])

    def _rules_checker(self, inst: Component) -> Path:
        """The vmalert binary that checks a rule file: ``rules_checker``, else the instance's own
        version (built or cached)."""
        if self.rules_checker is not None:
            return self.rules_checker
        sts = self._live_statefulset(inst)
        version = (sts["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
        return BinaryResolver(progress=self.say).resolve(inst.spec, version).path

    def _sync_kept(self, inst: Component, key: str, groups: list[str]) -> None:
        """Make the kubelet put the kept files into the instance's pod now (an annotation with
        their digest: a pod update syncs its volumes), ask vmalert to reload, and wait until
        it reports exactly ``groups`` from the file ``key``."""
        files = self._kept_files(inst)
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:32]
        pods = [p for p in self._pods(inst) if not p["metadata"].get("deletionTimestamp")]
        for pod in pods:
            self.api.merge_patch("v1", "Pod", pod["metadata"]["name"], self.namespace,
                                 {"metadata": {"annotations": {"stackproof/kept-files": digest}}})
        if not pods:
            return  # stopped: it reads the files as they are when it starts
        base = self._proxy(inst)
        deadline = time.monotonic() + self.rules_wait_s

        def loaded():
            try:  # vmalert checks its files every second anyway: a reload only saves that second
                self.api.request("POST", f"{base}/-/reload", ok=(200, 204), timeout=10)
            except StackproofError:
                pass
            try:
                _, data = self.api.request("GET", f"{base}/api/v1/rules", timeout=10)
                seen = [g.get("name") for g in json.loads(data)["data"]["groups"]
                        if str(g.get("file", "")).endswith(f"/{key}")]
            except (StackproofError, ValueError, KeyError, TypeError) as exc:
                return False, one_line(exc, 160)
            return sorted(seen) == sorted(groups), seen

        done, seen = self._poll(loaded, deadline)
        if not done:
            raise ComponentError(f"{inst.name} did not load its rule file {key} within {self.rules_wait_s:.0f}s "
                                 f"(groups {sorted(groups)} wanted; it reports {seen})")

    def _proxy(self, c: Component) -> str:
        """The API server's proxy path to ``c``'s Service, its first published port, with its
        path prefix (what the gateway passes it)."""
        port = next(p for p in c.cluster.ports if p.published)
        prefix = getattr(c, "reads_path", "") or ""
        return f"/api/v1/namespaces/{self.namespace}/services/http:{c.name}:{port.name}/proxy{prefix}"

    def status(self) -> dict:
        """What runs in the namespace: per component its role, version, image, replicas,
        readiness, restarts and node."""
        self.check_api()
        self._read_state()  # the tenants: a per-tenant component's instances
        comps = {}
        for c in self.components():
            sts = self.api.get("apps/v1", "StatefulSet", c.name, self.namespace)
            if sts is None:
                comps[c.name] = {"role": c.role, "present": False, "running": False, "ready": False}
                continue
            pods = self._pods(c)
            cs = self._container_status(pods[0], c.name) if pods else {}
            container = (sts["spec"]["template"]["spec"].get("containers") or [{}])[0]
            comps[c.name] = {
                "role": c.role, "present": True,
                "version": sts["metadata"].get("labels", {}).get("app.kubernetes.io/version"),
                "image": container.get("image"), "replicas": sts["spec"].get("replicas", 1),
                "running": bool((cs.get("state") or {}).get("running")),
                "ready": self.rollout_problem(sts) is None and bool(cs.get("ready")),
                "restarts": cs.get("restartCount", 0), "pod": pods[0]["metadata"]["name"] if pods else None,
                "node": (pods[0].get("spec") or {}).get("nodeName") if pods else None}
        present = [v for v in comps.values() if v["present"]]
        ready = sum(1 for v in comps.values() if v["ready"])
        state = ("absent" if not present else "running" if ready == len(comps) else
                 "stopped" if not any(v["running"] for v in comps.values()) else "degraded")
        return {"namespace": self.namespace, "server": self.server, "state": state, "components": comps}

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


