"""The programs of a single-node Kubernetes cluster, built from their Go
modules into the binary cache like the platform's components (pinned here:
the cluster is the harness's infrastructure, not part of a release).

Kubernetes' own programs come from ``k8s.io/kubernetes`` through the same
wrapper module as kube-apiserver (its staging modules replaced by their
published ``v0.Y.Z`` versions), so they share one module download and one
Go build cache: after kube-apiserver, each further program compiles only its
own packages. etcd and CoreDNS come from their own modules.
"""

from __future__ import annotations

from ..binaries import BinaryResolver, BinarySpec, GoRecipe
from ..components.kubeapiserver import ETCD_SPEC, ETCD_VERSION, SPEC as APISERVER_SPEC, VERSION, staging_version

COREDNS_VERSION = "v1.12.1"  # the CoreDNS release Kubernetes 1.34 ships with (kubeadm's default)


def _kube(program: str) -> BinarySpec:
    recipe = APISERVER_SPEC.go
    assert recipe is not None
    return BinarySpec(name=program, go=GoRecipe(
        module=recipe.module, package=f"k8s.io/kubernetes/cmd/{program}", version_vars=recipe.version_vars,
        published_local=recipe.published_local))


COREDNS_SPEC = BinarySpec(name="coredns", go=GoRecipe(
    module="github.com/coredns/coredns", package="github.com/coredns/coredns",
    version_vars=("github.com/coredns/coredns/coremain.GitCommit={version}",)))

# program -> (spec, version), in the order they are built (the biggest first: it fills the build cache)
PROGRAMS: dict[str, tuple[BinarySpec, str]] = {
    "kube-apiserver": (APISERVER_SPEC, VERSION),
    "kubelet": (_kube("kubelet"), VERSION),
    "kube-controller-manager": (_kube("kube-controller-manager"), VERSION),
    "kube-scheduler": (_kube("kube-scheduler"), VERSION),
    "kube-proxy": (_kube("kube-proxy"), VERSION),
    "etcd": (ETCD_SPEC, ETCD_VERSION),
    "coredns": (COREDNS_SPEC, COREDNS_VERSION),
}

SPECS = tuple(spec for spec, _ in PROGRAMS.values())


def resolve_programs(resolver: BinaryResolver | None = None, build: bool = True) -> dict:
    """program -> :class:`~harness.binaries.Resolved`, building what the cache lacks."""
    resolver = resolver or BinaryResolver()
    return {name: resolver.resolve(spec, version, build=build) for name, (spec, version) in PROGRAMS.items()}


__all__ = ["PROGRAMS", "SPECS", "VERSION", "ETCD_VERSION", "COREDNS_VERSION", "resolve_programs", "staging_version"]
