"""Internet checksums and in-place packet rewrites with correct checksums.

Everything runs in Cython (`xpfdp._fast.csum`): RFC 1071 sums, the RFC 1624 eqn. 3 update
(the only incremental primitive, so incremental results equal a full recompute), TCP MSS
clamping, SNAT/DNAT, TTL/hop-limit decrement and ECN CE marking. Scalar functions take one
mutable Ethernet frame (bytearray, writable memoryview or numpy uint8 array) and parse it;
`*_batch` functions take the frames as a parsed `FrameBatch` or a `Burst`, or as one
buffer, per-frame offsets (`addrs`), lengths (`lens`) and the `PKT_META` records from
`xpfdp.parse.parse_batch`; integer arrays of another type are converted when no value
changes. They release the GIL and do no Python work per packet. Batch rewrites keep the
records in step (TTL, addresses, ports). Result codes are IntEnums (`Rewrite`, `Ttl`,
`Ecn`) whose members compare equal to the integers in the result arrays.
"""

import enum

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


class Rewrite(enum.IntEnum):
    """Per-frame result of clamp_mss_batch, rewrite_nat_batch (RESULT_NAMES[code])."""

    UNCHANGED = 0
    DONE = 1
    SKIPPED = 2
    BAD_L4_CSUM = 3


class Ttl(enum.IntEnum):
    """decrement_ttl(_batch) results below zero (others are the new TTL / hop limit)."""

    EXPIRED = -1  # would reach 0: unchanged, to be dropped
    SKIPPED = -2  # no complete IP header


class Ecn(enum.IntEnum):
    """Per-frame result of mark_ecn_ce_batch (ECN_RESULT_NAMES[code])."""

    NOT_ECT = 0
    MARKED = 1
    ALREADY_CE = 2


if [m.name.lower() for m in Rewrite] != list(RESULT_NAMES) or [m.name.lower() for m in Ecn] != list(
    ECN_RESULT_NAMES
):
    raise ImportError("xpfdp.csum result enums disagree with the extension: stale build")

# The members under their historical module-level names.
UNCHANGED, DONE, SKIPPED, BAD_L4_CSUM = Rewrite
TTL_EXPIRED, TTL_SKIPPED = Ttl
ECN_NOT_ECT, ECN_MARKED, ECN_ALREADY_CE = Ecn

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
    "Ecn",
    "Rewrite",
    "Ttl",
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
