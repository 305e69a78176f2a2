"""Free loopback ports, and a clear error when a wanted one is taken."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from .errors import StackproofError

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as Go's and
    nginx's listeners set it: connections in TIME_WAIT from a component that
    just stopped do not count, a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError:
            return False
    return True


def free_ports(n: int, host: str = LOOPBACK) -> list[int]:
    """``n`` distinct ports that were free a moment ago (the OS picks them)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the source ports of outgoing connections (and for port 0)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def stable_ports(n: int, host: str = LOOPBACK, lowest: int = 10000) -> list[int]:
    """``n`` distinct free ports below the ephemeral range, for servers that are stopped and
    started again on the same port (a crash test kills a store and restarts it). A port the
    kernel picked (:func:`free_ports`) is in the ephemeral range, where any outgoing connection
    of any process may take it as its source port while the server is down: a Cortex killed
    with -9 then failed to restart with 'address already in use' (the durability suite, December
    2026). Below that range only a listener can hold a port, and one that does is skipped."""
    low = ephemeral_range()[0]
    if low - lowest < 4 * n:
        return free_ports(n, host)  # a machine whose ephemeral range starts low: no room below it
    ports: list[int] = []
    for port in random.sample(range(lowest, low), min(low - lowest, 64 * n)):
        if port_is_free(port, host):
            ports.append(port)
            if len(ports) == n:
                return ports
    raise StackproofError(f"no {n} free ports on {host} between {lowest} and {low}")


def require_free(port: int, what: str, host: str = LOOPBACK) -> None:
    if not port_is_free(port, host):
        raise StackproofError(f"port {host}:{port} for {what} is already in use; pick another or stop what holds it")
