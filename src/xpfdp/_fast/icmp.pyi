"""Type stubs for xpfdp._fast.icmp (ICMP errors: quoting, translation, building, rate limits)."""

from typing import Any

from _typeshed import ReadableBuffer
from typing_extensions import disjoint_base

QUOTE_STATUS_NAMES: tuple[str, ...]

def error_quote(frame: ReadableBuffer) -> Any: ...
def error_checksum_ok(frame: ReadableBuffer) -> bool: ...
def translate_error(
    frame: ReadableBuffer,
    *,
    src: Any = None,
    dst: Any = None,
    quoted_src: Any = None,
    quoted_dst: Any = None,
    quoted_sport: int | None = None,
    quoted_dport: int | None = None,
) -> Any: ...
def build_error(frame: ReadableBuffer, icmp_type: int, code: int, info: int, src: Any) -> Any: ...

@disjoint_base
class IcmpRateLimit:
    def __init__(self, interval_ns: int, burst: int) -> None: ...
    def take(self, now_ns: int) -> bool: ...
