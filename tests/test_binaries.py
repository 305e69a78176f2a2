"""Binary resolution: override, cache, Go module build, release archive."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from harness.binaries import ArchiveRecipe, BinaryResolver, BinarySpec, GoRecipe, parse_replaces
from harness.errors import ComponentError, StackproofError

GOMOD = """module github.com/example/app

go 1.24.0

require github.com/x/y v1.0.0

replace github.com/a/b => github.com/c/b v1.2.3 // a comment

replace (
\tgithub.com/d/e v1.0.0 => github.com/f/e v1.0.1
\t// a comment line
\tgithub.com/example/app/pkg/push => ./pkg/push
\tgithub.com/example/app/tools => ./tools
)
"""


def test_parse_replaces_single_and_block_forms():
    assert parse_replaces(GOMOD) == [
        ("github.com/a/b", "github.com/c/b v1.2.3"),
        ("github.com/d/e v1.0.0", "github.com/f/e v1.0.1"),
        ("github.com/example/app/pkg/push", "./pkg/push"),
        ("github.com/example/app/tools", "./tools"),
    ]


def test_wrapper_gomod_repeats_replaces_and_resolves_local_paths(tmp_path):
    gomod = tmp_path / "go.mod"
    gomod.write_text(GOMOD)
    moddir = tmp_path / "mod"
    (moddir / "tools").mkdir(parents=True)  # present in the module zip; pkg/push (a nested module) is not
    text = BinaryResolver._wrapper_gomod("github.com/example/app", "v1.0.0", gomod, moddir)
    assert "go 1.24.0" in text
    assert "require github.com/example/app v1.0.0" in text
    assert "replace github.com/a/b => github.com/c/b v1.2.3" in text
    assert "replace github.com/d/e v1.0.0 => github.com/f/e v1.0.1" in text
    assert f"replace github.com/example/app/tools => {moddir / 'tools'}" in text
    assert "replace github.com/example/app/pkg/push" not in text.replace("// github.com", "")



def test_wrapper_gomod_maps_published_local_replaces_to_their_release(tmp_path):
    """Kubernetes' go.mod points k8s.io/* at ./staging/src/..., not in its module zip; a recipe's
    published_local makes them the published modules of the same release."""
    from harness.components.kubeapiserver import SPEC

    gomod = tmp_path / "go.mod"
    gomod.write_text("module k8s.io/kubernetes\n\ngo 1.24.0\n\nreplace (\n"
                     "\tk8s.io/api => ./staging/src/k8s.io/api\n\tgithub.com/x/y => github.com/x/y v1.2.3\n)\n")
    text = BinaryResolver._wrapper_gomod("k8s.io/kubernetes", "v1.34.4", gomod, tmp_path / "mod",
                                         SPEC.go.published_local)
    assert "replace k8s.io/api => k8s.io/api v0.34.4" in text
    assert "replace github.com/x/y => github.com/x/y v1.2.3" in text
    assert "staging" not in text

# -- a release archive served over real HTTP on loopback --------------------------

SCRIPT = b"#!/bin/sh\necho fake-prometheus-for-archive-test 1.2.3\n"


def _tgz(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(member, data)
    return buf.getvalue()


@pytest.fixture
def archive_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _no_go_env(monkeypatch, tmp_path):
    # a PATH with no Go toolchain on it, and downloads allowed
    bindir = tmp_path / "nogo-bin"
    bindir.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("STACKPROOF_ALLOW_DOWNLOAD", "1")


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_download_verifies_checksum_and_installs(tmp_path, archive_server, monkeypatch, kind):
    root, base = archive_server
    member = "prometheus-1.2.3.linux-amd64/prometheus"
    name = f"prometheus-1.2.3.linux-amd64.{kind}"
    data = _tgz(member, SCRIPT) if kind == "tar.gz" else _zip(member, SCRIPT)
    (root / name).write_bytes(data)
    (root / "sha256sums.txt").write_text(f"{'0' * 64}  other-file.tar.gz\n"
                                         f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    spec = BinarySpec("prometheus", go=GoRecipe("x", "x"), archive=ArchiveRecipe(
        url=base + "/prometheus-{bare}.linux-amd64." + kind, checksums_url=base + "/sha256sums.txt",
        member="prometheus-{bare}.linux-amd64/prometheus"))
    _no_go_env(monkeypatch, tmp_path)
    resolver = BinaryResolver(tmp_path / "cache", progress=lambda m: None)
    r = resolver.resolve(spec, "v1.2.3")
    assert r.source == "archive"
    assert os.access(r.path, os.X_OK)
    assert r.path.read_bytes() == SCRIPT
    assert (r.path.parent / "manifest.json").is_file()
    # second time: from the cache
    assert resolver.resolve(spec, "v1.2.3").source == "cache"


def test_archive_with_wrong_checksum_is_refused_and_not_installed(tmp_path, archive_server, monkeypatch):
    root, base = archive_server
    (root / "cortex-linux-amd64").write_bytes(SCRIPT)
    (root / "cortex-linux-amd64-sha-256").write_text(hashlib.sha256(b"something else").hexdigest() + "\n")
    spec = BinarySpec("cortex", go=GoRecipe("x", "x"), archive=ArchiveRecipe(
        url=base + "/cortex-linux-amd64", checksums_url=base + "/cortex-linux-amd64-sha-256", member=""))
    _no_go_env(monkeypatch, tmp_path)
    resolver = BinaryResolver(tmp_path / "cache", progress=lambda m: None)
    with pytest.raises(StackproofError, match="checksum mismatch for cortex-linux-amd64"):
        resolver.resolve(spec, "v9.9.9")
    assert resolver.cached(spec, "v9.9.9") is None
    assert not resolver.bin_path(spec, "v9.9.9").exists()


def test_go_missing_says_so_and_how_to_proceed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("STACKPROOF_ALLOW_DOWNLOAD", raising=False)
    spec = BinarySpec("victoria-logs", go=GoRecipe("github.com/VictoriaMetrics/VictoriaLogs",
                                                   "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"))
    with pytest.raises(StackproofError) as ei:
        BinaryResolver(tmp_path / "cache").resolve(spec, "v1.52.2")
    msg = str(ei.value)
    assert "cannot build victoria-logs v1.52.2: the Go toolchain is missing" in msg
    assert "STACKPROOF_BIN_VICTORIA_LOGS" in msg and "\n" not in msg


def test_override_env_var(tmp_path, monkeypatch):
    spec = BinarySpec("cortex", go=GoRecipe("x", "x"))
    monkeypatch.setenv("STACKPROOF_BIN_CORTEX", "/bin/true")
    assert BinaryResolver(tmp_path).resolve(spec, "v1.0.0").source == "override"
    monkeypatch.setenv("STACKPROOF_BIN_CORTEX", str(tmp_path / "missing"))
    with pytest.raises(StackproofError, match="STACKPROOF_BIN_CORTEX=.*not an executable file"):
        BinaryResolver(tmp_path).resolve(spec, "v1.0.0")


def test_cache_without_manifest_is_not_a_hit(tmp_path):
    spec = BinarySpec("cortex", go=GoRecipe("x", "x"))
    r = BinaryResolver(tmp_path)
    p = r.bin_path(spec, "v1.0.0")
    p.parent.mkdir(parents=True)
    p.write_bytes(SCRIPT)
    p.chmod(0o755)
    assert r.cached(spec, "v1.0.0") is None  # a half-finished build or download


def _require_go() -> None:
    if not shutil.which("go"):
        pytest.fail("the Go toolchain is required for this test (scripts/system-deps.sh says how to get it)")


def _publish_module(root: Path, module: str, version: str, files: dict[str, str]) -> None:
    """``module@version`` in a module proxy tree on disk (the layout GOPROXY=file:// reads: list,
    .info, .mod, .zip with every file under ``module@version/``): a module of the test's own,
    which the go command fetches with no network at all."""
    d = root / module / "@v"
    d.mkdir(parents=True)
    (d / "list").write_text(version + "\n")
    (d / f"{version}.info").write_text(f'{{"Version": "{version}", "Time": "2026-01-01T00:00:00Z"}}')
    (d / f"{version}.mod").write_text(files["go.mod"])
    with zipfile.ZipFile(d / f"{version}.zip", "w") as zf:
        for name, text in files.items():
            zf.writestr(f"{module}@{version}/{name}", text)


def test_failed_go_build_names_component_version_and_log(tmp_path, monkeypatch):
    """A real go build that fails while compiling, offline: the module is the test's own,
    served by a file:// module proxy, into a module cache of its own."""
    _require_go()
    module = "example.test/widget"
    _publish_module(tmp_path / "proxy", module, "v0.0.1", {
        "go.mod": f"module {module}\n\ngo 1.22\n",
        "cmd/widget/main.go": "package main\n\nfunc main() { stackproofNoSuchFunction() }\n"})
    monkeypatch.setenv("GOPROXY", (tmp_path / "proxy").as_uri())
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOFLAGS", "-mod=mod -modcacherw")  # a module cache pytest can delete
    spec = BinarySpec("widget", go=GoRecipe(module, f"{module}/cmd/widget"))
    resolver = BinaryResolver(tmp_path / "cache", progress=lambda m: None)
    with pytest.raises(ComponentError) as ei:
        resolver.resolve(spec, "v0.0.1")
    log = tmp_path / "cache" / "build" / "widget-v0.0.1" / "build.log"
    assert str(ei.value) == f"building widget v0.0.1 failed during compiling (exit 1); log: {log}"
    assert "undefined: stackproofNoSuchFunction" in ei.value.log_tail
    assert "undefined: stackproofNoSuchFunction" in log.read_text()
    assert resolver.cached(spec, "v0.0.1") is None


