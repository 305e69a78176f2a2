"""The ``local-kube`` provider: a real single-node Kubernetes cluster on this
machine (:class:`~harness.cluster.cluster.LocalCluster`), started by the
harness without Docker, and the platform deployed into it by the same
:class:`~harness.providers.kube.KubeDeployer` as on EKS, GKE or any cluster
(``--provider kube``): it *is* the ``kube`` provider, on a cluster it made.

What it fits to the deployer: the images the harness builds from the binaries
it builds (:mod:`harness.images`), imported into the node's containerd and
named by an image map; the cluster's own storage class (local volumes on this
disk); the gateway as a NodePort Service on the node's address; the
platform's own S3 server as a pod, with a bucket per store. Its webhook
receiver is the kube provider's, in the platform's namespace
(:mod:`harness.providers.kube.webhook`), so that a run here proves the path EKS,
GKE and any kubeconfig's cluster take. What its target can do beyond any
cluster's (:data:`CAPABILITIES`), since the node shares this machine's file
system: 'otel-collector', the Collector's inbox a directory here
(``host/otelcol/inbox`` of its state, a hostPath in the pod) that the suites
write into, and its OTLP port a node port on the node's address; and
'agent-scrape', the agent's scrape directory a directory here
(``host/agent-scrape``, mounted read-only into the agent's pod) where a test
lists its exporters, which listen at the host's end of the node's veth
(``HOST_IP``, at a port the kernel picks: the one way the node's guard lets a
pod's TCP reach this machine, :mod:`harness.cluster.node`).

State: ``$STACKPROOF_STATE/local-kube-<platform>/`` holds the kube provider's
``state.json`` and ``target.yaml`` and the cluster under ``cluster/``
(its PKI, kubeconfigs, data, volumes and logs); ``stackproof down`` (or the
end of a pytest run) stops the cluster and leaves the host as it found it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .. import images, say
from ..cluster.cluster import STORAGE_CLASS, LocalCluster
from ..cluster.node import HOST_IP, NODE_IP
from ..components import LOG_SHIPPER, SENDER, by_role
from ..errors import StackproofError
from ..releases import Release
from ..target import Target
from .base import SwapHook
from .common import state_root
from .kube.deployer import CAPABILITIES as KUBE_CAPABILITIES
from .kubecluster import KubeProvider

# every cluster's, the Collector and the agent's scrape list: directories of this machine the node shares
CAPABILITIES = [*KUBE_CAPABILITIES, "otel-collector", "agent-scrape"]


class LocalKubeProvider(KubeProvider):
    """``stackproof up --provider local-kube``: start the cluster, import the
    release's images, deploy; ``down``: delete the namespace, stop the cluster."""

    name = "local-kube"

    def __init__(self, platform: str = "local-kube", *, target_file: str | Path | None = None,
                 state_dir: Path | None = None, timeout: float = 900, progress: Callable[[str], None] = say,
                 **_ignored):
        if state_dir is None and target_file is not None and (Path(target_file).parent / "state.json").is_file():
            state_dir = Path(target_file).parent
        state_dir = Path(state_dir) if state_dir else state_root() / f"local-kube-{platform}"
        self.cluster = LocalCluster(state_dir / "cluster", progress=progress)
        super().__init__(platform, kubeconfig=self.cluster.kubeconfig_path(), namespace="stackproof",
                         storage_class=STORAGE_CLASS, gateway_service="NodePort", node_address=NODE_IP,
                         host_dir=str(state_dir.resolve() / "host"), state_dir=state_dir, timeout=timeout,
                         progress=progress)

    def create(self) -> None:
        """Start the cluster (its own images: the tools and the pod sandbox), unless it runs."""
        if not self.cluster.running():
            pause = images.build_image(images.pause_image(), progress=self.say)
            tools = images.build_image(images.tools_image(), progress=self.say)
            self.cluster.start(sandbox_image=pause.ref, images=[pause.archive, tools.archive])
        super().create()

    def _use_images(self, release: Release) -> None:
        """Build (or find cached) the release's images, import them, map the deployer onto them."""
        made = images.release_images(release, progress=self.say)
        cd = self.cluster.containerd()
        have = set(cd.images())  # the pod sandbox and the tools came in with the cluster; an upgrade's repeats
        for b in made.archives:
            if b.ref not in have:
                cd.import_image(b.archive)
        # the pod sandbox is the node's, not the platform's: the deployer never names it
        self.settings["images"] = {up: local for up, local in made.images.items() if local != made.pause}
        self._deployer = None  # made again with the map

    def deploy(self, release: Release) -> Target:
        self.create()
        self._use_images(release)
        return self._with_this_machines(super().deploy(release), release)

    def upgrade(self, release: Release, on_swap: SwapHook | None = None) -> Target:
        self._use_images(release)
        return self._with_this_machines(super().upgrade(release, on_swap), release)

    def _with_this_machines(self, target: Target, release: Release) -> Target:
        """The kube provider's target and what only a cluster on this machine has (saved
        again): the Collector, its inbox here and its OTLP port at the node's address; the agent's
        scrape directory here, and the address its exporters listen on for the pods to reach them."""
        shipper = by_role(LOG_SHIPPER)
        d = self.deployer
        port = d._node_port(shipper)
        if not port:
            raise StackproofError(f"{shipper.name} (Service {d.namespace}/{shipper.name}) has no node port: "
                                  "its OTLP port cannot be reached from this machine")
        ctx = d.context(target.tenants)
        target.otel_collector = {**shipper.published(ctx), "inbox": d.host_path(shipper.cluster.host_dirs[0]),
                                 "otlp_url": f"http://{NODE_IP}:{port}"}
        sender = by_role(SENDER)
        scrape = Path(d.host_path(sender.cluster.shared_dirs[0]))
        scrape.mkdir(parents=True, exist_ok=True)  # as the pod's hostPath would (DirectoryOrCreate): a test's to write
        target.agent_scrape_dir, target.agent_scrape_host = str(scrape), HOST_IP
        target.capabilities = list(CAPABILITIES)
        return self._save_target(target, release)

    def destroy(self) -> dict[str, str]:
        """Stop the cluster (the namespace goes with it) and put the host back."""
        done = dict(step.split(": ", 1) if ": " in step else (step, "done") for step in self.cluster.stop())
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state = {}
        return done

    def status(self) -> dict:
        if not self.cluster.running():
            return {"provider": self.name, "platform": self.platform, "state": "absent", "components": {}}
        return {**super().status(), "cluster": self.cluster.server}

    def collect_artifacts(self, dest: Path) -> list[Path]:
        """The platform's (the kube provider's) and the cluster's own program logs."""
        out = super().collect_artifacts(dest) if self.cluster.running() else []
        for log in sorted(self.cluster.logs.glob("*.log")):
            target = Path(dest) / "cluster" / log.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, target)
            out.append(target)
        return out
