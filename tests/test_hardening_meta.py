"""Corrupted PKT_META records: no kernel that takes `meta` reads or writes outside a frame.

Every batch kernel is fed a frame placed against a PROT_NONE guard page (after it, and in a
second placement before it) together with a record whose offsets, lengths, status, family,
protocol and flags are arbitrary, so any out-of-bounds access faults the test process.
"""

import csum_reference as ref
import numpy as np
import pytest
from guard_pages import GuardedPages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpfdp import csum, parse
from xpfdp.cos import XDP_DESC, FlowFairQueue
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import Pipeline, PyStage, firewall_stages
from xpfdp.ports import MemPort, Umem
from xpfdp.route import RouteTable
from xpfdp.session import KEY_DTYPE, SessionTable, keys_from_meta

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
U16 = st.integers(0, 0xFFFF)
U8 = st.integers(0, 0xFF)
# Field overrides of a parsed record; unset fields keep the parser's (consistent) value, so
# records range from subtly to wildly inconsistent.
CORRUPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from([parse.OK, 11]) | U8,
        "ip_version": st.sampled_from([4, 6]) | U8,
        "protocol": st.sampled_from([1, 6, 17, 58]) | U8,
        "flags": U8,
        "tcp_flags": U8,
        "icmp_type": U8,
        "l3_off": st.integers(0, 80) | U16,
        "l4_off": st.integers(0, 120) | U16,
        "payload_off": U16,
        "l3_len": st.integers(0, 120) | U16,
        "sport": U16,
        "dport": U16,
    },
)


@pytest.fixture(scope="module")
def guarded():
    return GuardedPages()


def corrupted(frame: bytes, fields: dict) -> np.ndarray:
    meta = parse.parse_frame(frame).reshape(1).copy()
    for name, value in fields.items():
        meta[name] = value
    return meta


def run_every_meta_kernel(buf, addrs, lens, meta):
    """Each kernel on its own copy of the record (rewrites keep records in step)."""
    m = meta.copy
    csum.fix_checksums_batch(buf, addrs, lens, m())
    csum.checksums_ok_batch(buf, addrs, lens, m())
    csum.clamp_mss_batch(buf, addrs, lens, m(), 536)
    csum.clamp_mss_batch(buf, addrs, lens, m(), np.array([100], np.uint16))
    csum.mss_batch(buf, addrs, lens, m())
    csum.decrement_ttl_batch(buf, addrs, lens, m())
    csum.mark_ecn_ce_batch(buf, addrs, lens, m())
    csum.rewrite_nat_batch(buf, addrs, lens, m(), sport=7, dport=9)
    csum.rewrite_nat_batch(buf, addrs, lens, m(), src=bytes([192, 0, 2, 1]), dport=9)
    csum.rewrite_nat_batch(buf, addrs, lens, m(), dst=bytes(range(16)), sport=7)
    rows = np.zeros((1, 16), np.uint8)
    csum.rewrite_nat_batch(buf, addrs, lens, m(), src=rows, dst=rows,
                           sport=np.array([5]), dport=np.array([-1]))  # fmt: skip
    routes = RouteTable()
    routes.add("0.0.0.0/0", 0)
    routes.add("::/0", 1)
    routes.lookup_batch(m(), np.zeros(1, np.int32))
    keys_from_meta(m(), np.zeros(1, KEY_DTYPE))
    desc = np.zeros(1, XDP_DESC)
    desc["addr"], desc["len"] = addrs, lens
    queue = FlowFairQueue(seed=1)
    queue.enqueue_batch(desc, m(), buf)


@SETTINGS
@given(ref.frames(), CORRUPTIONS, st.data())
def test_no_kernel_reaches_past_either_end_of_a_frame(guarded, frame, fields, data):
    for _ in range(data.draw(st.integers(0, 2))):  # e.g. an IHL nibble of 15
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(U8)
    meta = corrupted(bytes(frame), fields)
    frame = frame[: data.draw(st.integers(0, len(frame)))]
    for at_end in (True, False):
        addrs, lens = guarded.place(frame, at_end=at_end)
        run_every_meta_kernel(guarded.array, addrs, lens, meta)


def tcp_frame() -> bytearray:
    segment = ref.tcp(1, 2, options=bytes([2, 4, 5, 180]))
    frame = ref.ethernet(0x0800, ref.ipv4(6, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), segment))
    ref.fix_checksums(frame)
    return frame