def test_a_module_that_cannot_be_fetched_names_it_without_asking_the_network(tmp_path):
    """Under the guard a module missing from the cache is never looked up: one line naming it."""
    _require_go()
    spec = BinarySpec("widget", go=GoRecipe("github.com/stackproof-test/no-such-module",
                                            "github.com/stackproof-test/no-such-module/cmd/widget"))
    with pytest.raises(ComponentError) as ei:
        BinaryResolver(tmp_path, progress=lambda m: None).resolve(spec, "v0.0.1")
    assert str(ei.value) == ("cannot download Go module github.com/stackproof-test/no-such-module@v0.0.1: "
                             "github.com/stackproof-test/no-such-module@v0.0.1: module lookup disabled by GOPROXY=off")


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in for the outside: every request (a proxy CONNECT, a module proxy GET) is
    recorded and refused, so nothing leaves the machine."""

    seen: list[str] = []

    def _refuse(self):
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_CONNECT = do_GET = _refuse

    def log_message(self, *a):
        pass


def test_go_processes_are_held_by_the_network_guard(tmp_path):
    """Every test's go process inherits the guard (GOPROXY=off, GOSUMDB=off, GOTOOLCHAIN=local).
    With an HTTPS proxy of the test's own in the environment, a guarded ``go mod download`` of
    a module missing from the cache sends nothing anywhere; the same command without the
    guard's variables (the go command's defaults) goes for proxy.golang.org, through the proxy,
    where the test sees it: the guard is what keeps a Go process on this machine."""
    _require_go()
    from .netguard.sitecustomize import GO_GUARD

    assert {k: os.environ.get(k) for k in GO_GUARD} == GO_GUARD
    _Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{srv.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("NO_PROXY", "GOFLAGS")}
    env.update(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, GOMODCACHE=str(tmp_path / "modcache"), GOFLAGS="-modcacherw")
    args = ["go", "mod", "download", "-json", "example.com/stackproof/guard-probe@v1.0.0"]
    try:
        guarded = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert guarded.returncode != 0 and "module lookup disabled by GOPROXY=off" in guarded.stdout, guarded
        assert _Recorder.seen == []
        unguarded = {k: v for k, v in env.items() if k not in GO_GUARD}
        bare = subprocess.run(args, cwd=tmp_path, env=unguarded, capture_output=True, text=True, timeout=120)
        assert bare.returncode != 0, bare
        assert "CONNECT proxy.golang.org:443" in _Recorder.seen, (_Recorder.seen, bare.stdout, bare.stderr)
    finally:
        srv.shutdown()


def test_system_program_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = BinarySpec("nginx-that-is-not-there", system_names=("nginx-that-is-not-there",))
    with pytest.raises(StackproofError, match="nginx-that-is-not-there not found on PATH: install it"):
        BinaryResolver(tmp_path).resolve(spec, None)


def test_the_collector_recipe_writes_the_builders_manifest_and_names_an_unpinned_version(tmp_path):
    from harness.binaries import recipe_id
    from harness.components import LOG_SHIPPER, by_role
    from harness.errors import StackproofError
    spec = by_role(LOG_SHIPPER).spec
    m = spec.collector.manifest("v0.165.0", tmp_path / "dist")
    assert m["dist"]["name"] == "otelcol-stackproof" and m["dist"]["output_path"] == str(tmp_path / "dist")
    assert [x["gomod"] for x in m["receivers"]] == [
        "go.opentelemetry.io/collector/receiver/otlpreceiver v0.165.0",
        "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/filelogreceiver v0.165.1"]
    assert [x["gomod"] for x in m["exporters"]] == ["go.opentelemetry.io/collector/exporter/otlphttpexporter v0.165.0"]
    assert {x["gomod"].split()[1] for x in m["providers"]} == {"v1.71.0"}
    assert len(recipe_id(spec, "v0.165.0")) == 16 and recipe_id(spec, "v0.165.0") != recipe_id(spec, "v0.1.0")
    with pytest.raises(StackproofError, match=r"otelcol-stackproof: no module versions are pinned for v0.1.0"):
        spec.collector.manifest("v0.1.0", tmp_path)
