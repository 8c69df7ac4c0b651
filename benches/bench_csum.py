"""ns/packet of the checksum and rewrite kernels, each next to its references.

Batch kernels run over one burst of BURST frames (extra_info["packets"]); everything else
handles one frame per call. References in the same group: the pure-Python oracle of the
tests, scapy and dpkt where they offer the operation, and a bare Cython call (the floor for
any scalar entry point). Rewrites get a pristine buffer before every timed round (setup is
not timed), so every round does the real work.

    .venv/bin/python -m pytest benches/bench_csum.py --benchmark-only
"""

import os
import sys
from pathlib import Path

# numpy's OpenBLAS worker threads spin on this 2-vCPU box; nothing here uses BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dpkt
import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import checksum as scapy_checksum

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import csum_reference as ref

from xpfdp import csum, parse
from xpfdp.pcap import FrameBatch

BURST = 256  # the largest burst of the pipeline; BIG shows the per-packet asymptote
BIG = 4096
BURSTS = [BURST, BIG]
ROUNDS = 3000
A1, A2, SNAT = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([11, 0, 0, 1])
V6A, V6B, V6SNAT = bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48))


def tcp_frame(flags=0x02, family=4, payload=b""):
    seg = ref.tcp(40000, 80, seq=1, flags=flags, options=b"\x02\x04\x05\xb4", payload=payload)
    if family == 4:
        frame = ref.ethernet(0x0800, ref.ipv4(6, A1, A2, seg))
    else:
        frame = ref.ethernet(0x86DD, ref.ipv6(6, V6A, V6B, seg))
    ref.fix_checksums(frame)
    return bytes(frame)


class Burst:
    """BURST copies of a frame in one buffer, parsed, with a pristine copy to restore."""

    def __init__(self, frame: bytes, count: int = BURST):
        self.batch = FrameBatch.from_frames([frame] * count)
        self.meta = np.zeros(count, dtype=parse.PKT_META)
        parse.parse_batch(self.batch.buf, self.batch.offsets, self.batch.lengths, self.meta)
        self.pristine_buf = self.batch.buf.copy()
        self.pristine_meta = self.meta.copy()
        self.args = (self.batch.buf, self.batch.offsets, self.batch.lengths, self.meta)

    def restore(self):
        np.copyto(self.batch.buf, self.pristine_buf)
        np.copyto(self.meta, self.pristine_meta)
        return (), {}


def run_batch(benchmark, burst: Burst, fn):
    """Time fn() over a fresh copy of the burst each round."""
    benchmark.extra_info["packets"] = len(burst.meta)
    rounds = ROUNDS if len(burst.meta) <= BURST else ROUNDS // 10
    benchmark.pedantic(fn, setup=burst.restore, rounds=rounds, warmup_rounds=20)


SCALAR_FRAMES = 64


