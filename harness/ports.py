"""Free loopback ports, and a clear error when a wanted one is taken."""

from __future__ import annotations

import socket

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


def require_free(port: int, what: str, host: str = LOOPBACK) -> None:
    if not port_is_free(port, host):
        raise StackproofError(f"port {host}:{port} for {what} is already in use; pick another or stop what holds it")
