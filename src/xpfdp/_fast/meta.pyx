# cython: language_level=3
"""numpy dtypes of the shared records (pkt_meta_t, xdp_desc) and the names of parse codes.

Offsets are taken from the compiled struct, so the dtype cannot drift from the C layout.
"""

import numpy as np

from xpfdp._fast.meta cimport pkt_meta_t

cdef pkt_meta_t _probe


cdef size_t _off(void* field):
    return <size_t>(<char*>field - <char*>&_probe)


PKT_META = np.dtype({
    "names": [
        "status", "ip_version", "protocol", "tcp_flags", "ethertype", "vlan_tci",
        "l3_off", "l4_off", "payload_off", "l3_len", "sport", "dport",
        "flags", "ttl", "tos", "icmp_type", "src", "dst",
    ],
    "formats": [
        "u1", "u1", "u1", "u1", "<u2", "<u2",
        "<u2", "<u2", "<u2", "<u2", "<u2", "<u2",
        "u1", "u1", "u1", "u1", ("u1", 16), ("u1", 16),
    ],
    "offsets": [
        _off(&_probe.status), _off(&_probe.ip_version), _off(&_probe.protocol),
        _off(&_probe.tcp_flags), _off(&_probe.ethertype), _off(&_probe.vlan_tci),
        _off(&_probe.l3_off), _off(&_probe.l4_off), _off(&_probe.payload_off),
        _off(&_probe.l3_len), _off(&_probe.sport), _off(&_probe.dport),
        _off(&_probe.flags), _off(&_probe.ttl), _off(&_probe.tos), _off(&_probe.icmp_type),
        _off(&_probe.src[0]), _off(&_probe.dst[0]),
    ],
    "itemsize": sizeof(pkt_meta_t),
})

# The kernel's struct xdp_desc: how every descriptor array (bursts, queues, rings) is laid out.
XDP_DESC = np.dtype([("addr", "<u8"), ("len", "<u4"), ("options", "<u4")])

# Parse status codes, in code order (PARSE_* in meta.pxd).
PARSE_STATUS_NAMES = (
    "ok", "trunc_l2", "non_ip", "trunc_l3", "bad_version", "bad_ihl", "bad_totlen",
    "trunc_exthdr", "too_many_exthdr", "trunc_l4", "bad_doff", "nonfirst_frag",
)
assert len(PARSE_STATUS_NAMES) == PARSE_STATUS_COUNT

META_FLAG_NAMES = {
    "vlan": META_VLAN,
    "fragment": META_FRAGMENT,
    "first_fragment": META_FIRST_FRAGMENT,
    "l4_valid": META_L4_VALID,
    "ipv4_options": META_IPV4_OPTIONS,
}
