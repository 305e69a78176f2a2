"""A real S3-compatible server on loopback for the local platform's object
storage: Versity's S3 gateway (versitygw), serving a directory through its
posix backend.

Why this one: it is a production S3 server (not an emulator), Apache-2.0,
built from its Go module like the platform's own components, stores objects
as plain files (easy to inspect after a test), and starts in well under a
second. MinIO would do as well but is far larger to build and AGPL.

In a cluster (the Kubernetes deployer, when no cloud bucket is given) it is a
pod of its own with its data on a volume: the image's repository is
``versitygw`` (a user maps it to the image they built or mirrored), the bucket
directories are made before it starts, and its root credentials come from a
Secret through the environment, never from a file or the command line."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path

from ..binaries import BinarySpec, GoRecipe
from .base import OBJECT_STORE, ClusterPort, ClusterShape, Component, PlatformContext, http_ready

VERSION = "v1.8.0"

SPEC = BinarySpec(
    name="versitygw",
    go=GoRecipe(
        module="github.com/versity/versitygw",
        package="github.com/versity/versitygw/cmd/versitygw",
        version_vars=("main.Version={version}",),
    ),
)


def new_credentials() -> tuple[str, str]:
    return "sp" + secrets.token_hex(8), secrets.token_urlsafe(30)


class S3Server(Component):
    """Runs only when the platform's storage is ``s3`` (``stackproof up --storage s3``)."""

    name = "s3"
    role = OBJECT_STORE
    release_key = None  # infrastructure of the local provider, pinned here, not by a release
    version = VERSION
    spec = SPEC
    port_names = ("s3",)
    ready_timeout = 30.0
    # the environment variables its root credentials are read from -> their key in the
    # platform's credentials (``PlatformContext.storage``; in a cluster: the Secret's keys)
    credential_env = {"ROOT_ACCESS_KEY_ID": "access_key_id", "ROOT_SECRET_ACCESS_KEY": "secret_access_key"}
    cluster_port = 7070  # upstream's default port
    health_path = "/health"  # answered 200 without credentials ('--health'): the readiness probe

    @staticmethod
    def buckets() -> tuple[str, ...]:
        """One bucket per store that keeps its data in object storage, and the extra ones it names."""
        from . import stores  # the catalog imports this module
        return tuple(b for c in stores() if c.uses_bucket for b in (c.name, *c.extra_buckets))

    def enabled(self, storage: dict) -> bool:
        # a cloud account's bucket (``bucket`` given) needs no server of ours
        return storage.get("type") == "s3" and not storage.get("bucket")

    @cached_property
    def cluster(self) -> ClusterShape:  # type: ignore[override]
        """Runs as root in its image; the directory of each bucket is made on its volume first:
        the posix backend serves each top-level directory of its root as a bucket."""
        return ClusterShape(
            image="versitygw", tag="{version}", binary="/usr/local/bin/versitygw",
            ports=(ClusterPort("s3", self.cluster_port, "s3"),), probe=(self.health_path, "s3"), volume=True,
            prepare=tuple(f"bucket/s3/{b}" for b in self.buckets()))

    def cluster_command(self, ctx: PlatformContext, version: str | None) -> list[str]:
        return [self.cluster.binary, "--region", ctx.storage.get("region", "us-east-1"),
                "--port", f"{ctx.bind_host}:{ctx.ports['s3']}", "--health", self.health_path,
                "posix", str(self.root(ctx))]

    def root(self, ctx: PlatformContext) -> Path:
        return ctx.bucket_dir / "s3"

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        for b in self.buckets():  # the posix backend serves each top-level directory as a bucket
            (self.root(ctx) / b).mkdir(parents=True, exist_ok=True)

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        return [str(binary), "--region", ctx.storage.get("region", "us-east-1"),
                "--port", f"{ctx.host}:{ctx.ports['s3']}", "posix", str(self.root(ctx))]

    def env(self, ctx: PlatformContext) -> dict:
        # credentials through the environment: a command line is logged and visible in ps
        return {var: ctx.storage[key] for var, key in self.credential_env.items()}

    def ready_check(self, ctx: PlatformContext):
        # an unsigned request is refused with 403 once the server answers S3
        return http_ready(f"{ctx.url('s3')}/{self.buckets()[0]}", expect=403)

    def endpoint(self, ctx: PlatformContext) -> str:
        return ctx.url("s3")
