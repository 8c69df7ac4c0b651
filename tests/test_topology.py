"""Namespace and veth helpers clean up after themselves, even when the body fails (root)."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import needs_root
from xpfdp.topology import Namespace, VethPair, list_namespaces, unique_name

pytestmark = [needs_root, pytest.mark.root]


def test_unique_names_fit_ifnamsiz():
    names = {unique_name("xt") for _ in range(100)}
    assert len(names) == 100 and all(len(n) <= 15 for n in names)
    with pytest.raises(ValueError):
        unique_name("much-too-long-prefix")


def test_namespace_removed_when_body_raises():
    with pytest.raises(RuntimeError), Namespace() as ns:
        name = ns.name
        assert name in list_namespaces()
        raise RuntimeError("boom")
    assert name not in list_namespaces()


def test_veth_queues_addresses_and_isolation():
    with Namespace() as a, Namespace() as b, VethPair(a, b, queues=4, mtu=2000) as v:
        details = a.run("ip", "-d", "link", "show", v.a).stdout
        assert "numrxqueues 4" in details and "numtxqueues 4" in details
        assert "mtu 2000" in details
        b.add_address(v.b, "10.88.0.2", 24)
        a.add_address(v.a, "10.88.0.1", 24)
        b.add_neighbour(v.b, "10.88.0.1", v.mac_a)
        assert "PERMANENT" in b.run("ip", "neigh", "show", "10.88.0.1").stdout
        b.add_route("10.99.0.0/16", gateway="10.88.0.1")
        assert "10.99.0.0/16 via 10.88.0.1" in b.run("ip", "route").stdout
        with a.inside():
            assert socket.if_nametoindex(v.a) > 0
        with pytest.raises(OSError):
            socket.if_nametoindex(v.a)  # not visible from the test's own namespace
        b.disable_offloads(v.b)
        offloads = b.run("ethtool", "-k", v.b).stdout
        assert "tx-checksumming: off" in offloads
        assert "generic-segmentation-offload: off" in offloads
    assert a.name not in list_namespaces() and b.name not in list_namespaces()


def test_veth_removed_when_body_raises():
    with Namespace() as a, Namespace() as b:
        with pytest.raises(RuntimeError), VethPair(a, b) as v:
            raise RuntimeError("boom")
        assert v.a not in a.run("ip", "link").stdout
