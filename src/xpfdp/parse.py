"""Batch L2-L4 parser: Ethernet frames -> one `PKT_META` record per frame.

Handles one VLAN tag (0x8100 or 0x88A8), IPv4 (options, fragments: non-first fragments get
no L4), IPv6 with up to 6 extension headers, and TCP/UDP/ICMP/ICMPv6. Lengths come from the
IP header, never from Ethernet padding, and nothing is read past a frame's length. Every
frame gets a status code; `parse_batch` returns how many frames got each one.
"""

from __future__ import annotations

from xpfdp._fast.meta import META_FLAG_NAMES, PARSE_STATUS_NAMES, PKT_META
from xpfdp._fast.parse import parse_batch, parse_frame, status_name

# Parse status codes (PARSE_STATUS_NAMES[code] is the name).
(
    OK,
    TRUNC_L2,
    NON_IP,
    TRUNC_L3,
    BAD_VERSION,
    BAD_IHL,
    BAD_TOTLEN,
    TRUNC_EXTHDR,
    TOO_MANY_EXTHDR,
    TRUNC_L4,
    BAD_DOFF,
    NONFIRST_FRAG,
) = range(len(PARSE_STATUS_NAMES))

# Bits of PKT_META["flags"].
FLAG_VLAN = META_FLAG_NAMES["vlan"]
FLAG_FRAGMENT = META_FLAG_NAMES["fragment"]
FLAG_FIRST_FRAGMENT = META_FLAG_NAMES["first_fragment"]
FLAG_L4_VALID = META_FLAG_NAMES["l4_valid"]
FLAG_IPV4_OPTIONS = META_FLAG_NAMES["ipv4_options"]

__all__ = [
    "BAD_DOFF",
    "BAD_IHL",
    "BAD_TOTLEN",
    "BAD_VERSION",
    "FLAG_FIRST_FRAGMENT",
    "FLAG_FRAGMENT",
    "FLAG_IPV4_OPTIONS",
    "FLAG_L4_VALID",
    "FLAG_VLAN",
    "META_FLAG_NAMES",
    "NONFIRST_FRAG",
    "NON_IP",
    "OK",
    "PARSE_STATUS_NAMES",
    "PKT_META",
    "TOO_MANY_EXTHDR",
    "TRUNC_EXTHDR",
    "TRUNC_L2",
    "TRUNC_L3",
    "TRUNC_L4",
    "parse_batch",
    "parse_frame",
    "status_name",
]
