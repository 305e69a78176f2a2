"""``own_platform`` on every cluster provider: a platform of a test's own is a
sibling namespace on the same cluster, made by the same deployer, with its own S3
server (never the run's cloud bucket: two Cortexes would compact each other's
blocks), and its teardown deletes that namespace alone.

Before, the fixture skipped on aws and gcp although they share the deployer; the
skip site is now only for a target no provider made (tests/test_skip_sites.py).
Here: the AWS provider's sibling gets a deployer for its own namespace and no bucket
(through the provider's deployer factory, its way of handing the cluster over), and
on a real kube-apiserver a sibling deploys beside a platform and is deleted without
touching it."""

from __future__ import annotations

import pytest

from harness.providers.kube import KubeApi, KubeDeployer
from harness.providers.kube.sibling import SiblingPlatform

from . import test_kube_deployer as kube_tests
from .test_kube_deployer import LABELS, NEW, S3, StandIn, by_key

control_plane = kube_tests.control_plane  # a real kube-apiserver and etcd on loopback (module scope)


def test_the_aws_providers_sibling_is_its_own_namespace_without_the_runs_buckets(tmp_path, monkeypatch):
    from harness.providers.aws import AWSProvider
    monkeypatch.setenv("STACKPROOF_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASTACKPROOFTEST01")  # signs an EKS token here: no call is made
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret-" + "x" * 27)
    made = []

    def factory(kubeconfig, namespace, storage, labels):
        made.append((namespace, storage, labels))
        return KubeDeployer(kubeconfig, namespace, storage, labels)

    p = AWSProvider(run_id="sp0123456789", region="eu-west-1", deployer_factory=factory, state_dir=tmp_path / "aws")
    p.state["cluster"] = {"endpoint": "https://eks.example.test", "ca": "Y2E="}
    own = p.sibling("own-1a2b3c4d")
    assert isinstance(own, SiblingPlatform) and own.name == "aws"
    d = own.deployer
    assert made == [("own-1a2b3c4d", None, p.labels())]
    assert d.namespace == "own-1a2b3c4d" and d.in_cluster_storage
    # what it would deploy: its own S3 server, no trace of the run's buckets
    rendered = by_key(d.manifests(NEW, kube_tests.tenants()))
    assert ("StatefulSet", "s3") in rendered
    assert p.names.namespace != "own-1a2b3c4d"
    for bucket in p.storage()["buckets"].values():
        assert bucket not in repr(rendered)
    # the run's own deployer still has its buckets
    assert p.deployer.storage["buckets"] == p.storage()["buckets"]


@pytest.mark.slow
def test_a_sibling_deploys_beside_a_platform_and_goes_alone(control_plane, tmp_path, monkeypatch):
    monkeypatch.setenv("STACKPROOF_STATE", str(tmp_path / "state"))
    kc = control_plane.kubeconfig()
    api = KubeApi(kc)
    main = KubeDeployer(kc, "sp-main", storage=S3, labels=LABELS, workdir=tmp_path / "main", poll_interval=0.2,
                        progress=lambda m: None)

    def deployer_of(namespace: str) -> KubeDeployer:
        return KubeDeployer(kc, namespace, None, LABELS, workdir=tmp_path / namespace, poll_interval=0.2,
                            progress=lambda m: None)

    own = SiblingPlatform("own-5e6f7a8b", deployer_of, "aws", timeout=60)
    with StandIn(kc, "sp-main"), StandIn(kc, "own-5e6f7a8b"):
        main.deploy(NEW, timeout=60)
        target = own.deploy(NEW)
    assert target.gateway_url == "https://lb.stackproof.test" and own.target_file.is_file()
    assert api.get("apps/v1", "StatefulSet", "s3", "own-5e6f7a8b") is not None  # its own object store
    assert api.get("apps/v1", "StatefulSet", "s3", "sp-main") is None  # the main one uses the bucket
    assert own.status()["namespace"] == "own-5e6f7a8b"
    with StandIn(kc, "own-5e6f7a8b"):
        own.destroy()
    assert api.get("v1", "Namespace", "own-5e6f7a8b") is None and not own.target_file.exists()
    assert api.get("apps/v1", "StatefulSet", "cortex", "sp-main") is not None  # the platform beside it stays
    with StandIn(kc, "sp-main"):
        main.delete(timeout=60)