# The records that crashed or wrote past the frame before the kernels checked them.
@pytest.mark.parametrize(
    "fields",
    [
        {"l4_off": 200},  # L4 header past the IP datagram: segment length wrapped
        {"l3_len": 10},  # datagram shorter than its header
        {"l4_off": 14 + 20 + 19},  # checksum field (l4 + 16) straddles the datagram end
        {"l3_len": 0xFFFF, "l4_off": 0xFFF0},
    ],
)
def test_inconsistent_records_leave_the_frame_unchanged(guarded, fields):
    frame = tcp_frame()
    meta = corrupted(bytes(frame), fields)
    addrs, lens = guarded.place(frame)
    csum.fix_checksums_batch(guarded.array, addrs, lens, meta.copy())
    csum.checksums_ok_batch(guarded.array, addrs, lens, meta.copy())
    assert guarded.frame_bytes(addrs, lens) == bytes(frame)  # the IPv4 header was right


def test_an_ihl_of_15_is_not_summed_past_the_frame(guarded):
    frame = tcp_frame()
    meta = corrupted(bytes(frame), {})
    frame[14] = 0x4F  # IHL 15: a 60-byte header, longer than the frame's 54 bytes
    frame = frame[:40]
    addrs, lens = guarded.place(frame)
    csum.fix_checksums_batch(guarded.array, addrs, lens, meta.copy())
    assert not csum.checksums_ok_batch(guarded.array, addrs, lens, meta.copy())[0]
    assert guarded.frame_bytes(addrs, lens) == bytes(frame)


def test_valid_records_still_fix_and_verify(guarded):
    frame = tcp_frame()
    frame[-1] ^= 0xFF  # break the TCP checksum
    meta = corrupted(bytes(frame), {})
    addrs, lens = guarded.place(frame)
    assert not csum.checksums_ok_batch(guarded.array, addrs, lens, meta)[0]
    csum.fix_checksums_batch(guarded.array, addrs, lens, meta)
    assert csum.checksums_ok_batch(guarded.array, addrs, lens, meta)[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ref.frames(kinds=("tcp", "udp")), CORRUPTIONS), min_size=1,
                max_size=8))  # fmt: skip
def test_a_stage_corrupting_meta_cannot_crash_the_pipeline(items):
    """A PyStage overwrites every record after parsing; the compiled stages behind it (session,
    NAT, route, TTL, MSS, L2) must stay inside the frames, and no frame is lost."""
    corrupt = [corrupted(bytes(f), fields)[0] for f, fields in items]

    def scribble(burst):
        for i in range(burst.n):
            burst.meta[i] = corrupt[i % len(corrupt)]

    umem = Umem(256)
    lan = MemPort(umem, FrameBatch.from_frames([bytes(f) for f, _ in items]), capture=16)
    wan = MemPort(umem, None, capture=16)
    routes = RouteTable()
    routes.add("0.0.0.0/0", 1)
    routes.add("::/0", 1)
    stages = firewall_stages(lan=0, wan=1, snat="198.51.100.1", mss=1200)
    stages.insert(1, PyStage(scribble))
    pipe = Pipeline([lan, wan], stages, routes=routes,
                    next_hops=[(0, None, None), (1, "02:00:00:00:00:01", "02:00:00:00:00:02")],
                    sessions=SessionTable(1024))  # fmt: skip
    pipe.run(until_idle=True)
    stats = pipe.stats()
    assert stats["rx_packets"] == len(items)
    assert stats["tx_packets"] + stats["drops_total"] == len(items)
    pipe.close(close_ports=True)
    umem.check_frames()


def test_an_all_zero_icmp_message_gets_the_checksum_ffff():
    """Found by the hypothesis suite: taking the stored field out of the sum left -0, so
    the fix wrote 0x0000, which does not verify."""
    frame = ref.ethernet(0x0800, ref.ipv4(1, bytes(4), bytes(4), bytes(8)))
    for stored in (b"\x00\x00", b"\x12\x34"):
        frame[36:38] = stored
        fixed = bytearray(frame)
        csum.fix_checksums(fixed)
        assert fixed[36:38] == b"\xff\xff" and csum.checksums_ok(fixed)
