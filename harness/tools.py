"""Developer tools that stackproof builds like its components: from their
published Go module, pinned, into the same binary cache
(``<cache>/bin/<name>/<version>/<name>``), through ``BinaryResolver``.

They are not part of any platform or release, so they live here rather than in
``harness/components`` or ``releases.yaml``; they are in ``harness`` (not in
``tests``) so that anything may resolve them, a benchmark or a CI warm-up
step as much as the tests, without importing the tests (arrows point into
``harness``, never out of it).

    actionlint  lints the GitHub Actions workflows in ``ci/github/``
                (``tests/test_ci_workflows.py``); runs shellcheck on ``run:``
                blocks when shellcheck is on PATH.
"""

from __future__ import annotations

from .binaries import BinaryResolver, BinarySpec, GoRecipe, Resolved

ACTIONLINT_VERSION = "v1.7.12"

ACTIONLINT = BinarySpec(
    name="actionlint",
    go=GoRecipe(
        module="github.com/rhysd/actionlint",
        package="github.com/rhysd/actionlint/cmd/actionlint",
        # as upstream's .goreleaser.yaml does; without it a build through a wrapper
        # module reports "(devel)" as its version
        version_vars=("github.com/rhysd/actionlint.version={version}",),
    ),
)

TOOLS = {ACTIONLINT.name: (ACTIONLINT, ACTIONLINT_VERSION)}


def resolve_tool(name: str, resolver: BinaryResolver | None = None, build: bool = True) -> Resolved:
    """The pinned tool ``name``: override (``STACKPROOF_BIN_ACTIONLINT``), cache, or a Go build."""
    spec, version = TOOLS[name]
    return (resolver or BinaryResolver()).resolve(spec, version, build=build)
