"""A containerd of the harness's own: Debian's containerd 1.6 (``apt-get
install containerd runc containernetworking-plugins``) with its root, state,
socket and ``opt`` directories under one directory given to it, so that it
never touches (nor is disturbed by) a system containerd in
``/var/lib/containerd`` and ``/run/containerd``.

What this machine needs of its configuration (measured here):

- ``restrict_oom_score_adj = true``: the VM lacks ``CAP_SYS_RESOURCE``, and
  without it every pod sandbox fails with "can't get final child's PID from
  pipe: EOF";
- cgroups v1 with the cgroupfs driver: runc v2 with ``SystemdCgroup = false``;
- snapshotter overlayfs; CNI plugins from Debian's ``/usr/lib/cni``;
- no network: the process's ``HTTP_PROXY``/``HTTPS_PROXY`` point at a dead
  loopback port, so a stray image pull fails at once instead of leaving the
  machine. Images come in as archives (:mod:`harness.images`) through
  :meth:`Containerd.import_image`.

:meth:`Containerd.stop` puts everything back: the tasks it ran are killed and
deleted, the process stopped, any shim it started (and what runs under it)
killed, every mount under its directories (and the network namespaces its
pod sandboxes used) unmounted, and its directories removed.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .. import say
from ..errors import ComponentError, StackproofError, one_line
from ..procs import Supervised, log_tail

CONTAINERD = "containerd"
CTR = "ctr"
SHIM = "containerd-shim-runc-v2"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a pull fails at once
K8S_NAMESPACE = "k8s.io"  # the CRI plugin's namespace: the kubelet sees images only there
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes, and containerd adds ".ttrpc"
# the plugins a single node's kubelet does not need (cheap to leave out: no
# probing of btrfs/zfs/devmapper pools, no tracing exporter, no v1 runtime)
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)  # not io.containerd.runtime.v1.linux: 1.6's tasks service (and so the CRI plugin) needs it
MNT_DETACH = 2
# containerd 1.6 puts its shims' sockets here whatever its state dir (runtime/v2/shim: socketRoot),
# and ctr its FIFOs by default: stop() removes what it made there
SYSTEM_STATE = Path("/run/containerd")


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def render_config(root: Path, state: Path, socket: Path, opt: Path, sandbox_image: str,
                  cni_bin_dir: Path = CNI_BIN_DIR, cni_conf_dir: Path | None = None,
                  runc_root: Path | None = None, log_level: str = "info") -> str:
    """containerd 1.6's configuration (``version = 2``) for one node."""
    cni_conf_dir = cni_conf_dir or root.parent / "cni" / "net.d"
    runc_root = runc_root or state / "runc"
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    return f"""# stackproof's containerd; generated, do not edit
version = 2
root = {_toml_str(root)}
state = {_toml_str(state)}
plugin_dir = ""
disabled_plugins = [{", ".join(_toml_str(p) for p in DISABLED_PLUGINS)}]
oom_score = 0

[grpc]
  address = {_toml_str(socket)}

[ttrpc]
  address = {_toml_str(str(socket) + ".ttrpc")}

[debug]
  level = {_toml_str(log_level)}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_str(opt)}

{cri}]
  sandbox_image = {_toml_str(sandbox_image)}
  # no CAP_SYS_RESOURCE on this VM: without it every sandbox fails
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # pod network namespaces under the state dir, not /var/run/netns
  netns_mounts_under_state_dir = true

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  # cgroups v1 here: the cgroupfs driver, as the kubelet's
  SystemdCgroup = false
  Root = {_toml_str(runc_root)}

{cri}.cni]
  bin_dir = {_toml_str(cni_bin_dir)}
  conf_dir = {_toml_str(cni_conf_dir)}
  max_conf_num = 1

{cri}.registry]
  config_path = ""
"""


