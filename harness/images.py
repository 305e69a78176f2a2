"""Container images of the platform, made without a daemon or a registry.

The platform's pods on this machine's own Kubernetes need images, and there is
no Docker, no registry and no internet here. So the harness writes them
itself, from the binaries it already builds, as **OCI image-layout tar
archives** that ``ctr images import`` takes (:class:`harness.cluster.containerd.Containerd`).

Why write the archive directly (tarfile, hashlib, json) rather than use a
tool: an image is a few small JSON documents (``oci-layout``, ``index.json``,
a manifest, a config) and a tar layer per step, all named by their SHA-256;
the OCI image spec fixes every field. Writing them needs no daemon, no
registry, no root file system to assemble and no storage driver (umoci and
buildah need both; buildah also wants a containers/storage of its own), and
it is reproducible by construction: fixed mtimes (0, as ``ko`` uses), sorted
entries, owners and modes set per file, gzip without a name or time stamp.
The same inputs give the same digests (``tests/test_images.py`` proves it).
go-containerregistry's ``pkg/v1/layout`` does the same in Go, but would be one
more program to build; no maintained Python library writes image layouts.

Every image is ``localhost/stackproof/<name>:<tag>``: its own name, never an
upstream one (its digest is not upstream's), with the upstream ref it stands
in for as a label. :func:`release_images` returns, for a release, the map from
each upstream ref a deployment uses to the local ref, and the archives:

- each component with a cluster shape (Cortex, VictoriaLogs, Prometheus): its
  static binary at the path the upstream image has, ``/etc/passwd`` and
  ``/etc/group`` (root, nobody and the shape's user), the host's CA
  certificates, ``/tmp``; the config's ``User`` is the shape's uid;
- the S3 server (versitygw) at ``/usr/local/bin/versitygw``;
- the gateway: Debian's nginx with the shared libraries it links, the dynamic
  loader, and busybox as ``/bin/sh`` for its start script; tagged by the
  Debian package version;
- the tools image (init containers' ``mkdir -p``, a node-side ``kill -9``):
  Debian's busybox-static with its applets linked;
- the pod sandbox (pause): Kubernetes' own ``pause.c``, compiled statically.

Archives are cached under ``<cache>/images/``, keyed by everything that goes
into them (file contents included): a rebuild with unchanged inputs is a hash
of the inputs and nothing more.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from . import say
from .binaries import BinaryResolver, BinarySpec, cache_dir
from .errors import StackproofError, one_line

REPOSITORY = "localhost/stackproof"
FORMAT = 1  # bump when the archive's layout changes: every cached archive is rebuilt
MTIME = 0
GZIP_LEVEL = 1  # measured on Go binaries (61 MiB): level 6 is 11% smaller for 3.4x the time
PLATFORM = {"architecture": "amd64", "os": "linux"}
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUSYBOX = Path("/bin/busybox")
TOOLS_APPLETS = ("sh", "mkdir", "kill", "grep", "cat", "ls", "sleep", "ps", "find")
GATEWAY_APPLETS = ("sh", "mkdir", "ln")
# the pod sandbox: Kubernetes' own pause.c, from its module at this version
PAUSE_K8S_VERSION = "v1.34.4"
PAUSE_SOURCE = "build/pause/linux/pause.c"
PAUSE_UPSTREAM = "registry.k8s.io/pause"
PAUSE_USER = "65535:65535"  # as upstream's Dockerfile
NOBODY = 65534

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
UPSTREAM_LABEL = "io.stackproof.stands-in-for"


# -- names -----------------------------------------------------------------
def sanitize_tag(text: str) -> str:
    """A tag from any version text: ``[A-Za-z0-9_.-]``, at most 128, not starting with '.' or '-'.

    ``1:1.35.0-4+deb12u1`` -> ``1.35.0-4-deb12u1`` (a Debian epoch is dropped)."""
    text = re.sub(r"^\d+:", "", text.strip())
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", text).lstrip(".-")[:128]
    if not tag:
        raise StackproofError(f"no image tag can be made of {text!r}")
    return tag


def image_ref(name: str, tag: str) -> str:
    """``localhost/stackproof/<name>:<tag>``, the tag sanitised."""
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", name):
        raise StackproofError(f"image name {name!r}: lower-case letters, digits and single '.', '_', '-' only")
    return f"{REPOSITORY}/{name}:{sanitize_tag(tag)}"


def split_ref(ref: str) -> tuple[str, str]:
    """``localhost/stackproof/cortex:v1.21.1`` -> (``localhost/stackproof/cortex``, ``v1.21.1``)."""
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        raise StackproofError(f"image ref {ref!r} has no tag")
    return repo, tag


# -- what goes in an image -------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One file system entry of a layer: a regular file (from ``source`` on the
    host, or ``data``), a directory or a symbolic link."""

    path: str  # absolute, in the image
    kind: str = "file"  # file | dir | symlink
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    source: Path | None = None
    data: bytes | None = None
    target: str = ""  # a symlink's

    @property
    def name(self) -> str:
        return str(PurePosixPath(self.path)).lstrip("/")

    def content_id(self) -> str:
        """What this entry is, content included: part of the cache key."""
        if self.kind == "file":
            digest = hashlib.sha256(self.data).hexdigest() if self.data is not None else _file_sha256(self.source)
        else:
            digest = ""
        return f"{self.kind}|{self.name}|{self.mode:o}|{self.uid}|{self.gid}|{self.target}|{digest}"


