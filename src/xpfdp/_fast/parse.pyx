# cython: language_level=3
"""Batch L2-L4 parser: Ethernet frames in one buffer -> one PKT_META record per frame."""

cimport numpy as cnp
import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from xpfdp._fast.meta cimport PARSE_STATUS_COUNT, pkt_meta_t
from xpfdp._fast.lib.arrays cimport checked_array
from xpfdp._fast.parse cimport frame_at, len_at, parse_one

from xpfdp._fast.meta import PARSE_STATUS_NAMES, PKT_META

cnp.import_array()


cdef cnp.ndarray integer_array(object value, str name, int type_num, int alt_type_num,
                              str dtype_name):
    """`value` as a 1-D native-order numpy array of the given integer type (any stride).

    Another integer array (or sequence) is converted when no value changes: always for a
    safe cast (uint32 -> uint64), after a range check otherwise (int64 offsets -> uint64);
    anything else raises a TypeError or a ValueError naming the argument.
    """
    cdef cnp.ndarray arr
    cdef int t
    if isinstance(value, cnp.ndarray):
        arr = <cnp.ndarray>value
        t = cnp.PyArray_TYPE(arr)
        if (t == type_num or t == alt_type_num) and cnp.PyArray_ISNOTSWAPPED(arr):
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, not {arr.ndim}-D")
            if arr.strides[0] % cnp.PyArray_ITEMSIZE(arr):
                raise ValueError(f"{name} has a stride that is not a multiple of its item size")
            return arr
    return lossless_integers(value, name, dtype_name)


cdef object lossless_integers(object value, str name, str dtype_name):
    """`value` converted to a 1-D `dtype_name` array if that loses nothing, else an error."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an integer array ({dtype_name}), "
                        f"not {type(value).__name__}") from None
    target = np.dtype(dtype_name)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "b" and arr.size == 0):
        raise TypeError(f"{name} must be an integer array ({dtype_name}), not {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, not {arr.ndim}-D")
    if not np.can_cast(arr.dtype, target, "safe") and arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > np.iinfo(target).max:
            raise ValueError(f"{name} has values {low}..{high}, outside {dtype_name}: "
                             "converting them would change them")
    return np.ascontiguousarray(arr, dtype=target)


cdef object open_batch(frame_batch_t* b, object buf, object addrs, object lens, object meta,
                       bint writable, bint check_bounds=True):
    """Fill `b` from (buf, addrs, lens, meta); returns the buffer array (keep it alive).

    With check_bounds=False the caller's loop checks each frame (see parse.pxd)."""
    cdef cnp.ndarray data
    cdef cnp.ndarray a = integer_array(addrs, "addrs", cnp.NPY_UINT64, cnp.NPY_ULONGLONG, "uint64")
    cdef cnp.ndarray l = integer_array(lens, "lens", cnp.NPY_UINT32, cnp.NPY_UINT, "uint32")
    cdef Py_ssize_t n = a.shape[0], bad = -1
    if isinstance(buf, cnp.ndarray):
        data = <cnp.ndarray>buf
        if cnp.PyArray_TYPE(data) != cnp.NPY_UINT8 or data.ndim != 1:
            raise TypeError(f"buf must be a 1-D uint8 array, not {data.dtype} {data.ndim}-D")
        if not cnp.PyArray_IS_C_CONTIGUOUS(data):
            raise ValueError("buf must be contiguous")
    else:
        data = np.frombuffer(buf, dtype=np.uint8)   # bytearray, memoryview, mmap ...
    if writable and not cnp.PyArray_ISWRITEABLE(data):
        raise ValueError("buf is read-only; rewrites need a writable buffer")
    if l.shape[0] != n:
        raise ValueError(f"addrs has {n} entries but lens has {l.shape[0]}")
    b.buf = <uint8_t*>cnp.PyArray_DATA(data)
    b.buf_len = data.shape[0]
    b.addrs = <const uint64_t*>cnp.PyArray_DATA(a)
    b.lens = <const uint32_t*>cnp.PyArray_DATA(l)
    b.addr_step = a.strides[0] // 8
    b.len_step = l.strides[0] // 4
    b.n = n
    b.meta = NULL
    if check_bounds:
        with nogil:
            bad = first_frame_past_end(b)
        if bad >= 0:
            frame_bounds_error(b, bad)
    if meta is not None:
        b.meta = meta_records(meta, n)
    return (data, a, l)   # the arrays b points into, converted copies included


