"""The platform's container images (harness/images.py) and the harness's own
containerd (harness/cluster/containerd.py).

The fast tests check the archive's structure and that it is reproducible. The
real one builds every image of the newest release, imports them into a
containerd of its own, runs each image's program once, and proves that
``stop()`` leaves nothing behind: it needs root and the Debian packages
(containerd, runc, containernetworking-plugins, busybox-static, gcc), which
``scripts/system-deps.sh`` installs."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tomllib
import time
from pathlib import Path

import pytest

from harness import images as I
from harness.cluster.containerd import SYSTEM_STATE, Containerd, mounts_under, render_config
from harness.components import COMPONENTS
from harness.errors import StackproofError
from harness.procs import proc_start_time
from harness.releases import Catalog


def _spec(tmp_path: Path, mode: int = 0o755, ref: str = "localhost/stackproof/demo:v1.2.3") -> I.ImageSpec:
    prog = tmp_path / "prog"
    if not prog.exists():
        prog.write_bytes(b"\x7fELF not really" * 1000)
        os.utime(prog, (12345, 12345))
    return I.ImageSpec(ref, [
        I.file_entry("/usr/local/bin/prog", source=prog, mode=mode),
        I.file_entry("/etc/passwd", data="root:x:0:0:root:/root:/bin/sh\n"),
        I.file_entry("/data/owned", data="x", uid=65534, gid=65534, mode=0o600),
        I.dir_entry("/tmp", 0o1777),
        I.symlink_entry("/bin/prog", "../usr/local/bin/prog"),
    ], entrypoint=("/usr/local/bin/prog",), user="65534", labels={"b": "2", "a": "1"})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- fast: the archive -----------------------------------------------------
def test_archive_is_deterministic(tmp_path):
    spec = _spec(tmp_path)
    d1 = I.write_oci_archive(spec, tmp_path / "a.tar")
    time.sleep(1.1)  # a time stamp that leaked in would differ now
    (tmp_path / "prog").touch()  # the host file's mtime does not matter
    d2 = I.write_oci_archive(_spec(tmp_path), tmp_path / "b.tar")
    assert d1 == d2
    assert _sha(tmp_path / "a.tar") == _sha(tmp_path / "b.tar")
    key = spec.key()
    assert key == _spec(tmp_path).key()
    # any input that goes in changes the digest: a mode, a file's content
    d3 = I.write_oci_archive(_spec(tmp_path, mode=0o700), tmp_path / "c.tar")
    assert d3 != d1
    (tmp_path / "prog").write_bytes(b"other")
    assert _spec(tmp_path).key() != key


def test_archive_structure(tmp_path):
    spec = _spec(tmp_path)
    digest = I.write_oci_archive(spec, tmp_path / "img.tar")
    with tarfile.open(tmp_path / "img.tar") as tar:
        names = tar.getnames()
        members = {m.name: m for m in tar.getmembers()}
        blob = lambda d: tar.extractfile(f"blobs/sha256/{d.split(':', 1)[1]}").read()  # noqa: E731
        assert names[:2] == ["oci-layout", "index.json"]
        assert json.loads(tar.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads(tar.extractfile("index.json").read())
        manifest_bytes = blob(index["manifests"][0]["digest"])
        manifest = json.loads(manifest_bytes)
        config_bytes = blob(manifest["config"]["digest"])
        layer_gz = blob(manifest["layers"][0]["digest"])
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members.values())
    # every blob is named by its SHA-256 and has the size its descriptor says
    entry = index["manifests"][0]
    assert entry["digest"] == digest == "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    assert entry["size"] == len(manifest_bytes)
    assert entry["mediaType"] == I.MEDIA_MANIFEST and index["mediaType"] == I.MEDIA_INDEX
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert entry["annotations"] == {"io.containerd.image.name": spec.ref,
                                    "org.opencontainers.image.ref.name": "v1.2.3"}
    assert manifest["config"]["digest"] == "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    assert manifest["layers"][0] == {"mediaType": I.MEDIA_LAYER_GZIP, "size": len(layer_gz),
                                     "digest": "sha256:" + hashlib.sha256(layer_gz).hexdigest()}
    config = json.loads(config_bytes)
    layer_tar = gzip.decompress(layer_gz)
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]}
    assert config["config"]["User"] == "65534" and config["config"]["Entrypoint"] == ["/usr/local/bin/prog"]
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    # the layer: parents first, sorted, owners and modes as asked, fixed mtimes
    files = I.read_archive(tmp_path / "img.tar")["files"]
    assert list(files) == ["/bin", "/bin/prog", "/data", "/data/owned", "/etc", "/etc/passwd", "/tmp", "/usr",
                           "/usr/local", "/usr/local/bin", "/usr/local/bin/prog"]
    assert files["/tmp"].mode == 0o1777 and files["/tmp"].isdir()
    assert (files["/data/owned"].uid, files["/data/owned"].gid, files["/data/owned"].mode) == (65534, 65534, 0o600)
    assert files["/bin/prog"].issym() and files["/bin/prog"].linkname == "../usr/local/bin/prog"
    assert files["/usr/local/bin/prog"].mode == 0o755 and files["/usr/local/bin/prog"].size == 15000
    assert {m.mtime for m in files.values()} == {0}


def test_build_image_is_cached_by_content(tmp_path):
    cache = tmp_path / "cache"
    lines: list[str] = []
    first = I.build_image(_spec(tmp_path), cache, progress=lines.append)
    again = I.build_image(_spec(tmp_path), cache, progress=lines.append)
    assert not first.cached and again.cached and again.digest == first.digest
    assert first.archive == cache / "images" / "demo-v1.2.3.oci.tar"
    assert lines[0].startswith("image localhost/stackproof/demo:v1.2.3: built in ") and "MiB" in lines[0]
    (tmp_path / "prog").write_bytes(b"a new build")
    changed = I.build_image(_spec(tmp_path), cache, progress=lines.append)
    assert not changed.cached and changed.digest != first.digest


def test_bad_entries_are_refused(tmp_path):
    spec = I.ImageSpec("localhost/stackproof/demo:x", [I.symlink_entry("/lib", "usr/lib"),
                                                       I.file_entry("/lib/libc.so", data="x")])
    with pytest.raises(StackproofError, match="under /lib, which is a symlink"):
        spec.resolved_entries()
    spec = I.ImageSpec("localhost/stackproof/demo:x", [I.file_entry("/a", data="1"), I.file_entry("/a", data="2")])
    with pytest.raises(StackproofError, match="two different entries for /a"):
        spec.resolved_entries()


def test_names():
    assert I.image_ref("nginx", "1.22.1-9+deb12u11-debian") == "localhost/stackproof/nginx:1.22.1-9-deb12u11-debian"
    assert I.sanitize_tag("1:1.35.0-4+deb12u1+b1") == "1.35.0-4-deb12u1-b1"
    assert I.sanitize_tag("1.2~rc1") == "1.2-rc1"
    assert I.image_ref("versitygw", "v1.8.0") == "localhost/stackproof/versitygw:v1.8.0"
    with pytest.raises(StackproofError):
        I.image_ref("Bad/Name", "x")


def test_host_path_entries_keep_the_hosts_links():
    loader = "/lib64/ld-linux-x86-64.so.2"
    if not os.path.exists(loader):
        pytest.skip(f"no {loader} here")
    entries = I.host_path_entries(loader)
    assert entries[-1].kind == "file" and os.path.realpath(loader) == entries[-1].path
    links = [e for e in entries if e.kind == "symlink"]
    assert all(os.readlink(e.path) == e.target for e in links)


def test_containerd_config_keeps_to_its_directory(tmp_path):
    text = render_config(tmp_path / "root", tmp_path / "state", tmp_path / "c.sock", tmp_path / "opt",
                         "localhost/stackproof/pause:x", Path("/usr/lib/cni"), tmp_path / "net.d")
    cfg = tomllib.loads(text)
    assert cfg["version"] == 2 and cfg["root"] == str(tmp_path / "root") and cfg["state"] == str(tmp_path / "state")
    assert cfg["grpc"]["address"] == str(tmp_path / "c.sock")
    assert cfg["plugins"]["io.containerd.internal.v1.opt"]["path"] == str(tmp_path / "opt")
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True and cri["sandbox_image"] == "localhost/stackproof/pause:x"
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2" and runc["options"]["SystemdCgroup"] is False
    assert runc["options"]["Root"] == str(tmp_path / "state" / "runc")
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": str(tmp_path / "net.d"), "max_conf_num": 1}
    assert "/var/lib/containerd" not in text and "/run/containerd" not in text


# -- real: build, import, run, stop ------------------------------------------
NEEDS = ("containerd", "ctr", "runc", "containerd-shim-runc-v2", "gcc", "nginx", "dpkg-query")
MISSING = [n for n in NEEDS if not shutil.which(n) and not os.path.exists(f"/usr/sbin/{n}")]
real = pytest.mark.skipif(os.geteuid() != 0 or bool(MISSING) or not os.path.exists("/bin/busybox"),
                          reason="needs root and containerd, runc, busybox-static, gcc, nginx (scripts/system-deps.sh)"
                                 + (f"; missing: {', '.join(MISSING)}" if MISSING else ""))


def _processes_mentioning(text: str) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and proc_start_time(int(entry)) is not None:  # a zombie is no process
            out.append((int(entry), cmd))
    return out


@real
@pytest.mark.usefixtures("one_cluster_at_a_time")  # containerd on the host: never beside a host snapshot
def test_release_images_run_in_containerd(tmp_path):
    release = Catalog.load().newest(1)[0]
    t0 = time.monotonic()
    built = I.release_images(release)
    build_seconds = time.monotonic() - t0
    refs = {b.ref for b in built.archives}
    assert len(refs) == len(built.archives)
    assert all(ref.startswith("localhost/stackproof/") for ref in refs)
    assert set(built.images.values()) <= refs and built.pause in refs

    # warm: nothing is rebuilt when nothing changed
    again = I.release_images(release)
    assert all(b.cached for b in again.archives) and [b.digest for b in again.archives] == \
        [b.digest for b in built.archives]

    system_before = SYSTEM_STATE.exists()
    ctd = Containerd(tmp_path / "ctd", sandbox_image=built.pause)
    timings = {"build": build_seconds, "start": ctd.start()}
    try:
        for b in built.archives:
            t = time.monotonic()
            assert ctd.import_image(b.archive) == [b.ref]
            timings[f"import {b.ref}"] = time.monotonic() - t
        assert refs <= set(ctd.images())

        busybox = ("--mount", "type=bind,src=/bin/busybox,dst=/probe/busybox,options=rbind:ro")
        n = 0

        def run(ref: str, *cmd: str, extra: tuple[str, ...] = ()) -> str:
            nonlocal n
            n += 1
            r = ctd.run(ref, f"probe-{n}", *cmd, extra=extra)
            assert r.returncode == 0, f"{ref} {cmd}: exit {r.returncode}: {r.stdout} {r.stderr}"
            return r.stdout + r.stderr

        # each component's program, at the pinned version, as the shape's user
        from harness.components.s3 import S3Server
        from harness.providers.kube.manifests import version_of
        for c in COMPONENTS:
            if c.cluster is None or c.spec.system_names:
                continue
            version = version_of(c, release)
            ref = built.local(c.cluster.image_for(version))
            out = run(ref, c.cluster.binary, c.version_flag)
            if isinstance(c, S3Server):  # versitygw prints "Version  : v1.8.0"
                assert ref == I.image_ref("versitygw", version) and f": {version}" in out, out[:300]
            else:
                assert c.reported_version(version) in out, f"{ref}: {out[:300]}"
            config = I.read_archive(next(b.archive for b in built.archives if b.ref == ref))["config"]["config"]
            assert config.get("User", "") == ("" if c.cluster.uid is None else str(c.cluster.uid))
            uid = run(ref, "/probe/busybox", "id", "-u", extra=busybox).strip()
            assert uid == str(c.cluster.uid or 0), f"{ref} runs as {uid}"
        # the gateway: nginx with its libraries, the start script's shell, and its workers' user
        gw = built.local(next(c for c in COMPONENTS if c.spec.system_names).cluster.image_for(None))
        nginx_version = I.debian_version("nginx").split("-")[0]
        assert f"nginx/{nginx_version}" in run(gw, "/usr/sbin/nginx", "-v")
        out = run(gw, "/bin/sh", "-c", 'mkdir -p /tmp/g && ln -sf /dev/stderr /tmp/g/err && printf "events {}\\n" '
                                       "> /tmp/g/n.conf && exec /usr/sbin/nginx -t -c /tmp/g/n.conf")
        assert "test is successful" in out
        # the tools image
        from harness.providers.kube.manifests import TOOLS_IMAGE
        tools = built.local(TOOLS_IMAGE)
        out = run(tools, "sh", "-c", "echo ok; for a in " + " ".join(I.TOOLS_APPLETS)
                  + "; do command -v $a; done")
        assert out.split()[0] == "ok" and len(out.split()) == 1 + len(I.TOOLS_APPLETS)
        # the pause image: its version, its user, and one left running for stop() to clean up
        assert "pause.c v3.10.1" in run(built.pause, "/pause", "-v")
        assert run(built.pause, "/probe/busybox", "id", "-u", extra=busybox).strip() == "65535"
        r = ctd.ctr("run", "-d", "--runc-root", str(ctd.runc_root), "--fifo-dir", str(ctd.fifo_dir),
                    built.pause, "sandbox")
        deadline = time.monotonic() + 10
        while "RUNNING" not in ctd.ctr("tasks", "ls").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "RUNNING" in ctd.ctr("tasks", "ls").stdout
        assert ctd.shim_pids() and mounts_under(ctd.state)

        # a stray pull never leaves the machine: the proxy is a dead loopback port (how long it takes to
        # fail is a figure: benchmarks/failure_bounds.py)
        r = ctd.ctr("images", "pull", "docker.io/library/busybox:latest", check=False, timeout=60)
        assert r.returncode != 0 and "127.0.0.1:9" in r.stderr, r.stderr[-300:]
    finally:
        t = time.monotonic()
        done = ctd.stop()
        timings["stop"] = time.monotonic() - t
    print("timings:", {k: round(v, 2) for k, v in timings.items()}, "stop:", done)
    assert done["tasks"] >= 1 and done["containerd"] == "stopped"
    # nothing is left: no process, no mount, no directory but the config and the log
    assert _processes_mentioning(str(ctd.base)) == []
    assert mounts_under(ctd.base) == []
    assert not ctd.root.exists() and not ctd.state.exists() and not ctd.opt.exists()
    assert not ctd.socket.exists()
    assert sorted(p.name for p in ctd.base.iterdir()) == ["config.toml", "containerd.log"]
    # nor a shim socket of its own in /run/containerd/s (another test's containerd may share that directory)
    names = ["sandbox", *(f"probe-{i}" for i in range(1, n + 1))]
    socks = [SYSTEM_STATE / "s" / hashlib.sha256(f"{ctd.socket}/k8s.io/{name}".encode()).hexdigest()
             for name in names]
    assert [s for s in socks if s.exists()] == []
    if not system_before and not _processes_mentioning("containerd"):
        assert not SYSTEM_STATE.exists()


@real
@pytest.mark.usefixtures("one_cluster_at_a_time")  # containerd on the host: never beside a host snapshot
def test_containerd_start_failure_is_one_line_with_the_log(tmp_path):
    class Broken(Containerd):
        def config(self) -> str:
            return super().config().replace('level = "info"', 'level = "chatty"')

    ctd = Broken(tmp_path / "ctd", sandbox_image="localhost/stackproof/pause:x", progress=lambda _: None)
    with pytest.raises(StackproofError) as err:
        ctd.start(timeout=20)
    msg = str(err.value)
    assert "\n" not in msg and "containerd exited during start-up" in msg and "last log lines" in msg
    assert "chatty" in msg, msg
    assert not ctd.alive() and not ctd.root.exists() and mounts_under(ctd.base) == []
