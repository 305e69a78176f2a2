"""Resolve ``component@version`` to an executable.

Order, first hit wins:

1. an explicit override: ``STACKPROOF_BIN_<COMPONENT>=/path/to/binary``
   (e.g. ``STACKPROOF_BIN_CORTEX``); used as given, whatever the version;
2. the cache: ``<cache>/bin/<component>/<version>/<component>`` with a
   ``manifest.json`` written only after a complete build or download;
3. a build from the component's published Go module with the Go toolchain,
   through a small wrapper module that repeats the upstream ``replace``
   directives (``go install module@version`` refuses modules that have them);
4. the official release archive, checked against the published SHA-256, when
   the Go toolchain is missing and ``STACKPROOF_ALLOW_DOWNLOAD=1``.

The cache directory is ``$STACKPROOF_CACHE`` or ``~/.cache/stackproof``.
Builds print progress and keep ``build.log`` next to the wrapper module; a
failed build names the component, the version and the last lines of the log.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests
import yaml

from . import say
from .errors import ComponentError, StackproofError

LOG_TAIL_LINES = 25


def cache_dir() -> Path:
    return Path(os.environ.get("STACKPROOF_CACHE") or Path.home() / ".cache" / "stackproof")


@dataclass(frozen=True)
class GoRecipe:
    """How to build one component from its published Go module."""

    module: str  # e.g. github.com/VictoriaMetrics/VictoriaLogs
    package: str  # the main package, e.g. github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs
    # module version as tagged, from the component's release version
    module_version: Callable[[str], str] = lambda v: v
    # -ldflags -X targets for version info, {version} is substituted
    version_vars: tuple[str, ...] = ()
    # build tags as upstream's own release build uses them (its Makefile or .promu.yml)
    tags: tuple[str, ...] = ()
    # local replaces under this path (not in the module zip) stand for modules the
    # release also publishes: (path prefix, their version from the module version),
    # e.g. Kubernetes' ./staging/src/k8s.io/api -> k8s.io/api v0.34.4
    published_local: tuple[str, Callable[[str], str]] | None = None


@dataclass(frozen=True)
class CollectorRecipe:
    """A custom OpenTelemetry Collector, made by the Collector's own builder (ocb,
    ``go.opentelemetry.io/collector/cmd/builder``, itself built from its module): a
    manifest names the distribution and its components' modules; the builder
    generates the main module and compiles it. ``components`` is ((kind, module,
    version key), ...), kind as the manifest's sections (receivers, exporters,
    providers, ...); ``versions`` maps a release version to the module version of
    each key ("core", "contrib", "stable"): the Collector's modules move together."""

    name: str  # the distribution's (and the binary's) name
    components: tuple[tuple[str, str, str], ...]
    versions: dict[str, dict[str, str]]
    builder_module: str = "go.opentelemetry.io/collector/cmd/builder"

    def manifest(self, version: str, output: Path) -> dict:
        if version not in self.versions:
            raise StackproofError(f"{self.name}: no module versions are pinned for {version} "
                                  f"(known: {', '.join(self.versions)})")
        mods = self.versions[version]
        out: dict = {"dist": {"module": f"stackproof.local/{self.name}", "name": self.name,
                              "description": f"stackproof's OpenTelemetry Collector {version}",
                              "output_path": str(output), "version": version.lstrip("v")}}
        for kind, module, key in self.components:
            out.setdefault(kind, []).append({"gomod": f"{module} {mods[key]}"})
        return out

    def builder_spec(self) -> "BinarySpec":
        return BinarySpec(name="ocb", go=GoRecipe(module=self.builder_module, package=self.builder_module))

    def builder_version(self, version: str) -> str:
        return self.versions[version]["core"]