cdef tuple batch_args(tuple args, Py_ssize_t n_after, str fname, bint with_meta):
    """(buf, addrs, lens[, meta]) followed by the `n_after` other positional arguments of a
    batch call made as fname(frames, ...) or fname(buf, addrs, lens[, meta], ...).

    `frames` is a FrameBatch (its `meta`, which parse_batch(batch) fills) or a Burst (its
    first `n` descriptors in its UMEM, and its `meta`).
    """
    cdef Py_ssize_t arrays = 4 if with_meta else 3
    if len(args) == arrays + n_after:
        return args
    if len(args) != 1 + n_after:
        form = "buf, addrs, lens, meta" if with_meta else "buf, addrs, lens"
        raise TypeError(f"{fname}() takes a FrameBatch or a Burst, or ({form}), then "
                        f"{n_after} more positional argument(s); got {len(args)}")
    frames = args[0]
    rest = args[1:]
    if hasattr(frames, "desc") and hasattr(frames, "umem"):          # a Burst
        if frames.umem is None:
            raise ValueError(f"{fname}(): the burst holds no frames (no UMEM yet)")
        n = frames.n
        desc = frames.desc[:n]
        found = (frames.umem.buf, desc["addr"], desc["len"], frames.meta[:n])
    elif hasattr(frames, "offsets") and hasattr(frames, "lengths"):  # a FrameBatch
        meta = getattr(frames, "meta", None)
        if with_meta and meta is None:
            raise ValueError(f"{fname}(): the FrameBatch is not parsed; call "
                             "xpfdp.parse.parse_batch(batch) first")
        found = (frames.buf, frames.offsets, frames.lengths, meta)
    else:
        raise TypeError(f"{fname}() takes a FrameBatch or a Burst, not {type(frames).__name__}")
    return found[:arrays] + rest


cdef Py_ssize_t first_frame_past_end(const frame_batch_t* b) noexcept nogil:
    """Index of the first frame that runs past the buffer, -1 if none does."""
    cdef Py_ssize_t i
    for i in range(b.n):
        if frame_past_end(b, b.addrs[i * b.addr_step], len_at(b, i)):
            return i
    return -1


cdef int frame_bounds_error(const frame_batch_t* b, Py_ssize_t bad) except -1:
    raise ValueError(
        f"frame {bad} (addr {b.addrs[bad * b.addr_step]}, len {b.lens[bad * b.len_step]}) "
        f"runs past the {b.buf_len}-byte buffer"
    )


cdef pkt_meta_t* meta_records(object meta, Py_ssize_t n) except NULL:
    """The records of a C-contiguous, writable PKT_META array of at least n entries."""
    cdef cnp.ndarray arr = checked_array(meta, PKT_META, "meta", True, "PKT_META")
    if arr.shape[0] < n:
        raise ValueError(f"meta holds {arr.shape[0]} records, {n} frames given")
    return <pkt_meta_t*>cnp.PyArray_DATA(arr)


def parse_batch(*args):
    """parse_batch(frames) or parse_batch(buf, addrs, lens, out): parse frame
    i = buf[addrs[i]:addrs[i] + lens[i]] into out[i] (PKT_META), without the GIL.

    `frames` is a FrameBatch (records go to `frames.meta`, allocated on first use) or a
    Burst (its first `n` frames into `burst.meta`). `buf` is a uint8 array (or any buffer),
    `addrs` and `lens` integer arrays (uint64/uint32, or any integer type whose values fit;
    strided views such as the fields of a descriptor array are fine). Returns an int64
    array of PARSE_STATUS_COUNT counters, indexed by status code.
    """
    cdef frame_batch_t b
    cdef Py_ssize_t i
    if len(args) == 1 and hasattr(args[0], "offsets") and hasattr(args[0], "lengths"):
        batch = args[0]
        if getattr(batch, "meta", None) is None or len(batch.meta) != len(batch.lengths):
            batch.meta = np.zeros(len(batch.lengths), dtype=PKT_META)
    buf, addrs, lens, out = batch_args(args, 0, "parse_batch", True)
    if out is None:
        raise TypeError("out must be a PKT_META array, not None")
    owner = open_batch(&b, buf, addrs, lens, out, False)
    counts = np.zeros(PARSE_STATUS_COUNT, dtype=np.int64)
    cdef int64_t* c = <int64_t*>cnp.PyArray_DATA(counts)
    with nogil:
        for i in range(b.n):
            parse_one(frame_at(&b, i), len_at(&b, i), b.meta + i)
            c[b.meta[i].status] += 1
    return counts


def parse_frame(const uint8_t[::1] frame not None):
    """Parse one Ethernet frame and return its PKT_META record (a numpy.void)."""
    out = np.zeros(1, dtype=PKT_META)
    cdef pkt_meta_t* m = <pkt_meta_t*>cnp.PyArray_DATA(out)
    cdef const uint8_t* p = &frame[0] if frame.shape[0] else NULL
    parse_one(p, <uint32_t>frame.shape[0], m)
    return out[0]


def status_name(int status):
    """The name of a parse status code ("ok", "trunc_l4", ...)."""
    if not 0 <= status < PARSE_STATUS_COUNT:
        raise ValueError(f"unknown parse status {status}")
    return PARSE_STATUS_NAMES[status]
