"""SessionTable: key-transform vectors, insert gates, regression cases, capacity, bad input
(docs/sessions.md)."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from xpfdp._fast.meta import PKT_META
from xpfdp.session import (
    DELTA_DTYPE,
    KEY_DTYPE,
    META_DTYPE,
    SESSION_DTYPE,
    DeltaKind,
    Disposition,
    NatFlag,
    Origin,
    SessionFlag,
    SessionTable,
    forward_wire,
    key_fields,
    keys_from_meta,
    make_decision,
    make_key,
    make_meta,
    reverse_canonical,
    reverse_decisions,
    reverse_wire,
    translated,
)

S = 1_000_000_000
ip = ipaddress.ip_address


def one(fn, key, dec=None):
    """Apply a vectorised transform to a single key (and decision)."""
    if dec is None:
        return fn(key.reshape(1))[0]
    return fn(key.reshape(1), dec.reshape(1))[0]


def fields(key):
    proto, src, sport, dst, dport = key_fields(key)
    return f"{proto} {src}:{sport} > {dst}:{dport}"


def table(**kw):
    kw.setdefault("hash_seed", 1234)
    return SessionTable(**kw)


# ------------------------------------------------------------------ transform vectors (Keys)

PLAIN = (make_key("10.0.0.1", "8.8.8.8", 12345, 443), make_decision())
SNAT = (
    make_key("10.0.61.102", "172.16.80.200", 42528, 5201),
    make_decision(snat="172.16.80.8", snat_port=61000),
)
DNAT = (
    make_key("198.51.100.1", "203.0.113.10", 54321, 80),
    make_decision(dnat="192.168.1.10", dnat_port=8080),
)
DNAT_SNAT = (
    make_key("198.51.100.1", "203.0.113.10", 54321, 80),
    make_decision(dnat="192.168.1.10", dnat_port=8080, snat="10.0.0.1"),
)
ICMP_SNAT = (
    make_key("10.0.61.102", "10.255.192.41", 0x1234, 0, proto=1),
    make_decision(snat="10.255.192.42"),
)
NAT64 = (
    make_key("2001:db8::1", "64:ff9b::c000:201", 40000, 80),
    make_decision(snat="203.0.113.5", dnat="192.0.2.1", snat_port=1500, nat64=True),
)

VECTORS = {
    # name: (case, forward_wire, reverse_wire, reverse_canonical, translated(R))
    "plain": (
        PLAIN,
        "6 10.0.0.1:12345 > 8.8.8.8:443",
        "6 8.8.8.8:443 > 10.0.0.1:12345",
        "6 8.8.8.8:443 > 10.0.0.1:12345",
        "6 8.8.8.8:443 > 10.0.0.1:12345",
    ),
    "snat": (
        SNAT,
        "6 172.16.80.8:61000 > 172.16.80.200:5201",
        "6 172.16.80.200:5201 > 172.16.80.8:61000",
        "6 172.16.80.200:5201 > 10.0.61.102:42528",
        "6 172.16.80.200:5201 > 10.0.61.102:42528",
    ),
    "dnat": (
        DNAT,
        "6 198.51.100.1:54321 > 192.168.1.10:8080",
        "6 192.168.1.10:8080 > 198.51.100.1:54321",
        "6 203.0.113.10:80 > 198.51.100.1:54321",
        "6 203.0.113.10:80 > 198.51.100.1:54321",
    ),
    "dnat_snat": (
        DNAT_SNAT,
        "6 10.0.0.1:54321 > 192.168.1.10:8080",
        "6 192.168.1.10:8080 > 10.0.0.1:54321",
        "6 203.0.113.10:80 > 198.51.100.1:54321",
        "6 203.0.113.10:80 > 198.51.100.1:54321",
    ),
    "icmp_snat": (
        ICMP_SNAT,
        "1 10.255.192.42:4660 > 10.255.192.41:0",
        "1 10.255.192.41:4660 > 10.255.192.42:0",
        "1 10.255.192.41:4660 > 10.0.61.102:0",
        "1 10.255.192.41:4660 > 10.0.61.102:0",
    ),
}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_key_transform_vectors(name):
    (key, dec), fw, rw, rc, tr = VECTORS[name]
    assert fields(one(forward_wire, key, dec)) == fw
    r = one(reverse_wire, key, dec)
    assert fields(r) == rw
    assert fields(one(reverse_canonical, key)) == rc
    rdec = one(reverse_decisions, key, dec)
    assert fields(one(translated, r, rdec)) == tr
    # translated(R) equals reverse_canonical(F) for every vector: the un-NAT'd reply
    assert one(translated, r, rdec).tobytes() == one(reverse_canonical, key).tobytes()


def test_reverse_decision_vectors():
    k, d = SNAT
    r = one(reverse_decisions, k, d)
    assert r["nat_flags"] == NatFlag.RD | NatFlag.RDP
    assert ip(bytes(r["rd"][:4])) == ip("10.0.61.102") and r["rdp"] == 42528
    k, d = DNAT_SNAT
    r = one(reverse_decisions, k, d)
    assert r["nat_flags"] == NatFlag.RS | NatFlag.RD | NatFlag.RSP
    assert ip(bytes(r["rs"][:4])) == ip("203.0.113.10") and r["rsp"] == 80
    assert ip(bytes(r["rd"][:4])) == ip("198.51.100.1")
    k, d = ICMP_SNAT
    r = one(reverse_decisions, k, d)
    assert r["nat_flags"] == NatFlag.RD and ip(bytes(r["rd"][:4])) == ip("10.0.61.102")


def test_nat64_vector_changes_family_and_keeps_alias_family():
    key, dec = NAT64
    fw = one(forward_wire, key, dec)
    assert fw["af"] == 2 and fields(fw) == "6 203.0.113.5:1500 > 192.0.2.1:80"
    r = one(reverse_wire, key, dec)
    assert r["af"] == 2 and fields(r) == "6 192.0.2.1:80 > 203.0.113.5:1500"
    rc = one(reverse_canonical, key)
    assert rc["af"] == 10 and fields(rc) == "6 64:ff9b::c000:201:80 > 2001:db8::1:40000"
    rdec = one(reverse_decisions, key, dec)
    assert rdec["nat_flags"] == NatFlag.RS | NatFlag.RD | NatFlag.RDP | NatFlag.NAT64
    assert rdec["rdp"] == 40000
    tr = one(translated, r, rdec)  # af 2 carrying IPv6 addresses: can never match
    assert tr["af"] == 2 and key_fields(tr)[1] == ip("64:ff9b::c000:201")


def test_nat64_icmpv6_maps_to_icmp_and_keeps_identifier():
    key = make_key("2001:db8::1", "64:ff9b::c000:201", 0x77, 0, proto=58)
    dec = make_decision(snat="203.0.113.5", dnat="192.0.2.1", snat_port=9, nat64=True)
    fw = one(forward_wire, key, dec)
    assert (fw["af"], fw["proto"], fw["sport"], fw["dport"]) == (2, 1, 0x77, 0)
    rw = one(reverse_wire, key, dec)
    assert (rw["af"], rw["proto"], rw["sport"], rw["dport"]) == (2, 1, 0x77, 0)


def test_icmp_identifier_stays_in_sport_in_every_transform():
    key, dec = (
        make_key("10.0.0.1", "10.0.0.2", 0xBEEF, 0, proto=1),
        make_decision(snat="10.9.9.9", snat_port=7, dnat_port=8),
    )
    for out in (
        one(forward_wire, key, dec),
        one(reverse_wire, key, dec),
        one(reverse_canonical, key),
        one(translated, key, dec),
    ):
        assert (out["sport"], out["dport"]) == (0xBEEF, 0)


# ------------------------------------------------------------------ keys from parser output


def test_keys_from_meta_ipv4_ipv6_icmp_and_invalid():
    meta = np.zeros(6, dtype=PKT_META)
    meta[0] = 0
    meta["ip_version"][0], meta["protocol"][0] = 4, 6
    meta["sport"][0], meta["dport"][0], meta["flags"][0] = 1000, 80, 0x08
    meta["src"][0][:4], meta["dst"][0][:4] = [10, 0, 0, 1], [10, 0, 0, 2]
    meta["src"][0][4:] = 0xEE  # garbage past an IPv4 address must not reach the key
    meta["ip_version"][1], meta["protocol"][1], meta["flags"][1] = 6, 17, 0x08
    meta["src"][1] = np.frombuffer(ip("2001:db8::1").packed, np.uint8)
    meta["dst"][1] = np.frombuffer(ip("2001:db8::2").packed, np.uint8)
    meta["sport"][1], meta["dport"][1] = 53, 5353
    meta["ip_version"][2], meta["protocol"][2], meta["flags"][2] = 4, 1, 0x08
    meta["sport"][2] = meta["dport"][2] = 0x4242  # echo id in both, as the parser gives it
    meta["status"][3] = 9  # truncated L4: no key
    meta["ip_version"][3] = 4
    meta["ip_version"][4], meta["protocol"][4] = 4, 6  # L4 header not read: no key
    meta["status"][5], meta["ip_version"][5], meta["protocol"][5] = 11, 4, 17  # later fragment
    keys = np.zeros(6, dtype=KEY_DTYPE)
    assert keys_from_meta(meta, keys) == 3
    assert fields(keys[0]) == "6 10.0.0.1:1000 > 10.0.0.2:80"
    assert bytes(keys[0]["src"][4:]) == bytes(12)
    assert fields(keys[1]) == "17 2001:db8::1:53 > 2001:db8::2:5353" and keys[1]["af"] == 10
    assert (keys[2]["proto"], keys[2]["sport"], keys[2]["dport"]) == (1, 0x4242, 0)
    assert keys[3].tobytes() == bytes(40)
    assert keys[4].tobytes() == keys[5].tobytes() == bytes(40)


def test_keys_from_meta_rejects_wrong_arrays():
    with pytest.raises(TypeError):
        keys_from_meta(np.zeros(2, dtype=np.uint8), np.zeros(2, dtype=KEY_DTYPE))
    with pytest.raises(ValueError):
        keys_from_meta(np.zeros(3, dtype=PKT_META), np.zeros(2, dtype=KEY_DTYPE))


# ------------------------------------------------------------------ insert gates (Indices)


def cardinalities(t):
    st = t.stats()
    return (
        len(t),
        st["nat_reverse_entries"],
        st["forward_wire_entries"],
        st["alias_entries"],
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (PLAIN, (2, 1, 0, 0)),
        (SNAT, (2, 2, 1, 1)),
        (DNAT, (2, 2, 1, 1)),
        (ICMP_SNAT, (2, 2, 1, 1)),
        (NAT64, (2, 2, 1, 0)),  # no NAT64 alias
    ],
    ids=["plain", "snat", "dnat", "icmp_snat", "nat64"],
)
def test_insert_gates_exact_cardinalities(case, expected):
    t = table()
    key, dec = case
    hf, hr = t.install_pair(key, dec, make_meta(owner_rg=1), now_ns=S)
    assert hf >= 0 and hr >= 0
    assert cardinalities(t) == expected
    t.check_invariants()


def test_pair_entries_carry_reverse_nat_and_swapped_zones():
    t = table()
    hf, hr = t.install_pair(
        *SNAT,
        make_meta(owner_rg=2, ingress_zone=3, egress_zone=4),
        now_ns=S,
        reverse_egress_port=9,
    )
    f, r = t.records([hf, hr])
    assert f["origin"] == Origin.FORWARD_FLOW and r["origin"] == Origin.REVERSE_FLOW
    assert f["meta"]["flags"] == 0 and r["meta"]["flags"] == 2
    assert (r["meta"]["ingress_zone"], r["meta"]["egress_zone"]) == (4, 3)
    assert r["decision"]["egress_port"] == 9
    assert r["key"].tobytes() == one(reverse_wire, *SNAT).tobytes()
    expected = one(reverse_decisions, *SNAT).copy()
    expected["egress_port"] = 9
    assert r["decision"].tobytes() == expected.tobytes()


def test_pair_skips_local_delivery_and_non_fabric_redirect_reverse():
    t = table()
    key = make_key("10.0.0.1", "10.0.0.2", 1, 2)
    assert t.install_pair(key, make_decision(disposition=Disposition.LOCAL_DELIVERY)) == (-1, -1)
    hf, hr = t.install_pair(key, make_decision(disposition=Disposition.FABRIC_REDIRECT))
    assert hf >= 0 and hr == -1 and len(t) == 1
    hf, hr = t.install_pair(
        key,
        make_decision(disposition=Disposition.FABRIC_REDIRECT),
        make_meta(fabric_ingress=True),
    )
    assert hf >= 0 and hr >= 0 and len(t) == 2


# ------------------------------------------------------------------ regression cases


def test_r01_stale_primary_mapping_after_slot_reuse():
    t = table()
    a = make_key("10.0.0.1", "10.0.0.9", 1, 80)
    b = make_key("10.0.0.2", "10.0.0.9", 2, 80)
    ha = t.install(a, now_ns=S)
    assert t.delete(a)
    hb = t.install(b, now_ns=2 * S)
    assert hb & 0xFFFFFFFF == ha & 0xFFFFFFFF  # LIFO reuse of the same slot
    assert hb != ha  # ... under a new generation
    t._debug_inject("primary", a, hb)  # corrupt: A -> B's slot
    before = t.records([hb])
    assert t.lookup(a, 5 * S) == -1
    assert not t.touch(a, 5 * S)
    assert t.entry(a) is None
    assert t.records([ha])[0]["valid"] == 0  # the old handle never reaches B
    assert t.records([hb]).tobytes() == before.tobytes()
    with pytest.raises(AssertionError, match="I1"):
        t.check_invariants()


def test_r02_stale_alias_after_slot_reuse_misses_and_valid_alias_hits():
    t = table()
    key, dec = SNAT
    _, hr = t.install_pair(key, dec, now_ns=S)
    alias_key = one(reverse_canonical, key)
    via = np.zeros(1, np.uint8)
    out = np.zeros(1, np.int64)
    assert t.lookup_batch(alias_key.reshape(1), 2 * S, out, out_via_alias=via) == 1
    assert out[0] == hr and via[0] == 1
    assert t.records(out)[0]["key"].tobytes() != alias_key.tobytes()
    assert t.stats()["hits_via_alias"] == 1
    # free the reverse slot and reuse it for a forward session, then point a stale alias at it
    t.delete(one(reverse_wire, key, dec))
    hg = t.install(make_key("10.1.1.1", "10.2.2.2", 5, 6), now_ns=3 * S)
    assert hg & 0xFFFFFFFF == hr & 0xFFFFFFFF
    t._debug_inject("alias", alias_key, hg)
    assert t.lookup(alias_key, 4 * S) == -1
    # a reverse session whose NAT differs from what the alias claims also misses
    other = make_key("172.16.80.200", "172.16.80.8", 5201, 61000)
    hx = t.install(other, make_decision(dnat="10.9.9.9"), make_meta(reverse=True), now_ns=5 * S)
    t._debug_inject("alias", alias_key, hx)
    assert t.lookup(alias_key, 6 * S) == -1


def test_r03_stale_nat_reverse_and_forward_wire_fail_validation():
    t = table()
    key, dec = SNAT
    reply = one(reverse_wire, key, dec)
    wire = one(forward_wire, key, dec)
    h = t.install(make_key("10.3.3.3", "10.4.4.4", 7, 8), now_ns=S)  # plain, unrelated
    t._debug_inject("nat_reverse", reply, h)
    t._debug_inject("forward_wire", wire, h)
    assert t.find_forward_nat(reply) == -1
    assert t.find_forward_wire(wire) == -1
    with pytest.raises(AssertionError, match="I3"):
        t.check_invariants()


def test_r04_remove_on_corrupted_mapping_changes_nothing():
    t = table()
    a = make_key("10.0.0.1", "10.0.0.9", 1, 80)
    b = make_key("10.0.0.2", "10.0.0.9", 2, 80)
    t.install(a, now_ns=S)
    t.delete(a)
    hb = t.install(b, now_ns=S)
    t._debug_inject("primary", a, hb)
    n = len(t)
    assert not t.delete(a)
    assert len(t) == n
    assert t.lookup(b, 2 * S) == hb and t.records([hb])[0]["valid"] == 1
    assert t.stats()["deletes"] == 1  # only the real delete of A before the corruption


def test_r05_len_counts_primary_keys_not_slab_slots():
    t = table()
    keys = [make_key("10.0.0.1", "10.0.0.9", p, 80) for p in range(1, 6)]
    hs = [t.install(k, now_ns=S) for k in keys]
    for k in keys[:3]:
        t.delete(k)
    assert len(t) == 2 and t.stats()["slab_capacity"] >= 5
    assert not t.delete(keys[0])  # failed remove
    assert len(t) == 2
    t._debug_inject("primary", keys[0], hs[4])  # corruption adds a primary key, not a record
    assert len(t) == 3


def test_r06_no_leaked_indices_after_nat_pair_churn():
    t = table()
    base = make_key("10.0.0.1", "172.16.0.1", 1, 443)
    sizes = []
    for i in range(300):
        key = base.copy()
        key["sport"] = 1000 + i
        dec = make_decision(snat="192.0.2.1", snat_port=20000 + i, dnat="172.16.0.2")
        assert min(t.install_pair(key, dec, make_meta(owner_rg=1 + i % 3), now_ns=S)) >= 0
        st = t.stats()
        sizes.append((st["nat_reverse_entries"], st["forward_wire_entries"], st["alias_entries"]))
        assert t.delete(key) and t.delete(one(reverse_wire, key, dec))
        summary = t.check_invariants()
        assert summary["sessions"] == 0
    assert set(sizes) == {(2, 1, 1)}
    st = t.stats()
    assert (len(t), st["nat_reverse_entries"], st["forward_wire_entries"]) == (0, 0, 0)
    assert st["alias_entries"] == 0


def test_r07_gate_forward_wire_only_when_rewritten():
    t = table()
    t.install(*PLAIN, now_ns=S)
    assert t.stats()["forward_wire_entries"] == 0
    t.install(*SNAT, now_ns=S)
    assert t.stats()["forward_wire_entries"] == 1


def test_r08_value_guarded_cleanup_keeps_newer_mapping():
    t = table()
    server = "198.51.100.7"
    dec = make_decision(snat="192.0.2.1", snat_port=5000)
    a = make_key("10.0.0.1", server, 1000, 80)
    b = make_key("10.0.0.2", server, 1000, 80)
    ha = t.install(a, dec, now_ns=S)
    hb = t.install(b, dec, now_ns=S)
    reply = one(reverse_wire, a, dec)
    assert reply.tobytes() == one(reverse_wire, b, dec).tobytes()
    assert t.find_forward_nat(reply) == hb  # last writer wins
    assert t.delete(a)
    assert t.find_forward_nat(reply) == hb
    assert t.find_forward_nat(one(reverse_canonical, b)) == hb
    assert ha != hb and t.delete(b)
    assert t.find_forward_nat(reply) == -1


def test_r09_icmp_reverse_canonical_and_nat_match():
    key, dec = ICMP_SNAT
    rc = one(reverse_canonical, key)
    assert (rc["sport"], rc["dport"]) == (0x1234, 0)
    t = table()
    h = t.install(key, dec, now_ns=S)
    assert t.find_forward_nat(one(reverse_wire, key, dec)) == h
    assert t.find_forward_nat(rc) == h


def test_r10_both_reply_keys_find_forward_and_miss_after_delete():
    t = table()
    key, dec = DNAT_SNAT
    h = t.install(key, dec, now_ns=S)
    replies = np.concatenate(
        [reverse_wire(key.reshape(1), dec.reshape(1)), reverse_canonical(key.reshape(1))]
    )
    out = np.zeros(2, np.int64)
    assert t.find_forward_nat_batch(replies, out) == 2 and list(out) == [h, h]
    t.delete(key)
    assert t.find_forward_nat_batch(replies, out) == 0 and list(out) == [-1, -1]


def test_r11_peer_upsert_respects_allow_replace_local():
    key = make_key("10.0.0.1", "10.0.0.2", 1, 2)
    for allow in (False, True):
        t = table()
        t.install(key, make_decision(egress_port=1), make_meta(owner_rg=1), now_ns=S)
        h = t.upsert_synced(
            key,
            make_decision(egress_port=2),
            make_meta(owner_rg=2),
            now_ns=2 * S,
            allow_replace_local=allow,
        )
        rec = t.entry(key)
        if allow:
            assert h >= 0 and rec["decision"]["egress_port"] == 2
            assert rec["origin"] == Origin.SYNC_IMPORT and rec["meta"]["owner_rg"] == 2
        else:
            assert h == -1 and rec["decision"]["egress_port"] == 1
            assert rec["origin"] == Origin.FORWARD_FLOW and t.stats()["synced_rejects"] == 1
    # a peer-synced entry can always be overwritten by another peer upsert
    t = table()
    t.upsert_synced(key, make_decision(egress_port=1), now_ns=S)
    assert t.upsert_synced(key, make_decision(egress_port=3), now_ns=S) >= 0
    assert t.entry(key)["decision"]["egress_port"] == 3


def test_r13_missing_neighbor_seed_never_syncs():
    t = table(udp_timeout_s=60)
    feed = t.subscribe_deltas()
    key = make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=6)
    t.install(key, now_ns=S, origin=Origin.MISSING_NEIGHBOR_SEED)
    assert feed.pending == 0
    assert len(t.export_deltas()) == 0
    out = t.expire(303 * S)
    assert len(out) == 1 and out[0]["origin"] == Origin.MISSING_NEIGHBOR_SEED
    assert feed.pending == 0


def test_r16_first_gc_with_huge_clock_returns_at_once():
    t = table()
    now = 10**18
    assert len(t.expire(now)) == 0
    assert t.wheel_cursor_tick == now // S
    assert t.last_pop_stats()["scanned"] == 0


def test_r17_alias_lookup_pushes_canonical_key_only():
    t = table()
    key, dec = SNAT
    t.install_pair(key, dec, now_ns=S)
    rkey = one(reverse_wire, key, dec)
    alias = one(reverse_canonical, key)
    assert t.wheel_entries_for(rkey) == 1
    assert t.lookup(alias, 3 * S) >= 0
    assert t.wheel_entries_for(rkey) >= 2
    assert t.wheel_entries_for(alias) == 0


def test_r18_timeout_of_256s_rebuckets_into_same_bucket_without_loss():
    t = table(udp_timeout_s=256)
    key = make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=17)
    h = t.install(key, now_ns=S)
    assert t.records([h])[0]["wheel_tick"] == 256  # install tick + 255, not bucket 1 again
    assert len(t.expire(200 * S)) == 0
    assert len(t.expire(257 * S)) == 0  # popped at 256, re-bucketed to 257
    assert len(t.expire(258 * S)) == 1


def test_r19_long_timeout_entries_survive_their_first_pop():
    t = table(udp_timeout_s=7200)
    key = make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=17)
    h = t.install(key, now_ns=S)
    assert t.records([h])[0]["wheel_tick"] == 256
    assert len(t.expire(301 * S)) == 0
    pop = t.last_pop_stats()
    assert pop["re_bucketed"] == 2 and pop["expired"] == 0
    assert t.records([h])[0]["wheel_tick"] == 556
    out = t.expire(7206 * S)
    assert len(out) == 1 and out[0]["key"].tobytes() == key.tobytes()


def test_r20_gated_call_reports_zero_pop_stats():
    t = table()
    t.install(make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=17), now_ns=S)
    t.expire(100 * S)
    assert t.last_pop_stats()["scanned"] > 0
    assert len(t.expire(100 * S + S // 2)) == 0
    assert set(t.last_pop_stats().values()) == {0}


def test_r21_wheel_constants_relate():
    from xpfdp import session

    assert session.GC_INTERVAL_NS == session.WHEEL_TICK_NS == S
    assert session.WHEEL_BUCKETS & (session.WHEEL_BUCKETS - 1) == 0


def test_r22_configurable_timeouts():
    tcp = make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=6)
    udp = make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=17)
    t = table(tcp_timeout_s=60)
    t.install(tcp, now_ns=0)
    t.last_gc_ns = 58 * S
    assert len(t.expire(59 * S)) == 0
    t.last_gc_ns = 60 * S
    assert len(t.expire(61 * S)) == 1
    t = table(udp_timeout_s=120)
    t.install(udp, now_ns=0)
    assert len(t.expire(61 * S)) == 0
    assert len(t.expire(121 * S)) == 1
    assert table(tcp_timeout_s=120, udp_timeout_s=30, icmp_timeout_s=5).timeouts_s == (120, 30, 5)
    assert table().timeouts_s == (300, 60, 60)


def test_r27_new_table_allocates_nothing():
    t = table()
    assert t.memory_bytes() == 0 and t.stats()["slab_capacity"] == 0


# ------------------------------------------------------------------ timing vectors

UDP_KEY = make_key("10.0.0.1", "10.0.0.2", 1000, 53, proto=17)


def test_t1_udp_expires_after_60s():
    t = table()
    t.install(UDP_KEY, now_ns=S)
    assert t.records([t.peek(UDP_KEY)])[0]["wheel_tick"] == 61
    t.last_gc_ns = 65 * S
    out = t.expire(66 * S)
    assert len(out) == 1 and out[0]["key"].tobytes() == UDP_KEY.tobytes()
    assert t.stats()["expired"] == 1 and len(t) == 0


def test_t2_touch_postpones_expiry():
    t = table()
    t.install(UDP_KEY, now_ns=S)
    assert t.touch(UDP_KEY, 31 * S)
    assert t.records([t.peek(UDP_KEY)])[0]["wheel_tick"] == 91
    t.last_gc_ns = 65 * S
    assert len(t.expire(66 * S)) == 0
    assert t.lookup(UDP_KEY, 67 * S) >= 0


def test_t5_t6_strict_boundary_and_wheel_lag():
    for gc_at, expired in ((2 * S, False), (2 * S + 1, False)):
        t = table(udp_timeout_s=1)
        t.install(UDP_KEY, now_ns=S)
        t.last_gc_ns = gc_at - S
        assert (len(t.expire(gc_at)) == 1) is expired
    t = table(udp_timeout_s=1)
    t.install(UDP_KEY, now_ns=S)
    t.last_gc_ns = S + 1
    assert len(t.expire(2 * S + 1)) == 0
    assert len(t.expire(3 * S + 1)) == 1


def test_t7_fin_sets_sticky_closing_timeout():
    t = table()
    feed = t.subscribe_deltas()
    key = make_key("10.0.0.1", "10.0.0.2", 1000, 80)
    t.install(key, now_ns=S, tcp_flags=0x10)
    t.lookup(key, S + 1_000_000, tcp_flags=0x11)
    t.lookup(key, S + 2_000_000, tcp_flags=0x10)
    rec = t.entry(key)
    assert rec["closing"] == 1 and rec["expires_after_ns"] == 30 * S
    t.last_gc_ns = 31 * S
    assert len(t.expire(32 * S)) == 1
    kinds = list(feed.drain(10)["kind"])
    assert kinds == [DeltaKind.OPEN, DeltaKind.CLOSE]


def test_t9_sync_import_expires_without_close_delta():
    t = table()
    feed = t.subscribe_deltas()
    t.upsert_synced(UDP_KEY, now_ns=S)
    out = t.expire(100 * S)
    assert len(out) == 1 and out[0]["origin"] == Origin.SYNC_IMPORT
    assert feed.pending == 0


def _warm(n, ticks):
    t = table()
    keys = np.zeros(n, dtype=KEY_DTYPE)
    keys["af"], keys["proto"], keys["dport"] = 2, 17, 53
    keys["sport"] = np.arange(n) + 1
    handles = t.install_batch(
        keys, np.zeros(n, dtype=make_decision().dtype), np.zeros(n, dtype=META_DTYPE), S
    )
    for tick in range(2, 2 + ticks):
        assert t.touch_batch(handles, tick * S) == n
        t.expire(tick * S)
    return t, handles, 2 + ticks


def test_t10_touched_sessions_pop_as_stale_duplicates():
    n = 1000
    t, handles, tick = _warm(n, 300)
    t.touch_batch(handles, tick * S)
    t.expire(tick * S)
    pop = t.last_pop_stats()
    assert pop["scanned"] <= 1.2 * n
    assert pop["re_bucketed"] == 0 and pop["expired"] == 0
    assert pop["dropped_stale"] >= 0.9 * pop["scanned"] > 0
    assert pop["scanned"] == sum(
        pop[k] for k in ("dropped_gone", "dropped_stale", "expired", "re_bucketed")
    )


def test_t11_scanned_over_a_rotation_is_about_n_per_tick():
    n = 500
    t, handles, tick = _warm(n, 60)
    total = 0
    for k in range(tick, tick + 256):
        t.touch_batch(handles, k * S)
        t.expire(k * S)
        total += t.last_pop_stats()["scanned"]
    assert abs(total - 256 * n) <= 0.1 * 256 * n


def test_duplicate_wheel_pushes_are_bounded():
    t = table()
    t.install(UDP_KEY, now_ns=S)
    for i in range(100):
        t.touch(UDP_KEY, S + i * 1_000_000)
    assert t.wheel_entries_for(UDP_KEY) <= 2


def test_expire_drains_everything_due_in_one_call():
    t = table()
    n = 5000
    keys = np.zeros(n, dtype=KEY_DTYPE)
    keys["af"], keys["proto"] = 2, 17
    keys["sport"] = np.arange(n) % 60000 + 1
    keys["dport"] = np.arange(n) // 60000 + 1
    t.install_batch(keys, np.zeros(n, make_decision().dtype), np.zeros(n, META_DTYPE), S)
    assert len(t.expire(100 * S)) == n and len(t) == 0
    t.check_invariants()


def test_session_installed_at_time_zero_is_scheduled_and_expires():
    t = table()
    t.install(make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=99), now_ns=0)
    t.check_invariants()
    assert len(t.expire(31 * S)) == 1


def test_other_protocols_use_30s():
    t = table()
    h = t.install(make_key("10.0.0.1", "10.0.0.2", 0, 0, proto=47), now_ns=0)
    assert t.records([h])[0]["expires_after_ns"] == 30 * S


# ------------------------------------------------------------------ deltas and HA


def _many_keys(n):
    keys = np.zeros(n, dtype=KEY_DTYPE)
    keys["af"], keys["proto"], keys["dport"] = 2, 6, 80
    keys["sport"] = np.arange(n) + 1
    return keys


def test_deltas_are_off_without_a_feed():
    """Nothing is queued or counted while no consumer is attached (issue 11: delta_drops
    grew forever), and closing the feed stops queueing and drops what was not drained."""
    t = table(max_sessions=10000)
    keys = _many_keys(5000)
    t.install_batch(keys, np.zeros(5000, make_decision().dtype), np.zeros(5000, META_DTYPE), S)
    st = t.stats()
    assert (st["deltas_pending"], st["deltas_pushed"], st["delta_drops"]) == (0, 0, 0)
    assert st["deltas_enabled"] == 0
    feed = t.subscribe_deltas()
    with pytest.raises(RuntimeError, match="already has a DeltaFeed"):
        t.subscribe_deltas()
    t.delete(keys[0])
    t.install(keys[0], now_ns=2 * S)
    assert feed.pending == 1 and t.stats()["deltas_enabled"] == 1
    feed.close()
    assert not feed.attached and t.stats()["deltas_pending"] == 0
    t.delete(keys[0])
    t.install(keys[0], now_ns=3 * S)
    assert t.stats()["deltas_pending"] == 0
    with pytest.raises(RuntimeError, match="closed"):
        feed.drain()
    feed2 = t.subscribe_deltas()  # a closed feed frees the table for another consumer
    del feed2
    assert t.stats()["deltas_enabled"] == 0  # dropping a feed detaches it too


def test_delta_queue_is_bounded_drop_newest():
    t = table(max_sessions=10000)
    feed = t.subscribe_deltas(batch=1000)
    n = 4100
    keys = _many_keys(n)
    t.install_batch(keys, np.zeros(n, make_decision().dtype), np.zeros(n, META_DTYPE), S)
    st = t.stats()
    assert st["deltas_pending"] == 4096 and st["delta_drops"] == 4
    with pytest.raises(ValueError, match="max_deltas"):
        feed.drain(0)
    first = feed.drain(1)
    assert len(first) == 1 and first[0]["key"]["sport"] == 1
    batches = list(feed)  # iterating drains in batches until empty
    assert [len(b) for b in batches] == [1000, 1000, 1000, 1000, 95]
    assert all(b.dtype == DELTA_DTYPE for b in batches) and feed.pending == 0
    rest = np.concatenate(batches)
    assert len(rest) == 4095 and rest[-1]["key"]["sport"] == 4096
    assert t.stats()["delta_drained"] == 4096


def test_reverse_and_synced_entries_emit_no_deltas_and_delete_emits_none():
    t = table()
    feed = t.subscribe_deltas()
    t.install_pair(*SNAT, now_ns=S, reverse_egress_port=3)
    d = feed.drain(10)
    assert [int(k) for k in d["kind"]] == [DeltaKind.OPEN] and d[0]["reverse_egress_port"] == 3
    t.upsert_synced(*DNAT, now_ns=S)
    t.lookup(DNAT[0], 2 * S, tcp_flags=0x01)
    t.delete(SNAT[0])
    assert feed.pending == 0


def test_export_deltas_lists_local_forward_sessions_only():
    t = table()
    meta = make_meta(owner_rg=3)
    t.install_pair(*SNAT, meta, now_ns=S, reverse_egress_port=2)
    t.install(*DNAT, meta, now_ns=S, origin=Origin.SYNC_IMPORT)
    t.install(make_key("10.0.0.5", "10.0.0.6", 1, 2), None, meta, S, Origin.MISSING_NEIGHBOR_SEED)
    out = t.export_deltas()
    assert len(out) == 1 and out[0]["kind"] == DeltaKind.OPEN
    assert out[0]["key"].tobytes() == SNAT[0].tobytes() and out[0]["reverse_egress_port"] == 2
    assert out[0]["decision"].tobytes() == SNAT[1].tobytes() and out[0]["meta"]["owner_rg"] == 3


def test_apply_deltas_recreates_the_pair_on_another_table():
    """Open deltas rebuild forward and reverse entries as peer-synced ones (same handles'
    answers, NAT undone on the reply); Close removes them; local entries are never
    replaced unless allowed."""
    active, standby = table(), table(hash_seed=99)
    feed = active.subscribe_deltas()
    key, dec = SNAT
    active.install_pair(key, dec, make_meta(ingress_zone=0, egress_zone=1), S, 0, 0)
    assert standby.apply_deltas(feed.drain(), 5 * S) == 2 and len(standby) == 2
    reply = one(reverse_wire, key, dec)
    for t in (active, standby):
        rec = t.records([t.lookup(reply, 6 * S)])[0]
        assert rec["meta"]["flags"] & SessionFlag.REVERSE
        assert (
            rec["decision"].tobytes()
            == active.records([active.peek(reply)])[0]["decision"].tobytes()
        )
    assert standby.entry(key)["origin"] == Origin.SYNC_IMPORT
    assert standby.find_forward_nat(reply) == standby.peek(key)
    standby.check_invariants()
    # a local entry on the standby wins over an import unless allowed
    local = table()
    local.install(key, make_decision(egress_port=9), now_ns=S)
    assert local.apply_deltas(active.export_deltas(), S) == 1  # only the reverse entry
    assert local.entry(key)["decision"]["egress_port"] == 9
    assert local.apply_deltas(active.export_deltas(), S, allow_replace_local=True) == 2
    # Close removes both peer-synced entries, nothing local
    out = active.expire(400 * S)
    assert len(out) == 2
    closes = feed.drain()
    assert [int(k) for k in closes["kind"]] == [DeltaKind.CLOSE]
    assert standby.apply_deltas(closes, 401 * S) == 2 and len(standby) == 0
    with pytest.raises(TypeError, match="dtype"):
        standby.apply_deltas(np.zeros(1, KEY_DTYPE), S)


# ------------------------------------------------------------------ lookups and batches


def test_lookup_revives_expired_but_uncollected_session():
    t = table(udp_timeout_s=5)
    t.install(UDP_KEY, now_ns=S)
    assert t.lookup(UDP_KEY, 20 * S) >= 0
    assert len(t.expire(21 * S)) == 0


def test_forward_wire_match_does_not_refresh():
    t = table()
    key, dec = SNAT
    h = t.install(key, dec, now_ns=S)
    assert t.find_forward_wire(one(forward_wire, key, dec)) == h
    assert t.records([h])[0]["last_seen_ns"] == S


def test_batches_equal_the_same_scalar_calls():
    rng = np.random.default_rng(5)
    n = 400
    keys = np.zeros(n, dtype=KEY_DTYPE)
    keys["af"], keys["proto"] = 2, 6
    keys["sport"] = rng.integers(1, 40, n)  # many duplicates
    keys["dport"] = 80
    decs = np.zeros(n, dtype=make_decision().dtype)
    decs["nat_flags"] = NatFlag.RSP
    decs["rsp"] = rng.integers(1, 40, n)
    metas = np.zeros(n, dtype=META_DTYPE)
    metas["owner_rg"] = rng.integers(0, 3, n)
    flags = rng.choice(np.array([0x10, 0x01, 0x02], np.uint8), n)
    a, b = table(max_sessions=30), table(max_sessions=30)
    ha = a.install_batch(keys, decs, metas, S, tcp_flags=flags)
    hb = [b.install(keys[i], decs[i], metas[i], S, 0, int(flags[i])) for i in range(n)]
    assert list(ha) == hb
    probes = np.concatenate([keys, reverse_canonical(keys), reverse_wire(keys, decs)])
    out = np.zeros(len(probes), np.int64)
    a.lookup_batch(probes, 2 * S, out, tcp_flags=0x01)
    assert list(out) == [b.lookup(p, 2 * S, 0x01) for p in probes]
    a.find_forward_nat_batch(probes, out)
    assert list(out) == [b.find_forward_nat(p) for p in probes]
    a.find_forward_wire_batch(probes, out)
    assert list(out) == [b.find_forward_wire(p) for p in probes]
    assert a.records(ha).tobytes() == b.records(hb).tobytes()
    some = np.ascontiguousarray(keys[::3])
    assert a.delete_batch(some) == sum(b.delete(k) for k in some)
    assert a.stats() == b.stats()
    a.check_invariants()


def test_peek_does_not_refresh_or_count():
    t = table()
    h = t.install(UDP_KEY, now_ns=S)
    out = np.zeros(1, np.int64)
    assert t.peek_batch(UDP_KEY.reshape(1), out) == 1 and out[0] == h
    assert t.peek(UDP_KEY) == h
    stats = t.stats()
    assert t.records([h])[0]["last_seen_ns"] == S
    assert (stats["lookups"], stats["hits"]) == (0, 0)
    assert t.lookup(UDP_KEY, 2 * S) == h  # a refreshing lookup counts
    assert (t.stats()["lookups"], t.stats()["hits"]) == (1, 1)


def test_stale_handles_touch_nothing():
    t = table()
    h = t.install(UDP_KEY, now_ns=S)
    t.delete(UDP_KEY)
    h2 = t.install(UDP_KEY, now_ns=2 * S)
    assert t.touch_batch(np.array([h, -1, 12345], np.int64), 9 * S) == 0
    assert t.records([h2])[0]["last_seen_ns"] == 2 * S
    assert t.records([h, -7])["valid"].tolist() == [0, 0]


# ------------------------------------------------------------------ capacity


def test_capacity_policy_fill_drain_refill():
    cap = 1000
    t = table(max_sessions=cap)
    keys = np.zeros(cap + 10, dtype=KEY_DTYPE)
    keys["af"], keys["proto"], keys["dport"] = 2, 17, 53
    keys["sport"] = np.arange(cap + 10) + 1
    decs = np.zeros(cap + 10, make_decision().dtype)
    metas = np.zeros(cap + 10, META_DTYPE)
    # local-miss entries are not evictable (no early eviction): the table refuses
    hs = t.install_batch(keys, decs, metas, S, origins=Origin.LOCAL_MISS)
    assert (hs[:cap] >= 0).all() and (hs[cap:] == -1).all()
    assert len(t) == cap and t.stats()["create_drops"] == 10
    # replacing an existing key at capacity is allowed and does not grow the table
    h = t.install(keys[0], make_decision(egress_port=4), now_ns=2 * S)
    assert h >= 0 and h != hs[0] and len(t) == cap and t.stats()["replacements"] == 1
    # a pair needs room for both entries, or nothing is installed
    assert t.install_pair(*SNAT, now_ns=S) == (-1, -1) and t.stats()["create_drops"] == 12
    # HA imports are not capped
    assert t.upsert_synced(keys[cap], now_ns=S) >= 0 and len(t) == cap + 1
    assert t.delete_batch(keys) == cap + 1 and len(t) == 0
    st = t.stats()
    assert (st["nat_reverse_entries"], st["forward_wire_entries"], st["alias_entries"]) == (
        0,
        0,
        0,
    )
    hs2 = t.install_batch(keys[:cap], decs[:cap], metas[:cap], 3 * S, origins=Origin.LOCAL_MISS)
    assert (hs2 >= 0).all() and len(t) == cap
    assert not set(hs2.tolist()) & set(hs.tolist())  # no old handle is valid again
    t.check_invariants()


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_clear_errors():
    t = table()
    with pytest.raises(TypeError, match="dtype"):
        t.lookup_batch(np.zeros(4, dtype=np.uint8), 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        t.lookup_batch(np.zeros(8, dtype=KEY_DTYPE)[::2], 0)
    with pytest.raises(ValueError, match="out_handles"):
        t.lookup_batch(np.zeros(8, dtype=KEY_DTYPE), 0, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="40 bytes"):
        t.install(b"short")
    with pytest.raises(ValueError):
        t.install(np.zeros(2, dtype=KEY_DTYPE))
    with pytest.raises(ValueError, match="origin"):
        t.install(UDP_KEY, origin=9)
    with pytest.raises(ValueError, match="max_sessions"):
        SessionTable(max_sessions=0)
    with pytest.raises(ValueError, match="tcp_timeout_s"):
        SessionTable(tcp_timeout_s=-1)
    with pytest.raises(ValueError, match="differ"):
        t.install_batch(
            np.zeros(2, KEY_DTYPE), np.zeros(3, make_decision().dtype), np.zeros(2, META_DTYPE), 0
        )
    with pytest.raises(ValueError, match="families"):
        make_key("10.0.0.1", "::1")
    with pytest.raises(ValueError, match="ICMP"):
        make_key("10.0.0.1", "10.0.0.2", 1, 2, proto=1)
    with pytest.raises(ValueError, match="now_ns"):
        t.lookup(UDP_KEY, -1)


def test_invalid_family_key_is_refused_and_counted():
    t = table()
    assert t.install(np.zeros(1, KEY_DTYPE)) == -1
    assert t.stats()["create_drops"] == 1 and len(t) == 0


def test_pad_bytes_are_ignored():
    t = table()
    h = t.install(UDP_KEY, now_ns=S)
    k = UDP_KEY.copy()
    k["pad"] = 0xABCD
    assert t.lookup(k, S) == h
    assert t.entry(UDP_KEY)["key"]["pad"] == 0


def test_records_dtype_and_contains():
    t = table()
    h = t.install(UDP_KEY, now_ns=S)
    assert t.records([h]).dtype == SESSION_DTYPE
    assert UDP_KEY in t and make_key("10.0.0.9", "10.0.0.2", 1, 2) not in t
    assert t.keys().tobytes() == UDP_KEY.tobytes()


def test_concurrent_call_during_a_nogil_batch_is_refused():
    """Batch calls run without the GIL; another thread touching the same table meanwhile
    gets a RuntimeError instead of racing on it."""
    import threading

    n = 400_000
    keys = np.zeros(n, dtype=KEY_DTYPE)
    keys["af"], keys["proto"] = 2, 17
    keys["sport"] = np.arange(n) % 60000 + 1
    keys["dport"] = np.arange(n) // 60000 + 1
    t = table(max_sessions=n)
    worker = threading.Thread(
        target=t.install_batch,
        args=(keys, np.zeros(n, make_decision().dtype), np.zeros(n, META_DTYPE), S),
    )
    refused = 0
    worker.start()
    while worker.is_alive():
        try:
            t.stats()
        except RuntimeError as exc:
            assert "not thread-safe" in str(exc)
            refused += 1
    worker.join()
    assert refused > 0 and len(t) == n
    t.check_invariants()


def test_hash_spreads_structured_keys():
    """Keys that differ in one port or one address byte still spread over the index: the
    mean linear-probe displacement stays near the random-hash value a / (2 (1 - a)) at
    load a (Knuth's successful-search cost of linear probing, minus the home probe)."""
    n = 20_000
    keys = np.zeros(n, dtype=KEY_DTYPE)
    keys["af"], keys["proto"], keys["dport"] = 2, 6, 443
    keys["sport"] = np.arange(n) % 65536
    keys["src"][:, 3] = np.arange(n) // 65536 + 1
    t = table(max_sessions=n, hash_seed=0)
    t.install_batch(keys, np.zeros(n, make_decision().dtype), np.zeros(n, META_DTYPE), S)
    loads = t.index_load()
    assert loads["primary"][0] == n and loads["nat_reverse"][0] == n
    for count, cap, displacement in loads.values():
        load = count / cap
        assert load <= 0.75
        # seed 0 and all-zero address words must not collapse the spread
        assert displacement < 1.25 * load / (2 * (1 - load)) + 0.05


# ------------------------------------------------------------------ compact records


def test_nat_addresses_round_trip_through_the_address_pool():
    """Records keep no address bytes inline: every rs/rd combination reads back exactly,
    each NAT session holds one pool cell, and cells are returned on delete and update."""
    from xpfdp.session import RECORD_BYTES

    assert RECORD_BYTES == 80
    t = table()
    twice_nat = (make_key("198.51.100.2", "203.0.113.10", 54321, 80), DNAT_SNAT[1])
    cases = [PLAIN, SNAT, DNAT, twice_nat, NAT64]
    handles = [t.install(k, d, now_ns=S) for k, d in cases]
    recs = t.records(np.array(handles))
    for (k, d), r in zip(cases, recs, strict=True):
        assert r["key"].tobytes() == k.tobytes()
        assert r["decision"].tobytes() == d.tobytes()
    assert t.stats()["nat_address_cells"] == 4  # PLAIN has no address rewrite
    # replace: both addresses -> none -> one; the cell follows the decision
    key = twice_nat[0]
    assert t.install(key, make_decision(), make_meta(), 2 * S) >= 0
    assert t.stats()["nat_address_cells"] == 3
    assert t.entry(key)["decision"].tobytes() == make_decision().tobytes()
    new = make_decision(dnat="192.168.1.77")
    assert t.install(key, new, make_meta(), 2 * S) >= 0
    assert t.entry(key)["decision"].tobytes() == new.tobytes()
    assert t.stats()["nat_address_cells"] == 4
    t.check_invariants()
    for k, _ in cases:
        assert t.delete(k)
    assert t.stats()["nat_address_cells"] == 0


def test_address_bytes_without_their_flag_are_not_stored():
    """An address whose NAT flag is clear does nothing, so it is not kept: it reads
    back as zeros and costs no pool cell."""
    t = table()
    key = make_key("10.0.0.1", "10.0.0.2", 1, 2)
    dec = make_decision(snat_port=9)
    dec["rs"] = 7
    dec["rd"] = 9
    h = t.install(key, dec, now_ns=S)
    got = t.records(np.array([h]))[0]["decision"]
    assert bytes(got["rs"]) == bytes(16) and bytes(got["rd"]) == bytes(16)
    assert got["rsp"] == 9 and got["nat_flags"] == NatFlag.RSP
    assert t.stats()["nat_address_cells"] == 0


def test_address_pool_is_reused_under_churn():
    t = table()
    keys = np.concatenate(
        [make_key("10.0.0.1", "10.0.0.2", p, 80).reshape(1) for p in range(1, 65)]
    )
    decs = np.repeat(make_decision(snat="192.0.2.1", dnat="192.0.2.2").reshape(1), 64)
    metas = np.zeros(64, META_DTYPE)
    t.install_batch(keys, decs, metas, S)
    t.delete_batch(keys)
    grown = t.memory_bytes(include_wheel=False)
    for round_ in range(20):
        assert (t.install_batch(keys, decs, metas, (round_ + 2) * S) >= 0).all()
        assert t.stats()["nat_address_cells"] == 64
        assert t.delete_batch(keys) == 64
    assert t.memory_bytes(include_wheel=False) == grown
    assert t.stats()["nat_address_cells"] == 0
    t.check_invariants()


def test_sessions_keep_their_timeout_across_many_timeout_changes():
    """Records store a timeout class; the palette of distinct timeouts is compacted when
    full, so hundreds of set_timeouts calls keep every live session's own timeout."""
    t = table(max_sessions=4096)
    expected = {}
    for i in range(360):
        t.set_timeouts(udp_timeout_s=1000 + i)
        key = make_key("10.0.0.1", "10.0.0.2", 1 + i, 53, proto=17)
        if i % 2:  # keep half, so compaction finds both used and unused classes
            expected[key.tobytes()] = 1000 + i
            t.install(key, now_ns=S)
        assert t.timeouts_s == (300, 1000 + i, 60)
    keys = np.frombuffer(b"".join(expected), dtype=KEY_DTYPE)
    recs = t.records(np.array([t.peek(k) for k in keys]))
    got = {r["key"].tobytes(): int(r["expires_after_ns"]) // S for r in recs}
    assert got == expected
    t.check_invariants()
    # each session expires after its own timeout (strictly more than it)
    first = make_key("10.0.0.1", "10.0.0.2", 2, 53, proto=17)
    assert t.records([t.peek(first)])[0]["expires_after_ns"] == 1001 * S


def test_timeout_palette_full_of_live_timeouts_is_refused():
    t = table(max_sessions=4096)
    with pytest.raises(ValueError, match="256 distinct idle timeouts"):
        for i in range(300):
            t.set_timeouts(udp_timeout_s=5000 + i)
            t.install(make_key("10.0.0.1", "10.0.0.2", 1 + i, 53, proto=17), now_ns=S)
    before = t.timeouts_s
    assert before[1] >= 5000  # the refused call left the last accepted setting in place
    t.check_invariants()


def test_nat_addresses_are_shared_between_sessions():
    """Sessions rewriting to the same address share one interned cell, freed with the
    last of them; reference counts are checked by check_invariants."""
    t = table(max_sessions=4096)
    keys = np.concatenate(
        [make_key("10.0.0.1", "10.0.0.2", p, 80).reshape(1) for p in range(1, 301)]
    )
    decs = np.repeat(make_decision(snat="192.0.2.1").reshape(1), 300)
    decs["rs"][200:, 3] = 2  # the last 100 use 192.0.2.2
    handles = t.install_batch(keys, decs, np.zeros(300, META_DTYPE), S)
    assert (handles >= 0).all() and t.stats()["nat_address_cells"] == 2
    t.check_invariants()
    got = t.records(handles)["decision"]
    assert got.tobytes() == decs.tobytes()
    assert t.delete_batch(keys[:250]) == 250
    assert t.stats()["nat_address_cells"] == 1  # 192.0.2.1 had its last user removed
    t.check_invariants()
    assert t.records(handles[250:])["decision"].tobytes() == decs[250:].tobytes()
    assert t.delete_batch(keys[250:]) == 50
    assert t.stats()["nat_address_cells"] == 0
    t.check_invariants()


def test_delta_queue_keeps_order_when_it_grows_while_wrapped():
    """Partly drained (head > 0), then grown past its capacity: events still come out in
    the order they were queued."""
    t = table()
    feed = t.subscribe_deltas()
    keys = [make_key("10.0.0.1", "10.0.0.2", 1000 + i, 80) for i in range(200)]
    for k in keys[:50]:
        t.install(k, now_ns=S)
    first = feed.drain(40)
    for k in keys[50:]:
        t.install(k, now_ns=S)
    rest = feed.drain(10_000)
    sports = [int(p) for p in np.concatenate([first["key"]["sport"], rest["key"]["sport"]])]
    assert sports == list(range(1000, 1200))