def run_scalar(benchmark, frame: bytes, fn):
    """Time fn(frame) called from a Python loop over SCALAR_FRAMES fresh copies of a frame.

    Per-packet figures therefore include the loop's own ~15-20 ns, as any per-packet use of
    a scalar API from Python would.
    """
    benchmark.extra_info["packets"] = SCALAR_FRAMES

    def setup():
        return ([bytearray(frame) for _ in range(SCALAR_FRAMES)],), {}

    def each(frames):
        for f in frames:
            fn(f)

    benchmark.pedantic(each, setup=setup, rounds=ROUNDS // 3, warmup_rounds=20)


def run_pure(benchmark, fn, *args, **kwargs):
    """Time a call with no side effects; many iterations per round hide the timer's cost."""
    benchmark.extra_info.setdefault("packets", 1)
    benchmark.pedantic(fn, args, kwargs, rounds=300, iterations=200, warmup_rounds=5)


@pytest.fixture(scope="session")
def bare_cython_call(tmp_path_factory):
    """`def noop(frame): return None` (and a keyword-only twin) compiled by Cython: the
    cost of any scalar call with the same calling convention."""
    import pyximport

    where = tmp_path_factory.mktemp("bare_call")
    (where / "xpfdp_bench_bare_call.pyx").write_text(
        "def noop(frame):\n    return None\n\n\n"
        "def noop_keywords(frame, *, src=None, dst=None, sport=None, dport=None):\n"
        "    return None\n"
    )
    sys.path.insert(0, str(where))
    pyximport.install(build_dir=str(where / "build"), language_level=3)
    import xpfdp_bench_bare_call

    return xpfdp_bench_bare_call


# ---- full checksum ---------------------------------------------------------------------------

SIZES = [64, 576, 1500]


def random_frames(size, count=BURST):
    data = np.random.default_rng(size).integers(0, 256, size * count, dtype=np.uint8)
    offsets = np.arange(count, dtype=np.uint64) * size
    return data, offsets, np.full(count, size, dtype=np.uint32)


@pytest.mark.parametrize("count", BURSTS)
@pytest.mark.parametrize("size", SIZES)
def test_checksum_xpfdp_batch(benchmark, size, count):
    benchmark.group = f"checksum-{size}B"
    buf, offsets, lengths = random_frames(size, count)
    benchmark.extra_info.update(packets=count, bytes_per_packet=size)
    benchmark(csum.checksum_batch, buf, offsets, lengths)


# One frame per call: xpfdp's scalar entry point and the references.
ONE_FRAME_CHECKSUMS = {
    "xpfdp_scalar": csum.internet_checksum,
    "python_reference": ref.checksum,
    "scapy": scapy_checksum,
    "dpkt": dpkt.in_cksum,
}


@pytest.mark.parametrize("impl", sorted(ONE_FRAME_CHECKSUMS))
@pytest.mark.parametrize("size", SIZES)
def test_checksum_one_frame(benchmark, size, impl):
    benchmark.group = f"checksum-{size}B"
    data = bytes(random_frames(size, 1)[0])
    benchmark.extra_info.update(packets=1, bytes_per_packet=size)
    run_pure(benchmark, ONE_FRAME_CHECKSUMS[impl], data)


# ---- incremental update and the scalar-call floor ----------------------------------------------


def test_incremental_xpfdp_scalar(benchmark):
    benchmark.group = "incremental-update"
    run_pure(benchmark, csum.incremental_update, 0xDD2F, 0x5555, 0x3285)


def test_incremental_python_reference(benchmark):
    benchmark.group = "incremental-update"
    run_pure(benchmark, ref.eqn3, 0xDD2F, [0x5555], [0x3285])


def test_incremental_bare_cython_call(benchmark, bare_cython_call):
    benchmark.group = "incremental-update"
    run_pure(benchmark, bare_cython_call.noop, 0xDD2F)


# Steady state on one frame, called directly (no wrapper): after the first call each rewrite
# is a no-op (MSS already clamped, CE already set, same NAT values, TTL 1 refused), so this
# is buffer access + parse + decision: the fixed cost of a scalar entry point.
SCALAR_CALLS = {
    "clamp_mss": (csum.clamp_mss, (1200,), {}),
    "decrement_ttl_expired": (csum.decrement_ttl, (), {}),
    "mark_ecn_ce": (csum.mark_ecn_ce, (), {}),
    "checksums_ok": (csum.checksums_ok, (), {}),
    "rewrite_nat_packed": (csum.rewrite_nat, (), {"src": SNAT, "sport": 1024}),
    "rewrite_nat_str": (csum.rewrite_nat, (), {"src": "11.0.0.1", "sport": 1024}),
}


def ttl1_frame():
    frame = bytearray(tcp_frame())
    frame[14 + 8] = 1
    ref.fix_checksums(frame)
    return frame


@pytest.mark.parametrize("name", sorted(SCALAR_CALLS))
def test_scalar_call_xpfdp(benchmark, name):
    benchmark.group = "scalar-call"
    fn, args, kwargs = SCALAR_CALLS[name]
    run_pure(benchmark, fn, ttl1_frame(), *args, **kwargs)


def test_scalar_call_bare_cython(benchmark, bare_cython_call):
    benchmark.group = "scalar-call"
    run_pure(benchmark, bare_cython_call.noop, ttl1_frame())


def test_scalar_call_bare_cython_keywords(benchmark, bare_cython_call):
    """The floor for rewrite_nat: same keyword-only signature, same keywords passed."""
    benchmark.group = "scalar-call"
    run_pure(benchmark, bare_cython_call.noop_keywords, ttl1_frame(), src=SNAT, sport=1024)


# ---- MSS clamp ---------------------------------------------------------------------------------


def scapy_clamp(frame, mss=1200):
    pkt = Ether(bytes(frame))
    pkt[TCP].options = [
        (k, min(v, mss)) if k == "MSS" and pkt[TCP].flags.S else (k, v) for k, v in pkt[TCP].options
    ]
    del pkt[TCP].chksum
    return bytes(pkt)


@pytest.mark.parametrize("count", BURSTS)
@pytest.mark.parametrize(("kind", "flags"), [("syn", 0x02), ("nonsyn", 0x10)])
def test_mss_clamp_xpfdp_batch(benchmark, kind, flags, count):
    benchmark.group = f"mss-clamp-{kind}"
    burst = Burst(tcp_frame(flags), count)
    run_batch(benchmark, burst, lambda: csum.clamp_mss_batch(*burst.args, 1200))


@pytest.mark.parametrize(("kind", "flags"), [("syn", 0x02), ("nonsyn", 0x10)])
def test_mss_clamp_xpfdp_scalar(benchmark, kind, flags):
    benchmark.group = f"mss-clamp-{kind}"
    run_scalar(benchmark, tcp_frame(flags), lambda f: csum.clamp_mss(f, 1200))


@pytest.mark.parametrize(("kind", "flags"), [("syn", 0x02), ("nonsyn", 0x10)])
def test_mss_clamp_python_reference(benchmark, kind, flags):
    benchmark.group = f"mss-clamp-{kind}"
    run_scalar(benchmark, tcp_frame(flags), lambda f: ref.clamp_mss(f, 1200))


@pytest.mark.parametrize(("kind", "flags"), [("syn", 0x02), ("nonsyn", 0x10)])
def test_mss_clamp_scapy(benchmark, kind, flags):
    benchmark.group = f"mss-clamp-{kind}"
    run_scalar(benchmark, tcp_frame(flags), scapy_clamp)


# ---- NAT ---------------------------------------------------------------------------------------


def scapy_snat(frame):
    pkt = Ether(bytes(frame))
    pkt[IP].src, pkt[TCP].sport = "11.0.0.1", 1024
    del pkt[IP].chksum, pkt[TCP].chksum
    return bytes(pkt)


def dpkt_snat(frame):
    eth = dpkt.ethernet.Ethernet(bytes(frame))
    eth.data.src, eth.data.sum = SNAT, 0
    eth.data.data.sport, eth.data.data.sum = 1024, 0
    return bytes(eth)


@pytest.mark.parametrize("count", BURSTS)
@pytest.mark.parametrize("family", [4, 6])
def test_nat_xpfdp_batch(benchmark, family, count):
    benchmark.group = f"nat-v{family}"
    burst = Burst(tcp_frame(0x10, family), count)
    new_src = SNAT if family == 4 else V6SNAT
    buf, offsets, lengths, meta = burst.args
    # Named arguments, not *burst.args: a starred call with keywords makes the caller build a
    # kwargs dict (~140 ns per call on this box) that no direct caller pays.
    run_batch(
        benchmark,
        burst,
        lambda: csum.rewrite_nat_batch(buf, offsets, lengths, meta, src=new_src, sport=1024),
    )


@pytest.mark.parametrize("family", [4, 6])
def test_nat_xpfdp_scalar(benchmark, family):
    benchmark.group = f"nat-v{family}"
    new_src = SNAT if family == 4 else V6SNAT
    run_scalar(
        benchmark, tcp_frame(0x10, family), lambda f: csum.rewrite_nat(f, src=new_src, sport=1024)
    )


@pytest.mark.parametrize("family", [4, 6])
def test_nat_python_reference(benchmark, family):
    benchmark.group = f"nat-v{family}"
    new_src = SNAT if family == 4 else V6SNAT
    run_scalar(
        benchmark, tcp_frame(0x10, family), lambda f: ref.rewrite_nat(f, new_src, None, 1024)
    )


# ---- TTL ---------------------------------------------------------------------------------------


def scapy_ttl(frame):
    pkt = Ether(bytes(frame))
    pkt[IP].ttl -= 1
    del pkt[IP].chksum
    return bytes(pkt)


def dpkt_ttl(frame):
    eth = dpkt.ethernet.Ethernet(bytes(frame))
    eth.data.ttl -= 1
    eth.data.sum = 0
    return bytes(eth)


@pytest.mark.parametrize("count", BURSTS)
def test_ttl_xpfdp_batch(benchmark, count):
    benchmark.group = "ttl"
    burst = Burst(tcp_frame(0x10), count)
    buf, offsets, lengths, meta = burst.args
    run_batch(benchmark, burst, lambda: csum.decrement_ttl_batch(buf, offsets, lengths, meta))


def test_ttl_xpfdp_scalar(benchmark):
    benchmark.group = "ttl"
    run_scalar(benchmark, tcp_frame(0x10), csum.decrement_ttl)


def test_ttl_python_reference(benchmark):
    benchmark.group = "ttl"
    run_scalar(benchmark, tcp_frame(0x10), ref.decrement_ttl)


# ---- the NAT and TTL rewrites by packet libraries (parse to objects, rewrite, serialise) ------

LIBRARY_REWRITES = {
    ("nat-v4", "scapy"): scapy_snat,
    ("nat-v4", "dpkt"): dpkt_snat,
    ("ttl", "scapy"): scapy_ttl,
    ("ttl", "dpkt"): dpkt_ttl,
}


@pytest.mark.parametrize(("group", "library"), sorted(LIBRARY_REWRITES))
def test_library_rewrite(benchmark, group, library):
    benchmark.group = group
    run_scalar(benchmark, tcp_frame(0x10), LIBRARY_REWRITES[group, library])


# Full recompute and verification on parsed frames: the kernels that check every record
# offset against the frame (a corrupted PKT_META must not reach outside it). Compare a
# hardened build with an older one by running this group against both in one session:
#   for src in /old/src src src /old/src; do PYTHONPATH=$src python -m pytest \
#       benches/bench_csum.py -k full_recompute --benchmark-only; done
@pytest.mark.parametrize("count", BURSTS)
@pytest.mark.parametrize("kernel", ["fix_checksums_batch", "checksums_ok_batch"])
def test_full_recompute_xpfdp_batch(benchmark, kernel, count):
    benchmark.group = f"full-recompute-{kernel}"
    burst = Burst(tcp_frame(0x10, payload=bytes(1446)), count)
    fn = getattr(csum, kernel)
    buf, offsets, lengths, meta = burst.args
    run_batch(benchmark, burst, lambda: fn(buf, offsets, lengths, meta))
