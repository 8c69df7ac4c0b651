"""Umem, Burst and MemPort without root: frame accounting, bad input, replay and capture."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xpfdp._fast.meta import PKT_META

from xpfdp.pcap import FrameBatch, read_pcap, write_pcap
from xpfdp.ports import DESC, Burst, FrameLeakError, MemPort, RingSizeError, Umem


def frames(n: int, size: int = 60) -> FrameBatch:
    return FrameBatch.from_frames([bytes([i % 256]) * size for i in range(n)])


def test_umem_starts_with_every_frame_in_its_pool(umem_factory):
    u = umem_factory(128, tx_frames=32)
    assert u.check_frames() == {
        "fill_ring": 0,
        "rx_ring": 0,
        "held": 0,
        "pending_fill": 96,
        "free_tx": 32,
        "pending_tx": 0,
        "tx_ring": 0,
    }
    assert u.buf.dtype == np.uint8 and len(u.buf) == 128 * 4096
    assert u.ring_size == 128


@pytest.mark.parametrize("kwargs", [{"frame_size": 3000}, {"headroom": 4000}, {"tx_frames": 9}])
def test_umem_rejects_bad_geometry(kwargs):
    with pytest.raises(ValueError):
        Umem(8, **kwargs)


def test_burst_arrays_have_kernel_and_parser_layouts():
    b = Burst(64)
    assert b.desc.dtype == DESC and DESC.itemsize == 16
    assert b.meta.dtype == PKT_META and len(b.meta) == 64
    assert b.verdict.dtype == np.int16
    with pytest.raises(ValueError):
        Burst(0)


def test_rx_copies_frames_at_copy_mode_offset_and_tx_captures_them(umem_factory):
    u = umem_factory(64)
    src = FrameBatch.from_frames([bytes(range(i, i + 60)) for i in range(20)])
    port = MemPort(u, src, capture=32)
    b = Burst(8)
    assert port.rx_burst(b) == 8
    assert all(int(a) % 4096 == 512 for a in b.desc["addr"][:8])
    assert [bytes(b.frame(i)) for i in range(8)] == [src.frame(i).tobytes() for i in range(8)]
    assert port.tx_burst(b) == 8
    b.n = 0
    assert port.captured() == [src.frame(i).tobytes() for i in range(8)]
    assert u.check_frames()["held"] == 0


def test_source_exhausts_unless_looping(umem_factory):
    u = umem_factory(64)
    once = MemPort(u, frames(5))
    b = Burst(4)
    got = 0
    for _ in range(4):
        got += once.rx_burst(b)
        once.recycle(b)
        b.n = 0
    assert got == 5
    assert once.stats()["fill_empty"] == 0
    once.close()  # its stock of fill frames goes back to the UMEM for the next port
    looping = MemPort(u, frames(5), loop=True)
    assert looping.rx_burst(b) == 4
    b2 = Burst(16)
    assert looping.rx_burst(b2) == 16
    looping.recycle(b)
    looping.recycle(b2)
    b.n = b2.n = 0


def test_bad_descriptors_raise_and_leak_nothing(umem_factory):
    u = umem_factory(64)
    port = MemPort(u, frames(8))
    b = Burst(8)
    port.rx_burst(b)
    before = u.check_frames()
    for field, value in (("addr", 64 * 4096 + 512), ("len", 0), ("len", 4000)):
        saved = b.desc[field][3]
        b.desc[field][3] = value
        with pytest.raises(ValueError, match="descriptor 3"):
            port.tx_burst(b)
        with pytest.raises(ValueError, match="descriptor 3"):
            port.recycle(b)
        b.desc[field][3] = saved
        assert u.check_frames() == before
    b.desc["addr"][5] = b.desc["addr"][4]  # the same frame twice in one batch
    with pytest.raises(ValueError, match="descriptor 5"):
        port.recycle(b)
    assert u.check_frames() == before
    assert port.stats()["bad_desc"] == 7


def test_double_recycle_is_refused(umem_factory):
    u = umem_factory(32)
    port = MemPort(u, frames(4))
    b = Burst(4)
    port.rx_burst(b)
    port.recycle(b)
    with pytest.raises(ValueError, match="already given back"):
        port.recycle(b)
    b.n = 0
    assert u.check_frames()["held"] == 0


def test_oversize_and_empty_source_frames_are_counted_drops(umem_factory):
    u = umem_factory(32)
    src = FrameBatch.from_frames([b"a" * 60, b"b" * 3585, b"", b"c" * 3584])
    port = MemPort(u, src)
    b = Burst(8)
    assert port.rx_burst(b) == 2
    assert [len(b.frame(i)) for i in range(2)] == [60, 3584]
    assert port.stats()["rx_oversize"] == 2
    port.recycle(b)
    b.n = 0


def test_alloc_tx_hands_out_transmit_frames_only(umem_factory):
    u = umem_factory(64, tx_frames=10)
    port = MemPort(u, capture=16)
    b = Burst(16)
    assert port.alloc_tx(b, 16) == 10
    assert set((b.desc["addr"][:10] // 4096).tolist()) == set(range(10))
    b.desc["len"][:10] = 60
    assert port.tx_burst(b) == 10
    b.n = 0
    assert u.check_frames()["free_tx"] == 10


def test_closing_a_port_returns_its_stock(umem_factory):
    u = umem_factory(64)
    port = MemPort(u, frames(4))
    b = Burst(4)
    port.rx_burst(b)
    assert u.check_frames()["fill_ring"] > 0
    port.recycle(b)
    b.n = 0
    port.close()
    assert u.check_frames()["fill_ring"] == 0


def test_ring_size_must_be_power_of_two(umem_factory):
    u = umem_factory(16)
    for bad in (0, 48, 1000, 1 << 17):
        with pytest.raises(RingSizeError, match="power of two"):
            MemPort(u, ring_size=bad)


def test_pcap_source(tmp_path, umem_factory):
    src = FrameBatch.from_frames([bytes([i]) * (60 + i) for i in range(10)])
    write_pcap(tmp_path / "in.pcap", src)
    u = umem_factory(64)
    port = MemPort(u, read_pcap(tmp_path / "in.pcap"), capture=10)
    b = Burst(16)
    assert port.rx_burst(b) == 10
    port.tx_burst(b)
    b.n = 0
    assert port.captured() == [src.frame(i).tobytes() for i in range(10)]


def test_swap_mac_addresses(umem_factory):
    u = umem_factory(16)
    frame = bytes(range(6)) + bytes(range(6, 12)) + b"\x08\x00" + b"x" * 46
    port = MemPort(u, FrameBatch.from_frames([frame]))
    b = Burst(1)
    port.rx_burst(b)
    b.swap_mac_addresses()
    assert bytes(b.frame(0)) == frame[6:12] + frame[:6] + frame[12:]
    port.recycle(b)
    b.n = 0


ops = st.lists(
    st.tuples(
        st.sampled_from(["rx", "tx", "queue", "recycle", "alloc", "poll"]), st.integers(0, 70)
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops, tx_ring=st.sampled_from([32, 64]))
def test_frames_are_conserved_under_any_operation_sequence(ops, tx_ring):
    """Random rx / partial tx / partial recycle / alloc sequences never lose a frame."""
    with Umem(96, tx_frames=24) as u:
        port = MemPort(u, frames(7), loop=True, ring_size=tx_ring, fill_target=64)
        b = Burst(64)
        for op, k in ops:
            if op == "rx" and b.n == 0:
                port.rx_burst(b)
            elif op == "alloc" and b.n == 0:
                port.alloc_tx(b, k)
                b.desc["len"][: b.n] = 60
            elif op == "tx" and b.n:
                sent = port.tx_burst(b, 0, min(k, b.n))
                port.recycle(b, sent)
                b.n = 0
            elif op == "queue" and b.n:
                assert port.queue_tx(b, 0, min(k, b.n)) == min(k, b.n)
                port.recycle(b, min(k, b.n))
                b.n = 0
            elif op == "recycle" and b.n:
                port.recycle(b)
                b.n = 0
            elif op == "poll":
                port.poll()
            counts = u.check_frames()
            assert counts["pending_tx"] <= 2 * tx_ring
            assert counts["held"] == b.n
        if b.n:
            port.recycle(b)
            b.n = 0
        assert u.check_frames()["held"] == 0


def test_check_frames_detects_a_corrupted_pool(umem_factory):
    u = umem_factory(16)
    port = MemPort(u, frames(2))
    b = Burst(2)
    port.rx_burst(b)
    b.n = 0  # the caller "forgets" two frames: still held, counts still add up
    assert u.check_frames()["held"] == 2
    with pytest.raises(ValueError):
        port.recycle(b, 0, 1)  # count beyond n
    b.n = 2
    port.recycle(b)
    b.n = 0
    u._debug_set_state(15, 4)  # forge a record: a pending-fill frame marked held
    with pytest.raises(FrameLeakError, match="per-frame records"):
        u.check_frames()
    u._debug_set_state(15, 2)
    assert u.check_frames()["held"] == 0


def test_rx_into_a_full_burst_is_refused(umem_factory):
    u = umem_factory(32)
    port = MemPort(u, frames(4))
    b = Burst(2)
    port.rx_burst(b)
    with pytest.raises(ValueError, match="still holds 2 frames"):
        port.rx_burst(b)
    port.recycle(b)
    b.n = 0
    assert port.rx_burst(b) == 2
    port.recycle(b)
    b.n = 0


def test_burst_count_and_descriptors_cannot_point_outside(umem_factory):
    u = umem_factory(16)
    port = MemPort(u, frames(2))
    b = Burst(2)
    with pytest.raises(ValueError, match="exceeds the burst capacity"):
        b.n = 3
    port.rx_burst(b)
    good = int(b.desc["addr"][0])
    b.desc["addr"][0] = 1 << 40
    b.swap_mac_addresses()  # skips the bad descriptor instead of writing outside the UMEM
    with pytest.raises(ValueError, match="descriptor 0"):
        port.recycle(b)
    b.desc["addr"][0] = good
    port.recycle(b)
    b.n = 0


def test_queue_tx_keeps_order_bounds_the_queue_and_drops_oldest(umem_factory):
    u = umem_factory(512, tx_frames=256)
    port = MemPort(u, ring_size=32, capture=512)
    b = Burst(64)
    for round_ in range(3):
        assert port.alloc_tx(b, 64) == 64
        for i in range(64):
            a = int(b.desc["addr"][i])
            u.buf[a : a + 60] = round_ * 64 + i
        b.desc["len"][:64] = 60
        assert port.queue_tx(b) == 64  # the port owns them all now
        b.n = 0
        assert u.check_frames()["held"] == 0
    # Each call the ring takes 32 and the queue holds 64 (2 x ring): of 192 offered, 3 x 32
    # went out, 32 wait, and 64 were dropped, always the oldest waiting ones.
    assert u.check_frames()["pending_tx"] == 32
    assert port.stats()["tx_queue_drops"] == 64
    port.poll()
    assert u.check_frames()["pending_tx"] == 0
    got = [f[0] for f in port.captured()]
    assert got == sorted(got)  # FIFO: never reordered
    assert set(range(192)) - set(got) == set(range(32, 64)) | set(range(96, 128))
