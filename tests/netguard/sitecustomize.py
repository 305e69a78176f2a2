"""A network guard for the harness's own tests and the processes they start
(on ``PYTHONPATH``, Python imports this file at start-up): a name that is not
this machine's is not resolved at all, so a test can never reach, or even
look up, an outside host. The loopback names and addresses, and the IP
literals of the test's own network namespaces, resolve as usual.

Cloud emulators hand out made-up endpoints (moto's EKS clusters live at
``*.eks.amazonaws.com``): a client that tries one gets a resolution error from
this guard, the way a machine without DNS would answer."""

from __future__ import annotations

import ipaddress
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", socket.gethostname()}
_getaddrinfo = socket.getaddrinfo


def _is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = host.strip("[]").lower().rstrip(".")
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True  # an address literal: no lookup happens
    except ValueError:
        return False


def guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        raise socket.gaierror(socket.EAI_NONAME, f"stackproof network guard: {host} is not on this machine")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = guarded_getaddrinfo
