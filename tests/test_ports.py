"""The local platform's ports: below the kernel's ephemeral range, so that a store
killed and restarted on its port never finds it taken by some connection's source
port (the durability suite's restart of Cortex once failed with 'address already in
use' on a port the kernel had picked)."""

from __future__ import annotations

import socket

import pytest

from harness.errors import StackproofError
from harness.ports import ephemeral_range, port_is_free, stable_ports


def test_stable_ports_are_distinct_free_and_below_the_ephemeral_range():
    low, high = ephemeral_range()
    assert 1024 <= low < high
    ports = stable_ports(12)
    assert len(set(ports)) == 12
    assert all(10000 <= p < low for p in ports), (ports, low)
    assert all(port_is_free(p) for p in ports)


def test_a_port_held_by_a_listener_is_never_handed_out():
    low = ephemeral_range()[0]
    held = []
    try:  # hold every port of a small window but one; only that one may come back
        for port in range(low - 40, low):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
                s.listen(1)
            except OSError:
                s.close()
                continue
            held.append(s)
        last = held.pop()
        free = last.getsockname()[1]
        last.close()
        assert stable_ports(1, lowest=low - 40) == [free]
    finally:
        for s in held:
            s.close()


def test_no_room_is_a_one_line_error():
    low = ephemeral_range()[0]
    held = []
    try:
        for port in range(low - 8, low):
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen(1)
            held.append(s)
        with pytest.raises(StackproofError, match=r"no 1 free ports on 127\.0\.0\.1 between"):
            stable_ports(1, lowest=low - 8)
    finally:
        for s in held:
            s.close()
