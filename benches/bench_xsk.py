"""Userspace cost of the port interface on MemPort: rx_burst + tx_burst + recycle.

ns/packet at burst 64 and 256, three ways, in the same session:
* `nogil`: the Cython loop (`forward`), which is how pipelines drive ports;
* `python_api`: one Python call per burst for rx_burst and tx_burst;
* `pure_python`: a list-based reference doing the same frame moves in Python (the ratio
  baseline).
Target (issue 3): <= 15 ns/packet. Run: `make bench` or
`.venv/bin/python -m pytest benches/bench_xsk.py --benchmark-only`.
"""

from __future__ import annotations

import pytest

from xpfdp.pcap import FrameBatch
from xpfdp.ports import Burst, MemPort, Umem, forward

PACKETS = 1 << 18
FRAME = bytes(range(64))


@pytest.fixture(params=[64, 256], ids=lambda b: f"burst{b}")
def setup(request):
    umem = Umem(4096, tx_frames=0)
    port = MemPort(umem, FrameBatch.from_frames([FRAME] * 64), loop=True)
    burst = Burst(request.param)
    yield port, burst
    umem.check_frames()
    umem.close()


TARGET_NS_PER_PACKET = 15


def _report(benchmark, packets: int) -> float:
    """Record ns/packet (from the fastest round) in the benchmark's extra_info."""
    ns = benchmark.stats.stats.min * 1e9 / packets
    benchmark.extra_info["ns_per_packet"] = round(ns, 2)
    return ns


def test_nogil_loop(benchmark, setup):
    port, burst = setup
    benchmark.group = f"memport rx+tx+recycle burst{burst.capacity}"
    result = benchmark.pedantic(
        forward, args=(port, port, burst, 60.0, False, PACKETS), rounds=7, warmup_rounds=1
    )
    assert result[0] >= PACKETS and result[2] == 0
    benchmark.extra_info["target_ns_per_packet"] = TARGET_NS_PER_PACKET
    _report(benchmark, result[0])


def test_python_api(benchmark, setup):
    port, burst = setup
    benchmark.group = f"memport rx+tx+recycle burst{burst.capacity}"

    def run():
        moved = 0
        while moved < PACKETS:
            n = port.rx_burst(burst)
            sent = port.tx_burst(burst)
            if sent < n:
                port.recycle(burst, sent)
            burst.n = 0
            moved += n
        return moved

    moved = benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    benchmark.extra_info["target_ns_per_packet"] = TARGET_NS_PER_PACKET
    _report(benchmark, moved)


def test_pure_python_reference(benchmark, setup):
    """Same frame moves with Python lists and bytearrays (no kernel, no Cython)."""
    _, burst = setup
    benchmark.group = f"memport rx+tx+recycle burst{burst.capacity}"
    frames = [bytearray(4096) for _ in range(2048)]
    free = list(range(2048))
    captured = 0
    packets = PACKETS // 16

    def run():
        nonlocal captured
        moved = 0
        while moved < packets:
            got = []
            for _ in range(burst.capacity):
                idx = free.pop()
                frames[idx][512 : 512 + len(FRAME)] = FRAME
                got.append((idx * 4096 + 512, len(FRAME)))
            for addr, _length in got:
                captured += 1
                free.append(addr >> 12)
            moved += len(got)
        return moved

    moved = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    _report(benchmark, moved)
