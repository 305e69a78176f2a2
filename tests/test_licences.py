"""The licence rule, checked: nothing the project builds or deploys is one of
the systems it must not use (AGPL: Loki, Mimir, Grafana, Tempo, k6). The
recipes, every release's versions, the images a cluster runs, and, for every
build in the binary cache, the whole module graph it was built from (its
go.sum)."""

from __future__ import annotations

import re

from harness.binaries import BinaryResolver
from harness.components import COMPONENTS, release_builds
from harness.cluster.kubernetes import SPECS as CLUSTER_SPECS
from harness.components import kubeapiserver
from harness.releases import Catalog
from harness.tools import ACTIONLINT

# the Go modules the project must not use: the not-to-use rows of the package
# lists this project is developed with (December 2026), plus the AGPL modules of
# the same family that the lists do not carry (Loki before v3, Mimir)
NOT_TO_USE = (
    "github.com/alecthomas/kong-yaml", "github.com/aminueza/terraform-provider-minio",
    "github.com/cockroachdb/cockroach", "github.com/element-hq/dendrite", "github.com/grafana/grafana",
    "github.com/grafana/grafana/apps/dashboard",
    "github.com/grafana/loki/v3", "github.com/grafana/tempo", "github.com/hashicorp/consul/envoyextensions",
    "github.com/hashicorp/consul/troubleshoot", "github.com/hashicorp/nomad", "github.com/ian-kent/linkio",
    "github.com/lxc/incus/v6", "github.com/odvcencio/gotreesitter", "github.com/redpanda-data/connect/v4",
    "github.com/rqlite/rqlite/v9", "github.com/skyoo2003/devcloud", "github.com/unidoc/unioffice",
    "github.com/wangbin/jiebago", "go.k6.io/k6", "golang.org/toolchain",
    "github.com/grafana/loki", "github.com/grafana/mimir",
)
# image repositories of the same systems
FORBIDDEN_IMAGE = re.compile(r"^(docker\.io/)?grafana/(loki|mimir|grafana|tempo|k6)\b", re.I)


def forbidden(module: str) -> bool:
    """``module`` (a Go module path, as go.sum and the recipes name them) is a
    not-to-use module. Modules nested in such a repository are modules of their
    own, under licences of their own (``github.com/grafana/loki/pkg/push``,
    Apache-2.0; ``github.com/hashicorp/nomad/api``, MPL-2.0): not these."""
    return module in NOT_TO_USE


# the platform's components, the local cluster's programs (Kubernetes, etcd, CoreDNS) and the tools
SPECS = [c.spec for c in COMPONENTS] + list(CLUSTER_SPECS) + [kubeapiserver.SPEC, kubeapiserver.ETCD_SPEC, ACTIONLINT]


def _modules(spec, version=None) -> list[str]:
    recipes = [spec.go_for(version)] if version else [spec.go, *(r for _, r in spec.older_go)]
    return [r.module for r in recipes if r is not None]


def test_the_check_itself_tells_forbidden_from_allowed():
    assert forbidden("github.com/grafana/loki/v3") and forbidden("github.com/grafana/loki")
    assert forbidden("github.com/grafana/mimir") and forbidden("go.k6.io/k6")
    assert not forbidden("github.com/grafana/loki/pkg/push") and not forbidden("github.com/grafana/dskit")
    assert not forbidden("github.com/hashicorp/nomad/api")
    assert not forbidden("github.com/VictoriaMetrics/VictoriaLogs")
    assert FORBIDDEN_IMAGE.search("grafana/loki") and not FORBIDDEN_IMAGE.search("victoriametrics/victoria-logs")


def test_no_recipe_of_any_release_is_a_forbidden_module():
    named = [m for spec in SPECS for m in _modules(spec)]
    for release in Catalog.load().releases:
        named += [m for c, v in release_builds(release) for m in _modules(c.spec, v)]
    assert named and [m for m in named if forbidden(m)] == []


def test_no_cluster_image_is_a_forbidden_system():
    images = [c.cluster.image for c in COMPONENTS if c.cluster is not None]
    assert images and [i for i in images if FORBIDDEN_IMAGE.search(i)] == []


def test_the_local_clusters_images_hold_only_what_the_harness_built_or_debian_ships():
    """Every file harness/images.py puts in an image is a build of the binary cache
    (whose module graphs are checked above) or a file of a Debian package (nginx and
    its libraries, busybox-static, the CA bundle), none of them a forbidden system."""
    import subprocess

    from harness import images

    cache = str(BinaryResolver().cache)
    specs = [images.tools_image(), images.gateway_image()]
    sources = {str(e.source) for s in specs for e in s.entries if e.kind == "file" and e.source is not None}
    from_debian = sorted(p for p in sources if not p.startswith(cache))

    def owner(path: str) -> str | None:
        if path == str(images.CA_BUNDLE):  # made by update-ca-certificates from the package's certificates
            path = "/usr/share/ca-certificates"
        # usrmerge: dpkg knows /lib/... and /bin/... where the files are reached as /usr/lib/..., /usr/bin/...
        for candidate in (path, path.removeprefix("/usr")):
            got = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if got.returncode == 0:
                return got.stdout.split(":")[0]
        return None

    owners = {p: owner(p) for p in from_debian}
    assert [p for p, o in owners.items() if o is None] == [], "files in the images no Debian package owns"
    packages = set(owners.values())
    assert {"busybox-static"} <= packages and any(p.startswith("nginx") for p in packages), packages
    assert not [p for p in packages if re.search(r"loki|mimir|grafana|tempo|k6", p)], packages
    refs = [s.ref for s in specs]
    assert all(r.startswith("localhost/stackproof/") for r in refs) and not any(FORBIDDEN_IMAGE.search(r) for r in refs)


def test_no_cached_build_was_made_from_a_forbidden_module():
    """The whole module graph of every build in the binary cache (its go.sum: the wrapper
    module's, or the Collector builder's generated module's) names no not-to-use module."""
    build = BinaryResolver().cache / "build"
    sums = sorted(build.glob("*/go.sum")) + sorted(build.glob("*/dist/go.sum"))
    found = {str(p.relative_to(build)): sorted({line.split()[0] for line in p.read_text().splitlines()
                                                if line.strip() and forbidden(line.split()[0])})
             for p in sums}
    assert {k: v for k, v in found.items() if v} == {}
    if build.is_dir() and any(build.iterdir()):
        assert sums, f"builds in {build} but no go.sum to read"
