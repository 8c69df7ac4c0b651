# cython: language_level=3
"""DscpRemark: an xpfdp pipeline stage compiled outside xpfdp, against its installed .pxd.

It rewrites the DSCP of every IP packet (ECN bits kept; the IPv4 header checksum updated
with xpfdp's RFC 1624 primitive) and drops packets that arrive with a blocked DSCP under
its own drop reason. The loop runs without the GIL, like a built-in stage.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from xpfdp._fast.csum cimport csum_replace16, meta_ip_header_ok
from xpfdp._fast.lib.bytes cimport load_be16, store_be16
from xpfdp._fast.meta cimport pkt_meta_t
from xpfdp._fast.pipeline cimport Pipeline, Stage, drop_packet
from xpfdp._fast.verdict cimport verdict_settled
from xpfdp._fast.xsk cimport Burst

from xpfdp.pipeline import drop_reason


cdef class DscpRemark(Stage):
    """Set every IP packet's DSCP to `dscp`; drop those arriving with DSCP `blocked` (if
    given) as "dscp_blocked". Needs parsed packets."""

    cdef readonly uint8_t dscp
    cdef readonly int blocked              # -1: block nothing
    cdef readonly uint64_t remarked
    cdef uint8_t blocked_reason            # our drop reason's code

    def __init__(self, int dscp, *, blocked=None):
        if not 0 <= dscp < 64 or (blocked is not None and not 0 <= blocked < 64):
            raise ValueError("DSCP values are 0..63")
        Stage.__init__(self, "dscp", needs=("parsed",))
        self.dscp = dscp
        self.blocked = -1 if blocked is None else blocked
        self.blocked_reason = drop_reason("dscp_blocked")

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef pkt_meta_t* m
        cdef uint8_t* l3
        cdef uint8_t tos
        cdef uint16_t before
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            m = &b.m[i]
            if not meta_ip_header_ok(m, b.d[i].len):
                continue
            if self.blocked == m.tos >> 2:
                drop_packet(b, i, self.blocked_reason)
                self.c_drops += 1
                continue
            if m.tos >> 2 == self.dscp:
                continue
            tos = <uint8_t>((self.dscp << 2) | (m.tos & 0x03))
            l3 = b.umem.area + b.d[i].addr + m.l3_off
            if m.ip_version == 4:
                before = load_be16(l3)               # version/IHL + TOS
                l3[1] = tos
                store_be16(l3 + 10, csum_replace16(load_be16(l3 + 10), before, load_be16(l3)))
            else:                                    # traffic class spans bytes 0 and 1
                l3[0] = <uint8_t>((l3[0] & 0xF0) | (tos >> 4))
                l3[1] = <uint8_t>((l3[1] & 0x0F) | ((tos & 0x0F) << 4))
            m.tos = tos
            self.remarked += 1
        return 0

    def stats(self):
        """Stage counters plus packets whose DSCP was rewritten."""
        out = Stage.stats(self)
        out["remarked"] = self.remarked
        return out
