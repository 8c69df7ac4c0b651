"""Internet checksums and in-place packet rewrites with correct checksums.

Everything runs in Cython (`xpfdp._fast.csum`): RFC 1071 sums, the RFC 1624 eqn. 3 update
(the only incremental primitive, so incremental results equal a full recompute), TCP MSS
clamping, SNAT/DNAT, TTL/hop-limit decrement and ECN CE marking. Scalar functions take one
mutable Ethernet frame (bytearray, writable memoryview or numpy uint8 array) and parse it;
`*_batch` functions take one buffer, per-frame offsets (`addrs`, uint64) and lengths (`lens`,
uint32) plus the `PKT_META` records from `xpfdp.parse.parse_batch`, release the GIL and do no
Python work per packet. Batch rewrites keep the records in step (TTL, addresses, ports).
"""

from __future__ import annotations

import ipaddress

import numpy as np

from xpfdp._fast.csum import (
    ECN_RESULT_NAMES,
    RESULT_NAMES,
    _rewrite_nat,
    _rewrite_nat_batch,
    checksum_batch,
    checksum_partial,
    checksums_ok,
    checksums_ok_batch,
    clamp_mss,
    clamp_mss_batch,
    decrement_ttl,
    decrement_ttl_batch,
    fix_checksums,
    fix_checksums_batch,
    incremental_update,
    incremental_update32,
    incremental_update_bytes,
    internet_checksum,
    mark_ecn_ce,
    mark_ecn_ce_batch,
)

# Batch rewrite result codes (values of the arrays the *_batch rewrites return).
UNCHANGED, DONE, SKIPPED, BAD_L4_CSUM = range(4)
# decrement_ttl / decrement_ttl_batch: the packet would expire; -2: not an IP packet.
TTL_EXPIRED, TTL_SKIPPED = -1, -2
# mark_ecn_ce_batch result codes.
ECN_NOT_ECT, ECN_MARKED, ECN_ALREADY_CE = range(3)

Address = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address


def packed_address(address: Address | None) -> bytes | None:
    """4 or 16 network-order bytes for an address given as str, ipaddress object or bytes."""
    if address is None:
        return None
    if isinstance(address, bytes | bytearray):
        if len(address) not in (4, 16):
            raise ValueError(f"a packed address has 4 or 16 bytes, not {len(address)}")
        return bytes(address)
    if isinstance(address, str):
        return ipaddress.ip_address(address).packed
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address.packed
    raise TypeError(f"address must be str, bytes or an ipaddress object, not {type(address)}")


def _port(port: int | None, name: str) -> int:
    if port is None:
        return -1
    if not isinstance(port, int | np.integer) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"{name} must be an int in 0..65535, not {port!r}")
    return int(port)


def rewrite_nat(
    frame,
    *,
    src: Address | None = None,
    dst: Address | None = None,
    sport: int | None = None,
    dport: int | None = None,
) -> None:
    """SNAT/DNAT one frame in place, keeping the IPv4 header and L4 checksums valid.

    Addresses must match the frame's family. TCP/UDP ports are rewritten as given; for an
    ICMP/ICMPv6 echo the identifier takes `sport` (or `dport` if only that is given). An IPv4
    UDP checksum of 0 ("none") stays 0. Raises ValueError for a frame that is not IP, a
    family mismatch, or an IPv6 UDP datagram with a zero checksum.
    """
    _rewrite_nat(
        frame,
        packed_address(src),
        packed_address(dst),
        _port(sport, "sport"),
        _port(dport, "dport"),
    )


def _batch_address(address):
    if isinstance(address, np.ndarray):
        return np.ascontiguousarray(address, dtype=np.uint8)
    return packed_address(address)


def _batch_port(port, name: str):
    if isinstance(port, np.ndarray):
        return np.ascontiguousarray(port, dtype=np.int32)
    return None if port is None else _port(port, name)


def rewrite_nat_batch(buf, addrs, lens, meta, *, src=None, dst=None, sport=None, dport=None):
    """NAT every frame of a batch; returns a uint8 result per frame (UNCHANGED/DONE/SKIPPED/...).

    Each of src/dst is None, one address (str, ipaddress, or 4/16 packed bytes: applied to
    frames of that family, other frames are SKIPPED) or a (n, 16) uint8 array of per-frame
    addresses in the frame's own family (IPv4 in bytes 0..3, like `PKT_META.src`). Each port
    is None, one int, or an int32 array where -1 keeps that frame's port.
    """
    return _rewrite_nat_batch(
        buf,
        addrs,
        lens,
        meta,
        _batch_address(src),
        _batch_address(dst),
        _batch_port(sport, "sport"),
        _batch_port(dport, "dport"),
    )


__all__ = [
    "BAD_L4_CSUM",
    "DONE",
    "ECN_ALREADY_CE",
    "ECN_MARKED",
    "ECN_NOT_ECT",
    "ECN_RESULT_NAMES",
    "RESULT_NAMES",
    "SKIPPED",
    "TTL_EXPIRED",
    "TTL_SKIPPED",
    "UNCHANGED",
    "checksum_batch",
    "checksum_partial",
    "checksums_ok",
    "checksums_ok_batch",
    "clamp_mss",
    "clamp_mss_batch",
    "decrement_ttl",
    "decrement_ttl_batch",
    "fix_checksums",
    "fix_checksums_batch",
    "incremental_update",
    "incremental_update32",
    "incremental_update_bytes",
    "internet_checksum",
    "mark_ecn_ce",
    "mark_ecn_ce_batch",
    "packed_address",
    "rewrite_nat",
    "rewrite_nat_batch",
]
