# cython: language_level=3
"""Verdicts and the drop-reason registry shared by bursts, stages and pipelines.

A drop reason is a small integer code (it travels in `Burst.why`, one byte per packet) with
a name (the key of `Pipeline.stats()["drops"]`). The built-in codes are the `DROP_*` enum
of verdict.pxd; any stage, built in or not, adds its own by name with `drop_reason(name)`,
which returns the same code for the same name in every pipeline of the process, so
per-worker counters merge by name.
"""

from enum import IntEnum

from xpfdp._fast.meta import PARSE_STATUS_NAMES


class Verdict(IntEnum):
    """Where a packet goes, besides a port index (>= 0). A stage sets DROP or PASS (or a
    port); PENDING, QUEUED and HANDOFF are the pipeline's own and a user stage may not
    set them."""

    DROP = VERDICT_DROP
    PASS = VERDICT_PASS
    PENDING = VERDICT_PENDING
    QUEUED = VERDICT_QUEUED
    HANDOFF = VERDICT_HANDOFF


# (code, name) of every built-in reason; the import-time check below proves the codes are
# exactly 0..DROP_BUILTIN_COUNT-1, each once, so names cannot shift against the C enum.
_BUILTIN = tuple((DROP_PARSE + k, f"parse_error:{s}") for k, s in enumerate(PARSE_STATUS_NAMES)) + (
    (DROP_NO_ROUTE, "no_route"),
    (DROP_TTL_EXPIRED, "ttl_expired"),
    (DROP_POLICY_DENIED, "policy_denied"),
    (DROP_SESSION_TABLE_FULL, "session_table_full"),
    (DROP_NAT_PORTS_EXHAUSTED, "nat_ports_exhausted"),
    (DROP_NO_EGRESS, "no_egress"),
    (DROP_BAD_EGRESS, "bad_egress"),
    (DROP_PASS, "pass_unsupported"),
    (DROP_TX_RING_FULL, "tx_ring_full_dropped"),
    (DROP_COPY_NO_FRAME, "copy_no_tx_frame"),
    (DROP_USER, "user_drop"),
    (DROP_USER_ERROR, "user_error"),
    (DROP_COS_FLOW_SHARE, "cos_drop:flow_share"),
    (DROP_COS_BUFFER, "cos_drop:buffer"),
    (DROP_COS_CAPACITY, "cos_drop:capacity"),
    (DROP_COS_BAD_DESC, "cos_drop:bad_desc"),
    (DROP_NAT_FAILED, "nat_failed"),
    (DROP_SHUTDOWN, "shutdown"),
    (DROP_HANDOFF_RING_FULL, "handoff_ring_full"),
    (DROP_HANDOFF_OVERSIZE, "handoff_oversize"),
)
if sorted(code for code, _ in _BUILTIN) != list(range(DROP_BUILTIN_COUNT)):
    raise ImportError("verdict.pxd DROP_* codes and verdict.pyx names disagree")

# Code order: _names[code] is the reason's name.
_names = [name for _, name in sorted(_BUILTIN)]
_codes = {name: code for code, name in enumerate(_names)}
cdef uint32_t _count = len(_names)


def _member(name):
    return name.upper().replace(":", "_").replace("PARSE_ERROR_", "PARSE_")


DropReason = IntEnum("DropReason", [(_member(n), c) for c, n in enumerate(_names)])
DropReason.__doc__ = """The built-in drop reasons (codes of verdict.pxd); `drop_reason_name`
gives the name a reason is counted under (e.g. NO_ROUTE -> "no_route")."""

# Allowed in a user reason name: what Prometheus labels and log lines take without quoting.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_:.-")


def drop_reason(str name):
    """The code of drop reason `name`, registering it on first use.

    Names are lower case letters, digits and `_:.-` (at most 64 characters); at most
    255 reasons exist in a process (the built-in ones included)."""
    global _count
    code = _codes.get(name)
    if code is not None:
        return code
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise ValueError(f"drop reason {name!r}: use 1..64 of a-z 0-9 _ : . -")
    if len(_names) >= DROP_REASON_MAX:
        raise ValueError(f"drop reason {name!r}: the registry is full ({DROP_REASON_MAX})")
    code = len(_names)
    _names.append(name)
    _codes[name] = code
    _count = len(_names)
    return code


def drop_reason_name(code):
    """The name drop reason `code` is counted under."""
    if not 0 <= code < len(_names):
        raise ValueError(f"unknown drop reason code {code}")
    return _names[code]


def drop_reasons():
    """Every registered reason name, in code order (built-in ones first)."""
    return tuple(_names)


cdef uint32_t drop_reason_count() noexcept nogil:
    return _count
