"""Batch L2-L4 parser: Ethernet frames -> one `PKT_META` record per frame.

Handles one VLAN tag (0x8100 or 0x88A8), IPv4 (options, fragments: non-first fragments get
no L4), IPv6 with up to 6 extension headers, and TCP/UDP/ICMP/ICMPv6. Lengths come from the
IP header, never from Ethernet padding, and nothing is read past a frame's length. Every
frame gets a status code; `parse_batch` returns how many frames got each one.
"""

from __future__ import annotations

import enum

from xpfdp._fast.meta import META_FLAG_NAMES, PARSE_STATUS_NAMES, PKT_META
from xpfdp._fast.parse import parse_batch, parse_frame, status_name


class ParseStatus(enum.IntEnum):
    """Status of a parsed frame (`PKT_META["status"]`, the index of parse_batch's counts)."""

    OK = 0
    TRUNC_L2 = 1
    NON_IP = 2
    TRUNC_L3 = 3
    BAD_VERSION = 4
    BAD_IHL = 5
    BAD_TOTLEN = 6
    TRUNC_EXTHDR = 7
    TOO_MANY_EXTHDR = 8
    TRUNC_L4 = 9
    BAD_DOFF = 10
    NONFIRST_FRAG = 11


if [m.name.lower() for m in ParseStatus] != list(PARSE_STATUS_NAMES):
    raise ImportError("xpfdp.parse.ParseStatus disagrees with the extension: stale build")

# The members under their historical module-level names.
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
) = ParseStatus

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
    "ParseStatus",
    "parse_batch",
    "parse_frame",
    "status_name",
]
