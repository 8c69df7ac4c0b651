# cython: language_level=3
"""Scalar wrappers of the ICMP error kernels (icmp_error.pxd), for tests and the control path.

The pipeline compiles the kernels into its stages; these functions run the same code on one
frame (a bytearray or writable uint8 numpy array) and raise ValueError for input the kernels
refuse.
"""

import ipaddress

from xpfdp._check import integer

from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from xpfdp._fast.icmp_error cimport (
    QUOTE_OK,
    icmp_bucket_init,
    icmp_bucket_t,
    icmp_bucket_take,
    icmp_checksum_ok,
    icmp_error_allowed,
    icmp_error_build,
    icmp_quote_parse,
    icmp_quote_t,
    icmp_quote_translate,
)
from xpfdp._fast.meta cimport pkt_meta_t
from xpfdp._fast.parse cimport parse_one

QUOTE_STATUS_NAMES = (
    "ok", "not_error", "truncated", "bad_header", "fragment", "unsupported", "bad_csum",
)


cdef bytes address_bytes(object value, uint8_t ip_version):
    if value is None:
        return None
    ip = ipaddress.ip_address(value)
    if ip.version != ip_version:
        raise ValueError(f"{value} is not an IPv{ip_version} address")
    return ip.packed


cdef int32_t port_value(object value) except -2:
    if value is None:
        return -1
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"port / identifier must be in 0..65535, not {value}")
    return <int32_t>value


cdef int parse_quote(uint8_t[::1] f, pkt_meta_t* m, icmp_quote_t* q) except -1:
    if f.shape[0] == 0:
        raise ValueError("empty frame")
    parse_one(&f[0], <uint32_t>f.shape[0], m)
    cdef int rc = icmp_quote_parse(&f[0], <uint32_t>f.shape[0], m, q)
    if rc != QUOTE_OK:
        raise ValueError(f"not a translatable ICMP error: {QUOTE_STATUS_NAMES[rc]}")
    return 0


def error_quote(frame):
    """The packet an ICMP / ICMPv6 error quotes: a dict with proto, src, dst, sport, dport
    (the echo identifier for an echo quote), echo, and the frame offsets of the quoted IP
    and L4 headers. Raises ValueError (naming the reason) for anything else."""
    cdef uint8_t[::1] f = frame
    cdef pkt_meta_t m
    cdef icmp_quote_t q
    parse_quote(f, &m, &q)
    n = 4 if m.ip_version == 4 else 16
    return {
        "proto": q.proto,
        "src": str(ipaddress.ip_address(bytes(q.src[:n]))),
        "dst": str(ipaddress.ip_address(bytes(q.dst[:n]))),
        "sport": q.sport,
        "dport": q.dport,
        "echo": bool(q.echo),
        "quoted_l3_offset": q.q_l3,
        "quoted_l4_offset": q.q_l4,
    }


def error_checksum_ok(frame):
    """True if the frame is an ICMP / ICMPv6 message whose checksum verifies."""
    cdef uint8_t[::1] f = frame
    cdef pkt_meta_t m
    if f.shape[0] == 0:
        return False
    parse_one(&f[0], <uint32_t>f.shape[0], &m)
    return icmp_checksum_ok(&f[0], <uint32_t>f.shape[0], &m)


def translate_error(frame, *, src=None, dst=None, quoted_src=None, quoted_dst=None,
                    quoted_sport=None, quoted_dport=None):
    """Rewrite an ICMP / ICMPv6 error in place through NAT: outer `src`/`dst`, the quoted
    packet's addresses and ports (an echo quote takes `quoted_sport`, else `quoted_dport`,
    as its identifier), with every checksum kept exact. None keeps a field."""
    cdef uint8_t[::1] f = frame
    cdef pkt_meta_t m
    cdef icmp_quote_t q
    parse_quote(f, &m, &q)
    cdef bytes os_b = address_bytes(src, m.ip_version)
    cdef bytes od_b = address_bytes(dst, m.ip_version)
    cdef bytes qs_b = address_bytes(quoted_src, m.ip_version)
    cdef bytes qd_b = address_bytes(quoted_dst, m.ip_version)
    icmp_quote_translate(&f[0], &m, &q,
                         <const uint8_t*><char*>os_b if os_b is not None else NULL,
                         <const uint8_t*><char*>od_b if od_b is not None else NULL,
                         <const uint8_t*><char*>qs_b if qs_b is not None else NULL,
                         <const uint8_t*><char*>qd_b if qd_b is not None else NULL,
                         port_value(quoted_sport), port_value(quoted_dport))


def build_error(frame, int icmp_type, int code, int info, src):
    """The ICMP / ICMPv6 error (bytes) that the packet in `frame` causes, sent from `src`:
    MACs swapped, the packet quoted (error at most 576 / 1280 bytes), `info` the 32-bit field
    after the checksum (the next-hop MTU for Fragmentation Needed / Packet Too Big). Raises
    ValueError if no error may be sent about this packet (RFC 1812 / RFC 4443 rules)."""
    cdef bytearray buf = bytearray(frame)
    cdef pkt_meta_t m
    cdef uint32_t n = len(buf), out
    if not 0 <= icmp_type <= 255 or not 0 <= code <= 255 or not 0 <= info <= 0xFFFFFFFF:
        raise ValueError("icmp_type and code must be bytes, info a 32-bit value")
    if n == 0:
        raise ValueError("empty frame")
    parse_one(<uint8_t*>buf, n, &m)
    cdef bytes s = address_bytes(src, m.ip_version) if m.ip_version in (4, 6) else None
    if s is None or not icmp_error_allowed(<uint8_t*>buf, &m):
        raise ValueError("no ICMP error may be sent about this packet")
    buf.extend(bytes(48 + 1280))
    out = icmp_error_build(<uint8_t*>buf, n, <uint32_t>len(buf), &m, <uint8_t>icmp_type,
                           <uint8_t>code, <uint32_t>info, <const uint8_t*><char*>s)
    if out == 0:
        raise ValueError("the packet cannot be quoted")
    return bytes(buf[:out])


cdef class IcmpRateLimit:
    """IcmpRateLimit(interval_ns, burst)\n--\n
    A token bucket as the forwarder uses for the errors it sends: one message per
    `interval_ns` on average, bursts up to `burst`; time is passed in."""

    cdef icmp_bucket_t b

    def __init__(self, interval_ns, burst):
        icmp_bucket_init(&self.b, integer(interval_ns, "interval_ns", 1, 0xFFFFFFFFFFFFFFFF),
                         integer(burst, "burst", 1, 0xFFFFFFFF))

    def take(self, now_ns):
        """True if a message may be sent at `now_ns` (spends a token)."""
        return icmp_bucket_take(&self.b, integer(now_ns, "now_ns", 0, 0xFFFFFFFFFFFFFFFF))
