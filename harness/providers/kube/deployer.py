"""The Kubernetes deployer's verbs: deploy, upgrade, collect artifacts and
delete the platform in one namespace of a cluster, through :class:`KubeApi`,
from the manifests :class:`PlatformManifests` renders.

Everything is applied server-side and waited for: a StatefulSet is rolled out
when its controller has seen the newest generation, every replica is updated
and ready, and the current revision is the update revision. The gateway's
Service is applied first, since its load-balancer address goes into the
certificate the TLS-reading components mount. The platform's state lives in
the cluster (the tenants and the TLS Secrets), so a later process can upgrade,
collect or delete it. Tokens never appear in a message, a log line or an
artifact.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from pathlib import Path
from typing import Callable

from ... import say
from ...errors import ComponentError, StackproofError, one_line
from ...releases import Release
from ...components import LOGS_STORE, by_role
from ...target import DEFAULT_LIMITS, Target, Tenant, logs_fields
from ..base import READY, STARTING, STOPPING, SwapHook
from ..common import declared_durability, new_tenants, state_root
from .client import KubeApi
from .manifests import (PART_OF, TENANTS_SECRET, TLS_SECRET, PlatformManifests, cluster_components, image_for,
                        version_of)
from .pki import GatewayPKI

def _subset(live, wanted) -> bool:
    """Whether ``live`` (as the server stores it, defaults added) has every field of ``wanted``."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(_subset(live.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(_subset, live, wanted))
    return live == wanted


class KubeDeployer(PlatformManifests):
    """Deploys, upgrades, collects and deletes the platform in one namespace.
    ``storage`` is the cloud's bucket (see :func:`check_storage`); ``labels``
    go on every object (owner, run id, expiry: for a janitor)."""

    def __init__(self, kubeconfig: dict, namespace: str = "stackproof",
                 storage: dict | None = None, labels: dict[str, str] | None = None,
                 api_timeout: float = 10.0, *, provider: str = "kube", platform: str | None = None,
                 workdir: Path | None = None, service_annotations: dict[str, str] | None = None,
                 volume_size: str = "10Gi", storage_class: str | None = None,
                 poll_interval: float = 2.0, progress: Callable[[str], None] = say):
        super().__init__(namespace, storage, labels, platform=platform, service_annotations=service_annotations,
                         volume_size=volume_size, storage_class=storage_class)
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
            self._api = KubeApi(self._kubeconfig, self.api_timeout)
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

    # -- the deployer's interface ----------------------------------------------
    def deploy(self, release: Release, tenants: list[Tenant] | None = None, timeout: float = 900) -> Target:
        """The namespace, the components that read no TLS file (the stores) and
        the gateway's Service; then, once the load balancer's address is in the
        certificate, the TLS and the components that read it (the gateway and
        the agent); waits for every one to roll out, in the catalog's order."""
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
        reads_tls = [c.name for c in cluster_components() if c.cluster.tls]
        self._apply(groups["namespace"] + [m for c in cluster_components() if c.name not in reads_tls
                                           for m in groups[c.name]]
                    + [m for m in groups[self.gateway.name] if m["kind"] == "Service"])
        self.say(f"waiting for the {self.gateway.name}'s load balancer")
        self.lb_host = self.wait_load_balancer(max(1.0, deadline - time.monotonic()))
        groups = self.render(release, self.tenants)  # the certificate now names the load balancer
        self._apply(groups["tls"] + [m for name in reads_tls for m in groups[name]])
        for c in cluster_components():
            secs = self.wait_rollout(c.name, max(1.0, deadline - time.monotonic()))
            self.say(f"{c.name} rolled out ({image_for(c, release)}) after {secs:.1f}s more")
        return self._target(release)

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
        self.lb_host = self.wait_load_balancer(max(1.0, min(60.0, deadline - time.monotonic())))
        groups = self.render(release, self.tenants)
        self._apply(groups["namespace"] + groups["tls"])
        for c in cluster_components():
            new_sts = groups[c.name][-1]
            live = self.api.get("apps/v1", "StatefulSet", c.name, self.namespace)
            # the server adds defaults to what it stores: changed means a field we set differs
            changed = live is None or not _subset(live["spec"]["template"], new_sts["spec"]["template"])
            info = {"from": (live or {}).get("metadata", {}).get("labels", {}).get("app.kubernetes.io/version"),
                    "to": version_of(c, release), "image": image_for(c, release)}
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
        host = self.lb_host
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        # the logs dialect and its paths: the logs store's, as the local provider's
        return Target(name=self.platform, provider=self.provider, gateway_url=f"https://{host}",
                      tenants=list(self.tenants), ca_file=str(ca), capabilities=["metrics", "logs"],
                      release=release.name, limits=dict(DEFAULT_LIMITS), durability=declared_durability(),
                      **logs_fields(by_role(LOGS_STORE).dialect))

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