def file_entry(path: str, *, source: Path | None = None, data: bytes | str | None = None, mode: int = 0o644,
               uid: int = 0, gid: int = 0) -> Entry:
    if (source is None) == (data is None):
        raise ValueError("a file entry needs exactly one of source and data")
    if isinstance(data, str):
        data = data.encode()
    return Entry(path, "file", mode, uid, gid, Path(source) if source else None, data)


def dir_entry(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode, uid, gid)


def symlink_entry(path: str, target: str) -> Entry:
    return Entry(path, "symlink", 0o777, target=target)


_sha_memo: dict[tuple, str] = {}


def _file_sha256(path: Path | None) -> str:
    if path is None:
        raise ValueError("a file entry without content")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    if key not in _sha_memo:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _sha_memo[key] = h.hexdigest()
    return _sha_memo[key]


def host_path_entries(path: str | Path) -> list[Entry]:
    """A host file at the path a program asks for, as the host has it: every
    symbolic link on the way (``/lib -> usr/lib``, ``/lib64/ld-linux-x86-64.so.2
    -> /lib/x86_64-linux-gnu/...``) and the regular file it ends at, with its mode."""
    out: list[Entry] = []
    todo, hops = str(path), 0
    while True:
        parts = PurePosixPath(todo).parts[1:]
        cur = "/"
        for i, part in enumerate(parts):
            nxt = os.path.join(cur, part)
            if os.path.islink(nxt):
                target = os.readlink(nxt)
                out.append(symlink_entry(nxt, target))
                base = target if target.startswith("/") else os.path.normpath(os.path.join(cur, target))
                todo = os.path.join(base, *parts[i + 1:])
                break
            cur = nxt
        else:
            st = os.stat(cur)
            out.append(file_entry(cur, source=Path(cur), mode=st.st_mode & 0o7777))
            return out
        hops += 1
        if hops > 40:
            raise StackproofError(f"{path}: too many levels of symbolic links")


@dataclass
class ImageSpec:
    """Everything an image is made of: the cache key is computed from it."""

    ref: str  # localhost/stackproof/<name>:<tag>
    entries: list[Entry]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    env: tuple[str, ...] = (DEFAULT_PATH,)
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)

    def resolved_entries(self) -> list[Entry]:
        """The entries with every parent directory made explicit, in tar order;
        duplicates must agree, a path under a symbolic link is an error."""
        by_path: dict[str, Entry] = {}
        for e in self.entries:
            name = e.name
            old = by_path.get(name)
            if old is not None and old != e:
                raise StackproofError(f"image {self.ref}: two different entries for /{name}")
            by_path[name] = e
        for name in list(by_path):
            parent = PurePosixPath(name).parent
            while str(parent) != ".":
                p = by_path.get(str(parent))
                if p is None:
                    by_path[str(parent)] = dir_entry("/" + str(parent))
                elif p.kind != "dir":
                    raise StackproofError(f"image {self.ref}: /{name} is under /{parent}, which is a {p.kind}")
                parent = parent.parent
        return [by_path[k] for k in sorted(by_path, key=lambda n: PurePosixPath(n).parts)]

    def config(self, diff_ids: list[str]) -> dict:
        cfg: dict = {"Env": list(self.env), "WorkingDir": self.workdir}
        if self.entrypoint:
            cfg["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            cfg["Cmd"] = list(self.cmd)
        if self.user:
            cfg["User"] = self.user
        if self.labels:
            cfg["Labels"] = dict(sorted(self.labels.items()))
        return {**PLATFORM, "created": "1970-01-01T00:00:00Z", "config": cfg,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "stackproof harness.images"}]}

    def key(self, compresslevel: int = GZIP_LEVEL) -> str:
        """Identifies the archive these inputs make (file contents included)."""
        h = hashlib.sha256(f"format {FORMAT}|gzip {compresslevel}|{self.ref}\n".encode())
        meta = {"entrypoint": self.entrypoint, "cmd": self.cmd, "user": self.user, "env": self.env,
                "workdir": self.workdir, "labels": sorted(self.labels.items())}
        h.update(json.dumps(meta, sort_keys=True).encode() + b"\n")
        for e in self.resolved_entries():
            h.update(e.content_id().encode() + b"\n")
        return h.hexdigest()


