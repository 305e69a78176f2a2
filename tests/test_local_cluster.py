"""The local single-node Kubernetes cluster, for real: it starts from the
binaries the harness builds, runs a pod from an image the harness made, serves
cluster DNS and nothing outside it, keeps every packet on loopback and its own
bridge, and, stopped, leaves the host exactly as it found it."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import threading

import pytest

from harness.cluster.cluster import NODE_NAME, LocalCluster
from harness.errors import StackproofError
from tests.clusterkit import CLUSTER_MARKS, run_pod, short_dir
from harness.cluster.node import CLUSTER_NET, HOST_IP, NODE_IP, ephemeral_ports, guard_drops, host_guard_drops

pytestmark = CLUSTER_MARKS


@pytest.fixture(scope="module")
def cluster(cluster_images, one_cluster_at_a_time):
    c = LocalCluster(short_dir("cluster-"))
    try:
        c.start(sandbox_image=cluster_images["pause"].ref, images=[b.archive for b in cluster_images.values()])
        c.tools_ref = cluster_images["tools"].ref
        yield c
    finally:
        c.stop()


def test_node_is_ready_and_runs_a_pod_from_a_harness_made_image(cluster):
    assert cluster.node_problem() is None
    node = cluster.api("GET", f"/api/v1/nodes/{NODE_NAME}")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")
    phase, log = run_pod(cluster, "hello", "echo hello from $(hostname)")
    assert (phase, log.strip()) == ("Succeeded", "hello from hello")


def test_cluster_dns_answers_for_the_cluster_and_for_nothing_else(cluster):
    phase, log = run_pod(cluster, "dns", "nslookup kubernetes.default.svc.cluster.local; echo rc=$?; "
                                         "nslookup example.com; echo rc=$?")
    assert phase == "Succeeded", log
    assert "10.213.16.1" in log, log  # the API server's ClusterIP
    rcs = [line for line in log.splitlines() if line.startswith("rc=")]
    assert rcs == ["rc=0", "rc=1"], log  # an outside name is never resolved: CoreDNS has no forward


def test_the_guard_drops_anything_leaving_for_an_outside_address(cluster):
    """The node has no route out; give it one (as a misconfiguration would) and the
    guard still drops every packet a pod or a node program sends to an outside
    address, and counts it."""
    cluster.ns.run(["ip", "route", "add", "default", "via", HOST_IP], "a route out, for the test")
    try:
        drops = guard_drops(cluster.ns)
        phase, log = run_pod(cluster, "escape", "for a in 192.0.2.1 10.255.255.53 1.1.1.1; do "
                                                "timeout 3 nc -w 2 $a 53 </dev/null; echo $a rc=$?; done")
        from_node = subprocess.run(cluster.ns.wrap(["timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/192.0.2.1/80"]),
                                   capture_output=True, text=True)
        after = guard_drops(cluster.ns)
    finally:
        cluster.ns.run(["ip", "route", "del", "default"], "removing the test's route")
    assert phase == "Succeeded", log
    assert [line.split()[-1] for line in log.splitlines() if "rc=" in line] == ["rc=1"] * 3, log
    assert from_node.returncode != 0
    # every SYN of the pod's three tries and the node's one counted, at least once each
    assert after["dropped_out"] >= drops["dropped_out"] + 4, (drops, after, log)


class Listener:
    """A TCP listener on the host at ``host`` (a port the kernel picks, as the webhook
    receiver's): answers each connection with one line, records who connected."""

    def __init__(self, host: str, port: int = 0):
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            self.peers.append(peer[0])
            with conn:
                conn.sendall(b"hello from the host\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _free_port_below(limit: int) -> int:
    """A port below ``limit`` free on the host's veth end (a fixed-port service there)."""
    for port in range(limit - 1, 1024, -97):
        try:
            socket.create_server((HOST_IP, port)).close()
            return port
        except OSError:
            continue
    raise AssertionError(f"no free port below {limit} on {HOST_IP}")


def other_host_addresses() -> list[str]:
    """The host's own IPv4 addresses that are neither loopback nor the cluster's."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    addrs = [ipaddress.ip_interface(m).ip for m in re.findall(r"inet (\S+)", out)]
    return [str(a) for a in addrs if not a.is_loopback and a not in CLUSTER_NET]


def test_a_pod_reaches_a_listener_on_the_hosts_veth_end_and_no_other_host_address(cluster):
    """The one way out of a pod (the alerting suite's webhook receiver): TCP to the
    host's end of the veth, at a port chosen at run time, masqueraded to the node's
    address so that the host answers on the veth. With a route out in the node (a
    misconfiguration), the same port on another address of the host and an outside
    address stay dropped, and so does anything but TCP to the host's end; and nothing
    the host sends to the cluster's range leaves by another interface."""
    others = other_host_addresses()
    assert others, "the host has no address but loopback and the cluster's: nothing to prove unreachable"
    at_veth = Listener(HOST_IP)
    elsewhere = [Listener(a, at_veth.port) for a in others]
    # a service of the host at a fixed port below the ephemeral range: closed to pods
    fixed = Listener(HOST_IP, _free_port_below(ephemeral_ports()[0]))
    cluster.ns.run(["ip", "route", "add", "default", "via", HOST_IP], "a route out, for the test")
    try:
        drops, host_drops = guard_drops(cluster.ns), host_guard_drops()
        tries = [HOST_IP, *others, "198.51.100.7"]
        phase, log = run_pod(cluster, "to-host", "; ".join(
            f"out=$(timeout 4 nc -w 3 {a} {at_veth.port} </dev/null); echo $out {a} rc=$?" for a in tries)
            + f"; out=$(timeout 4 nc -w 3 {HOST_IP} {fixed.port} </dev/null); echo $out fixed rc=$?"
            + f"; ping -c 1 -W 2 {HOST_IP} >/dev/null; echo ping rc=$?")
        after, host_after = guard_drops(cluster.ns), host_guard_drops()
    finally:
        cluster.ns.run(["ip", "route", "del", "default"], "removing the test's route")
        for listener in (at_veth, *elsewhere, fixed):
            listener.close()
    assert phase == "Succeeded", log
    lines = [line for line in log.splitlines() if "rc=" in line]
    assert lines == [f"hello from the host {HOST_IP} rc=0", *[f"{a} rc=1" for a in tries[1:]], "fixed rc=1",
                     "ping rc=1"], log
    assert at_veth.peers == [NODE_IP], at_veth.peers  # masqueraded: the host answered on the veth
    assert [x.peers for x in elsewhere] == [[] for _ in elsewhere] and fixed.peers == []
    # each refused SYN and the ping counted, at least once each; the host sent nothing off the veth
    assert after["dropped_out"] >= drops["dropped_out"] + len(tries), (drops, after, log)
    assert host_after == host_drops


def test_a_second_cluster_is_refused_in_one_line_and_the_first_left_alone(cluster, cluster_images):
    other = LocalCluster(short_dir("other-"))
    with pytest.raises(StackproofError, match=r"a local cluster already runs on this machine .*stackproof down"):
        other.start(sandbox_image=cluster_images["pause"].ref)
    assert not other.running()
    other.root.rmdir()  # refused before it wrote anything: its directory is as short_dir made it, empty
    assert cluster.node_problem() is None
    assert run_pod(cluster, "still", "echo still here")[1].strip() == "still here"
