"""Userspace cost of the firewall pipeline on MemPort, ns/packet at burst 64.

Workloads (same session, so they can be compared as ratios):
* `firewall_full`: parse → session (table lookup, flow cache off) → NAT → route → TTL →
  MSS clamp → L2 → count over 1024 established LAN→WAN flows. Target <= 150 ns/packet.
* `firewall_flowcache`: the same with the flow cache on (every packet a cache hit).
  Target <= 60 ns/packet.
* `firewall_fragments` / `firewall_whole_udp`: the firewall over 256 UDP flows whose 3000-byte
  datagrams arrive as 3 fragments (later fragments translated through the fragment table),
  against unfragmented UDP frames of the same lengths on the same flows (the reference).
* `l2fwd`: the xsk helper's nogil `forward` (rx, MAC swap, tx) on the same MemPort setup:
  the floor any pipeline pays for moving frames.
* `pure_python`: the same per-packet work (parse, dict session lookup, SNAT with
  incremental checksums, TTL, MACs) in a Python loop, the ratio baseline.

Run: `.venv/bin/python -m pytest benches/bench_pipeline.py --benchmark-only`.
"""

from __future__ import annotations

import struct

import pytest
from scapy.all import IP, TCP, UDP, Ether, Raw, fragment

from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import FlowCache, Pipeline, firewall_stages
from xpfdp.ports import Burst, MemPort, Umem, forward
from xpfdp.route import RouteTable
from xpfdp.session import SessionTable

FLOWS = 1024
PACKETS = 1 << 18
PY_PACKETS = 1 << 14
TARGET_FULL_NS = 150
TARGET_CACHE_NS = 60
HOPS = [
    (0, "02:00:00:00:00:aa", "02:00:00:00:00:01"),
    (1, "02:00:00:00:00:bb", "02:00:00:00:00:02"),
]


def flow_frames():
    return [
        bytes(
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:aa")
            / IP(src=f"10.0.{i // 250}.{i % 250 + 2}", dst="192.0.2.10", ttl=64)
            / TCP(sport=10000 + i, dport=443, flags="A")
        )
        for i in range(FLOWS)
    ]


def _report(benchmark, packets: int, target=None) -> float:
    ns = benchmark.stats.stats.min * 1e9 / packets
    benchmark.extra_info["ns_per_packet"] = round(ns, 2)
    if target is not None:
        benchmark.extra_info["target_ns_per_packet"] = target
    return ns


def firewall(flow_cache: bool):
    umem = Umem(4096)
    lan = MemPort(umem, FrameBatch.from_frames(flow_frames()), loop=True)
    wan = MemPort(umem, None)
    rt = RouteTable()
    rt.add("10.0.0.0/16", 0)
    rt.add("0.0.0.0/0", 1)
    pipe = Pipeline(
        [lan, wan],
        firewall_stages(0, 1, snat="198.51.100.1", mss=1400),
        routes=rt,
        next_hops=HOPS,
        sessions=SessionTable(1 << 16),
        flow_cache=FlowCache(1024, 4) if flow_cache else None,
        burst_size=64,
    )
    pipe.run(max_packets=4 * FLOWS)  # sessions established (and cached)
    return umem, pipe


@pytest.mark.parametrize("flow_cache", [False, True], ids=["firewall_full", "firewall_flowcache"])
def test_firewall(benchmark, flow_cache):
    umem, pipe = firewall(flow_cache)
    benchmark.group = "pipeline burst64 ns/packet"
    before = pipe.stats()["rx_packets"]
    benchmark.pedantic(pipe.run, kwargs={"max_packets": PACKETS}, rounds=5, warmup_rounds=1)
    st = pipe.stats()
    assert st["drops_total"] == 0 and st["sessions"]["created"] == FLOWS
    assert st["tx_packets"] == st["rx_packets"] > before
    if flow_cache:
        assert st["flow_cache"]["hits"] >= 5 * PACKETS
    _report(benchmark, PACKETS, TARGET_CACHE_NS if flow_cache else TARGET_FULL_NS)
    pipe.close(close_ports=True)
    umem.check_frames()
    umem.close()


FRAG_FLOWS = 256


def udp_frames(fragmented: bool):
    """Per flow, a 3000-byte UDP datagram as 3 fragments, or 3 whole UDP frames of the
    same lengths."""
    frames = []
    for i in range(FRAG_FLOWS):
        ip = IP(src=f"10.0.{i // 250}.{i % 250 + 2}", dst="192.0.2.10", ttl=64, id=i)
        l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:aa")
        frags = fragment(ip / UDP(sport=10000 + i, dport=53) / Raw(b"d" * 2992), fragsize=1400)
        for f in frags:
            if fragmented:
                frames.append(bytes(l2 / f))
            else:
                whole = ip / UDP(sport=10000 + i, dport=53) / Raw(b"w" * (len(f) - 28))
                frames.append(bytes(l2 / whole))
    return frames