# -- writing the archive ---------------------------------------------------
class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, out):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _tarinfo(name: str, kind: str, mode: int, uid: int = 0, gid: int = 0, size: int = 0,
             target: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}[kind]
    ti.mode, ti.uid, ti.gid, ti.size, ti.mtime = mode, uid, gid, size, MTIME
    ti.uname = ti.gname = ""
    ti.linkname = target
    return ti


def write_layer(entries: Iterable[Entry], out_path: Path, compresslevel: int | None = GZIP_LEVEL) -> dict:
    """One layer tar (gzip unless ``compresslevel`` is None) at ``out_path``;
    returns its descriptor and diff id."""
    with open(out_path, "wb") as raw:
        blob = _HashingWriter(raw)
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=blob, compresslevel=compresslevel, mtime=0) \
            if compresslevel is not None else None
        diff = _HashingWriter(gz if gz is not None else blob)
        with tarfile.open(fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for e in entries:
                if e.kind == "file":
                    if e.data is not None:
                        tar.addfile(_tarinfo(e.name, "file", e.mode, e.uid, e.gid, len(e.data)), io.BytesIO(e.data))
                    else:
                        assert e.source is not None
                        with open(e.source, "rb") as fh:
                            size = os.fstat(fh.fileno()).st_size
                            tar.addfile(_tarinfo(e.name, "file", e.mode, e.uid, e.gid, size), fh)
                else:
                    tar.addfile(_tarinfo(e.name, e.kind, e.mode, e.uid, e.gid, target=e.target))
        if gz is not None:
            gz.close()
    return {"mediaType": MEDIA_LAYER_GZIP if compresslevel is not None else MEDIA_LAYER_TAR,
            "digest": f"sha256:{blob.sha.hexdigest()}", "size": blob.size,
            "diff_id": f"sha256:{diff.sha.hexdigest()}"}


def write_oci_archive(spec: ImageSpec, out: Path, compresslevel: int | None = GZIP_LEVEL) -> str:
    """Write ``spec`` as an OCI image-layout tar archive at ``out``; returns the manifest's digest."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    repo, tag = split_ref(spec.ref)
    with tempfile.TemporaryDirectory(prefix=".image-", dir=out.parent) as tmp:
        blobs = Path(tmp)
        layer = write_layer(spec.resolved_entries(), blobs / "layer", compresslevel)
        layer_name = layer["digest"].split(":", 1)[1]
        os.replace(blobs / "layer", blobs / layer_name)
        docs: dict[str, bytes] = {}

        def blob(doc: dict, media: str) -> dict:
            data = _canonical(doc)
            digest = hashlib.sha256(data).hexdigest()
            docs[digest] = data
            return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

        config = blob(spec.config([layer["diff_id"]]), MEDIA_CONFIG)
        manifest = blob({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config,
                         "layers": [{k: layer[k] for k in ("mediaType", "digest", "size")}],
                         "annotations": {"org.opencontainers.image.title": repo.rsplit("/", 1)[-1],
                                         "org.opencontainers.image.version": tag}}, MEDIA_MANIFEST)
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                 "manifests": [{**manifest, "platform": PLATFORM,
                                "annotations": {CONTAINERD_NAME: spec.ref, REF_NAME: tag}}]}
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
            def add_bytes(name: str, data: bytes) -> None:
                tar.addfile(_tarinfo(name, "file", 0o644, size=len(data)), io.BytesIO(data))

            add_bytes("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))
            add_bytes("index.json", _canonical(index))
            tar.addfile(_tarinfo("blobs", "dir", 0o755))
            tar.addfile(_tarinfo("blobs/sha256", "dir", 0o755))
            names = sorted([*docs, layer_name])
            for name in names:
                if name in docs:
                    add_bytes(f"blobs/sha256/{name}", docs[name])
                else:
                    with open(blobs / name, "rb") as fh:
                        tar.addfile(_tarinfo(f"blobs/sha256/{name}", "file", 0o644, size=layer["size"]), fh)
        os.replace(part, out)
    return manifest["digest"]


def read_archive(path: Path) -> dict:
    """The index, manifest and config of a one-image archive, and its layer's members:
    ``{"index": ..., "manifest": ..., "config": ..., "files": {path: TarInfo}}``."""
    with tarfile.open(path) as tar:
        def doc(name: str) -> dict:
            fh = tar.extractfile(name)
            if fh is None:
                raise StackproofError(f"{path}: no {name}")
            return json.loads(fh.read())

        index = doc("index.json")
        manifest = doc(f"blobs/sha256/{index['manifests'][0]['digest'].split(':', 1)[1]}")
        config = doc(f"blobs/sha256/{manifest['config']['digest'].split(':', 1)[1]}")
        layer = tar.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'].split(':', 1)[1]}")
        assert layer is not None
        with tarfile.open(fileobj=layer, mode="r|*") as lt:
            files = {"/" + m.name: m for m in lt}
        return {"index": index, "manifest": manifest, "config": config, "files": files,
                "layout": json.loads(tar.extractfile("oci-layout").read())}  # type: ignore[union-attr]


# -- building, cached --------------------------------------------------------
@dataclass
class Built:
    """An image archive ready to import."""

    ref: str
    archive: Path
    digest: str  # the manifest's
    size: int  # bytes of the archive
    seconds: float  # to build (or to find in the cache)
    cached: bool


def images_dir(cache: Path | None = None) -> Path:
    return Path(cache or cache_dir()) / "images"


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build_image(spec: ImageSpec, cache: Path | None = None, compresslevel: int | None = GZIP_LEVEL,
                progress: Callable[[str], None] = say) -> Built:
    """The archive of ``spec``, from the cache when its inputs are unchanged."""
    t0 = time.monotonic()
    repo, tag = split_ref(spec.ref)
    stem = f"{repo.rsplit('/', 1)[-1]}-{tag}"
    root = images_dir(cache)
    archive, record = root / f"{stem}.oci.tar", root / f"{stem}.json"
    key = spec.key(compresslevel)
    with _lock(root / ".locks" / f"{stem}.lock"):
        try:
            made = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            made = {}
        if made.get("key") == key and archive.is_file() and archive.stat().st_size == made.get("size"):
            secs = time.monotonic() - t0
            progress(f"image {spec.ref}: cached ({made['size'] / 2**20:.0f} MiB, {secs:.2f} s)")
            return Built(spec.ref, archive, made["digest"], made["size"], secs, True)
        digest = write_oci_archive(spec, archive, compresslevel)
        size = archive.stat().st_size
        secs = time.monotonic() - t0
        record.write_text(json.dumps({"ref": spec.ref, "key": key, "digest": digest, "size": size,
                                      "seconds": round(secs, 2),
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2)
                          + "\n")
    progress(f"image {spec.ref}: built in {secs:.1f} s ({size / 2**20:.0f} MiB)")
    return Built(spec.ref, archive, digest, size, secs, False)


# -- the platform's images -------------------------------------------------
def _passwd(users: dict[int, str]) -> list[Entry]:
    users = {0: "root", NOBODY: "nobody", **users}
    home = {0: "/root"}
    passwd = "".join(f"{name}:x:{uid}:{uid}:{name}:{home.get(uid, '/')}:{'/bin/sh' if uid == 0 else '/sbin/nologin'}\n"
                     for uid, name in sorted(users.items()))
    groups = {0: ["root"], NOBODY: ["nogroup", "nobody"]}
    for uid, name in users.items():
        groups.setdefault(uid, [name])
    group = "".join(f"{g}:x:{gid}:\n" for gid, names in sorted(groups.items()) for g in names)
    return [file_entry("/etc/passwd", data=passwd), file_entry("/etc/group", data=group),
            file_entry("/etc/nsswitch.conf", data="passwd: files\ngroup: files\nhosts: files dns\n")]


def base_entries(users: dict[int, str] | None = None) -> list[Entry]:
    """What every image has: users and groups, CA certificates, ``/tmp``."""
    if not CA_BUNDLE.is_file():
        raise StackproofError(f"{CA_BUNDLE} is missing (Debian: apt-get install ca-certificates)")
    return [*_passwd(users or {}), file_entry(str(CA_BUNDLE), source=CA_BUNDLE.resolve()),
            dir_entry("/tmp", 0o1777), dir_entry("/root", 0o700)]


def _version_of(component, release) -> str | None:
    """The version a release deploys of ``component`` (the local provider's rule)."""
    if component.release_key:
        return release.version(component.release_key)
    return getattr(component, "version", None)


def _upstream_split(upstream: str) -> tuple[str, str]:
    repo, _, tag = upstream.rpartition(":")
    return repo.rsplit("/", 1)[-1], tag


def binary_image(name: str, tag: str, binary: Path, path: str, uid: int | None = None,
                 upstream: str = "", version: str = "") -> ImageSpec:
    """A static program at ``path``, run as ``uid`` (None: root)."""
    users = {uid: name} if uid not in (None, 0, NOBODY) else {}
    labels = {"org.opencontainers.image.version": version} if version else {}
    if upstream:
        labels[UPSTREAM_LABEL] = upstream
    return ImageSpec(image_ref(name, tag), [*base_entries(users), file_entry(path, source=binary, mode=0o755)],
                     entrypoint=(path,), user="" if uid is None else str(uid), labels=labels)


def component_image(component, version: str | None, resolver: BinaryResolver | None = None) -> ImageSpec:
    """The image of a component with a cluster shape (not the gateway) at ``version``."""
    shape = component.cluster
    if shape is None:
        raise StackproofError(f"{component.name} has no cluster shape")
    if component.spec.system_names:
        raise StackproofError(f"{component.name} is a system program: use gateway_image()")
    binary = (resolver or BinaryResolver()).resolve(component.spec, version).path
    upstream = shape.image_for(version)
    name, tag = _upstream_split(upstream)
    return binary_image(name, tag, binary, shape.binary, shape.uid, upstream, version or "")


S3_BINARY = "/usr/local/bin/versitygw"


def s3_image(resolver: BinaryResolver | None = None) -> ImageSpec:
    """versitygw, at the version the S3 server component pins (its cluster shape's path, if it has one)."""
    from .components.s3 import S3Server

    c = S3Server()
    binary = (resolver or BinaryResolver()).resolve(c.spec, c.version).path
    shape = c.cluster
    upstream = shape.image_for(c.version) if shape else ""
    return binary_image("versitygw", c.version, binary, shape.binary if shape else S3_BINARY,
                        shape.uid if shape else None, upstream, c.version)


def debian_version(package: str) -> str:
    """The installed version of a Debian package (``dpkg-query``)."""
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                           timeout=30)
    except FileNotFoundError:
        raise StackproofError(f"dpkg-query not found: the {package} image is made from Debian's package") from None
    if r.returncode != 0 or not r.stdout.strip():
        raise StackproofError(f"Debian package {package} is not installed (apt-get install {package}); "
                              f"{one_line(r.stderr)}")
    return r.stdout.strip()


def _busybox_entries(applets: Iterable[str]) -> list[Entry]:
    debian_version("busybox-static")  # not Debian's dynamically linked busybox: nothing else is in the image
    if not BUSYBOX.exists():
        raise StackproofError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    real = BUSYBOX.resolve()
    out = [file_entry("/bin/busybox", source=real, mode=0o755)]
    out += [symlink_entry(f"/bin/{a}", "busybox") for a in applets]
    return out


def tools_image() -> ImageSpec:
    """Debian's busybox-static, its applets linked in ``/bin``: init containers and node-side tools."""
    version = debian_version("busybox-static")
    from .providers.kube.manifests import TOOLS_IMAGE

    return ImageSpec(image_ref("busybox", f"{sanitize_tag(version)}-debian"),
                     [*base_entries(), *_busybox_entries(TOOLS_APPLETS)], cmd=("sh",),
                     labels={"org.opencontainers.image.version": version, UPSTREAM_LABEL: TOOLS_IMAGE})


def _ldd(binary: Path) -> list[str]:
    """The shared libraries ``binary`` loads, and its dynamic loader, as paths."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise StackproofError(f"ldd {binary} failed: {one_line(r.stderr or r.stdout)}")
    paths = []
    for line in r.stdout.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            paths.append(m.group(1))
    return paths


def gateway_image() -> ImageSpec:
    """Debian's nginx with what it loads (libraries, loader, mime.types) and busybox
    as ``/bin/sh``, ``mkdir`` and ``ln`` for the gateway's start script."""
    from .components.gateway import Gateway

    nginx = Path(shutil.which("nginx") or "/usr/sbin/nginx")
    if not nginx.is_file():
        raise StackproofError("nginx is not installed (apt-get install nginx)")
    version = debian_version("nginx")
    entries = [*base_entries(), *_busybox_entries(GATEWAY_APPLETS)]
    for p in [str(nginx), *_ldd(nginx), "/etc/nginx/mime.types"]:
        entries += host_path_entries(p)
    entries += [dir_entry("/var/lib/nginx"), dir_entry("/var/log/nginx"), dir_entry("/run"),
                dir_entry("/etc/nginx"), dir_entry("/var/lock")]
    shape = Gateway.cluster
    path = shape.binary if shape else "/usr/sbin/nginx"
    if path != str(nginx):
        entries.append(file_entry(path, source=nginx.resolve(), mode=0o755))
    return ImageSpec(image_ref("nginx", f"{sanitize_tag(version)}-debian"), entries, entrypoint=(path,),
                     cmd=("-g", "daemon off;"),
                     labels={"org.opencontainers.image.version": version,
                             UPSTREAM_LABEL: shape.image_for(None) if shape else ""})


# -- the pause image -------------------------------------------------------
PAUSE_SPEC = BinarySpec(name="pause")


def _go_module_dir(module: str, version: str) -> Path:
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod"}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=tmp, env=env,
                               capture_output=True, text=True, timeout=1200)
        except FileNotFoundError:
            raise StackproofError("the Go toolchain is missing: it downloads pause.c's module") from None
    try:
        info = json.loads(r.stdout)
    except json.JSONDecodeError:
        info = {"Error": one_line(r.stderr or r.stdout)}
    if info.get("Error") or r.returncode != 0:
        raise StackproofError(f"cannot download Go module {module}@{version}: {one_line(info.get('Error', ''))}")
    return Path(info["Dir"])


