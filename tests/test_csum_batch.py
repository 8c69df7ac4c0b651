"""Batch kernels of xpfdp.csum: batch = scalar = reference, records kept in step with the
bytes, clear errors for bad arguments, and no read or write past a frame (guard page)."""

import csum_reference as ref
import numpy as np
import pytest
from guard_pages import GuardedPages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpfdp import csum, parse
from xpfdp.pcap import FrameBatch

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FRAME_LISTS = st.lists(
    st.one_of(ref.frames(), ref.frames(kinds=("tcp",), syn=True)), min_size=1, max_size=10
)


def batch_of(frames):
    batch = FrameBatch.from_frames([bytes(f) for f in frames])
    meta = np.zeros(len(frames), dtype=parse.PKT_META)
    parse.parse_batch(batch.buf, batch.offsets, batch.lengths, meta)
    return batch, meta


def frames_of(batch):
    return [bytearray(batch.frame(i).tobytes()) for i in range(len(batch))]


def assert_meta_matches_bytes(batch, meta):
    again = np.zeros(len(batch), dtype=parse.PKT_META)
    parse.parse_batch(batch.buf, batch.offsets, batch.lengths, again)
    assert meta.tobytes() == again.tobytes()


@SETTINGS
@given(FRAME_LISTS, st.integers(0, 0xFFFF))
def test_clamp_batch_equals_scalar(frames, mss):
    batch, meta = batch_of(frames)
    result = csum.clamp_mss_batch(batch.buf, batch.offsets, batch.lengths, meta, mss)
    for i, frame in enumerate(frames):
        clamped = csum.clamp_mss(frame, mss) if mss else False
        assert (result[i] == csum.DONE) == clamped
        assert frames_of(batch)[i] == frame
    per_frame = np.full(len(frames), mss, dtype=np.uint16)
    again = csum.clamp_mss_batch(batch.buf, batch.offsets, batch.lengths, meta, per_frame)
    assert not (again == csum.DONE).any()  # already clamped: idempotent


@SETTINGS
@given(FRAME_LISTS)
def test_mss_batch_reads_the_option_the_clamp_rewrites(frames):
    batch, meta = batch_of(frames)
    values = csum.mss_batch(batch.buf, batch.offsets, batch.lengths, meta)
    for i, frame in enumerate(frames):
        at = ref.mss_option_at(frame)
        assert values[i] == (-1 if at is None else int.from_bytes(frame[at : at + 2], "big"))


@SETTINGS
@given(FRAME_LISTS)
def test_ttl_and_ecn_batches_equal_scalar_and_keep_meta(frames):
    batch, meta = batch_of(frames)
    ttl = csum.decrement_ttl_batch(batch.buf, batch.offsets, batch.lengths, meta)
    ecn = csum.mark_ecn_ce_batch(batch.buf, batch.offsets, batch.lengths, meta)
    for i, frame in enumerate(frames):
        assert ttl[i] == csum.decrement_ttl(frame)
        assert (ecn[i] == csum.ECN_MARKED) == csum.mark_ecn_ce(frame)
        assert frames_of(batch)[i] == frame
    assert_meta_matches_bytes(batch, meta)


@st.composite
def nat_batch(draw):
    frames = draw(FRAME_LISTS)
    family = draw(st.sampled_from([4, 6]))
    size = 4 if family == 4 else 16
    # The other family's size too: a decision mixing families must skip every frame.
    one_addr = (
        st.none()
        | st.binary(min_size=size, max_size=size)
        | st.binary(min_size=20 - size, max_size=20 - size)
    )
    per_frame = st.binary(min_size=16 * len(frames), max_size=16 * len(frames)).map(
        lambda b: np.frombuffer(b, np.uint8).reshape(-1, 16).copy()
    )
    port = st.none() | st.integers(0, 0xFFFF)
    ports = st.lists(st.integers(-1, 0xFFFF), min_size=len(frames), max_size=len(frames)).map(
        lambda v: np.array(v, dtype=np.int32)
    )
    return (
        frames,
        draw(one_addr | per_frame),
        draw(one_addr | per_frame),
        draw(port | ports),
        draw(port | ports),
    )


