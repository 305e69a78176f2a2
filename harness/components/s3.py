"""A real S3-compatible server on loopback for the local platform's object
storage: Versity's S3 gateway (versitygw), serving a directory through its
posix backend.

Why this one: it is a production S3 server (not an emulator), Apache-2.0,
built from its Go module like the platform's own components, stores objects
as plain files (easy to inspect after a test), and starts in well under a
second. MinIO would do as well but is far larger to build and AGPL."""

from __future__ import annotations

import secrets
from pathlib import Path

from ..binaries import BinarySpec, GoRecipe
from .base import OBJECT_STORE, Component, PlatformContext, http_ready

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

    @staticmethod
    def buckets() -> tuple[str, ...]:
        """One bucket per store that keeps its data in object storage."""
        from . import stores  # the catalog imports this module
        return tuple(c.name for c in stores() if c.uses_bucket)

    def enabled(self, storage: dict) -> bool:
        return storage.get("type") == "s3"

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
        return {"ROOT_ACCESS_KEY_ID": ctx.storage["access_key_id"],
                "ROOT_SECRET_ACCESS_KEY": ctx.storage["secret_access_key"]}

    def ready_check(self, ctx: PlatformContext):
        # an unsigned request is refused with 403 once the server answers S3
        return http_ready(f"{ctx.url('s3')}/{self.buckets()[0]}", expect=403)

    def endpoint(self, ctx: PlatformContext) -> str:
        return ctx.url("s3")
