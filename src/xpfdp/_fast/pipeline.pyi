"""Type stubs for xpfdp._fast.pipeline (the worker loop, built-in stages, flow cache)."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any, Self, final

from typing_extensions import disjoint_base

from xpfdp._fast.cos import Scheduler
from xpfdp._fast.frag import FragTable
from xpfdp._fast.route import RouteTable
from xpfdp._fast.session import SessionTable
from xpfdp._fast.verdict import DropReason as DropReason
from xpfdp._fast.verdict import Verdict as Verdict
from xpfdp._fast.verdict import drop_reason as drop_reason
from xpfdp._fast.verdict import drop_reason_name as drop_reason_name
from xpfdp._fast.verdict import drop_reasons as drop_reasons
from xpfdp._fast.xsk import Burst, Port

PARSE_STATUS_NAMES: tuple[str, ...]
DROP_REASONS: tuple[str, ...]
LATENCY_BUCKET_UPPER_NS: tuple[int | None, ...]
FACT_PROVIDERS: dict[str, str]
RESOURCES: dict[str, str]

def check_stage_order(stages: Iterable[Stage], resources: Mapping[str, object]) -> None: ...

_NextHop = tuple[int, Any, Any]

CONNECTED: str

def snat_slice(lo: int, hi: int, worker: int, workers: int) -> tuple[int, int]: ...
def snat_port_owner(lo: int, hi: int, port: int, workers: int) -> int: ...
def fragment_owner(frame: bytes | bytearray | memoryview, workers: int) -> int | None: ...

@final
class Handoff:
    workers: int
    slots: int
    frame_bytes: int
    n_ports: int
    def __init__(self, workers: int, *, slots: int = 512, frame_bytes: int = 3584) -> None: ...
    def ready(self, src: int, dst: int) -> int: ...

@final
class NeighbourTable:
    capacity: int
    n_entries: int
    def __new__(cls, capacity: int = 4096) -> Self: ...
    def set(self, port: int, address: Any, mac: str | bytes | None) -> None: ...
    def get(self, port: int, address: Any) -> str | None: ...
    def entries(self) -> dict[tuple[int, str], str | None]: ...
    def __len__(self) -> int: ...

@final
class FlowCache:
    sets: int
    ways: int
    def __new__(cls, sets: int = 1024, ways: int = 4) -> Self: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def stats(self) -> dict[str, int]: ...

@disjoint_base
class Stage:
    name: str
    needs: tuple[str, ...]
    provides: tuple[str, ...]
    def __init__(
        self, name: str | None = None, *, needs: Iterable[str] = (), provides: Iterable[str] = ()
    ) -> None: ...
    def egress_schedulers(self) -> dict[int, Scheduler]: ...
    def stats(self) -> dict[str, int]: ...

@final
class ParseStage(Stage):
    def __init__(self, *, allow_non_ip: bool = False) -> None: ...

@final
class SessionStage(Stage):
    nat_allocations: int
    nat_collisions: int
    icmp_errors_translated: int
    def __init__(
        self,
        *,
        new_flow_ports: Iterable[int] | None = None,
        snat: Mapping[int, Any] | None = None,
        dnat: Iterable[Any] = (),
    ) -> None: ...
    def set_snat(
        self, egress: int, addresses: Any, ports: tuple[int, int] = (1024, 65535)
    ) -> None: ...
    def check_workers(self, workers: int) -> None: ...
    def add_dnat(
        self, ingress: int, proto: int, dport: int, to_address: Any, to_port: int = 0
    ) -> None: ...

@final
class NatStage(Stage):
    def __init__(self) -> None: ...

@final
class RouteStage(Stage):
    def __init__(self) -> None: ...

@final
class L2Stage(Stage):
    def __init__(self) -> None: ...

@final
class TtlStage(Stage):
    icmp: IcmpErrors | None
    expired: int
    def __init__(self, icmp: IcmpErrors | None = None) -> None: ...

@final
class IcmpErrors:
    sent: int
    rate_limited: int
    not_allowed: int
    def __init__(
        self,
        sources: Any,
        *,
        rate_per_s: int = 1000,
        burst: int = 50,
        peer_interval_ms: int = 1000,
        peer_burst: int = 6,
    ) -> None: ...
    def stats(self) -> dict[str, int]: ...

@final
class MtuStage(Stage):
    icmp: IcmpErrors | None
    too_big: int
    def __init__(self, icmp: IcmpErrors | None = None) -> None: ...

@final
class FragmentStage(Stage):
    fragmented: int
    fragments: int
    def __init__(self) -> None: ...

@final
class MssClampStage(Stage):
    mss_v4: int
    mss_v6: int
    clamped: int
    def __init__(self, mss_v4: int, mss_v6: int | None = None) -> None: ...

@final
class CountStage(Stage):
    bytes: int
    def __init__(self, name: str = "count") -> None: ...

@final
class CosStage(Stage):
    schedulers: dict[int, Scheduler]
    admitted: int
    ecn_marked: int
    def __init__(
        self,
        schedulers: Mapping[int, Scheduler],
        rules: Iterable[Any] = (),
        *,
        default_queue: int = 0,
    ) -> None: ...

@final
class PyStage(Stage):
    fn: Callable[[Burst], object]
    def __init__(
        self,
        fn: Callable[[Burst], object],
        name: str | None = None,
        *,
        needs: Iterable[str] = (),
        provides: Iterable[str] = (),
    ) -> None: ...
    def process(self, burst: Burst) -> None: ...

@disjoint_base
class Pipeline:
    port_names: list[str]
    burst_size: int
    routes: RouteTable | None
    sessions: SessionTable | None
    config_generation: int
    closed: bool
    neighbours: NeighbourTable | None
    fragments: FragTable | None
    handoff: Handoff | None
    worker: int
    hold_cap: int
    hold_ns: int
    def __init__(
        self,
        ports: Iterable[Port],
        stages: Iterable[Stage],
        *,
        routes: RouteTable | None = None,
        next_hops: Sequence[_NextHop] = (),
        sessions: SessionTable | None = None,
        flow_cache: FlowCache | None = None,
        fragments: FragTable | None = None,
        burst_size: int = 64,
        names: Sequence[str] | None = None,
        tx_queue: int = 0,
        neighbours: NeighbourTable | None = None,
        neighbour_hold: int = 64,
        neighbour_hold_ns: int = 1000000000,
        handoff: Handoff | None = None,
        worker: int = 0,
    ) -> None: ...
    def set_next_hops(self, next_hops: Sequence[_NextHop]) -> None: ...
    def take_neighbour_requests(self) -> list[tuple[int, IPv4Address | IPv6Address]]: ...
    def invalidate(self) -> None: ...
    @property
    def ports(self) -> list[Port]: ...
    @property
    def stages(self) -> list[Stage]: ...
    @property
    def flow_cache(self) -> FlowCache | None: ...
    @property
    def error(self) -> BaseException | None: ...
    def poll(self, now_ns: int | None = None) -> int: ...
    def run(
        self, seconds: float | None = None, *, max_packets: int = 0, until_idle: bool = False
    ) -> int: ...
    def stop(self) -> None: ...
    def pending_tx(self) -> list[int]: ...
    def drop_pending(self) -> int: ...
    def discard_handed_in(self) -> int: ...
    def close(self, close_ports: bool = False) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def __enter__(self) -> Pipeline: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