def _unescape_mount(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts_under(*dirs: Path) -> list[str]:
    """Mount points at or below any of ``dirs``, deepest (and latest) first."""
    prefixes = [str(Path(d)) for d in dirs]
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape_mount(fields[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append((point.count("/"), i, point))
    return [p for _, _, p in sorted(found, reverse=True)]


def _umount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), 0) != 0:
        libc.umount2(path.encode(), MNT_DETACH)  # busy: detach it, it goes once unused


def _cmdlines() -> dict[int, list[str]]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            out[int(entry)] = raw.rstrip(b"\0").decode(errors="replace").split("\0")
    return out


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X")


class Containerd:
    """One containerd, all of its files under ``base``.

    ``base/root`` (images, snapshots, metadata), ``base/state`` (tasks, runc's
    state), ``base/opt``, ``base/containerd.sock``, ``base/config.toml`` and
    ``base/containerd.log``. The CNI configuration directory defaults to
    ``base/cni/net.d``. :meth:`stop` removes all but the config and the log
    (what tells why a start failed); :meth:`remove` those too."""

    def __init__(self, base: Path, sandbox_image: str, cni_bin_dir: Path = CNI_BIN_DIR,
                 cni_conf_dir: Path | None = None, wrap=None, progress=say):
        self.base = Path(base).absolute()
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.opt = self.base / "opt"
        self.socket = self.base / "containerd.sock"
        self.config_path = self.base / "config.toml"
        self.log_path = self.base / "containerd.log"
        self.runc_root = self.state / "runc"
        self.cni_bin_dir = Path(cni_bin_dir)
        self.cni_conf_dir = Path(cni_conf_dir) if cni_conf_dir else self.base / "cni" / "net.d"
        self._own_cni = cni_conf_dir is None  # made here: removed by stop()
        self.sandbox_image = sandbox_image
        self.progress = progress
        # how the process is started: e.g. inside the node's namespaces (NodeNamespaces.wrap)
        self.wrap = wrap or (lambda args: args)
        self.proc: Supervised | None = None
        self._cgroups_before: set[str] = set()
        self._system_before: set[str] = set()
        self.fifo_dir = self.state / "fifo"  # for ctr's task FIFOs (its default is under /run/containerd)
        if len(str(self.socket)) > SOCKET_PATH_MAX:
            raise StackproofError(f"containerd socket path {self.socket} is longer than {SOCKET_PATH_MAX} "
                                  "characters (a unix socket's limit): use a shorter directory")

    # -- the process ------------------------------------------------------
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy",
                                                                       "all_proxy")}
        env.update({"HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "NO_PROXY": "",
                    "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY, "no_proxy": ""})
        # the shim and runc: Debian puts runc in /usr/sbin
        path = env.get("PATH", "").split(":")
        env["PATH"] = ":".join(p for p in dict.fromkeys([*path, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                                         "/usr/bin", "/sbin", "/bin"]) if p)
        return env

    def config(self) -> str:
        return render_config(self.root, self.state, self.socket, self.opt, self.sandbox_image,
                             self.cni_bin_dir, self.cni_conf_dir, self.runc_root)

    def start(self, timeout: float = 60) -> float:
        """Start containerd; returns seconds until its socket answered."""
        binary = shutil.which(CONTAINERD)
        if not binary or not shutil.which(CTR):
            raise StackproofError("containerd is not installed (Debian: apt-get install containerd runc "
                                  "containernetworking-plugins)")
        if self.proc is not None and self.proc.alive():
            return 0.0
        t0 = time.monotonic()
        for d in (self.root, self.state, self.opt, self.cni_conf_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        self.config_path.write_text(self.config())
        self._cgroups_before = set(self._namespace_cgroups())
        self._system_before = {str(p) for p in (SYSTEM_STATE, SYSTEM_STATE / "s", SYSTEM_STATE / "fifo")
                               if p.exists()}
        self.proc = Supervised.start("containerd", self.wrap([binary, "--config", str(self.config_path)]),
                                     self.log_path,
                                     cwd=self.base, env=self.env())
        try:
            self.proc.wait_ready(self._answers, timeout)
        except ComponentError as exc:
            tail = " | ".join(log_tail(self.log_path, 3).splitlines())
            self.stop()
            raise ComponentError(f"{one_line(str(exc), 200)}; last log lines: {one_line(tail, 400)}",
                                 exc.log_tail) from None
        seconds = time.monotonic() - t0
        self.progress(f"containerd ready in {seconds:.2f}s (socket {self.socket})")
        return seconds

    def _answers(self) -> tuple[bool, str]:
        if not self.socket.exists():
            return False, f"no socket {self.socket} yet"
        try:
            r = subprocess.run([CTR, "--address", str(self.socket), "version"], capture_output=True, text=True,
                               timeout=5)
        except subprocess.TimeoutExpired:
            return False, "ctr version timed out"
        if r.returncode != 0 or "Server:" not in r.stdout:
            return False, one_line(r.stderr or r.stdout, 160)
        # the kubelet needs the CRI plugin: a plugin that failed to load is an error, not a wait
        r = subprocess.run([CTR, "--address", str(self.socket), "plugins", "ls"], capture_output=True, text=True,
                           timeout=5)
        failed = [line.split()[1] for line in r.stdout.splitlines()[1:]
                  if len(line.split()) >= 4 and line.split()[-1] == "error"]
        if failed:
            raise ComponentError(f"containerd plugins failed to load: {', '.join(failed)}; log: {self.log_path}",
                                 log_tail(self.log_path))
        return True, "ready"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    # -- ctr ---------------------------------------------------------------
    def ctr(self, *args: str, namespace: str = K8S_NAMESPACE, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
        """``ctr --address SOCK -n NAMESPACE ARGS``."""
        cmd = [CTR, "--address", str(self.socket), "-n", namespace, *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env())
        except subprocess.TimeoutExpired:
            raise StackproofError(f"ctr {' '.join(args[:3])} timed out after {timeout:.0f}s") from None
        if check and r.returncode != 0:
            raise StackproofError(f"ctr {' '.join(args[:3])} failed (exit {r.returncode}): "
                                  f"{one_line(r.stderr or r.stdout)}")
        return r

    def import_image(self, archive: Path, timeout: float = 600) -> list[str]:
        """Import an OCI or Docker image archive into the CRI namespace, unpacked
        for the overlayfs snapshotter (the kubelet's); returns the refs imported."""
        archive = Path(archive)
        if not archive.is_file():
            raise StackproofError(f"image archive {archive} does not exist")
        r = self.ctr("images", "import", "--all-platforms=false", "--snapshotter", "overlayfs", str(archive),
                     timeout=timeout)
        refs = []
        for line in r.stdout.splitlines():
            # ctr 1.6 prints "unpacking REF (sha256:...)...done" for each image
            m = re.match(r"unpacking (\S+) \(sha256:[0-9a-f]+\)", line.strip())
            if m:
                refs.append(m.group(1))
        if not refs:
            raise StackproofError(f"ctr images import {archive.name} imported no image: {one_line(r.stdout)}")
        return refs

    def run(self, ref: str, name: str, *command: str, timeout: float = 120,
            extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """``ctr run --rm REF NAME COMMAND`` (its runc state and FIFOs under this containerd's state
        dir); the process's output is the result's stdout and stderr."""
        return self.ctr("run", "--rm", "--runc-root", str(self.runc_root), "--fifo-dir", str(self.fifo_dir),
                        *extra, ref, name, *command, timeout=timeout, check=False)

    def images(self) -> list[str]:
        """The image refs in the CRI namespace."""
        return sorted(self.ctr("images", "ls", "-q").stdout.split())

    # -- stopping ----------------------------------------------------------
    def shim_pids(self) -> list[int]:
        """Pids of the runc shims this containerd started (by its socket in their command line)."""
        sock = str(self.socket)
        out = []
        for pid, argv in _cmdlines().items():
            if not argv or os.path.basename(argv[0]) != SHIM:
                continue
            if any(a == "-address" and b == sock for a, b in zip(argv, argv[1:])):
                out.append(pid)
        return sorted(out)

    def _namespaces(self) -> list[str]:
        r = self.ctr("namespaces", "ls", "-q", check=False, timeout=20)
        return r.stdout.split() if r.returncode == 0 else []

    def _netns_paths(self, namespaces: list[str]) -> set[str]:
        """Network namespaces (bind mounts, e.g. /run/netns/cni-...) that its containers' specs join."""
        paths = set()
        for ns in namespaces:
            r = self.ctr("containers", "ls", "-q", namespace=ns, check=False, timeout=20)
            for cid in r.stdout.split() if r.returncode == 0 else []:
                info = self.ctr("containers", "info", cid, namespace=ns, check=False, timeout=20)
                try:
                    spec = json.loads(info.stdout).get("Spec") or {}
                except (json.JSONDecodeError, AttributeError):
                    continue
                for n in (spec.get("linux") or {}).get("namespaces") or []:
                    p = n.get("path") or ""
                    if n.get("type") == "network" and re.match(r"^(/var)?/run/netns/", p):
                        paths.add(p)
        return paths

    def _stop_tasks(self, namespaces: list[str]) -> None:
        for ns in namespaces:
            r = self.ctr("tasks", "ls", "-q", namespace=ns, check=False, timeout=20)
            tasks = r.stdout.split() if r.returncode == 0 else []
            for tid in tasks:
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", tid, namespace=ns, check=False, timeout=20)
            for tid in tasks:
                self.ctr("tasks", "delete", "-f", tid, namespace=ns, check=False, timeout=30)

    def _containers(self, ns: str) -> list[str]:
        r = self.ctr("containers", "ls", "-q", namespace=ns, check=False, timeout=20)
        return r.stdout.split() if r.returncode == 0 else []

    @staticmethod
    def _namespace_cgroups() -> list[str]:
        """cgroup v1 directories named for containerd namespaces (``ctr run`` puts a task in ``/<ns>/<id>``)."""
        out = []
        for ctl in Path("/sys/fs/cgroup").glob("*"):
            d = ctl / K8S_NAMESPACE
            if d.is_dir():
                out.append(str(d))
        return out

    def stop(self, timeout: float = 30) -> dict:
        """Stop containerd and put everything back; returns what was done."""
        done: dict = {"tasks": 0, "shims_killed": 0, "unmounted": 0}
        netns: set[str] = set()
        if self.alive():
            namespaces = self._namespaces()
            netns = self._netns_paths(namespaces)
            for ns in namespaces:
                r = self.ctr("tasks", "ls", "-q", namespace=ns, check=False, timeout=20)
                done["tasks"] += len(r.stdout.split()) if r.returncode == 0 else 0
            self._stop_tasks(namespaces)
            tasks = [(ns, tid) for ns in namespaces for tid in self._containers(ns)]
        else:
            tasks = []
        if self.proc is not None:
            done["containerd"] = self.proc.stop(timeout)
        # a shim outlives containerd (it is reparented), and its containers with it
        kids = _children()
        shims = self.shim_pids()
        cmdlines = _cmdlines()
        for pid in shims:  # a killed shim leaves its socket: note which it is
            argv = cmdlines.get(pid, [])
            flags = dict(zip(argv[1::2], argv[2::2])) if len(argv) > 1 else {}
            if "-namespace" in flags and "-id" in flags:
                tasks.append((flags["-namespace"], flags["-id"]))
        victims = [p for s in shims for p in _descendants(s, kids)] + shims
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(not _gone(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        done["shims_killed"] = len(shims)
        for point in mounts_under(self.root, self.state, self.base, *map(Path, netns)):
            _umount(point)
            done["unmounted"] += 1
        for p in netns:
            try:
                os.unlink(p)
            except OSError:
                pass
        # a killed shim leaves its socket: /run/containerd/s/sha256(address/namespace/id)
        for ns, tid in tasks:
            sock = SYSTEM_STATE / "s" / hashlib.sha256(os.path.join(str(self.socket), ns, tid).encode()).hexdigest()
            if sock.exists() and not sock.is_dir():
                sock.unlink()
        for d in (SYSTEM_STATE / "s", SYSTEM_STATE / "fifo", SYSTEM_STATE):
            if str(d) not in self._system_before:
                try:
                    d.rmdir()  # only if empty: another containerd's files stay
                except OSError:
                    pass
        for d in set(self._namespace_cgroups()) - self._cgroups_before:
            for sub in sorted(Path(d).glob("**/"), key=lambda x: -len(x.parts)):
                try:
                    sub.rmdir()  # only an empty cgroup goes
                except OSError:
                    pass
        own = [self.base / "cni"] if self._own_cni else []
        for d in (self.root, self.state, self.opt, *own, self.socket, Path(str(self.socket) + ".ttrpc")):
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            else:
                try:
                    d.unlink()
                except OSError:
                    pass
        left = mounts_under(self.base)
        if left:
            raise ComponentError(f"containerd in {self.base}: {len(left)} mounts could not be removed: {left[0]}")
        return done

    def remove(self) -> None:
        """:meth:`stop`, then remove the whole base directory (config and log included)."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "Containerd":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
