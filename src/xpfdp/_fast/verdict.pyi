"""Type stubs for xpfdp._fast.verdict (verdicts and the drop-reason registry)."""

from enum import IntEnum

PARSE_STATUS_NAMES: tuple[str, ...]

class Verdict(IntEnum):
    DROP = -1
    PASS = -2
    PENDING = -3
    QUEUED = -4
    HANDOFF = -5

class DropReason(IntEnum):
    PARSE_OK = 0
    PARSE_TRUNC_L2 = 1
    PARSE_NON_IP = 2
    PARSE_TRUNC_L3 = 3
    PARSE_BAD_VERSION = 4
    PARSE_BAD_IHL = 5
    PARSE_BAD_TOTLEN = 6
    PARSE_TRUNC_EXTHDR = 7
    PARSE_TOO_MANY_EXTHDR = 8
    PARSE_TRUNC_L4 = 9
    PARSE_BAD_DOFF = 10
    PARSE_NONFIRST_FRAG = 11
    NO_ROUTE = 12
    TTL_EXPIRED = 13
    POLICY_DENIED = 14
    SESSION_TABLE_FULL = 15
    NAT_PORTS_EXHAUSTED = 16
    NO_EGRESS = 17
    BAD_EGRESS = 18
    PASS_UNSUPPORTED = 19
    TX_RING_FULL_DROPPED = 20
    COPY_NO_TX_FRAME = 21
    USER_DROP = 22
    USER_ERROR = 23
    COS_DROP_FLOW_SHARE = 24
    COS_DROP_BUFFER = 25
    COS_DROP_CAPACITY = 26
    COS_DROP_BAD_DESC = 27
    NAT_FAILED = 28
    SHUTDOWN = 29
    HANDOFF_RING_FULL = 30
    HANDOFF_OVERSIZE = 31

def drop_reason(name: str) -> int: ...
def drop_reason_name(code: int) -> str: ...
def drop_reasons() -> tuple[str, ...]: ...