def pause_tag(k8s_version: str = PAUSE_K8S_VERSION, module_dir: Path | None = None) -> str:
    """The pause version Kubernetes' build/pause/Makefile tags, with the Kubernetes version: ``3.10.1-k8s-v1.34.4``."""
    module_dir = module_dir or _go_module_dir("k8s.io/kubernetes", k8s_version)
    m = re.search(r"^TAG\s*\?=\s*(\S+)", (module_dir / "build/pause/Makefile").read_text(), re.M)
    return f"{m.group(1) if m else 'unknown'}-k8s-{k8s_version}"


def build_pause(k8s_version: str = PAUSE_K8S_VERSION, cache: Path | None = None,
                progress: Callable[[str], None] = say) -> tuple[Path, str]:
    """Kubernetes' pause.c compiled statically (as its Makefile: ``-Os -Wall -Werror -static``, stripped)
    into the binary cache; returns (the binary, its image tag)."""
    resolver = BinaryResolver(cache, progress)
    found = resolver.cached(PAUSE_SPEC, k8s_version)
    if found is not None:
        made = json.loads((found.parent / "manifest.json").read_text())
        if made.get("tag"):
            return found, made["tag"]
    t0 = time.monotonic()
    module_dir = _go_module_dir("k8s.io/kubernetes", k8s_version)
    src = module_dir / PAUSE_SOURCE
    tag = pause_tag(k8s_version, module_dir)
    out = resolver.bin_path(PAUSE_SPEC, k8s_version)
    out.parent.mkdir(parents=True, exist_ok=True)
    gcc = shutil.which("gcc")
    if not gcc:
        raise StackproofError("gcc is missing: it compiles the pod sandbox's pause.c (apt-get install gcc libc6-dev)")
    version_define = f"-DVERSION=v{tag.split('-k8s-')[0]}-{k8s_version}"
    args = [gcc, "-Os", "-Wall", "-Werror", "-static", version_define, "-o", str(out) + ".part", str(src)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise StackproofError(f"compiling {src} failed (is libc6-dev installed?): {one_line(r.stderr)}")
    subprocess.run(["strip", str(out) + ".part"], capture_output=True, timeout=60)
    os.replace(str(out) + ".part", out)
    BinaryResolver._write_manifest(out, PAUSE_SPEC, k8s_version, "gcc", time.monotonic() - t0,
                                   module=f"k8s.io/kubernetes@{k8s_version}", source_file=PAUSE_SOURCE,
                                   source_sha256=_file_sha256(src), tag=tag, cflags=" ".join(args[1:6]))
    progress(f"pause {tag}: compiled in {time.monotonic() - t0:.1f} s -> {out}")
    return out, tag


def pause_image(cache: Path | None = None, k8s_version: str = PAUSE_K8S_VERSION) -> ImageSpec:
    """The pod sandbox image: ``/pause``, run as 65535 (upstream's user)."""
    binary, tag = build_pause(k8s_version, cache)
    return ImageSpec(image_ref("pause", tag), [file_entry("/pause", source=binary, mode=0o755)],
                     entrypoint=("/pause",), user=PAUSE_USER, env=(),
                     labels={"org.opencontainers.image.version": tag,
                             UPSTREAM_LABEL: f"{PAUSE_UPSTREAM}:{tag.split('-k8s-')[0]}"})


# -- a release's images ------------------------------------------------------
@dataclass
class ReleaseImages:
    """What a cluster on this machine needs to run a release."""

    images: dict[str, str]  # every upstream ref a deployment uses -> the local ref that stands in for it
    archives: list[Built]  # to import (``Containerd.import_image``), the pause image's included
    pause: str  # the pod sandbox's local ref (containerd's ``sandbox_image``)

    def local(self, upstream: str) -> str:
        try:
            return self.images[upstream]
        except KeyError:
            raise StackproofError(f"no local image stands in for {upstream!r}; known: "
                                  f"{', '.join(sorted(self.images))}") from None


def release_specs(release, resolver: BinaryResolver | None = None,
                  cache: Path | None = None) -> tuple[dict[str, str], list[ImageSpec], str]:
    """(upstream ref -> local ref, the image specs, the pause ref) of ``release``; builds
    (or finds) the binaries but writes no archive."""
    from .components import COMPONENTS
    from .providers.kube.manifests import TOOLS_IMAGE

    resolver = resolver or BinaryResolver(cache)
    mapping: dict[str, str] = {}
    specs: list[ImageSpec] = []
    have_s3 = False
    for c in COMPONENTS:
        if c.cluster is None:
            continue
        version = _version_of(c, release)
        if c.spec.system_names:
            spec = gateway_image()
        elif c.spec.name == "versitygw":
            spec, have_s3 = s3_image(resolver), True
        else:
            spec = component_image(c, version, resolver)
        mapping[c.cluster.image_for(version)] = spec.ref
        specs.append(spec)
    if not have_s3:
        specs.append(s3_image(resolver))  # no cluster shape yet: built all the same, for the one to come
    tools = tools_image()
    mapping[TOOLS_IMAGE] = tools.ref
    specs.append(tools)
    pause = pause_image(resolver.cache)
    mapping[pause.labels[UPSTREAM_LABEL]] = pause.ref
    specs.append(pause)
    return mapping, specs, pause.ref


def release_images(release, resolver: BinaryResolver | None = None, cache: Path | None = None,
                   progress: Callable[[str], None] = say) -> ReleaseImages:
    """Build (or find in the cache) every image ``release`` needs in a cluster on this machine."""
    resolver = resolver or BinaryResolver(cache)
    mapping, specs, pause = release_specs(release, resolver)
    archives = [build_image(s, resolver.cache, progress=progress) for s in specs]
    return ReleaseImages(mapping, archives, pause)
