"""Routing: longest-prefix match from destination addresses to next-hop indices.

`RouteTable` (Cython) maps IPv4/IPv6 prefixes to non-negative ints; the pipeline keeps its
next hops (egress port, gateway, MACs) in a list those ints index, so the per-packet lookup
touches only C memory.
"""

from xpfdp._fast.route import RouteTable

__all__ = ["RouteTable"]
