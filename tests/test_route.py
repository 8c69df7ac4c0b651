"""RouteTable: longest-prefix match against a linear-scan reference, under adds and removes."""

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpfdp._fast.meta import PKT_META
from xpfdp.route import RouteTable


def reference_lookup(routes: dict, address) -> int:
    """Linear scan: the value of the longest prefix containing address, or -1."""
    best = None
    for net, value in routes.items():
        covers = address.version == net.version and address in net
        if covers and (best is None or net.prefixlen > best[0].prefixlen):
            best = (net, value)
    return -1 if best is None else best[1]


def meta_for(addresses) -> np.ndarray:
    meta = np.zeros(len(addresses), dtype=PKT_META)
    for row, address in zip(meta, addresses, strict=True):
        if address is None:
            continue
        row["ip_version"] = address.version
        row["dst"][: len(address.packed)] = np.frombuffer(address.packed, dtype=np.uint8)
    return meta


def test_longest_prefix_wins_for_both_families():
    table = RouteTable()
    for prefix, value in [
        ("0.0.0.0/0", 1),
        ("10.0.0.0/8", 2),
        ("10.1.0.0/16", 3),
        ("10.1.2.3/32", 4),
        ("::/0", 5),
        ("2001:db8::/32", 6),
        ("2001:db8:0:1::/64", 7),
        ("2001:db8:0:1::1/128", 8),
    ]:
        table.add(prefix, value)
    assert [table.lookup(a) for a in ("10.1.2.3", "10.1.2.4", "10.2.0.1", "192.0.2.1")] == [
        4,
        3,
        2,
        1,
    ]
    assert [
        table.lookup(a) for a in ("2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:5::1", "fe80::1")
    ] == [8, 7, 6, 5]
    assert len(table) == 8


def test_families_do_not_leak_into_each_other():
    table = RouteTable()
    table.add("::/0", 9)
    assert table.lookup("192.0.2.1") == -1
    table.add("0.0.0.0/0", 3)
    assert table.lookup("::ffff:192.0.2.1") == 9


def test_replace_remove_get_and_generation():
    table = RouteTable()
    table.add("192.0.2.0/24", 1)
    gen = table.generation
    table.add("192.0.2.0/24", 2)
    assert table.get("192.0.2.0/24") == 2 and len(table) == 1 and table.generation > gen
    assert table.get("192.0.2.0/25") is None
    assert table.remove("192.0.2.0/24") is True
    assert table.remove("192.0.2.0/24") is False
    assert table.lookup("192.0.2.7") == -1 and len(table) == 0


@pytest.mark.parametrize(
    ("prefix", "value", "message"),
    [
        ("10.0.0.1/8", 1, "host bits"),
        ("banana", 1, "invalid route prefix"),
        ("10.0.0.0/8", -1, "route value must be in 0"),
    ],
)
def test_bad_routes_are_refused_with_a_clear_error(prefix, value, message):
    with pytest.raises(ValueError, match=message):
        RouteTable().add(prefix, value)


def test_lookup_batch_validates_arguments():
    table = RouteTable()
    with pytest.raises(TypeError, match="PKT_META"):
        table.lookup_batch(np.zeros(4, dtype=np.uint8), np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="slots"):
        table.lookup_batch(np.zeros(4, dtype=PKT_META), np.zeros(2, dtype=np.int32))


v4_prefixes = st.builds(
    lambda addr, plen: ipaddress.ip_network((addr, plen), strict=False),
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 32),
)
v6_prefixes = st.builds(
    lambda addr, plen: ipaddress.ip_network((addr, plen), strict=False),
    # Few distinct high bits so that random prefixes overlap often.
    st.integers(0, 7).map(lambda hi: ipaddress.IPv6Address(0x20010DB8 << 96 | hi << 80)),
    st.integers(0, 128),
)
addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    st.integers(0, 2**80 - 1).map(lambda lo: ipaddress.IPv6Address(0x20010DB8 << 96 | lo)),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.one_of(v4_prefixes, v6_prefixes), st.integers(0, 1000)),
        max_size=120,
    ),
    probes=st.lists(addresses, min_size=1, max_size=40),
)
def test_matches_reference_under_random_adds_and_removes(ops, probes):
    table, model = RouteTable(), {}
    for is_add, net, value in ops:
        if is_add:
            table.add(net, value)
            model[net] = value
        else:
            assert table.remove(net) == (model.pop(net, None) is not None)
    assert len(table) == len(model)
    assert sorted(table.routes(), key=str) == sorted(model.items(), key=str)
    expected = [reference_lookup(model, a) for a in probes]
    assert [table.lookup(a) for a in probes] == expected
    out = np.full(len(probes) + 1, 77, dtype=np.int32)
    meta = meta_for([*probes, None])
    matched = table.lookup_batch(meta, out)
    assert out.tolist() == [*expected, -1]
    assert matched == sum(v != -1 for v in expected)


def test_large_table_survives_growth_and_mass_removal():
    table = RouteTable()
    nets = [ipaddress.IPv4Network((i << 8, 24)) for i in range(1, 20001)]
    for i, net in enumerate(nets):
        table.add(net, i)
    for net in nets[::2]:
        assert table.remove(net)
    assert len(table) == 10000
    for i in (1, 2, 9999, 10000, 19999):
        expected = -1 if i % 2 == 0 else i
        assert table.lookup(nets[i].network_address + 5) == expected
