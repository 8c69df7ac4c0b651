# cython: language_level=3
"""Batch L2-L4 parser: Ethernet frames in one buffer -> one PKT_META record per frame."""

cimport numpy as cnp
import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from xpfdp._fast.meta cimport PARSE_STATUS_COUNT, pkt_meta_t
from xpfdp._fast.parse cimport parse_one

from xpfdp._fast.meta import PARSE_STATUS_NAMES, PKT_META

cnp.import_array()


cdef int check_descriptors(
    Py_ssize_t buf_len, const uint64_t[:] addrs, const uint32_t[:] lens
) except -1:
    """Every frame [addr, addr + len) must lie inside the buffer; raise ValueError if not."""
    cdef Py_ssize_t i, n = addrs.shape[0], bad = -1
    if lens.shape[0] != n:
        raise ValueError(f"addrs has {n} entries but lens has {lens.shape[0]}")
    with nogil:
        for i in range(n):
            if addrs[i] > <uint64_t>buf_len or lens[i] > <uint64_t>buf_len - addrs[i]:
                bad = i
                break
    if bad >= 0:
        raise ValueError(
            f"frame {bad} (addr {addrs[bad]}, len {lens[bad]}) runs past the "
            f"{buf_len}-byte buffer"
        )
    return 0


cdef pkt_meta_t* meta_records(object meta, Py_ssize_t n) except NULL:
    """The records of a C-contiguous, writable PKT_META array of at least n entries."""
    if not isinstance(meta, np.ndarray):
        raise TypeError(f"meta must be a numpy array of dtype PKT_META, not {type(meta).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>meta
    if arr.dtype is not PKT_META and arr.dtype != PKT_META:
        raise TypeError(f"meta must have dtype xpfdp.parse.PKT_META, not {arr.dtype}")
    if arr.ndim != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError("meta must be a 1-D C-contiguous array")
    if not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError("meta must be writable")
    if arr.shape[0] < n:
        raise ValueError(f"meta holds {arr.shape[0]} records, {n} frames given")
    return <pkt_meta_t*>cnp.PyArray_DATA(arr)


def parse_batch(const uint8_t[::1] buf not None, const uint64_t[:] addrs not None,
                const uint32_t[:] lens not None, out not None):
    """Parse frame i = buf[addrs[i]:addrs[i] + lens[i]] into out[i] (PKT_META), without the GIL.

    Returns an int64 array of PARSE_STATUS_COUNT counters, indexed by status code.
    """
    cdef Py_ssize_t i, n = addrs.shape[0]
    check_descriptors(buf.shape[0], addrs, lens)
    cdef pkt_meta_t* m = meta_records(out, n)
    counts = np.zeros(PARSE_STATUS_COUNT, dtype=np.int64)
    cdef int64_t[::1] c = counts
    if n == 0:
        return counts
    cdef const uint8_t* base = &buf[0] if buf.shape[0] else NULL
    with nogil:
        for i in range(n):
            parse_one(base + addrs[i], lens[i], m + i)
            c[m[i].status] += 1
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
