"""ICMP through the firewall: error translation (kernels and pipeline), errors the forwarder
sends itself (Time Exceeded, Fragmentation Needed / Packet Too Big, rate limits), IPv4
fragmentation, and what the NAT refuses to forward. Every checksum is checked by full
recomputation (tests/csum_reference.py and scapy), every UMEM for frame conservation.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import GRE, ICMP, IP, TCP, UDP, Ether, IPv6, Raw
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
)

from tests import csum_reference as ref
from tests.test_firewall_config import (
    CLIENT_MAC,
    LAN_MAC,
    SERVER_MAC,
    VALID,
    WAN_MAC,
    MemFirewall,
    config,
)
from xpfdp._fast.icmp import (
    IcmpRateLimit,
    build_error,
    error_checksum_ok,
    error_quote,
    translate_error,
)

S = 1_000_000_000


def inner_packet(version, proto, src, dst, sport, dport, payload):
    ip = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
    if proto == "udp":
        l4 = UDP(sport=sport, dport=dport)
    elif proto == "tcp":
        l4 = TCP(sport=sport, dport=dport, flags="A", seq=12345)
    else:
        l4 = ICMP(type=8, id=sport, seq=1) if version == 4 else ICMPv6EchoRequest(id=sport)
    return ip / l4 / Raw(payload)


def error_frame(version, outer_src, outer_dst, inner_bytes):
    if version == 4:
        return (
            Ether(src=SERVER_MAC, dst=WAN_MAC)
            / IP(src=outer_src, dst=outer_dst)
            / ICMP(type=3, code=3)
            / inner_bytes
        )
    return (
        Ether(src=SERVER_MAC, dst=WAN_MAC)
        / IPv6(src=outer_src, dst=outer_dst)
        / ICMPv6DestUnreach(code=4)
        / inner_bytes
    )


def quoted_l4_checksum(frame: bytes, proto: str) -> int:
    q = error_quote(bytearray(frame))
    off = q["quoted_l4_offset"] + {"udp": 6, "tcp": 16, "echo": 2}[proto]
    return int.from_bytes(frame[off : off + 2], "big")


def assert_error_checksums(frame: bytes, version: int) -> None:
    """Outer IPv4 header, ICMP message (pseudo-header for v6) and quoted IPv4 header all
    verify by full recomputation."""
    m = ref.parse(frame)
    l3 = m["l3_off"]
    if version == 4:
        assert ref.checksum(frame[l3 : l3 + 20]) == 0
        icmp = frame[l3 + 20 : l3 + m["l3_len"]]
        assert ref.checksum(icmp) == 0
        q = icmp[8:]
        assert ref.checksum(q[: (q[0] & 15) * 4]) == 0
    else:
        icmp = frame[l3 + 40 : l3 + m["l3_len"]]
        seed = ref.pseudo_sum(6, frame[l3 + 8 : l3 + 24], frame[l3 + 24 : l3 + 40], 58, len(icmp))
        assert ref.checksum(icmp, seed) == 0
    assert error_checksum_ok(bytearray(frame))


ADDRS = {
    4: ("10.10.2.1", "10.10.2.2", "10.10.1.2", "192.0.2.77"),
    6: ("fd00:b::1", "fd00:b::2", "fd00:a::2", "2001:db8::77"),
}


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    proto=st.sampled_from(["udp", "tcp", "echo"]),
    sport=st.integers(1, 65535),
    dport=st.integers(1, 65535),
    new_port=st.integers(0, 65535),
    payload=st.binary(max_size=64),
    cut=st.integers(0, 64),
    zero_udp=st.booleans(),
)
def test_translate_error_matches_a_full_recomputation(
    version, proto, sport, dport, new_port, payload, cut, zero_udp
):
    nat, server, client, _ = ADDRS[version]
    original = inner_packet(version, proto, nat, server, sport, dport, payload)
    if proto == "udp" and zero_udp and version == 4:
        original[UDP].chksum = 0
    raw = bytes(original)
    hdr = 20 if version == 4 else 40
    quote = raw[: max(hdr + 8, len(raw) - cut)]  # the quote may be truncated
    frame = bytearray(bytes(error_frame(version, server, nat, quote)))
    q = error_quote(frame)
    assert (q["src"], q["dst"], q["sport"]) == (
        str(ipaddress.ip_address(nat)),
        str(ipaddress.ip_address(server)),
        sport,
    )
    translate_error(frame, dst=client, quoted_src=client, quoted_sport=new_port)
    assert_error_checksums(bytes(frame), version)
    # The quoted L4 checksum is what the full translated packet's checksum would be.
    expected = inner_packet(version, proto, client, server, new_port, dport, payload)
    off = hdr + {"udp": 6, "tcp": 16, "echo": 2}[proto]
    want = int.from_bytes(bytes(expected)[off : off + 2], "big")  # scapy computes it
    if proto == "udp" and zero_udp and version == 4:
        want = 0
    holds_csum = proto != "tcp" or len(quote) >= hdr + 20
    got = quoted_l4_checksum(bytes(frame), proto)
    if holds_csum:
        assert got == want
    q2 = error_quote(frame)
    assert (q2["src"], q2["sport"]) == (str(ipaddress.ip_address(client)), new_port)
    out = Ether(bytes(frame))
    assert (out[IP] if version == 4 else out[IPv6]).dst == str(ipaddress.ip_address(client))


def test_quote_refusals_are_named():
    frame = bytearray(bytes(Ether(dst=WAN_MAC) / IP(dst="10.0.0.1") / ICMP(type=8)))
    with pytest.raises(ValueError, match="not_error"):
        error_quote(frame)
    inner = bytes(IP(src="10.0.0.1", dst="10.0.0.2", frag=10) / UDP())
    with pytest.raises(ValueError, match="fragment"):
        error_quote(bytearray(bytes(error_frame(4, "10.0.0.2", "10.0.0.1", inner))))
    with pytest.raises(ValueError, match="truncated"):
        error_quote(bytearray(bytes(error_frame(4, "10.0.0.2", "10.0.0.1", inner[:10]))))
    nested = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3) / inner[:28])
    with pytest.raises(ValueError, match="unsupported"):
        error_quote(bytearray(bytes(error_frame(4, "10.0.0.2", "10.0.0.1", nested))))


@pytest.mark.parametrize("version", [4, 6])
def test_build_error_quotes_and_checksums(version):
    src, dst = ("10.10.1.2", "10.10.2.2") if version == 4 else ("fd00:a::2", "fd00:b::2")
    ip = IP(src=src, dst=dst, ttl=1) if version == 4 else IPv6(src=src, dst=dst, hlim=1)
    pkt = Ether(src=CLIENT_MAC, dst=LAN_MAC) / ip / UDP(sport=1, dport=2) / Raw(bytes(1400))
    me = "10.10.1.1" if version == 4 else "fd00:a::1"
    out = Ether(build_error(bytes(pkt), 11 if version == 4 else 3, 0, 0, me))
    assert (out.src, out.dst) == (LAN_MAC, CLIENT_MAC)
    raw = bytes(out)
    assert len(raw) - 14 == (576 if version == 4 else 1280)  # quote truncated to the limit
    assert_error_checksums(raw, version)
    o = out[IP] if version == 4 else out[IPv6]
    assert (o.src, o.dst) == (me, src)
    assert bytes(pkt)[14 : 14 + 100] == raw[14 + (28 if version == 4 else 48) :][:100]
    with pytest.raises(ValueError, match="no ICMP error"):
        build_error(bytes(out), 11, 0, 0, me)  # never an error about an error


def test_rate_limit_token_bucket():
    rl = IcmpRateLimit(S, 6)
    assert [rl.take(10 * S) for _ in range(7)] == [True] * 6 + [False]
    assert not rl.take(10 * S + S // 2)
    assert rl.take(11 * S + S // 2) and not rl.take(11 * S + S // 2)


# --- through the firewall pipeline (MemPorts) -------------------------------------------

V6 = {"client": "fd00:a::2", "server": "fd00:b::2", "nat": "fd00:b::1", "lan": "fd00:a::1"}
V4 = {"client": "10.10.1.2", "server": "10.10.2.2", "nat": "10.10.2.1", "lan": "10.10.1.1"}


def ip_of(version, **kw):
    return (
        IP(**kw)
        if version == 4
        else IPv6(**{("hlim" if k == "ttl" else k): v for k, v in kw.items()})
    )


def l3(pkt):
    return pkt[IP] if IP in pkt else pkt[IPv6]


@pytest.fixture
def fw(umem_factory):
    f = MemFirewall(umem_factory(8192, tx_frames=256))
    yield f
    f.pipe.close()


def open_udp(fw, version, sport=40000, dport=7000):
    a = V4 if version == 4 else V6
    out = (Ether(src=CLIENT_MAC, dst=LAN_MAC) / ip_of(version, src=a["client"], dst=a["server"])
           / UDP(sport=sport, dport=dport) / b"request")  # fmt: skip
    to_wan, _ = fw.send(lan=[out])
    assert len(to_wan) == 1
    return to_wan[0]


@pytest.mark.parametrize("version", [4, 6])
def test_port_unreachable_from_the_server_reaches_the_client_translated(fw, version):
    a = V4 if version == 4 else V6
    sent = open_udp(fw, version)
    err = (Ether(src=SERVER_MAC, dst=WAN_MAC)
           / error_frame(version, a["server"], a["nat"], bytes(l3(sent)))[1])  # fmt: skip
    _, to_lan = fw.send(wan=[err])
    assert len(to_lan) == 1
    back = to_lan[0]
    assert (back.src, back.dst) == (LAN_MAC, CLIENT_MAC)
    assert (l3(back).src, l3(back).dst) == (a["server"], a["client"])
    q = error_quote(bytearray(bytes(back)))
    assert (q["src"], q["sport"], q["dst"], q["dport"]) == (a["client"], 40000, a["server"], 7000)
    assert_error_checksums(bytes(back), version)
    # the quote is exactly the packet the client sent (TTL decremented on the way out)
    original = ip_of(version, src=a["client"], dst=a["server"], ttl=63) / UDP(
        sport=40000, dport=7000) / b"request"  # fmt: skip
    assert quoted_l4_checksum(bytes(back), "udp") == type(original)(bytes(original))[UDP].chksum
    assert fw.pipe.stats()["stages"]["session"]["icmp_errors_translated"] == 1


@pytest.mark.parametrize("version", [4, 6])
def test_client_error_about_a_reply_leaves_with_the_nat_address(fw, version):
    a = V4 if version == 4 else V6
    sent = open_udp(fw, version)
    nat_port = sent[UDP].sport
    # the client's kernel answers a reply it no longer wants with Port Unreachable
    reply_as_received = ip_of(version, src=a["server"], dst=a["client"]) / UDP(
        sport=7000, dport=40000) / b"late reply"  # fmt: skip
    err = Ether(src=CLIENT_MAC, dst=LAN_MAC) / error_frame(
        version, a["client"], a["server"], bytes(reply_as_received))[1]  # fmt: skip
    to_wan, _ = fw.send(lan=[err])
    assert len(to_wan) == 1
    out = to_wan[0]
    assert (l3(out).src, l3(out).dst) == (a["nat"], a["server"])
    q = error_quote(bytearray(bytes(out)))
    assert (q["dst"], q["dport"], q["src"], q["sport"]) == (a["nat"], nat_port, a["server"], 7000)
    assert_error_checksums(bytes(out), version)
    assert not any(a["client"] in str(ipaddress.ip_address(q[k])) for k in ("src", "dst"))


def test_echo_error_is_translated_by_identifier(fw):
    ping = Ether(src=CLIENT_MAC, dst=LAN_MAC) / IP(src=V4["client"], dst="192.0.2.9") / ICMP(id=77)
    to_wan, _ = fw.send(lan=[ping])
    assert len(to_wan) == 1
    # a router on the way reports the destination unreachable
    err = Ether(src=SERVER_MAC, dst=WAN_MAC) / IP(src="10.10.2.2", dst=V4["nat"]) / ICMP(
        type=3, code=1) / bytes(to_wan[0][IP])  # fmt: skip
    _, to_lan = fw.send(wan=[err])
    assert len(to_lan) == 1 and to_lan[0][IP].dst == V4["client"]
    q = error_quote(bytearray(bytes(to_lan[0])))
    assert (q["src"], q["sport"], q["echo"]) == (V4["client"], 77, True)
    assert_error_checksums(bytes(to_lan[0]), 4)


def test_errors_without_a_session_and_non_echo_icmp_are_dropped(fw):
    # a non-echo, non-error ICMP from the LAN (timestamp) opens nothing ...
    ts = Ether(src=CLIENT_MAC, dst=LAN_MAC) / IP(src=V4["client"], dst=V4["server"]) / ICMP(type=13)
    to_wan, _ = fw.send(lan=[ts])
    assert to_wan == []
    # ... so the WAN cannot send the client arbitrary ICMP afterwards
    junk = [
        Ether(src=SERVER_MAC, dst=WAN_MAC) / IP(src=V4["server"], dst=V4["nat"]) / ICMP(type=t)
        for t in (13, 14, 5)
    ]
    forged = (
        Ether(src=SERVER_MAC, dst=WAN_MAC)
        / IP(src=V4["server"], dst=V4["nat"])
        / ICMP(type=3, code=3)
        / bytes(IP(src=V4["nat"], dst=V4["server"]) / UDP(sport=1, dport=2))
    )
    _, to_lan = fw.send(wan=[*junk, forged])
    assert to_lan == []
    drops = fw.pipe.stats()["drops"]
    print(drops)
    assert drops == {"icmp_unsupported": 4, "icmp_error_no_session": 1}
    assert fw.pipe.stats()["sessions"]["created"] == 0


def test_a_bad_error_checksum_is_dropped(fw):
    sent = open_udp(fw, 4)
    err = Ether(src=SERVER_MAC, dst=WAN_MAC) / IP(src=V4["server"], dst=V4["nat"]) / ICMP(
        type=3, code=3, chksum=0x1234) / bytes(sent[IP])  # fmt: skip
    _, to_lan = fw.send(wan=[err])
    assert to_lan == [] and fw.pipe.stats()["drops"] == {"icmp_error_malformed": 1}


def test_untranslatable_lan_packets_never_leave(fw):
    frames = [
        Ether(src=CLIENT_MAC, dst=LAN_MAC) / IPv6(src=V6["client"], dst=V6["server"], nh=59),
        Ether(src=CLIENT_MAC, dst=LAN_MAC) / IP(src=V4["client"], dst=V4["server"]) / GRE(),
        Ether(src=CLIENT_MAC, dst=LAN_MAC)
        / IP(src=V4["client"], dst=V4["server"], proto=132)
        / Raw(bytes(16)),
    ]
    to_wan, _ = fw.send(lan=frames)
    assert to_wan == []
    assert fw.pipe.stats()["drops"] == {"nat_untranslatable": 3}


@pytest.mark.parametrize("version", [4, 6])
def test_time_exceeded_is_rate_limited_per_destination(fw, version):
    a = V4 if version == 4 else V6
    probes = [
        Ether(src=CLIENT_MAC, dst=LAN_MAC)
        / ip_of(version, src=a["client"], dst=a["server"], ttl=1)
        / UDP(sport=33434 + i, dport=33434 + i)
        for i in range(10)
    ]
    _, to_lan = fw.send(lan=probes)
    assert len(to_lan) == 6  # the per-destination burst, like Linux
    for i, e in enumerate(to_lan):
        assert (l3(e).src, l3(e).dst) == (a["lan"], a["client"])
        assert (e[ICMP].type if version == 4 else e[ICMPv6TimeExceeded].type) in (11, 3)
        assert ICMP in e if version == 4 else ICMPv6TimeExceeded in e
        assert_error_checksums(bytes(e), version)
        assert error_quote(bytearray(bytes(e)))["sport"] == 33434 + i
    st_ = fw.pipe.stats()
    assert st_["drops"] == {"ttl_expired": 4}
    assert st_["stages"]["ttl"]["expired"] == 10


def test_frag_needed_and_packet_too_big_carry_the_mtu(fw):
    fw.wan.set_mtu(1400)
    big4 = (
        Ether(src=CLIENT_MAC, dst=LAN_MAC)
        / IP(src=V4["client"], dst=V4["server"], flags="DF")
        / UDP(sport=5, dport=6)
        / bytes(1450)
    )
    big6 = Ether(src=CLIENT_MAC, dst=LAN_MAC) / IPv6(src=V6["client"], dst=V6["server"]) / UDP(
        sport=5, dport=6) / bytes(1450)  # fmt: skip
    to_wan, to_lan = fw.send(lan=[big4, big6])
    assert to_wan == [] and len(to_lan) == 2
    e4 = next(e for e in to_lan if IP in e)
    e6 = next(e for e in to_lan if IPv6 in e)
    assert (e4[ICMP].type, e4[ICMP].code, e4[ICMP].nexthopmtu) == (3, 4, 1400)
    assert e6[ICMPv6PacketTooBig].mtu == 1400
    assert e4[IP].src == V4["lan"] and e6[IPv6].src == V6["lan"]
    # the quote is the packet as the client sent it (not SNATed)
    assert error_quote(bytearray(bytes(e4)))["src"] == V4["client"]
    assert error_quote(bytearray(bytes(e6)))["src"] == V6["client"]
    assert_error_checksums(bytes(e4), 4)
    assert_error_checksums(bytes(e6), 6)
    assert fw.pipe.stats()["drops"] == {}


def reassemble(frames) -> IP:
    """The datagram the IPv4 fragments in `frames` carry (any order), checking that every
    fragment but the last holds a multiple of 8 bytes and that they tile it exactly."""
    frags = sorted((Ether(bytes(f))[IP] for f in frames), key=lambda p: p.frag)
    data = b""
    for k, p in enumerate(frags):
        body = bytes(p)[p.ihl * 4 : p.len]
        assert p.frag * 8 == len(data)
        assert (p.flags.MF == 1) == (k < len(frags) - 1)
        if k < len(frags) - 1:
            assert len(body) % 8 == 0
        data += body
    first = frags[0].copy()
    first.remove_payload()
    first.flags, first.frag, first.options = 0, 0, []
    del first.len, first.chksum, first.ihl
    return IP(bytes(first / Raw(data)))


def test_non_df_ipv4_is_fragmented_and_reassembles(fw, umem_factory):
    fw.wan.set_mtu(600)
    payload = bytes(range(256)) * 8
    big = (
        Ether(src=CLIENT_MAC, dst=LAN_MAC)
        / IP(src=V4["client"], dst=V4["server"], options=[])
        / UDP(sport=5, dport=6)
        / payload
    )
    to_wan, _ = fw.send(lan=[big])
    assert len(to_wan) == 4 and all(len(l3(f)) <= 600 for f in to_wan)
    for f in to_wan:
        assert (f.src, f.dst) == (WAN_MAC, SERVER_MAC) and f[IP].ttl == 63
        assert ref.checksum(bytes(f[IP])[: f[IP].ihl * 4]) == 0
    whole = reassemble(to_wan)
    assert whole[IP].src == V4["nat"] and bytes(whole[UDP].payload) == payload
    assert ref.checksums_ok(
        bytes(Ether(dst=WAN_MAC) / whole)
    )  # the UDP checksum of the whole survives
    assert fw.pipe.stats()["stages"]["fragment"]["fragments"] == 4


def test_fragmentation_copies_only_options_with_the_copy_flag(fw):
    fw.wan.set_mtu(300)
    # security (copied, type 130) and record route (not copied, type 7)
    opts = bytes([130, 11]) + bytes(9) + bytes([7, 7, 4]) + bytes(4) + bytes(2)
    ip = IP(src=V4["client"], dst=V4["server"], options=[Raw(opts)])
    big = Ether(src=CLIENT_MAC, dst=LAN_MAC) / ip / UDP(sport=5, dport=6) / bytes(700)
    to_wan, _ = fw.send(lan=[big])
    assert len(to_wan) >= 3
    to_wan.sort(key=lambda f: f[IP].frag)
    assert to_wan[0][IP].ihl * 4 == 20 + len(opts)
    for f in to_wan[1:]:
        assert f[IP].ihl * 4 == 20 + 12 and bytes(f[IP])[20:22] == bytes([130, 11])
    assert bytes(reassemble(to_wan)[UDP].payload) == bytes(700)


def test_no_tx_frames_for_fragments_is_a_counted_drop(umem_factory):
    f = MemFirewall(umem_factory(8192, tx_frames=0))
    f.wan.set_mtu(600)
    big = Ether(src=CLIENT_MAC, dst=LAN_MAC) / IP(src=V4["client"], dst=V4["server"]) / UDP(
        sport=5, dport=6) / bytes(1400)  # fmt: skip
    to_wan, _ = f.send(lan=[big])
    assert to_wan == [] and f.pipe.stats()["drops"] == {"fragment_no_tx_frame": 1}
    f.pipe.close()


def test_icmp_config_section_is_validated():
    assert parse_icmp({"rate_per_s": 10}).rate_per_s == 10
    with pytest.raises(ValueError, match=r"icmp\.burst"):
        parse_icmp({"burst": 0})
    with pytest.raises(ValueError, match="icmp"):
        parse_icmp({"nonsense": 1})


def parse_icmp(table):
    from xpfdp.firewall import parse_config

    return parse_config(config(icmp=table)).icmp


def test_memport_mtu_is_validated(umem_factory):
    from xpfdp.ports import MemPort

    u = umem_factory(64)
    with pytest.raises(ValueError, match="mtu"):
        MemPort(u, None, mtu=20)
    assert MemPort(u, None, mtu=9000).mtu == 9000
    assert VALID  # the firewall tests' config is shared