@dataclass(frozen=True)
class ArchiveRecipe:
    """Where the official release archive lives, for users with internet."""

    url: str  # {version} (with v) and {bare} (without v) are substituted
    checksums_url: str  # a sha256sum-style file listing the archive
    member: str  # path of the binary inside the archive ("" for a bare binary)


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"v3.7.8"`` -> ``(3, 7, 8)``; unknown or missing -> ``()``, which sorts first."""
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(x) for x in m.groups() if x is not None) if m else ()


@dataclass(frozen=True)
class BinarySpec:
    name: str
    go: GoRecipe | None = None
    archive: ArchiveRecipe | None = None
    system_names: tuple[str, ...] = field(default=())  # found on PATH (Debian packages)
    # releases older than a version that moved to another module: ((first version
    # of ``go``, the recipe of every older version), ...), newest boundary first;
    # e.g. VictoriaLogs before v1.25 lives in the VictoriaMetrics module
    older_go: tuple[tuple[str, GoRecipe], ...] = field(default=())
    collector: CollectorRecipe | None = None  # a Collector the builder makes (instead of ``go``)

    def go_for(self, version: str | None) -> GoRecipe | None:
        """The recipe that builds ``version``."""
        recipe = self.go
        for first, older in self.older_go:
            if version and version_tuple(version) < version_tuple(first):
                recipe = older
        return recipe


@dataclass
class Resolved:
    path: Path
    source: str  # override | cache | go-build | archive | system
    seconds: float = 0.0


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class BinaryResolver:
    def __init__(self, cache: Path | None = None, progress: Callable[[str], None] = say):
        self.cache = Path(cache) if cache else cache_dir()
        self.progress = progress

    # -- lookup ----------------------------------------------------------
    def bin_path(self, spec: BinarySpec, version: str) -> Path:
        return self.cache / "bin" / spec.name / version / spec.name

    def cached(self, spec: BinarySpec, version: str) -> Path | None:
        """The cached binary, if complete and made by the current recipe."""
        path = self.bin_path(spec, version)
        manifest = path.parent / "manifest.json"
        if not (path.is_file() and os.access(path, os.X_OK) and manifest.is_file()):
            return None
        try:
            made = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if made.get("source") == "go-build" and made.get("recipe") != recipe_id(spec, version):
            return None  # built with other flags or tags: build again
        return path

    def override(self, spec: BinarySpec) -> Path | None:
        var = override_var(spec)
        value = os.environ.get(var)
        if not value:
            return None
        path = Path(value)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StackproofError(f"{var}={value}: not an executable file")
        return path

    def resolve(self, spec: BinarySpec, version: str | None = None, build: bool = True) -> Resolved:
        """Find or make the executable for ``spec`` at ``version``."""
        t0 = time.monotonic()
        path = self.override(spec)
        if path:
            return Resolved(path, "override")
        if version is None:  # a system program such as nginx
            for name in spec.system_names:
                found = shutil.which(name)
                if found:
                    return Resolved(Path(found), "system")
            hint = next((f"; {d}/{spec.name} exists but {d} is not on PATH" for d in ("/usr/sbin", "/sbin")
                         if Path(d, spec.name).is_file()), "")
            raise StackproofError(
                f"{spec.name} not found on PATH: install it (Debian: apt-get install {spec.name}) "
                f"or set {override_var(spec)}{hint}")
        path = self.cached(spec, version)
        if path:
            return Resolved(path, "cache")
        if not build:
            raise StackproofError(f"{spec.name} {version} is not in the cache ({self.cache}); run 'stackproof build'")
        go = shutil.which("go")
        can_fetch = spec.archive and os.environ.get("STACKPROOF_ALLOW_DOWNLOAD") == "1"
        if ((spec.go or spec.collector) and go) or can_fetch:
            with self._build_lock(spec, version):
                path = self.cached(spec, version)  # another process may have made it meanwhile
                if path:
                    return Resolved(path, "cache", time.monotonic() - t0)
                if spec.collector and go:
                    return Resolved(self.collector_build(spec, version, go), "go-build", time.monotonic() - t0)
                if spec.go and go:
                    return Resolved(self.go_build(spec, version, go), "go-build", time.monotonic() - t0)
                return Resolved(self.fetch_archive(spec, version), "archive", time.monotonic() - t0)
        if (spec.go or spec.collector) and not go:
            raise StackproofError(
                f"cannot build {spec.name} {version}: the Go toolchain is missing ('go' is not on PATH); "
                f"install Go, set {override_var(spec)}, or set STACKPROOF_ALLOW_DOWNLOAD=1 "
                "to fetch the official release archive")
        raise StackproofError(f"no way to obtain {spec.name} {version}")

    @contextmanager
    def _build_lock(self, spec: BinarySpec, version: str):
        """One build of a component version at a time, across processes."""
        lock_dir = self.cache / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{spec.name}-{version}.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.progress(f"{spec.name} {version}: another stackproof process is building it; waiting")
                fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # -- go build --------------------------------------------------------
    def go_build(self, spec: BinarySpec, version: str, go: str = "go") -> Path:
        recipe = spec.go_for(version)
        assert recipe is not None
        modver = recipe.module_version(version)
        work, log_path, out = self._build_paths(spec, version)
        env = self._go_env()
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            def run(args: list[str], phase: str, count_lines: int | None = None) -> None:
                self._run_logged(args, work, env, log, log_path, spec, version, phase, t0, count_lines)

            self.progress(f"{spec.name} {version}: building from Go module {recipe.module}@{modver} "
                          f"(log: {log_path})")
            gomod_path, module_dir = self._download_module(recipe.module, modver, env, work, log)
            (work / "go.mod").write_text(self._wrapper_gomod(recipe.module, modver, gomod_path, module_dir,
                                                             recipe.published_local))
            (work / "tools.go").write_text(
                f"//go:build tools\n\npackage tools\n\nimport _ \"{recipe.package}\"\n")
            run([go, "mod", "tidy", "-e"], "resolving dependencies")
            total = None
            try:
                tag_args = ["-tags", ",".join(recipe.tags)] if recipe.tags else []
                listed = subprocess.run([go, "list", "-deps", *tag_args, recipe.package], cwd=work, env=env,
                                        capture_output=True, text=True, timeout=600)
                total = len(listed.stdout.split()) if listed.returncode == 0 else None
            except subprocess.TimeoutExpired:
                pass
            ldflags = ["-s", "-w"] + [f"-X {v.format(version=version)}" for v in recipe.version_vars]
            args = [go, "build", "-v", "-trimpath", "-ldflags", " ".join(ldflags), "-o", str(out) + ".part"]
            if recipe.tags:
                args += ["-tags", ",".join(recipe.tags)]
            run(args + [recipe.package], "compiling", total)
        os.replace(str(out) + ".part", out)
        seconds = time.monotonic() - t0
        self._write_manifest(out, spec, version, "go-build", seconds, module=f"{recipe.module}@{modver}",
                             recipe=recipe_id(spec, version),
                             go_version=subprocess.run([go, "env", "GOVERSION"], capture_output=True,
                                                       text=True).stdout.strip())
        self.progress(f"{spec.name} {version}: built in {seconds:.0f}s -> {out} "
                      f"({out.stat().st_size / 1e6:.0f} MB)")
        return out

    def _run_logged(self, args: list[str], work: Path, env: dict, log, log_path: Path, spec: BinarySpec,
                    version: str, phase: str, t0: float, count_lines: int | None = None) -> None:
        """Run one build step with its output in the build log and a progress line every 15 s;
        a failure names the component, the version, the phase and the log's last lines."""
        log.write(f"$ {' '.join(args)}\n")
        log.flush()
        proc = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        done = [0]
        stop = threading.Event()

        def ticker() -> None:
            while not stop.wait(15):
                what = f"{done[0]}/{count_lines} packages" if count_lines else f"{done[0]} log lines"
                self.progress(f"{spec.name} {version}: {phase} ... {what}, {time.monotonic() - t0:.0f}s")

        th = threading.Thread(target=ticker, daemon=True)
        th.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            done[0] += 1
        rc = proc.wait()
        stop.set()
        log.flush()
        if rc != 0:
            raise ComponentError(f"building {spec.name} {version} failed during {phase} (exit {rc}); "
                                 f"log: {log_path}", _tail(log_path))

    def _build_paths(self, spec: BinarySpec, version: str) -> tuple[Path, Path, Path]:
        """(build directory, its build.log, the binary's place in the cache), directories made."""
        work = self.cache / "build" / f"{spec.name}-{version}"
        work.mkdir(parents=True, exist_ok=True)
        out = self.bin_path(spec, version)
        out.parent.mkdir(parents=True, exist_ok=True)
        return work, work / "build.log", out

    @staticmethod
    def _go_env() -> dict:
        env = dict(os.environ)
        env.setdefault("GOFLAGS", "-mod=mod")
        env["GOWORK"] = "off"
        env["CGO_ENABLED"] = env.get("CGO_ENABLED", "0")
        return env

    def collector_build(self, spec: BinarySpec, version: str, go: str = "go") -> Path:
        """Build the builder (ocb) at the Collector's version, write the manifest, let the
        builder generate and compile the distribution; its go.mod and go.sum stay in the
        build directory (the licence test reads the module graph there)."""
        recipe = spec.collector
        assert recipe is not None
        work, log_path, out = self._build_paths(spec, version)
        manifest = recipe.manifest(version, work / "dist")
        builder = self.resolve(recipe.builder_spec(), recipe.builder_version(version)).path
        env = self._go_env()
        t0 = time.monotonic()
        self.progress(f"{spec.name} {version}: building with the Collector builder {recipe.builder_version(version)} "
                      f"(log: {log_path})")
        (work / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        with open(log_path, "w") as log:
            self._run_logged([str(builder), "--config", str(work / "manifest.yaml"), "--verbose"], work, env, log,
                             log_path, spec, version, "generating and compiling", t0)
        built = work / "dist" / recipe.name
        if not built.is_file():
            raise ComponentError(f"building {spec.name} {version}: the builder made no {built}", _tail(log_path))
        shutil.copy2(built, str(out) + ".part")
        os.replace(str(out) + ".part", out)
        seconds = time.monotonic() - t0
        self._write_manifest(out, spec, version, "go-build", seconds, recipe=recipe_id(spec, version),
                             modules=[m["gomod"] for kind in manifest if kind != "dist" for m in manifest[kind]],
                             go_version=subprocess.run([go, "env", "GOVERSION"], capture_output=True,
                                                       text=True).stdout.strip())
        self.progress(f"{spec.name} {version}: built in {seconds:.0f}s -> {out} "
                      f"({out.stat().st_size / 1e6:.0f} MB)")
        return out

    def _download_module(self, module: str, modver: str, env: dict, work: Path, log) -> tuple[Path, Path]:
        proc = subprocess.run(["go", "mod", "download", "-json", f"{module}@{modver}"], cwd=work, env=env,
                              capture_output=True, text=True)
        log.write(proc.stdout + proc.stderr)
        try:
            info = json.loads(proc.stdout)
        except json.JSONDecodeError:
            info = {"Error": (proc.stderr or proc.stdout).strip()}
        if info.get("Error") or proc.returncode != 0:
            raise ComponentError(f"cannot download Go module {module}@{modver}: "
                                 f"{(info.get('Error') or 'go mod download failed').splitlines()[0]}")
        return Path(info["GoMod"]), Path(info["Dir"])

    @staticmethod
    def _wrapper_gomod(module: str, modver: str, upstream_gomod: Path, module_dir: Path,
                       published_local: tuple[str, Callable[[str], str]] | None = None) -> str:
        text = upstream_gomod.read_text()
        go_line = re.search(r"^go\s+(\S+)", text, re.M)
        lines = ["module stackproof.local/build", "", f"go {go_line.group(1) if go_line else '1.22'}", "",
                 f"require {module} {modver}", ""]
        for lhs, rhs in parse_replaces(text):
            if published_local and rhs.split()[0].startswith(published_local[0]):
                lines.append(f"replace {lhs} => {lhs} {published_local[1](modver)}")
                continue
            if rhs.split()[0].startswith(("./", "../")):
                local = (module_dir / rhs.split()[0]).resolve()
                if not (local / "go.mod").is_file() and not local.is_dir():
                    # a nested module (its own go.mod) is not in the parent's
                    # module zip: use the version the upstream go.mod requires
                    lines.append(f"// {lhs} => {rhs} dropped: nested module, required version used")
                    continue
                rhs = str(local)
            lines.append(f"replace {lhs} => {rhs}")
        return "\n".join(lines) + "\n"

    # -- release archive -------------------------------------------------
    def fetch_archive(self, spec: BinarySpec, version: str) -> Path:
        recipe = spec.archive
        assert recipe is not None
        subst = {"version": version, "bare": version.lstrip("v"), "name": spec.name}
        url = recipe.url.format(**subst)
        sums_url = recipe.checksums_url.format(**subst)
        self.progress(f"{spec.name} {version}: downloading {url}")
        t0 = time.monotonic()
        try:
            sums = requests.get(sums_url, timeout=60)
            sums.raise_for_status()
            resp = requests.get(url, timeout=600)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise StackproofError(f"cannot fetch the {spec.name} {version} release archive: "
                                  f"{type(exc).__name__} for {url}") from None
        archive_name = url.rsplit("/", 1)[-1]
        expected = None
        for line in sums.text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[-1].lstrip("*").rsplit("/", 1)[-1] == archive_name:
                expected = parts[0].lower()
            elif len(parts) == 1 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
                expected = parts[0].lower()  # a one-hash .sha256 file
        if not expected:
            raise StackproofError(f"{sums_url} lists no checksum for {archive_name}")
        actual = hashlib.sha256(resp.content).hexdigest()
        if actual != expected:
            raise StackproofError(f"{spec.name} {version}: checksum mismatch for {archive_name} "
                                  f"(expected {expected[:16]}…, got {actual[:16]}…); not installed")
        data = _extract_member(resp.content, archive_name, recipe.member.format(**subst))
        out = self.bin_path(spec, version)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_suffix(".part")
        part.write_bytes(data)
        part.chmod(0o755)
        os.replace(part, out)
        self._write_manifest(out, spec, version, "archive", time.monotonic() - t0, url=url, archive_sha256=actual)
        return out

    @staticmethod
    def _write_manifest(out: Path, spec: BinarySpec, version: str, source: str, seconds: float, **extra) -> None:
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        manifest = {"component": spec.name, "version": version, "source": source, "sha256": digest,
                    "size": out.stat().st_size, "seconds": round(seconds, 1),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
        (out.parent / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def override_var(spec: BinarySpec) -> str:
    """The environment variable that points at a binary of one's own: ``STACKPROOF_BIN_VICTORIA_LOGS``."""
    return f"STACKPROOF_BIN_{spec.name.upper().replace('-', '_')}"


def recipe_id(spec: BinarySpec, version: str | None = None) -> str:
    """Identifies how a binary is built; a cached build from another recipe is stale."""
    if spec.collector is not None:
        manifest = spec.collector.manifest(version or "", Path("dist")) if version in spec.collector.versions else {}
        return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    g = spec.go_for(version)
    if g is None:
        return ""
    text = f"{g.module}|{g.package}|{','.join(g.tags)}|{','.join(g.version_vars)}|cgo0|trimpath|s-w|2"
    if g.published_local:  # only then, so that every other recipe keeps its id (and its cached builds)
        text += f"|published:{g.published_local[0]}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_replaces(gomod_text: str) -> list[tuple[str, str]]:
    """The ``replace`` directives of a go.mod, single-line and block form."""
    out: list[tuple[str, str]] = []
    in_block = False
    for raw in gomod_text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if in_block:
            if line == ")":
                in_block = False
                continue
            body = line
        elif line.startswith("replace"):
            body = line[len("replace"):].strip()
            if body == "(":
                in_block = True
                continue
        else:
            continue
        if "=>" in body:
            lhs, rhs = (s.strip() for s in body.split("=>", 1))
            out.append((lhs, rhs))
    return out


def _extract_member(content: bytes, archive_name: str, member: str) -> bytes:
    if archive_name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            try:
                fh = tar.extractfile(member)
            except KeyError:
                fh = None
            if fh is None:
                raise StackproofError(f"{archive_name} has no file {member}")
            return fh.read()
    if archive_name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise StackproofError(f"{archive_name} has no file {member}") from None
    return content  # a bare binary
