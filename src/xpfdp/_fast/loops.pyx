# cython: language_level=3
"""Ready-made worker loops for examples and benchmarks: forward, drain, generate, bridge.

Each is one Python call that runs a nogil loop over ports until a deadline; they use only
the ports' public cdef interface (xsk.pxd), so they are not part of the port core.
"""

from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from xpfdp._fast.includes.compat cimport monotonic_ns
from xpfdp._fast.xsk cimport Burst, Port, Umem, wait_any

import numpy as np


cdef inline void _idle(Port p, uint32_t *empty) noexcept nogil:
    empty[0] += 1
    if empty[0] >= 64:
        p.c_wait(1)
        empty[0] = 0


cdef inline uint32_t _tx_or_drop(Port rx_port, Port tx_port, Burst burst, int n,
                                 uint64_t* dropped) noexcept nogil:
    """Transmit the burst's n frames; those the TX ring refuses go back to rx_port's pools
    and are counted in `dropped`. Returns how many were sent; the burst is left empty."""
    cdef int s = tx_port.c_tx(burst, 0, n)
    if s < 0:
        s = 0
    if s < n:
        dropped[0] += n - s
        rx_port.c_recycle(burst, s, n - s)
    burst.n = 0
    return <uint32_t>s


def forward(Port rx_port, Port tx_port, Burst burst, double seconds, bint swap_macs=True,
            uint64_t max_packets=0):
    """Move packets rx_port -> tx_port (same UMEM: no copy) for `seconds` (or until
    `max_packets` were received), optionally swapping MACs. Returns (received, sent,
    dropped). Unsent frames are recycled."""
    if rx_port.umem is not tx_port.umem:
        raise ValueError("forward() needs both ports on one UMEM")
    rx_port._ready(burst)
    tx_port._ready(burst)
    cdef uint64_t deadline = monotonic_ns() + <uint64_t>(seconds * 1e9)
    cdef uint64_t rx = 0, tx = 0, dropped = 0
    cdef uint32_t empty = 0, it = 0
    cdef int n
    with nogil:
        while True:
            it += 1
            if (it & 63) == 0 and monotonic_ns() >= deadline:
                break
            if max_packets and rx >= max_packets:
                break
            n = rx_port.c_rx(burst)
            if n == 0:
                tx_port.c_service()
                _idle(rx_port, &empty)
                continue
            empty = 0
            rx += n
            if swap_macs:
                burst.swap_macs(0, n)
            tx += _tx_or_drop(rx_port, tx_port, burst, n, &dropped)
    return rx, tx, dropped


def drain(Port port, Burst burst, double seconds):
    """Receive and drop for `seconds`; returns (packets, bytes)."""
    port._ready(burst)
    cdef uint64_t deadline = monotonic_ns() + <uint64_t>(seconds * 1e9)
    cdef uint64_t pkts = 0, nbytes = 0
    cdef uint32_t empty = 0, it = 0, i
    cdef int n
    with nogil:
        while True:
            it += 1
            if (it & 63) == 0 and monotonic_ns() >= deadline:
                break
            n = port.c_rx(burst)
            if n == 0:
                _idle(port, &empty)
                continue
            empty = 0
            pkts += n
            for i in range(<uint32_t>n):
                nbytes += burst.d[i].len
            port.c_recycle(burst, 0, n)
            burst.n = 0
    return pkts, nbytes


def generate(Port port, Burst burst, templates, double seconds, double rate_pps=0.0,
             uint64_t max_packets=0):
    """Transmit copies of `templates`, a (frames, lengths) pair (frames: 2-D uint8, one frame
    per row; lengths: uint32 per row), round-robin for `seconds` at up to `rate_pps`
    (0: as fast as possible). Returns (sent, not_accepted)."""
    cdef const uint8_t[:, ::1] tpl = np.ascontiguousarray(templates[0], dtype=np.uint8)
    cdef const uint32_t[::1] tlen = np.ascontiguousarray(templates[1], dtype=np.uint32)
    cdef uint32_t nt = tpl.shape[0], t = 0, i, want
    if nt == 0 or tlen.shape[0] != nt:
        raise ValueError("templates must be (frames[n, L], lengths[n]) with n >= 1")
    for i in range(nt):
        if tlen[i] < 14 or tlen[i] > <uint32_t>tpl.shape[1] or tlen[i] > port.umem.frame_size:
            raise ValueError(f"template {i} length {tlen[i]} invalid")
    port._ready(burst)
    if burst.n:
        raise ValueError("generate() needs an empty burst")
    cdef uint64_t start = monotonic_ns()
    cdef uint64_t deadline = start + <uint64_t>(seconds * 1e9)
    cdef uint64_t now, sent = 0, refused = 0, allowed
    cdef int n
    cdef Umem u = port.umem
    with nogil:
        while True:
            now = monotonic_ns()
            if now >= deadline or (max_packets and sent >= max_packets):
                break
            want = burst.capacity
            if rate_pps > 0:
                allowed = <uint64_t>((now - start) * 1e-9 * rate_pps)
                if allowed <= sent:
                    port.c_service()
                    continue
                if allowed - sent < want:
                    want = <uint32_t>(allowed - sent)
            if max_packets and max_packets - sent < want:
                want = <uint32_t>(max_packets - sent)
            n = port.c_alloc_tx(burst, want)
            if n == 0:
                port.c_service()
                continue
            for i in range(<uint32_t>n):
                memcpy(u.area + burst.d[i].addr, &tpl[t, 0], tlen[t])
                burst.d[i].len = tlen[t]
                t += 1
                if t == nt:
                    t = 0
            sent += _tx_or_drop(port, port, burst, n, &refused)
        port.c_service()
    return sent, refused


cdef inline uint64_t _pass_one_way(Port rx_port, Port tx_port, Burst burst,
                                   uint64_t *dropped) noexcept nogil:
    cdef int n = rx_port.c_rx(burst)
    if n <= 0:
        return 0
    _tx_or_drop(rx_port, tx_port, burst, n, dropped)
    return <uint64_t>n


def bridge(Port a, Port b, Burst burst, double seconds):
    """Carry frames both ways between two ports of one UMEM for `seconds`, unchanged and
    without copying. Returns (a_to_b, b_to_a, dropped)."""
    if a.umem is not b.umem:
        raise ValueError("bridge() needs both ports on one UMEM")
    a._ready(burst)
    b._ready(burst)
    cdef uint64_t deadline = monotonic_ns() + <uint64_t>(seconds * 1e9)
    cdef uint64_t ab = 0, ba = 0, dropped = 0, got_ab, got_ba
    cdef uint32_t empty = 0, it = 0
    cdef PyObject* pair[2]
    pair[0] = <PyObject*>a
    pair[1] = <PyObject*>b
    with nogil:
        while True:
            it += 1
            if (it & 63) == 0 and monotonic_ns() >= deadline:
                break
            got_ab = _pass_one_way(a, b, burst, &dropped)
            got_ba = _pass_one_way(b, a, burst, &dropped)
            ab += got_ab
            ba += got_ba
            if got_ab or got_ba:
                empty = 0
                continue
            a.c_service()
            b.c_service()
            empty += 1
            if empty >= 256:  # idle: block briefly on both sides at once
                wait_any(pair, 2, 1)
                empty = 0
    return ab, ba, dropped
