"""The node's own namespaces and network, and the host state they must leave as found.

Every program of the local cluster (etcd, the control plane, containerd, the
kubelet, kube-proxy, CoreDNS) runs inside one network namespace and one mount
namespace of its own, held open by a small process (:class:`NodeNamespaces`).
That choice does most of the clean-up by construction:

- the bridge, the pods' routes, kube-proxy's nftables rules and every ``net.*``
  sysctl the kubelet or kube-proxy set (``ip_forward``, ``route_localnet``,
  ``bridge-nf-call-*``) live in the node's network namespace and vanish with it;
- every mount (overlay snapshots, secret and configmap volumes, pod network
  namespace files) is made in the node's mount namespace, whose propagation is
  private, and vanishes with it; fresh tmpfs on ``/run``, ``/var/lib`` and
  ``/var/log`` there catch the paths the kubelet and containerd hard-code
  (``/run/containerd/s``, ``/var/lib/kubelet/device-plugins``, ``/var/log/containers``,
  ``/var/lib/cni``), so the host's own directories are never written; and the
  node's ``/etc/resolv.conf`` names only its own loopback, so no program in it
  ever asks the host's resolver for a name.

What no namespace holds is put back by the cluster's teardown from a
:func:`host_snapshot` taken before it started: the kernel sysctls the kubelet
sets (``vm.overcommit_memory``, ``kernel.panic``, ``kernel.panic_on_oops``, ...),
and the cgroups of the pods.

The only link to the host is one veth pair: the host's end has ``HOST_IP``, the
node's end ``NODE_IP`` (the API server's advertise address and the kubelet's node
IP); the pods sit on the node's bridge ``BRIDGE``. The node has no default route,
and two nftables tables make the rule hard before the first pod starts: in the
node, nothing leaves for an address outside the cluster's own ranges or an
interface other than lo, the bridge and the veth; on the host, nothing is ever
forwarded to or from the veth, and nothing the host sends to the cluster's range
leaves by any interface but lo and the veth (:data:`GUARD_COUNTERS` and
:data:`HOST_GUARD_COUNTER` count what they dropped).

One way from a pod to the host is open, for the harness's own listeners there (the
alerting suite's webhook receiver, which the platform's Alertmanager calls): TCP to
``HOST_IP`` at an ephemeral port (the kernel's pick for port 0), masqueraded to
``NODE_IP`` in the node, so that the host answers on its veth (it has no route to
the pods; without the masquerade it would answer a pod's address by its default
route, off this machine). Every other packet a pod sends out of the veth is dropped.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ComponentError, StackproofError, one_line

# the cluster's address space: one /16 no host network here uses (checked at start)
CLUSTER_NET = ipaddress.ip_network("10.213.0.0/16")
POD_CIDR = ipaddress.ip_network("10.213.0.0/24")  # the bridge's subnet
BRIDGE_IP = "10.213.0.1"  # the pods' gateway, and CoreDNS's address
SERVICE_CIDR = ipaddress.ip_network("10.213.16.0/20")
API_SERVICE_IP = "10.213.16.1"  # the 'kubernetes' Service: the first address of the range
LINK_NET = ipaddress.ip_network("10.213.255.0/30")
HOST_IP, NODE_IP = "10.213.255.1", "10.213.255.2"
BRIDGE = "spk-br0"  # in the node
HOST_VETH, NODE_VETH = "spk-host0", "spk-node0"
HOST_GUARD_TABLE = "stackproof_host_guard"
NODE_GUARD_TABLE = "stackproof_node_guard"
# the nft counters that record what the guards dropped
GUARD_COUNTERS = ("dropped_out", "dropped_v6")
HOST_GUARD_COUNTER = "dropped_to_cluster"  # the host's: what it sent to the cluster's range off the veth

# what the kubelet sets outside any namespace (its kernel defaults), and the host's routing
HOST_SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
                "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
                "net.ipv4.conf.all.route_localnet", "net.ipv4.conf.default.route_localnet",
                "net.bridge.bridge-nf-call-iptables", "net.netfilter.nf_conntrack_max")
# paths the kubelet, containerd and the CNI plugins hard-code: the host's must stay as they were
FIXED_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd", "/var/lib/cni",
               "/etc/cni/net.d", "/opt/cni", "/var/lib/containerd", "/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBE_CGROUP = "kubepods"


def run(args: list[str], what: str, input: str | None = None, timeout: float = 30) -> str:
    """Run a host command; a one-line :class:`StackproofError` naming ``what`` on failure."""
    try:
        p = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise StackproofError(f"{what}: {args[0]} is not installed (scripts/system-deps.sh installs it)") from None
    except subprocess.TimeoutExpired:
        raise StackproofError(f"{what}: {' '.join(args[:3])} did not finish within {timeout:g}s") from None
    if p.returncode != 0:
        raise StackproofError(f"{what}: {one_line(p.stderr or p.stdout, 300)}")
    return p.stdout


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value)


def kube_cgroups() -> list[str]:
    """Every cgroup directory the kubelet and runc made for pods, in every hierarchy, deepest first."""
    out = []
    if CGROUP_ROOT.is_dir():
        for hierarchy in CGROUP_ROOT.iterdir():
            top = hierarchy / KUBE_CGROUP
            if top.is_dir():
                out += [str(p) for p, _, _ in os.walk(top)]
    return sorted(out, key=lambda p: (-p.count("/"), p))


def host_snapshot() -> dict:
    """What a cluster run may change on the host, as text to compare: processes,
    mounts, links, routes, nftables and iptables rules, sysctls, cgroups, fixed paths."""
    procs = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if cmd:
                procs.append(f"{d.name} {cmd}")

    def out(args: list[str]) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"<{type(exc).__name__}>"

    mounts = [" ".join(line.split()[3:5]) for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return {
        "processes": sorted(procs),
        "mounts": sorted(mounts),
        "links": out(["ip", "-o", "link", "show"]).replace("\\", "").split("\n"),
        "routes": out(["ip", "route", "show", "table", "all"]).splitlines()
        + out(["ip", "-6", "route", "show", "table", "all"]).splitlines(),
        "nft": out(["nft", "list", "ruleset"]).splitlines(),
        "iptables": [ln for ln in out(["iptables-save"]).splitlines() if not ln.startswith("#")],
        "sysctls": {name: read_sysctl(name) for name in HOST_SYSCTLS},
        "cgroups": kube_cgroups(),
        "paths": {p: os.path.exists(p) for p in FIXED_PATHS},
    }


def snapshot_diff(before: dict, after: dict, root: Path | None = None) -> list[str]:
    """What differs between two snapshots, one line each. A process counts when it
    is new and is the cluster's: it names the cluster's directory ``root`` (every
    node program and shim does), is the namespaces' holder, or sits in a pod's cgroup;
    other processes are the machine's own business (a test beside this one)."""
    diffs = []
    for key in ("mounts", "links", "routes", "nft", "iptables", "cgroups"):
        b, a = before[key], after[key]
        if key == "links":  # link counters and flags of the host's interfaces may move
            b = [re.sub(r"\s+link/.*", "", x) for x in b]
            a = [re.sub(r"\s+link/.*", "", x) for x in a]
        gone, new = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        diffs += [f"{key}: gone: {x}" for x in gone] + [f"{key}: new: {x}" for x in new]
    for name, value in before["sysctls"].items():
        if after["sysctls"].get(name) != value:
            diffs.append(f"sysctl {name}: {value} before, {after['sysctls'].get(name)} after")
    for path, existed in before["paths"].items():
        if after["paths"].get(path) != existed:
            diffs.append(f"path {path}: {'existed' if existed else 'absent'} before, "
                         f"{'exists' if after['paths'].get(path) else 'absent'} after")
    old = {p.split(" ", 1)[0] for p in before["processes"]}
    for p in after["processes"]:
        pid, _, cmd = p.partition(" ")
        if pid not in old and (_in_pod_cgroup(pid) or "stackproof-node-holder" in cmd
                               or (root is not None and str(root) in cmd)):
            diffs.append(f"process still running: {p[:200]}")
    return diffs