@pytest.mark.parametrize(
    "fragmented", [True, False], ids=["firewall_fragments", "firewall_whole_udp"]
)
def test_firewall_fragments(benchmark, fragmented):
    umem = Umem(4096)
    lan = MemPort(umem, FrameBatch.from_frames(udp_frames(fragmented)), loop=True)
    wan = MemPort(umem, None)
    rt = RouteTable()
    rt.add("10.0.0.0/16", 0)
    rt.add("0.0.0.0/0", 1)
    pipe = Pipeline(
        [lan, wan],
        firewall_stages(0, 1, snat="198.51.100.1"),
        routes=rt,
        next_hops=HOPS,
        sessions=SessionTable(1 << 16),
        flow_cache=FlowCache(1024, 4),
        burst_size=64,
    )
    pipe.run(max_packets=4 * 3 * FRAG_FLOWS)
    benchmark.group = "pipeline burst64 ns/packet"
    benchmark.pedantic(pipe.run, kwargs={"max_packets": PACKETS // 4}, rounds=5, warmup_rounds=1)
    st = pipe.stats()
    assert st["drops_total"] == 0 and st["sessions"]["created"] == FRAG_FLOWS
    if fragmented:
        assert st["fragments"]["translated"] >= PACKETS // 4 * 2 // 3
    _report(benchmark, PACKETS // 4)
    pipe.close(close_ports=True)
    umem.check_frames()
    umem.close()


def test_l2fwd(benchmark):
    umem = Umem(4096)
    lan = MemPort(umem, FrameBatch.from_frames(flow_frames()), loop=True)
    wan = MemPort(umem, None)
    burst = Burst(64)
    benchmark.group = "pipeline burst64 ns/packet"
    result = benchmark.pedantic(
        forward, args=(lan, wan, burst, 60.0, True, PACKETS), rounds=5, warmup_rounds=1
    )
    assert result[2] == 0
    _report(benchmark, result[0])
    lan.close()
    wan.close()
    umem.check_frames()
    umem.close()


def _csum_update(csum: int, old: int, new: int) -> int:
    s = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pure_python_firewall(frames, sessions, out):
    """The firewall's per-packet work for established flows, one Python step at a time."""
    snat = bytes([198, 51, 100, 1])
    macs = bytes.fromhex("02000000000202000000bb")  # dst + src of the WAN next hop
    for raw in frames:
        f = bytearray(raw)
        if struct.unpack_from("!H", f, 12)[0] != 0x0800 or f[14] >> 4 != 4:
            continue
        ihl = (f[14] & 15) * 4
        proto, src, dst = f[23], bytes(f[26:30]), bytes(f[30:34])
        l4 = 14 + ihl
        sport, dport = struct.unpack_from("!HH", f, l4)
        dec = sessions.get((proto, src, dst, sport, dport))
        if dec is None or f[22] <= 1:
            continue
        nat_port = dec
        ip_csum = struct.unpack_from("!H", f, 24)[0]
        l4_csum = struct.unpack_from("!H", f, l4 + 16)[0]
        for k in (0, 2):
            old = struct.unpack_from("!H", f, 26 + k)[0]
            new = struct.unpack_from("!H", snat, k)[0]
            ip_csum = _csum_update(ip_csum, old, new)
            l4_csum = _csum_update(l4_csum, old, new)
        l4_csum = _csum_update(l4_csum, sport, nat_port)
        f[26:30] = snat
        struct.pack_into("!H", f, l4, nat_port)
        old_ttl = struct.unpack_from("!H", f, 22)[0]
        f[22] -= 1
        ip_csum = _csum_update(ip_csum, old_ttl, struct.unpack_from("!H", f, 22)[0])
        struct.pack_into("!H", f, 24, ip_csum)
        struct.pack_into("!H", f, l4 + 16, l4_csum)
        f[0:12] = macs + b"\xaa"
        out.append(f)


def test_pure_python(benchmark):
    frames = flow_frames()
    sessions = {}
    for i, raw in enumerate(frames):
        f = raw
        sessions[(6, f[26:30], f[30:34], 10000 + i, 443)] = 20000 + i
    stream = (frames * (PY_PACKETS // FLOWS + 1))[:PY_PACKETS]
    benchmark.group = "pipeline burst64 ns/packet"

    def run():
        out = []
        pure_python_firewall(stream, sessions, out)
        assert len(out) == PY_PACKETS

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    _report(benchmark, PY_PACKETS)
