"""Internet checksums and in-place packet rewrites with correct checksums.

Everything runs in Cython (`xpfdp._fast.csum`): RFC 1071 sums, the RFC 1624 eqn. 3 update
(the only incremental primitive, so incremental results equal a full recompute), TCP MSS
clamping, SNAT/DNAT, TTL/hop-limit decrement and ECN CE marking. Scalar functions take one
mutable Ethernet frame (bytearray, writable memoryview or numpy uint8 array) and parse it;
`*_batch` functions take one buffer, per-frame offsets (`addrs`, uint64) and lengths (`lens`,
uint32) plus the `PKT_META` records from `xpfdp.parse.parse_batch`, release the GIL and do no
Python work per packet. Batch rewrites keep the records in step (TTL, addresses, ports).
"""

from xpfdp._fast.csum import (
    ECN_RESULT_NAMES,
    RESULT_NAMES,
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
    mss_batch,
    packed_address,
    rewrite_nat,
    rewrite_nat_batch,
)

# Batch rewrite result codes (values of the arrays the *_batch rewrites return).
UNCHANGED, DONE, SKIPPED, BAD_L4_CSUM = range(4)
# decrement_ttl / decrement_ttl_batch: the packet would expire; -2: not an IP packet.
TTL_EXPIRED, TTL_SKIPPED = -1, -2
# mark_ecn_ce_batch result codes.
ECN_NOT_ECT, ECN_MARKED, ECN_ALREADY_CE = range(3)

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
    "mss_batch",
    "packed_address",
    "rewrite_nat",
    "rewrite_nat_batch",
]