def _in_pod_cgroup(pid: str) -> bool:
    try:
        return f"/{KUBE_CGROUP}" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def check_address_space() -> None:
    """No other local cluster runs (its veth would exist), and the cluster's /16
    overlaps no network the host has; else one line, and nothing is touched."""
    if subprocess.run(["ip", "link", "show", HOST_VETH], capture_output=True).returncode == 0:
        raise StackproofError(f"a local cluster already runs on this machine (link {HOST_VETH} exists): "
                              "stop it first (stackproof down --provider local-kube --platform NAME)")
    for line in run(["ip", "-o", "-4", "addr", "show"], "reading the host's addresses").splitlines():
        m = re.search(r"inet (\S+)", line)
        if m and ipaddress.ip_interface(m.group(1)).network.overlaps(CLUSTER_NET):
            raise StackproofError(f"the host already has {m.group(1)}, inside the local cluster's "
                                  f"{CLUSTER_NET}: remove it or stop the other cluster")
    for line in run(["ip", "-o", "-4", "route", "show"], "reading the host's routes").splitlines():
        dst = line.split()[0]
        if dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(CLUSTER_NET):
            raise StackproofError(f"the host routes {dst}, inside the local cluster's {CLUSTER_NET}")


@dataclass
class NodeNamespaces:
    """The node's network and mount namespaces, held open by one small process
    (``holder_pid``); every node program joins both through :meth:`wrap`."""

    holder_pid: int = 0

    def start(self, log_path: Path) -> None:
        # private propagation: nothing mounted in the node is seen by the host; fresh
        # tmpfs catch the kubelet's and containerd's hard-coded paths
        script = ("set -e; for d in /run /var/lib /var/log; do mount -t tmpfs -o mode=0755 stackproof-node $d; "
                  "done; mkdir -p /run/netns /var/log/pods /var/log/containers; ip link set lo up; "
                  # no program of the node asks the host's resolver anything: its loopback answers nothing
                  "echo 'nameserver 127.0.0.1' > /run/resolv.conf; mount --bind /run/resolv.conf /etc/resolv.conf; "
                  "echo ready; exec -a stackproof-node-holder sleep infinity")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            p = subprocess.Popen(["unshare", "--net", "--mount", "--propagation", "private", "--",
                                  "bash", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=log, start_new_session=True)
        assert p.stdout is not None
        line = p.stdout.readline().decode().strip()
        if line != "ready":
            p.kill()
            raise ComponentError("the node's namespaces could not be made (unshare --net --mount)",
                                 log_path.read_text(errors="replace")[-2000:])
        self.holder_pid = p.pid

    def alive(self) -> bool:
        return self.holder_pid > 0 and Path(f"/proc/{self.holder_pid}").exists()

    def wrap(self, args: list[str]) -> list[str]:
        """``args`` run inside the node (same pid: nsenter execs without forking)."""
        return ["nsenter", f"--target={self.holder_pid}", "--net", "--mount", "--", *args]

    def run(self, args: list[str], what: str, input: str | None = None) -> str:
        return run(self.wrap(args), what, input)

    def members(self) -> list[int]:
        """Every process in the node's network or mount namespace (the holder too)."""
        if not self.alive():
            return []
        want = {os.readlink(f"/proc/{self.holder_pid}/ns/{k}") for k in ("net", "mnt")}
        pids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if {os.readlink(d / "ns/net"), os.readlink(d / "ns/mnt")} & want:
                        pids.append(int(d.name))
                except OSError:
                    continue
        return pids

    def stop(self) -> None:
        """SIGKILL whatever is still inside, the holder last; the namespaces go with it."""
        for pid in sorted(set(self.members()) - {self.holder_pid}):
            _kill(pid)
        if self.holder_pid:
            _kill(self.holder_pid)
            try:
                os.waitpid(self.holder_pid, 0)
            except ChildProcessError:
                pass
        self.holder_pid = 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def setup_network(ns: NodeNamespaces) -> None:
    """The veth pair, the bridge, the routes and both guards: all before any pod exists."""
    run(["ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH, "netns", str(ns.holder_pid)],
        "making the node's veth pair")
    run(["ip", "addr", "add", f"{HOST_IP}/{LINK_NET.prefixlen}", "dev", HOST_VETH], "addressing the host's veth")
    run(["ip", "link", "set", HOST_VETH, "up"], "bringing up the host's veth")
    run(["nft", "-f", "-"], "installing the host's guard", input=host_guard())
    script = "\n".join([
        f"ip addr add {NODE_IP}/{LINK_NET.prefixlen} dev {NODE_VETH}", f"ip link set {NODE_VETH} up",
        f"ip link add {BRIDGE} type bridge", f"ip addr add {BRIDGE_IP}/{POD_CIDR.prefixlen} dev {BRIDGE}",
        f"ip link set {BRIDGE} up",
        # host -> ClusterIP and node -> ClusterIP: kube-proxy DNATs it, but only after a route exists
        f"ip route add {SERVICE_CIDR} dev {BRIDGE}",
        # the node forwards between its veth and its bridge (host -> NodePort -> pod), nothing else
        "sysctl -qw net.ipv4.ip_forward=1"])
    ns.run(["bash", "-ec", script], "setting up the node's network")
    ns.run(["nft", "-f", "-"], "installing the node's guard", input=node_guard())


def host_guard() -> str:
    """Nothing is forwarded to or from the veth; and nothing the host sends to the
    cluster's /16 (no network of the host overlaps it: checked at start) leaves by an
    interface other than lo and the veth: an answer to a pod's address, had the node not
    masqueraded it, would otherwise take the host's default route off this machine."""
    return f"""table inet {HOST_GUARD_TABLE} {{
  counter {HOST_GUARD_COUNTER} {{ }}
  chain forward {{
    type filter hook forward priority -200; policy accept;
    iifname "{HOST_VETH}" counter drop
    oifname "{HOST_VETH}" counter drop
  }}
  chain postrouting {{
    type filter hook postrouting priority 500; policy accept;
    meta nfproto ipv4 ip daddr {CLUSTER_NET} oifname != {{ "lo", "{HOST_VETH}" }} counter name {HOST_GUARD_COUNTER} drop
  }}
}}
"""


def node_guard() -> str:
    """Final drops (a drop in any base chain ends the packet, whatever kube-proxy
    accepts elsewhere): at postrouting, after every NAT, a packet must go to
    loopback or the cluster's own /16, out of lo, the bridge or the veth.

    A pod's own packets out of the veth (connections it opens: ``ct direction
    original``; answers to the host's NodePort calls are the other direction) may
    only be TCP to ``HOST_IP``, the harness's listeners on the host (a webhook
    receiver), at the port the kernel picked; they are masqueraded to
    ``NODE_IP``, which the host reaches on its veth, so its answers come back the
    same way (it has no route to the pods). The port is the kernel's pick: only the
    ephemeral range (``net.ipv4.ip_local_port_range``) is open."""
    low, high = ephemeral_ports()
    return f"""table inet {NODE_GUARD_TABLE} {{
  counter dropped_out {{ }}
  counter dropped_v6 {{ }}
  chain postrouting {{
    type filter hook postrouting priority 500; policy accept;
    meta nfproto ipv4 ip daddr != {{ 127.0.0.0/8, {CLUSTER_NET} }} counter name dropped_out drop
    meta nfproto ipv4 oifname != {{ "lo", "{BRIDGE}", "{NODE_VETH}" }} counter name dropped_out drop
    meta nfproto ipv6 oifname != "lo" counter name dropped_v6 drop
  }}
  chain forward {{
    type filter hook forward priority -200; policy accept;
    meta nfproto ipv4 ip daddr != {CLUSTER_NET} counter name dropped_out drop
    meta nfproto ipv6 counter name dropped_v6 drop
    # a pod's own connections to the host: TCP to its end of the veth only (the harness's receivers)
    iifname "{BRIDGE}" oifname "{NODE_VETH}" ct direction original ip daddr != {HOST_IP} counter name dropped_out drop
    iifname "{BRIDGE}" oifname "{NODE_VETH}" ct direction original meta l4proto != tcp counter name dropped_out drop
    # ... and to the kernel's ephemeral ports only, where a listener of port 0 (the receiver) is: not
    # the host's services on their fixed ports (sshd, anything listening on every address)
    iifname "{BRIDGE}" oifname "{NODE_VETH}" ct direction original tcp dport != {low}-{high} \\
      counter name dropped_out drop
  }}
  # ... from NODE_IP, which the host answers on the veth (a pod's address it would answer by its default
  # route); no input interface at postrouting: the pods' source range says where it came from
  chain pods_to_host {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{NODE_VETH}" ip saddr {POD_CIDR} ip daddr {HOST_IP} meta l4proto tcp masquerade
  }}
}}
"""


def ephemeral_ports() -> tuple[int, int]:
    """The host's ephemeral port range: where a listener that asks for port 0 gets its port."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def guard_drops(ns: NodeNamespaces) -> dict[str, int]:
    """Packets each of the node guard's counters dropped so far."""
    out = {}
    for name in GUARD_COUNTERS:
        text = ns.run(["nft", "list", "counter", "inet", NODE_GUARD_TABLE, name], "reading the guard's counters")
        m = re.search(r"packets (\d+)", text)
        out[name] = int(m.group(1)) if m else 0
    return out


def host_guard_drops() -> int:
    """Packets the host's guard dropped so far for leaving towards the cluster off the veth."""
    text = run(["nft", "list", "counter", "inet", HOST_GUARD_TABLE, HOST_GUARD_COUNTER],
               "reading the host guard's counter")
    m = re.search(r"packets (\d+)", text)
    return int(m.group(1)) if m else 0


def teardown_host_network() -> list[str]:
    """The host's end (the veth goes with the node's namespace; removed here if the
    namespace was lost) and the host's guard. Idempotent; returns what it removed."""
    done = []
    if subprocess.run(["ip", "link", "show", HOST_VETH], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "del", HOST_VETH], capture_output=True)
        done.append(f"link {HOST_VETH}")
    if subprocess.run(["nft", "list", "table", "inet", HOST_GUARD_TABLE], capture_output=True).returncode == 0:
        run(["nft", "delete", "table", "inet", HOST_GUARD_TABLE], "removing the host's guard")
        done.append(f"nft table {HOST_GUARD_TABLE}")
    return done


def remove_kube_cgroups(timeout: float = 20) -> list[str]:
    """rmdir the pods' cgroups, deepest first, once their processes are gone
    (an rmdir of a cgroup still holding a process fails: retried until ``timeout``)."""
    deadline = time.monotonic() + timeout
    removed: list[str] = []
    while True:
        left = []
        for d in kube_cgroups():
            try:
                procs = (Path(d) / "cgroup.procs").read_text().split()
            except OSError:
                procs = []
            for pid in procs:
                _kill(int(pid))
            try:
                os.rmdir(d)
                removed.append(d)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(d)
        if not left:
            return removed
        if time.monotonic() > deadline:
            raise StackproofError(f"could not remove {len(left)} pod cgroup(s), e.g. {left[0]}")
        time.sleep(0.2)
