"""Every provider-made target's capability list, pinned exactly.

A test may skip only on a capability its target declares absent, so a capability
dropped from a provider's list turns a suite into skips under a green run. Each
list is read where a real provider makes it: the local provider's target file
(made by ``create``, no process started), the Kubernetes deployer's list and what
each cluster provider (kube, local-kube, aws, gcp) saves of the deployer's target.
Adding or dropping one is a change to this file, said out loud; a provider that
drops one on the way (the stand-in below) is named with what it lost."""

from __future__ import annotations

import pytest

from harness.providers.common import declared_alerting
from harness.target import Target

from .test_kube_deployer import NEW, tenants

# the local platform: every capability a platform stackproof builds has
LOCAL = ["metrics", "logs", "tail", "agent", "restart", "remote-write-2", "otlp", "otel-collector", "agent-scrape",
         "alerting", "log-alerting", "alerting-webhook"]
# every cluster provider (one deployer): the same, but for the Collector and the agent's scrape
# directory (files a test writes on this machine, which a cloud's node cannot see)
CLUSTER = ["metrics", "logs", "tail", "agent", "restart", "remote-write-2", "otlp", "alerting", "log-alerting",
           "alerting-webhook"]
# the local cluster: its node shares this machine's files, so the Collector's inbox and the agent's
# scrape directory are here (and its pods reach the exporters at the host's end of the node's veth)
LOCAL_KUBE = [*CLUSTER, "otel-collector", "agent-scrape"]


def drift(provider: str, got: list[str], want: list[str]) -> str:
    """'' when ``got`` is exactly ``want`` (order included), else one line naming what changed."""
    if got == want:
        return ""
    lost, extra = [c for c in want if c not in got], [c for c in got if c not in want]
    return (f"{provider}: capabilities changed: " + ", ".join(
        [*(f"lost {c!r}" for c in lost), *(f"gained {c!r}" for c in extra)] or ["reordered"]))


def deployers_target() -> Target:
    """What KubeDeployer._target makes (its capabilities are CAPABILITIES)."""
    from harness.providers.kube import CAPABILITIES
    return Target(name="lab", gateway_url="https://10.213.255.2:30443", tenants=tenants(),
                  capabilities=list(CAPABILITIES), alerting=declared_alerting())


def test_the_local_providers_target_file(tmp_path, monkeypatch):
    from harness.providers.local import LocalProvider
    monkeypatch.setenv("STACKPROOF_STATE", str(tmp_path / "state"))
    p = LocalProvider("caps", root=tmp_path / "caps")
    p.create()  # tenants, ports, TLS and the target file; nothing is started
    assert drift("local", Target.load(p.target_file).capabilities, LOCAL) == ""


def test_the_kube_deployers_list_and_local_kubes_additions():
    from harness.providers.kube import CAPABILITIES
    from harness.providers.localkube import CAPABILITIES as LOCAL
    assert drift("kube deployer", CAPABILITIES, CLUSTER) == ""
    # what LocalKubeProvider._with_this_machines gives its target, after the kube provider's (below)
    assert drift("local-kube", LOCAL, LOCAL_KUBE) == ""


def test_every_cluster_provider_saves_the_deployers_list_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("STACKPROOF_STATE", str(tmp_path / "state"))
    from harness.providers.aws import AWSProvider
    from harness.providers.gcp import GCPProvider
    from harness.providers.kubecluster import KubeProvider
    from harness.providers.localkube import LocalKubeProvider

    made = {
        "kube": KubeProvider("lab", kubeconfig=tmp_path / "kubeconfig", state_dir=tmp_path / "kube"),
        "local-kube": LocalKubeProvider("lab", state_dir=tmp_path / "local-kube"),
        "aws": AWSProvider(run_id="sp0123456789", region="eu-west-1", state_dir=tmp_path / "aws"),
        "gcp": GCPProvider(run_id="run-caps", project="caps-project", locations=["europe-west1-b"]),
    }
    for name, provider in made.items():
        target = deployers_target()
        target.path = tmp_path / f"{name}.yaml"
        saved = provider._save_target(target, NEW)
        assert saved.provider == name
        assert drift(name, Target.load(saved.path).capabilities, CLUSTER) == ""


@pytest.mark.parametrize("got, said", [
    ([c for c in CLUSTER if c != "otlp"], "kube: capabilities changed: lost 'otlp'"),
    ([*CLUSTER, "otel-collector"], "kube: capabilities changed: gained 'otel-collector'"),
    (list(reversed(CLUSTER)), "kube: capabilities changed: reordered"),
])
def test_a_provider_that_drops_or_adds_one_is_named(got, said):
    """The stand-in: a target whose provider lost 'otlp' on the way (what would turn the
    OTLP suite into skips) fails the pin, naming it."""
    assert drift("kube", got, CLUSTER) == said
