"""A network guard for the harness's own tests and the processes they start
(on ``PYTHONPATH``, Python imports this file at start-up): a name that is not
this machine's is not resolved at all, so a test can never reach, or even
look up, an outside host. The loopback names and addresses, and the IP
literals of the test's own network namespaces, resolve as usual.

Cloud emulators hand out made-up endpoints (moto's EKS clusters live at
``*.eks.amazonaws.com``): a client that tries one gets a resolution error from
this guard, the way a machine without DNS would answer.

Go processes do not use Python's resolver, so the guard holds them by their
environment, which every process a test starts inherits: ``GOPROXY=off`` (no
module is fetched, by proxy or from its repository; the module cache still
serves what the set-up step downloaded), ``GOSUMDB=off`` (no checksum database
is asked) and ``GOTOOLCHAIN=local`` (no newer toolchain is fetched). A build
that needs the network fails at once, naming ``GOPROXY=off``: builds belong in
the set-up step (``make setup``, ``stackproof build``), never in a test."""

from __future__ import annotations

import ipaddress
import os
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


# the go command's own network access (see the docstring); set, not defaulted: a test that
# means to build from a module of its own points GOPROXY at a file:// tree of its own
GO_GUARD = {"GOPROXY": "off", "GOSUMDB": "off", "GOTOOLCHAIN": "local"}
os.environ.update(GO_GUARD)
