# cython: language_level=3
# distutils: extra_compile_args = --param=inline-unit-growth=400 --param=max-inline-insns-single=2000
"""Checksums and in-place rewrites (MSS clamp, NAT, TTL, ECN): scalar and batch entry points.

The kernels are the inline functions of csum.pxd. Scalar functions take one mutable frame
through the buffer protocol (no memoryview object, so the call stays cheap) and parse it
first; batch functions take one buffer, frame offsets and lengths and the PKT_META records
from `parse_batch`, and run one nogil loop with no Python work per packet.
"""

cimport numpy as cnp
import ipaddress
import operator

import numpy as np

from xpfdp._check import integer, integer_array_in_range

from cpython.buffer cimport (
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memset

from xpfdp._fast.csum cimport (
    ECN_MARKED,
    ECN_NOT_ECT,
    REWRITE_BAD_L4_CSUM,
    REWRITE_DONE,
    REWRITE_SKIPPED,
    TTL_SKIPPED,
    csum_apply,
    csum_delta_words,
    csum_finish,
    checksums_fix,
    checksums_valid,
    csum_partial,
    csum_replace16,
    csum_replace32,
    ecn_mark_meta,
    meta_ip_header_ok,
    mss_clamp,
    nat_apply,
    nat_apply_shaped,
    nat_plan_init,
    nat_plan_t,
    nat_rewrite,
    tcp_mss_offset,
    tcp_segment,
    ttl_decrement,
)
from xpfdp._fast.lib.bytes cimport load_be16, store_be16
from xpfdp._fast.meta cimport (
    PARSE_NONFIRST_FRAG,
    PARSE_OK,
    pkt_meta_t,
)
from xpfdp._fast.parse cimport (
    first_frame_past_end,
    frame_at,
    frame_batch_t,
    frame_bounds_error,
    frame_past_end,
    len_at,
    batch_args,
    lossless_integers,
    open_batch,
    parse_one,
)

from xpfdp._fast.meta import PARSE_STATUS_NAMES

cnp.import_array()

# Result codes of the batch rewrites (see csum.pxd).
RESULT_NAMES = ("unchanged", "done", "skipped", "bad_l4_csum")
ECN_RESULT_NAMES = ("not_ect", "marked", "already_ce")


# ---- scalar API ----------------------------------------------------------------------------

cdef inline int parsed_l3(const pkt_meta_t* m) except -1:
    """Raise ValueError unless the frame parsed to a complete IP header."""
    if m.status == PARSE_OK or m.status == PARSE_NONFIRST_FRAG:
        return 0
    raise ValueError(f"frame is not a parseable IP packet (parse status "
                     f"{PARSE_STATUS_NAMES[m.status]!r})")


def internet_checksum(data):
    """RFC 1071 checksum of a bytes-like object: ~(one's-complement sum), 0..0xFFFF."""
    cdef Py_buffer view
    acquire(data, &view, False)
    cdef uint16_t c = csum_finish(csum_partial(<const uint8_t*>view.buf, <size_t>view.len, 0))
    PyBuffer_Release(&view)
    return c


def checksum_partial(data, seed=0):
    """Folded 16-bit one's-complement sum of `data` plus `seed` (not complemented).

    This is the partial-sum representation of xpfdp: chain buffers by passing the result as
    the next seed (an odd-length buffer must come last, its last byte is a word's high half).
    """
    cdef uint32_t seed_v = integer(seed, "seed", 0, 0xFFFFFFFF)
    cdef Py_buffer view
    acquire(data, &view, False)
    cdef uint16_t s = csum_partial(<const uint8_t*>view.buf, <size_t>view.len, seed_v)
    PyBuffer_Release(&view)
    return s


def incremental_update(hc, old, new):
    """RFC 1624 eqn. 3: the checksum after a 16-bit word `old` became `new`."""
    return csum_replace16(integer(hc, "hc", 0, 0xFFFF), integer(old, "old", 0, 0xFFFF),
                          integer(new, "new", 0, 0xFFFF))


def incremental_update32(hc, old, new):
    """RFC 1624 eqn. 3 for a 32-bit field (an IPv4 address, a sequence number)."""
    return csum_replace32(integer(hc, "hc", 0, 0xFFFF), integer(old, "old", 0, 0xFFFFFFFF),
                          integer(new, "new", 0, 0xFFFFFFFF))


def incremental_update_bytes(hc, const uint8_t[::1] old not None,
                             const uint8_t[::1] new not None):
    """RFC 1624 eqn. 3 for an even-length field given as bytes (16 bytes: an IPv6 address)."""
    cdef uint16_t hc16 = integer(hc, "hc", 0, 0xFFFF)
    if old.shape[0] != new.shape[0] or old.shape[0] % 2 or old.shape[0] == 0:
        raise ValueError("old and new must have the same, even, non-zero length")
    return csum_apply(hc16, csum_delta_words(0, &old[0], &new[0], old.shape[0] // 2))


cdef uint8_t* acquire(object frame, Py_buffer* view, bint writable) except NULL:
    """Borrow the frame's bytes (C-contiguous; writable for rewrites) until PyBuffer_Release."""
    try:
        PyObject_GetBuffer(frame, view, PyBUF_WRITABLE if writable else PyBUF_SIMPLE)
    except (BufferError, TypeError, ValueError) as exc:
        kind = "a writable, contiguous" if writable else "a contiguous"
        raise TypeError(
            f"frame must be {kind} buffer (bytearray, memoryview, numpy uint8 array), "
            f"not {type(frame).__name__}: {exc}"
        ) from None
    if view.len > 0xFFFFFFFF:
        PyBuffer_Release(view)
        raise ValueError("frame longer than 4 GiB")
    return <uint8_t*>view.buf


def fix_checksums(frame):
    """Recompute the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum in place.

    Lengths come from the IP header (Ethernet padding is not summed). A UDP result of 0 is
    stored as 0xFFFF. Fragments get only their IPv4 header checksum (the L4 checksum covers
    the reassembled datagram). Raises ValueError if the frame is not a parseable IP packet.
    """
    cdef Py_buffer view
    cdef pkt_meta_t m
    cdef uint8_t* f = acquire(frame, &view, True)
    try:
        parse_one(f, <uint32_t>view.len, &m)
        parsed_l3(&m)
        checksums_fix(f, <uint32_t>view.len, &m)
    finally:
        PyBuffer_Release(&view)


def checksums_ok(frame):
    """True if the IPv4 header and the L4 checksum verify by full recomputation (the oracle of docs/checksums.md).

    A stored IPv4 UDP checksum of 0 ("none") is valid; fragments are judged on their IPv4
    header only. Raises ValueError if the frame is not a parseable IP packet.
    """
    cdef Py_buffer view
    cdef pkt_meta_t m
    cdef uint8_t* f = acquire(frame, &view, False)
    cdef bint ok
    try:
        parse_one(f, <uint32_t>view.len, &m)
        parsed_l3(&m)
        ok = checksums_valid(f, <uint32_t>view.len, &m)
    finally:
        PyBuffer_Release(&view)
    return ok


def clamp_mss(frame, mss):
    """Lower the MSS option of a TCP SYN (or SYN-ACK) to `mss`; True if the frame changed.

    Only the first MSS option is considered and only a larger value is lowered; non-SYN,
    non-TCP, malformed-option and non-IP frames are left byte-identical.
    """
    cdef uint16_t mss16 = integer(mss, "mss", 1, 0xFFFF)
    cdef Py_buffer view
    cdef pkt_meta_t m
    cdef uint8_t* f = acquire(frame, &view, True)
    cdef int r
    parse_one(f, <uint32_t>view.len, &m)
    r = mss_clamp(f, <uint32_t>view.len, &m, mss16)
    PyBuffer_Release(&view)
    return r == REWRITE_DONE


def decrement_ttl(frame):
    """Decrement the IPv4 TTL (fixing the header checksum) or IPv6 hop limit in place.

    Returns the new value, or -1 when the TTL is <= 1 (the packet would expire; the frame
    is left unchanged). Raises ValueError if the frame is not a parseable IP packet.
    """
    cdef Py_buffer view
    cdef pkt_meta_t m
    cdef uint8_t* f = acquire(frame, &view, True)
    cdef int r
    parse_one(f, <uint32_t>view.len, &m)
    r = ttl_decrement(f, <uint32_t>view.len, &m)
    PyBuffer_Release(&view)
    if r == TTL_SKIPPED:
        raise ValueError(f"frame has no complete IP header (parse status "
                         f"{PARSE_STATUS_NAMES[m.status]!r})")
    return r


def mark_ecn_ce(frame):
    """Mark an ECT(0)/ECT(1) IPv4/IPv6 packet Congestion Experienced; True if it changed.

    Not-ECT, already-CE and non-IP frames are left byte-identical (False).
    """
    cdef Py_buffer view
    cdef pkt_meta_t m
    cdef uint8_t* f = acquire(frame, &view, True)
    parse_one(f, <uint32_t>view.len, &m)
    cdef int r = ecn_mark_meta(f, <uint32_t>view.len, &m)
    PyBuffer_Release(&view)
    return r == ECN_MARKED


cdef dict _packed_by_text = {}


def packed_address(address):
    """4 or 16 network-order bytes for an address given as str, ipaddress object or bytes.

    Parsed strings are cached (up to 4096), so repeating an address costs a dict lookup.
    """
    return packed(address)


cdef bytes packed(object address):
    """packed_address without the Python call (used on every scalar and batch NAT call)."""
    cdef bytes text_packed
    if address is None:
        return None
    if type(address) is bytes and (len(<bytes>address) == 4 or len(<bytes>address) == 16):
        return address
    if isinstance(address, (bytes, bytearray)):
        if len(address) != 4 and len(address) != 16:
            raise ValueError(f"a packed address has 4 or 16 bytes, not {len(address)}")
        return address if type(address) is bytes else bytes(address)
    if isinstance(address, str):
        text_packed = _packed_by_text.get(address)
        if text_packed is None:
            text_packed = ipaddress.ip_address(address).packed
            if len(_packed_by_text) < 4096:
                _packed_by_text[address] = text_packed
        return text_packed
    if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return address.packed
    raise TypeError(
        f"address must be str, bytes or an ipaddress object, not {type(address).__name__}"
    )


cdef int32_t port_or_keep(object port, str name) except -2:
    """A port argument as 0..65535, or -1 for None (keep)."""
    if port is None:
        return -1
    if type(port) is int and 0 <= <long>port <= 0xFFFF:
        return <int32_t><long>port
    try:
        value = operator.index(port)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(port).__name__}") from None
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must be in 0..65535, not {value}")
    return <int32_t>value


def rewrite_nat(frame, *, src=None, dst=None, sport=None, dport=None):
    """SNAT/DNAT one frame in place, keeping the IPv4 header and L4 checksums valid.

    Addresses (str, ipaddress objects or packed bytes) must match the frame's family.
    TCP/UDP ports are rewritten as given; for an ICMP/ICMPv6 echo the identifier takes
    `sport` (or `dport` if only that is given). An IPv4 UDP checksum of 0 ("none") stays 0.
    Raises ValueError for a frame that is not IP, a family mismatch, or an IPv6 UDP datagram
    with a zero checksum.
    """
    cdef bytes src_b = packed(src)
    cdef bytes dst_b = packed(dst)
    cdef int32_t sport_v = port_or_keep(sport, "sport")
    cdef int32_t dport_v = port_or_keep(dport, "dport")
    cdef Py_buffer view
    cdef pkt_meta_t m
    cdef uint8_t* f = acquire(frame, &view, True)
    cdef int r
    cdef Py_ssize_t addr_len
    try:
        parse_one(f, <uint32_t>view.len, &m)
        parsed_l3(&m)
        addr_len = 4 if m.ip_version == 4 else 16
        if (src_b is not None and len(src_b) != addr_len) or (
            dst_b is not None and len(dst_b) != addr_len
        ):
            raise ValueError(f"address family does not match the IPv{m.ip_version} frame")
        r = nat_rewrite(f, <uint32_t>view.len, &m,
                        <const uint8_t*><char*>src_b if src_b is not None else NULL,
                        <const uint8_t*><char*>dst_b if dst_b is not None else NULL,
                        sport_v, dport_v)
        if r == REWRITE_BAD_L4_CSUM:
            raise ValueError("IPv6 UDP datagram with a zero checksum (malformed): not rewritten")
    finally:
        PyBuffer_Release(&view)


# ---- batch API -----------------------------------------------------------------------------
# Every batch function: open_batch checks (buf, addrs, lens, meta) once, then one nogil loop
# over frame i at b.buf + b.addrs[i * b.addr_step] with b.lens[i * b.len_step] bytes (NAT's
# one-plan loops check each frame's bounds themselves, see rewrite_nat_batch).

cdef inline cnp.ndarray results(Py_ssize_t n, int type_num):
    return cnp.PyArray_EMPTY(1, [n], type_num, 0)


def checksum_batch(*args):
    """checksum_batch(frames) or checksum_batch(buf, addrs, lens):
    RFC 1071 checksum of each whole frame (uint16 array): the raw summing kernel."""
    buf, addrs, lens = batch_args(args, 0, "checksum_batch", False)
    cdef frame_batch_t b
    cdef Py_ssize_t i
    owner = open_batch(&b, buf, addrs, lens, None, False)
    out = results(b.n, cnp.NPY_UINT16)
    cdef uint16_t* o = <uint16_t*>cnp.PyArray_DATA(out)
    with nogil:
        for i in range(b.n):
            o[i] = csum_finish(csum_partial(frame_at(&b, i), len_at(&b, i), 0))
    return out


def fix_checksums_batch(*args):
    """fix_checksums_batch(frames) or fix_checksums_batch(buf, addrs, lens, meta):
    fix_checksums for every frame whose record parsed to an IP packet (others untouched)."""
    buf, addrs, lens, meta = batch_args(args, 0, "fix_checksums_batch", True)
    cdef frame_batch_t b
    cdef Py_ssize_t i
    owner = open_batch(&b, buf, addrs, lens, meta_or_raise(meta), True)
    with nogil:
        for i in range(b.n):
            checksums_fix(frame_at(&b, i), len_at(&b, i), b.meta + i)


def checksums_ok_batch(*args):
    """checksums_ok_batch(frames) or checksums_ok_batch(buf, addrs, lens, meta):
    Full-recompute verification per frame (bool array); frames that are not IP are False."""
    buf, addrs, lens, meta = batch_args(args, 0, "checksums_ok_batch", True)
    cdef frame_batch_t b
    cdef Py_ssize_t i
    owner = open_batch(&b, buf, addrs, lens, meta_or_raise(meta), False)
    out = results(b.n, cnp.NPY_BOOL)
    cdef uint8_t* o = <uint8_t*>cnp.PyArray_DATA(out)
    with nogil:
        for i in range(b.n):
            o[i] = checksums_valid(frame_at(&b, i), len_at(&b, i), b.meta + i)
    return out


def clamp_mss_batch(*args):
    """clamp_mss_batch(frames, mss) or clamp_mss_batch(buf, addrs, lens, meta, mss):
    MSS clamp per frame; `mss` is one value or a uint16 array (0 = off for that frame).

    Returns a uint8 array of results: 0 unchanged, 1 clamped, 2 skipped (not a parsed TCP
    SYN, or no room for the options).
    """
    buf, addrs, lens, meta, mss = batch_args(args, 1, "clamp_mss_batch", True)
    cdef frame_batch_t b
    cdef Py_ssize_t i
    cdef const uint16_t* per_frame = NULL
    cdef uint16_t one_mss = 0
    owner = open_batch(&b, buf, addrs, lens, meta_or_raise(meta), True)
    if isinstance(mss, np.ndarray):
        mss = lossless_integers(mss, "per-frame mss", "uint16")   # any integer type that fits
        if mss.shape[0] != b.n:
            raise ValueError(f"per-frame mss must have {b.n} entries, not {mss.shape[0]}")
        per_frame = <const uint16_t*>cnp.PyArray_DATA(mss)
    else:
        one_mss = integer(mss, "mss", 0, 0xFFFF)
    out = results(b.n, cnp.NPY_UINT8)
    cdef uint8_t* o = <uint8_t*>cnp.PyArray_DATA(out)
    with nogil:
        if per_frame == NULL:
            for i in range(b.n):
                o[i] = mss_clamp(frame_at(&b, i), len_at(&b, i), b.meta + i, one_mss)
        else:
            for i in range(b.n):
                o[i] = mss_clamp(frame_at(&b, i), len_at(&b, i), b.meta + i, per_frame[i])
    return out


def mss_batch(*args):
    """mss_batch(frames) or mss_batch(buf, addrs, lens, meta):
    The MSS option value of every TCP SYN (int32 array; -1: not a SYN or no MSS option).

    Reads exactly the option that `clamp_mss_batch` would rewrite.
    """
    buf, addrs, lens, meta = batch_args(args, 0, "mss_batch", True)
    cdef frame_batch_t b
    cdef Py_ssize_t i
    cdef uint8_t* tcp
    cdef uint32_t seg_len = 0
    cdef int at
    owner = open_batch(&b, buf, addrs, lens, meta_or_raise(meta), False)
    out = results(b.n, cnp.NPY_INT32)
    cdef int32_t* o = <int32_t*>cnp.PyArray_DATA(out)
    with nogil:
        for i in range(b.n):
            o[i] = -1
            tcp = tcp_segment(frame_at(&b, i), len_at(&b, i), b.meta + i, &seg_len)
            if tcp != NULL:
                at = tcp_mss_offset(tcp, seg_len)
                if at >= 0:
                    o[i] = load_be16(tcp + at)
    return out


def decrement_ttl_batch(*args):
    """decrement_ttl_batch(frames) or decrement_ttl_batch(buf, addrs, lens, meta):
    TTL/hop-limit decrement per frame. Returns int16: the new value, -1 expired
    (unchanged), -2 skipped (no complete IP header)."""
    buf, addrs, lens, meta = batch_args(args, 0, "decrement_ttl_batch", True)
    cdef frame_batch_t b
    cdef Py_ssize_t i
    owner = open_batch(&b, buf, addrs, lens, meta_or_raise(meta), True)
    out = results(b.n, cnp.NPY_INT16)
    cdef int16_t* o = <int16_t*>cnp.PyArray_DATA(out)
    with nogil:
        for i in range(b.n):
            o[i] = <int16_t>ttl_decrement(frame_at(&b, i), len_at(&b, i), b.meta + i)
    return out


def mark_ecn_ce_batch(*args):
    """mark_ecn_ce_batch(frames) or mark_ecn_ce_batch(buf, addrs, lens, meta):
    ECN CE marking per frame. Returns uint8: 0 not ECT (or not IP), 1 marked, 2 already CE."""
    buf, addrs, lens, meta = batch_args(args, 0, "mark_ecn_ce_batch", True)
    cdef frame_batch_t b
    cdef Py_ssize_t i
    owner = open_batch(&b, buf, addrs, lens, meta_or_raise(meta), True)
    out = results(b.n, cnp.NPY_UINT8)
    cdef uint8_t* o = <uint8_t*>cnp.PyArray_DATA(out)
    with nogil:
        for i in range(b.n):
            o[i] = ecn_mark_meta(frame_at(&b, i), len_at(&b, i), b.meta + i)
    return out


cdef inline Py_ssize_t nat_shape_loop(
    frame_batch_t b, uint8_t* o, nat_plan_t plan, uint8_t family, bint has_src, bint has_dst
) noexcept nogil:
    """nat_apply over the batch, with the plan's family and address shape as constants.

    Each frame's bounds are checked here, just before it is touched (the batch was opened
    without the separate pass); returns the first frame past the buffer, -1 if none.
    The batch and plan are copies on this frame's stack: the rewrites store through byte
    pointers, which could alias the callers' structs and would force a reload of every
    field per packet; locals whose address never escapes cannot be aliased.
    """
    cdef Py_ssize_t i
    cdef uint64_t addr
    cdef uint32_t length
    for i in range(b.n):
        addr = b.addrs[i * b.addr_step]
        length = b.lens[i * b.len_step]
        if frame_past_end(&b, addr, length):
            return i
        o[i] = nat_apply_shaped(b.buf + addr, length, b.meta + i, &plan, family, has_src,
                                has_dst)
    return -1


# One loop instance per plan shape: each small function hands nat_shape_loop literal
# arguments, so its per-packet body is compiled with the family and address shape folded
# in. They are reached through a pointer chosen once per call, which also keeps the compiler
# from merging them into the (large) Python wrapper, where its inlining budget runs out.
ctypedef Py_ssize_t (*nat_loop_t)(
    const frame_batch_t*, uint8_t*, const nat_plan_t*
) noexcept nogil


cdef Py_ssize_t nat_v4_src(
    const frame_batch_t* b, uint8_t* o, const nat_plan_t* p
) noexcept nogil:
    return nat_shape_loop(b[0], o, p[0], 4, True, False)


cdef Py_ssize_t nat_v4_dst(
    const frame_batch_t* b, uint8_t* o, const nat_plan_t* p
) noexcept nogil:
    return nat_shape_loop(b[0], o, p[0], 4, False, True)


cdef Py_ssize_t nat_v4_both(
    const frame_batch_t* b, uint8_t* o, const nat_plan_t* p
) noexcept nogil:
    return nat_shape_loop(b[0], o, p[0], 4, True, True)


cdef Py_ssize_t nat_v6_src(
    const frame_batch_t* b, uint8_t* o, const nat_plan_t* p
) noexcept nogil:
    return nat_shape_loop(b[0], o, p[0], 6, True, False)


cdef Py_ssize_t nat_v6_dst(
    const frame_batch_t* b, uint8_t* o, const nat_plan_t* p
) noexcept nogil:
    return nat_shape_loop(b[0], o, p[0], 6, False, True)


cdef Py_ssize_t nat_v6_both(
    const frame_batch_t* b, uint8_t* o, const nat_plan_t* p
) noexcept nogil:
    return nat_shape_loop(b[0], o, p[0], 6, True, True)


cdef nat_loop_t nat_one_plan_loop(const nat_plan_t* p) noexcept nogil:
    """The loop instance for a plan that gives an address (its family and which ones)."""
    if p.ip_version == 4:
        if p.has_src and p.has_dst:
            return nat_v4_both
        return nat_v4_src if p.has_src else nat_v4_dst
    if p.has_src and p.has_dst:
        return nat_v6_both
    return nat_v6_src if p.has_src else nat_v6_dst


cdef inline object meta_or_raise(object meta):
    if meta is None:
        raise TypeError("meta must be a PKT_META array from parse_batch, not None")
    return meta


cdef object address_rows(object value, Py_ssize_t n, const uint8_t** base, Py_ssize_t* stride,
                        int* version):
    """Resolve a NAT address argument: None, one address, or (n, 16) uint8 rows.

    Returns the object that owns the bytes (keep it alive while `base` is used).
    """
    cdef const uint8_t[:, :] rows
    cdef bytes one
    base[0] = NULL
    stride[0] = 0
    version[0] = 0
    if value is None:
        return None
    if type(value) is bytes and (len(<bytes>value) == 4 or len(<bytes>value) == 16):
        base[0] = <const uint8_t*><char*>value
        version[0] = 4 if len(<bytes>value) == 4 else 6
        return value
    if isinstance(value, cnp.ndarray):
        rows = value
        if rows.shape[0] != n or rows.shape[1] != 16 or (n and rows.strides[1] != 1):
            raise ValueError(f"per-frame addresses must be uint8 rows of shape ({n}, 16), "
                             f"not {value.dtype} {value.shape}")
        if n:
            base[0] = &rows[0, 0]
            stride[0] = rows.strides[0]
        return rows
    one = packed(value)
    base[0] = <const uint8_t*><char*>one
    version[0] = 4 if len(one) == 4 else 6
    return one


cdef object port_rows(object value, Py_ssize_t n, const int32_t** base, Py_ssize_t* stride,
                     int32_t* scratch):
    """Resolve a NAT port argument: None (keep), one port, or an array (-1 = keep).

    Returns the object that owns the ports (keep it alive while `base` is used).
    """
    cdef const int32_t[::1] rows
    stride[0] = 0
    base[0] = scratch
    if value is None:
        scratch[0] = -1
        return None
    if isinstance(value, cnp.ndarray):
        if value.dtype.kind not in "iu":
            raise TypeError(f"per-frame ports must be an integer array, not {value.dtype}")
        integer_array_in_range(value, "per-frame port (-1 = keep)", -1, 0xFFFF)
        rows = np.ascontiguousarray(value, dtype=np.int32)
        if rows.shape[0] != n:
            raise ValueError(f"per-frame ports must have {n} entries, not {rows.shape[0]}")
        if n:
            base[0] = &rows[0]
            stride[0] = 1
        return rows
    scratch[0] = port_or_keep(value, "port")
    return None


def rewrite_nat_batch(*args, src=None, dst=None, sport=None, dport=None):
    """rewrite_nat_batch(frames, *, src, dst, sport, dport) or the same with
    (buf, addrs, lens, meta): NAT every frame of a batch; returns a uint8 result per frame
    (UNCHANGED/DONE/SKIPPED/...).

    Each of src/dst is None, one address (str, ipaddress or 4/16 packed bytes: applied to
    frames of that family, other frames are SKIPPED) or (n, 16) uint8 rows of per-frame
    addresses in the frame's own family (IPv4 in bytes 0..3, like `PKT_META["src"]`, which
    can be passed directly). Each port is None, one int, or an integer array where -1 keeps
    that frame's port. The records are updated with the new addresses and ports.

    A pair of addresses, one IPv4 and one IPv6 (`src=("192.0.2.1", "2001:db8::1")`),
    rewrites each frame with the address of its own family, so one call handles a mixed
    batch.

    A frame that runs past `buf` raises ValueError and neither it nor any later frame is
    touched; with one decision that gives an address, frames before it are already rewritten
    (that loop checks each frame's bounds as it reaches it instead of in a separate pass).
    """
    buf, addrs, lens, meta = batch_args(args, 0, "rewrite_nat_batch", True)
    if isinstance(src, (tuple, list)) or isinstance(dst, (tuple, list)):
        return nat_both_families(buf, addrs, lens, meta, src, dst, sport, dport)
    return nat_batch(buf, addrs, lens, meta, src, dst, sport, dport)


cdef object family_pair(object value, str name):
    """(IPv4, IPv6) packed addresses of a NAT argument given as a pair, or (value, value)."""
    if not isinstance(value, (tuple, list)):
        return value, value
    if len(value) != 2:
        raise ValueError(f"{name}: a pair of addresses is (IPv4, IPv6), got {len(value)}")
    first, second = packed(value[0]), packed(value[1])
    if len(first) == len(second):
        raise ValueError(f"{name}: a pair of addresses needs one IPv4 and one IPv6 address")
    return (first, second) if len(first) == 4 else (second, first)


cdef object nat_both_families(buf, addrs, lens, meta, src, dst, sport, dport):
    """NAT with (IPv4, IPv6) address pairs: one pass per family, each frame keeps the
    result of the pass of its own family (the other pass skips it untouched)."""
    src4, src6 = family_pair(src, "src")
    dst4, dst6 = family_pair(dst, "dst")
    first = nat_batch(buf, addrs, lens, meta, src4, dst4, sport, dport)
    second = nat_batch(buf, addrs, lens, meta, src6, dst6, sport, dport)
    return np.where(first == REWRITE_SKIPPED, second, first)


cdef object nat_batch(buf, addrs, lens, meta, src, dst, sport, dport):
    """rewrite_nat_batch with single-family (or per-frame) addresses."""
    cdef frame_batch_t b
    cdef Py_ssize_t i, n, bad = -1
    owner = open_batch(&b, buf, addrs, lens, meta_or_raise(meta), True, False)
    n = b.n
    cdef pkt_meta_t* m = b.meta
    cdef const uint8_t* src_base
    cdef const uint8_t* dst_base
    cdef const int32_t* sport_base
    cdef const int32_t* dport_base
    cdef Py_ssize_t src_stride, dst_stride, sport_stride, dport_stride
    cdef int src_version, dst_version
    cdef int32_t sport_one, dport_one
    cdef nat_plan_t plan
    src_owner = address_rows(src, n, &src_base, &src_stride, &src_version)
    dst_owner = address_rows(dst, n, &dst_base, &dst_stride, &dst_version)
    sport_owner = port_rows(sport, n, &sport_base, &sport_stride, &sport_one)
    dport_owner = port_rows(dport, n, &dport_base, &dport_stride, &dport_one)
    out = results(n, cnp.NPY_UINT8)
    cdef uint8_t* o = <uint8_t*>cnp.PyArray_DATA(out)
    cdef bint one_decision = (src_stride == 0 and dst_stride == 0 and sport_stride == 0
                              and dport_stride == 0)
    cdef bint shaped = False
    cdef bint mixed = src_version and dst_version and src_version != dst_version
    if one_decision:
        # One decision for the whole batch: decoded once, its address sums precomputed.
        nat_plan_init(&plan, src_version or dst_version, src_base, dst_base,
                      sport_one, dport_one)
        shaped = (plan.ip_version == 4 or plan.ip_version == 6) and not mixed
    with nogil:
        if shaped:
            # A loop specialised to the plan's family and address shape, which checks each
            # frame's bounds itself.
            bad = nat_one_plan_loop(&plan)(&b, o, &plan)
            n = 0
        else:
            bad = first_frame_past_end(&b)
            if bad >= 0:
                n = 0
            elif one_decision and mixed:
                memset(o, REWRITE_SKIPPED, n)   # no frame is of both families
                n = 0
        for i in range(n):
            if not one_decision:
                if (src_version and src_version != m[i].ip_version) or (
                    dst_version and dst_version != m[i].ip_version
                ):
                    o[i] = REWRITE_SKIPPED
                    continue
                nat_plan_init(&plan, m[i].ip_version,
                              src_base + i * src_stride if src_base != NULL else NULL,
                              dst_base + i * dst_stride if dst_base != NULL else NULL,
                              sport_base[i * sport_stride], dport_base[i * dport_stride])
            o[i] = nat_apply(frame_at(&b, i), len_at(&b, i), m + i, &plan)
    if bad >= 0:
        frame_bounds_error(&b, bad)
    return out