def nth(value, i, family):
    """The scalar argument frame i gets from a batch argument."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return bytes(value[i, : 4 if family == 4 else 16])
    if isinstance(value, np.ndarray):
        return None if value[i] < 0 else int(value[i])
    return value


@SETTINGS
@given(nat_batch())
def test_nat_batch_equals_scalar_and_reference(case):
    frames, src, dst, sport, dport = case
    batch, meta = batch_of(frames)
    result = csum.rewrite_nat_batch(
        batch.buf, batch.offsets, batch.lengths, meta, src=src, dst=dst, sport=sport, dport=dport
    )
    for i, frame in enumerate(frames):
        family = ref.parse(bytes(frame))["ip_version"]
        args = [nth(v, i, family) for v in (src, dst, sport, dport)]
        wrong_family = any(
            isinstance(a, bytes) and len(a) != (4 if family == 4 else 16) for a in (src, dst)
        )
        if wrong_family:
            assert result[i] == csum.SKIPPED
            assert frames_of(batch)[i] == frame
            continue
        before = bytes(frame)
        expected = bytearray(frame)
        ref.rewrite_nat(expected, *args)
        csum.rewrite_nat(frame, src=args[0], dst=args[1], sport=args[2], dport=args[3])
        assert frames_of(batch)[i] == frame == expected
        assert result[i] == (csum.DONE if bytes(frame) != before else csum.UNCHANGED)
    ok = csum.checksums_ok_batch(batch.buf, batch.offsets, batch.lengths, meta)
    assert ok.all()
    assert_meta_matches_bytes(batch, meta)


@SETTINGS
@given(FRAME_LISTS, st.data())
def test_fix_verify_and_checksum_batches(frames, data):
    for frame in frames:
        if data.draw(st.booleans()):
            frame[data.draw(st.integers(14, len(frame) - 1))] ^= 0x5A
    batch, meta = batch_of(frames)
    sums = csum.checksum_batch(batch.buf, batch.offsets, batch.lengths)
    assert sums.tolist() == [ref.checksum(bytes(f)) for f in frames]
    ok = csum.checksums_ok_batch(batch.buf, batch.offsets, batch.lengths, meta)
    for i, frame in enumerate(frames):
        m = ref.parse(bytes(frame))
        want = m["status"] in ("ok", "nonfirst_frag") and ref.checksums_ok(frame)
        assert ok[i] == want
    csum.fix_checksums_batch(batch.buf, batch.offsets, batch.lengths, meta)
    for i, frame in enumerate(frames):
        if ref.parse(bytes(frame))["status"] in ("ok", "nonfirst_frag"):
            ref.fix_checksums(frame)
        assert frames_of(batch)[i] == frame


def test_empty_batches():
    buf = np.zeros(0, dtype=np.uint8)
    addrs, lens = np.zeros(0, np.uint64), np.zeros(0, np.uint32)
    meta = np.zeros(0, dtype=parse.PKT_META)
    assert parse.parse_batch(buf, addrs, lens, meta).sum() == 0
    assert len(csum.clamp_mss_batch(buf, addrs, lens, meta, 1000)) == 0
    assert len(csum.rewrite_nat_batch(buf, addrs, lens, meta, src="1.2.3.4", sport=5)) == 0
    assert len(csum.checksum_batch(buf, addrs, lens)) == 0


@pytest.mark.parametrize(
    ("nat", "first_rewritten"),
    [
        ({"src": "192.0.2.9", "sport": 7}, True),  # one plan with an address: one-pass loop
        ({"sport": 7}, False),  # ports only: bounds checked before the loop
        ({"src": np.zeros((3, 16), np.uint8)}, False),  # per-frame plans: checked before
    ],
)
def test_nat_batch_frame_past_buffer(nat, first_rewritten):
    """A frame past the buffer raises ValueError; it and later frames are never touched.

    The one-plan loop checks each frame as it reaches it, so frames before the bad one are
    already rewritten; the other paths check every frame first and rewrite none.
    """
    frame = ref.ethernet(0x0800, ref.ipv4(6, bytes([10, 0, 0, 1]), bytes(4), ref.tcp(1, 2)))
    batch, meta = batch_of([frame, frame, frame])
    lengths = batch.lengths.copy()
    lengths[1] = len(batch.buf)  # frame 1 runs past the end
    with pytest.raises(ValueError, match=r"frame 1 .* runs past"):
        csum.rewrite_nat_batch(batch.buf, batch.offsets, lengths, meta, **nat)
    after = frames_of(batch)
    assert (after[0] != frame) == first_rewritten
    assert after[1] == frame
    assert after[2] == frame
    assert_meta_matches_bytes(batch, meta)


def test_bad_batch_arguments():
    frame = ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), ref.tcp(1, 2)))
    batch, meta = batch_of([frame, frame])
    args = (batch.buf, batch.offsets, batch.lengths, meta)
    with pytest.raises(ValueError, match="2 frames"):
        csum.clamp_mss_batch(*args, np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        csum.clamp_mss_batch(*args, -1)
    with pytest.raises(ValueError, match=r"shape \(2, 16\)"):
        csum.rewrite_nat_batch(*args, src=np.zeros((2, 4), np.uint8))
    with pytest.raises(ValueError, match="2 entries"):
        csum.rewrite_nat_batch(*args, sport=np.zeros(5, np.int32))
    with pytest.raises(ValueError, match="runs past"):
        csum.decrement_ttl_batch(batch.buf[:50], batch.offsets, batch.lengths, meta)
    with pytest.raises(TypeError, match="PKT_META"):
        csum.mark_ecn_ce_batch(batch.buf, batch.offsets, batch.lengths, np.zeros(2))
    with pytest.raises(ValueError, match="holds 1 records"):
        csum.fix_checksums_batch(batch.buf, batch.offsets, batch.lengths, meta[:1])
    with pytest.raises(ValueError, match="read-only"):
        ro = batch.buf.copy()
        ro.flags.writeable = False
        csum.decrement_ttl_batch(ro, batch.offsets, batch.lengths, meta)


# ---- guard page: a frame ending at an unreadable page ---------------------------------------


@pytest.fixture(scope="module")
def guarded():
    pages = GuardedPages()
    return pages.array, pages


@SETTINGS
@given(FRAME_LISTS, st.data())
def test_batch_rewrites_never_touch_bytes_past_a_frame(guarded, frames, data):
    buf, pages = guarded
    frame = frames[0]
    for _ in range(data.draw(st.integers(0, 2))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    frame = frame[: data.draw(st.integers(0, len(frame)))]
    addrs, lens = pages.place(frame)
    meta = np.zeros(1, dtype=parse.PKT_META)
    parse.parse_batch(buf, addrs, lens, meta)
    csum.clamp_mss_batch(buf, addrs, lens, meta, 536)
    csum.rewrite_nat_batch(buf, addrs, lens, meta, sport=7, dport=9)
    # The one-plan loops specialised per family and address shape check bounds themselves.
    csum.rewrite_nat_batch(buf, addrs, lens, meta, src=bytes([192, 0, 2, 1]), dport=9)
    csum.rewrite_nat_batch(buf, addrs, lens, meta, dst=bytes(range(16)), sport=7)
    csum.decrement_ttl_batch(buf, addrs, lens, meta)
    csum.mark_ecn_ce_batch(buf, addrs, lens, meta)
    csum.checksums_ok_batch(buf, addrs, lens, meta)
    csum.fix_checksums_batch(buf, addrs, lens, meta)
    csum.checksum_batch(buf, addrs, lens)


def test_corrupted_records_cannot_push_rewrites_out_of_the_frame(guarded):
    buf, pages = guarded
    frame = ref.ethernet(0x0800, ref.ipv4(6, bytes(4), bytes(4), ref.tcp(1, 2)))
    ref.fix_checksums(frame)
    addrs, lens = pages.place(frame)
    meta = np.zeros(1, dtype=parse.PKT_META)
    parse.parse_batch(buf, addrs, lens, meta)
    meta["l4_off"] = meta["l3_off"] = meta["l3_len"] = 0xFFFF
    assert csum.clamp_mss_batch(buf, addrs, lens, meta, 536)[0] == csum.SKIPPED
    assert csum.rewrite_nat_batch(buf, addrs, lens, meta, sport=7)[0] == csum.SKIPPED
    assert csum.rewrite_nat_batch(buf, addrs, lens, meta, src="192.0.2.1")[0] == csum.SKIPPED
    assert csum.decrement_ttl_batch(buf, addrs, lens, meta)[0] == csum.TTL_SKIPPED
    assert pages.frame_bytes(addrs, lens) == bytes(frame)
