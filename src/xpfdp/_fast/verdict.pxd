# Verdicts and drop reasons: the vocabulary every stage, port loop and the pipeline share.
#
# A packet's verdict (int16, `Burst.v`) says where it goes: a port index >= 0, or one of
# the negative values below. A dropped packet's reason (uint8, `Burst.why`) is a code of
# the drop-reason registry (verdict.pyx): the built-in codes are fixed here, stages add
# their own names at construction (`drop_reason("policer")`).

from libc.stdint cimport int16_t, uint32_t

cdef enum:
    VERDICT_DROP = -1        # return the frame; counted under Burst.why
    VERDICT_PASS = -2        # to the kernel stack (unsupported: counted pass_unsupported)
    VERDICT_PENDING = -3     # internal: no stage has chosen an egress port yet
    VERDICT_QUEUED = -4      # internal: held by a CoS queue (until transmitted), the fragment
                             # table (until its first fragment) or a neighbour wait
    VERDICT_HANDOFF = -5     # internal: another worker owns the flow; settle copies it there

# Built-in drop reasons (names in verdict.pyx, checked against these codes at import).
cdef enum:
    DROP_PARSE = 0           # + PARSE_* status (12 codes): parse_error:<status>
    DROP_NO_ROUTE = 12
    DROP_TTL_EXPIRED = 13
    DROP_POLICY_DENIED = 14
    DROP_SESSION_TABLE_FULL = 15
    DROP_NAT_PORTS_EXHAUSTED = 16
    DROP_NO_EGRESS = 17
    DROP_BAD_EGRESS = 18
    DROP_PASS = 19
    DROP_TX_RING_FULL = 20
    DROP_COPY_NO_FRAME = 21
    DROP_USER = 22
    DROP_USER_ERROR = 23
    DROP_COS_FLOW_SHARE = 24
    DROP_COS_BUFFER = 25
    DROP_COS_CAPACITY = 26
    DROP_COS_BAD_DESC = 27
    DROP_NAT_FAILED = 28
    DROP_SHUTDOWN = 29
    DROP_HANDOFF_RING_FULL = 30
    DROP_HANDOFF_OVERSIZE = 31
    DROP_BUILTIN_COUNT = 32
    DROP_REASON_MAX = 255    # registry capacity: codes 0..254
    DROP_UNSET = 0xFF        # Burst.why of a packet no stage has dropped

# Number of registered drop reasons (built-in + user); codes are below it.
cdef uint32_t drop_reason_count() noexcept nogil


cdef inline bint verdict_settled(int16_t v) noexcept nogil:
    """True when a stage must leave the packet alone: dropped, held (VERDICT_QUEUED), or
    owned by another worker."""
    return v == VERDICT_DROP or v == VERDICT_QUEUED or v == VERDICT_HANDOFF


cdef inline bint verdict_public(int16_t v) noexcept nogil:
    """True for the verdicts a user stage may set: a port index, DROP or PASS."""
    return v >= VERDICT_PASS
