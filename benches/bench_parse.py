"""ns/packet of the parser: parse_batch over one burst of mixed traffic, next to the scalar
entry point, the pure-Python reference parser, scapy and dpkt (one frame per call).

    .venv/bin/python -m pytest benches/bench_parse.py --benchmark-only
"""

import os
import sys
from pathlib import Path

# numpy's OpenBLAS worker threads spin on this 2-vCPU box; nothing here uses BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dpkt
import numpy as np
import pytest
from scapy.layers.l2 import Ether

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import csum_reference as ref

from xpfdp import parse
from xpfdp.pcap import FrameBatch

BURST = 256
V4A, V4B, V6A, V6B = bytes(4), bytes([1, 2, 3, 4]), bytes(16), bytes(range(16))


def mixed_frames():
    """A burst of v4 TCP, VLAN-tagged v4 UDP, v6 TCP with a hop-by-hop header, v6 ICMPv6 echo."""
    kinds = [
        ref.ethernet(
            0x0800, ref.ipv4(6, V4A, V4B, ref.tcp(1000, 80, flags=0x10, payload=bytes(20)))
        ),
        ref.ethernet(0x0800, ref.ipv4(17, V4A, V4B, ref.udp(53, 5353, bytes(30))), (0x8100, 100)),
        ref.ethernet(0x86DD, ref.ipv6(0, V6A, V6B, b"\x06\x00" + bytes(6) + ref.tcp(1, 2))),
        ref.ethernet(0x86DD, ref.ipv6(58, V6A, V6B, ref.icmp_echo(128, 7, 1))),
    ]
    for frame in kinds:
        ref.fix_checksums(frame)
    return [bytes(kinds[i % len(kinds)]) for i in range(BURST)]


FRAMES = mixed_frames()


@pytest.mark.parametrize("count", [BURST, 4096])
def test_parse_xpfdp_batch(benchmark, count):
    benchmark.group = "parse"
    batch = FrameBatch.from_frames(FRAMES * (count // BURST))
    out = np.zeros(count, dtype=parse.PKT_META)
    benchmark.extra_info["packets"] = count
    counts = benchmark(parse.parse_batch, batch.buf, batch.offsets, batch.lengths, out)
    assert counts[parse.OK] == count


def test_parse_xpfdp_scalar(benchmark):
    benchmark.group = "parse"
    benchmark.pedantic(parse.parse_frame, (FRAMES[2],), rounds=200, iterations=50, warmup_rounds=5)


def test_parse_python_reference(benchmark):
    benchmark.group = "parse"
    benchmark.pedantic(ref.parse, (FRAMES[2],), rounds=200, iterations=50, warmup_rounds=5)


def test_parse_scapy(benchmark):
    benchmark.group = "parse"
    benchmark.pedantic(Ether, (FRAMES[2],), rounds=200, iterations=50, warmup_rounds=5)


def test_parse_dpkt(benchmark):
    benchmark.group = "parse"
    benchmark.pedantic(
        dpkt.ethernet.Ethernet, (FRAMES[2],), rounds=200, iterations=50, warmup_rounds=5
    )
