"""Routing NAT firewall between a LAN and a WAN interface, described by a TOML file.

The config names two interfaces with their addresses, routes, optional static neighbours,
SNAT of LAN sources to the WAN address with a port range, port forwards (DNAT), the MSS
clamp and
class-of-service shaping on WAN egress (an exact MQFQ class for bulk traffic, a priority
class for ICMP/DNS). `load_config()` parses and validates it (every error names the
offending key); `build_forwarder()` turns it into a running pipeline (xpfdp.pipeline) and
a `xpfdp.hostnet.HostWatcher`: next-hop MACs come from the host's neighbour table unless
a static neighbour gives them, and packets for the firewall's own addresses go to its
kernel. Example::

    namespace = "fw"                      # optional: network namespace of the interfaces

    [lan]
    interface = "lan0"
    addresses = ["10.10.1.1/24", "fd00:a::1/64"]

    [wan]
    interface = "wan0"
    addresses = ["10.10.2.1/24", "fd00:b::1/64"]

    [[routes]]
    destination = "0.0.0.0/0"
    interface = "wan"
    gateway = "10.10.2.2"                 # MAC from the host's neighbour table
    # or, instead of [[routes]]: kernel_routes = true (the namespace's main table, followed)

    [[neighbours]]                        # optional: a static MAC instead
    interface = "lan"
    address = "10.10.1.2"
    mac = "02:00:00:00:00:02"

    [nat]
    snat_ports = [20000, 59999]

    [[dnat]]                              # optional: port forwards
    interface = "wan"                     # where the flows arrive
    proto = "tcp"                         # or "udp"
    port = 8080                           # on the interface's addresses
    to_address = "10.10.1.2"
    to_port = 80                          # optional: default the same port

    [mss]
    clamp_bytes = 1360

    [cos]
    rate_mbps = 200
    [cos.bulk]
    guarantee_mbps = 150
    [cos.priority]
    protocols = ["icmp", "icmpv6"]
    udp_ports = [53]
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from xpfdp.cos import Scheduler
from xpfdp.errors import XpfdpError
from xpfdp.hostnet import HostWatcher
from xpfdp.links import LinkWatch
from xpfdp.netns import inside, interface_mac, interface_rx_queues, require_namespace
from xpfdp.pipeline import (
    CONNECTED,
    DNAT_RULES_MAX,
    CosStage,
    FlowCache,
    Forwarder,
    Handoff,
    IcmpErrors,
    NeighbourTable,
    Pipeline,
    firewall_stages,
    xsk_workers,
)
from xpfdp.ports import MAX_BUSY_POLL_US
from xpfdp.route import RouteTable
from xpfdp.session import DEFAULT_MAX_SESSIONS, SessionTable

log = logging.getLogger(__name__)

SIDES = ("lan", "wan")
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
DNAT_PROTOCOLS = ("tcp", "udp")  # what a port forward can carry
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MSS_MIN_BYTES = 536  # RFC 879 default: a clamp below it would break ordinary hosts
XDP_MODES = ("auto", "native", "generic")
QUEUES_ALL = 0  # forwarder.queues = "all": one worker per RX queue of the interfaces
HANDOFF_SLOTS = 1024  # packets each worker-to-worker ring holds
# forwarder.sessions: flows per worker (two table entries each); 8 M flows is ~2.5 GB of
# table, so a larger value is a config error (caught by --check), not a MemoryError when the
# forwarder starts.
SESSIONS_MAX = 1 << 23


class ConfigError(XpfdpError, ValueError):
    """An invalid firewall config; the message names the key (`cos.bulk.rate_mbps: ...`)."""


@dataclass(frozen=True)
class Interface:
    """One side of the firewall: kernel interface name, its addresses, optional MAC."""

    side: str
    name: str
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    mac: str | None = None

    def address(self, version: int):
        """The first address of IP `version` (4 or 6), or None."""
        return next((a.ip for a in self.addresses if a.version == version), None)


@dataclass(frozen=True)
class Route:
    """`destination` (a prefix) leaves through `interface` ("lan"/"wan") via `gateway`
    (None: on-link, each destination is its own neighbour). The gateway's MAC is a static
    neighbour's or the host's (kernel neighbour table)."""

    destination: ipaddress.IPv4Network | ipaddress.IPv6Network
    interface: str
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None


@dataclass(frozen=True)
class Neighbour:
    """A static neighbour: `address` on `interface` ("lan"/"wan") has MAC `mac`."""

    interface: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    mac: str


@dataclass(frozen=True)
class PortForward:
    """A port forward (DNAT): new `proto` (6 TCP, 17 UDP) flows arriving on `interface`
    ("lan"/"wan") for destination `port` go to `to_address`:`to_port` (None: the same
    port). With local delivery, that port of the interface's own addresses belongs to the
    forwarder, not the host."""

    interface: str
    proto: int
    port: int
    to_address: ipaddress.IPv4Address | ipaddress.IPv6Address
    to_port: int | None = None


@dataclass(frozen=True)
class CosConfig:
    """WAN egress shaping: root rate, the exact (MQFQ) bulk class's guarantee and buffer,
    and what the priority class carries."""

    rate_bps: int
    burst_bytes: int | None
    bulk_guarantee_bps: int
    bulk_buffer_bytes: int | None
    priority_rate_bps: int
    priority_protocols: tuple[int, ...]
    priority_udp_ports: tuple[int, ...]
    priority_tcp_ports: tuple[int, ...]


@dataclass(frozen=True)
class ForwarderConfig:
    """Worker geometry: RX queues (one worker each; QUEUES_ALL: every RX queue the
    interfaces have), ring and burst sizes, XDP mode, session table capacity in flows per
    worker (each flow is a forward and a reverse entry; memory grows with use, about 300
    bytes per flow), busy polling of the AF_XDP sockets in µs (0: off)."""

    queues: int = 1
    ring_size: int = 2048
    burst: int = 64
    xdp_mode: str = "auto"
    sessions: int = DEFAULT_MAX_SESSIONS // 2
    busy_poll_us: int = 0


@dataclass(frozen=True)
class IcmpConfig:
    """Rate limits of the ICMP errors the forwarder sends itself (Time Exceeded; PMTU errors
    are exempt), Linux's defaults: 1000/s with bursts of 50 overall, one per second with
    bursts of 6 per destination."""

    rate_per_s: int = 1000
    burst: int = 50
    peer_interval_ms: int = 1000
    peer_burst: int = 6


@dataclass(frozen=True)
class FirewallConfig:
    """A validated firewall config (see the module docstring for the TOML form)."""

    lan: Interface
    wan: Interface
    routes: tuple[Route, ...]
    neighbours: tuple[Neighbour, ...]
    snat_ports: tuple[int, int]
    mss_clamp_bytes: int | None
    cos: CosConfig | None
    forwarder: ForwarderConfig = field(default_factory=ForwarderConfig)
    namespace: str | None = None
    icmp: IcmpConfig = field(default_factory=IcmpConfig)
    dnat: tuple[PortForward, ...] = ()
    kernel_routes: bool = False  # routes from the namespace's main table, not `routes`

    def interface(self, side: str) -> Interface:
        """The Interface of `side` ("lan" or "wan")."""
        return self.lan if side == "lan" else self.wan


# --- parsing helpers: each raises ConfigError naming the key -----------------------------


_Number = TypeVar("_Number", int, float)


def _take(table: dict, key: str, path: str, kind, default=...):
    if key not in table:
        if default is ...:
            raise ConfigError(f"{path}{key}: missing")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{path}{key}: expected {_kind_name(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ConfigError(f"{path}{key}: expected {_kind_name(kinds)}, got {value!r}")
    return value


def _kind_name(kinds: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "a list",
             dict: "a table", bool: "a boolean"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _no_extra(table: dict, allowed: set[str], path: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        where = path.rstrip(".") or "top level"
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: "
                          f"{', '.join(sorted(allowed))}")  # fmt: skip


def _positive(value: _Number, path: str, *, maximum: int | None = None) -> _Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number, got {value}")
    if value <= 0:
        raise ConfigError(f"{path}: must be > 0, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{path}: must be <= {maximum}, got {value}")
    return value


def _mac(value: str, path: str) -> str:
    mac = value.lower()
    if not _MAC.match(mac):
        raise ConfigError(f"{path}: not a MAC address (aa:bb:cc:dd:ee:ff): {value!r}")
    return mac


def _address(value: str, path: str):
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{path}: not an IPv4/IPv6 address: {value!r}") from None


def _port(value, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{path}: a port must be an integer in 1..65535, got {value!r}")
    return value


def _ports(values: list, path: str) -> tuple[int, ...]:
    return tuple(_port(v, f"{path}[{i}]") for i, v in enumerate(values))


def _side(value, path: str) -> str:
    if value not in SIDES:
        raise ConfigError(f"{path}: must be 'lan' or 'wan', got {value!r}")
    return value


def _interface(config: dict, side: str) -> Interface:
    table = _take(config, side, "", dict)
    p = f"{side}."
    _no_extra(table, {"interface", "addresses", "mac"}, p)
    name = _take(table, "interface", p, str)
    if not 1 <= len(name) <= 15:
        raise ConfigError(f"{p}interface: 1..15 characters (IFNAMSIZ), got {name!r}")
    raw = _take(table, "addresses", p, list)
    if not raw:
        raise ConfigError(f"{p}addresses: at least one address/prefix is needed")
    addresses = []
    for i, text in enumerate(raw):
        if not isinstance(text, str) or "/" not in text:
            raise ConfigError(f"{p}addresses[{i}]: expected 'address/prefixlen', got {text!r}")
        try:
            addresses.append(ipaddress.ip_interface(text))
        except ValueError as exc:
            raise ConfigError(f"{p}addresses[{i}]: {exc}") from None
    mac = _take(table, "mac", p, str, None)
    return Interface(side, name, tuple(addresses), _mac(mac, f"{p}mac") if mac else None)


def _routes(config: dict, lan: Interface, wan: Interface) -> tuple[Route, ...]:
    routes = []
    for i, table in enumerate(_take(config, "routes", "", list, [])):
        p = f"routes[{i}]."
        if not isinstance(table, dict):
            raise ConfigError(f"routes[{i}]: expected a table, got {table!r}")
        _no_extra(table, {"destination", "interface", "gateway"}, p)
        try:
            dst = ipaddress.ip_network(_take(table, "destination", p, str))
        except ValueError as exc:
            raise ConfigError(f"{p}destination: {exc}") from None
        side = _side(_take(table, "interface", p, str), f"{p}interface")
        if "gateway" not in table:
            routes.append(Route(dst, side, None))  # on-link
            continue
        gateway = _address(_take(table, "gateway", p, str), f"{p}gateway")
        if gateway.version != dst.version:
            raise ConfigError(f"{p}gateway: IPv{gateway.version} gateway for an "
                              f"IPv{dst.version} destination")  # fmt: skip
        iface = lan if side == "lan" else wan
        if not any(gateway in a.network for a in iface.addresses):
            raise ConfigError(f"{p}gateway: {gateway} is not on a subnet of {side} "
                              f"({', '.join(map(str, iface.addresses))})")  # fmt: skip
        routes.append(Route(dst, side, gateway))
    return tuple(routes)


def _neighbours(config: dict) -> tuple[Neighbour, ...]:
    out = []
    for i, table in enumerate(_take(config, "neighbours", "", list, [])):
        p = f"neighbours[{i}]."
        if not isinstance(table, dict):
            raise ConfigError(f"neighbours[{i}]: expected a table, got {table!r}")
        _no_extra(table, {"interface", "address", "mac"}, p)
        out.append(Neighbour(
            _side(_take(table, "interface", p, str), f"{p}interface"),
            _address(_take(table, "address", p, str), f"{p}address"),
            _mac(_take(table, "mac", p, str), f"{p}mac"),
        ))  # fmt: skip
    return tuple(out)


def _dnat(config: dict, lan: Interface, wan: Interface) -> tuple[PortForward, ...]:
    rules = _take(config, "dnat", "", list, [])
    if len(rules) > DNAT_RULES_MAX:
        raise ConfigError(f"dnat: at most {DNAT_RULES_MAX} port forwards, got {len(rules)}")
    own = {a.ip for iface in (lan, wan) for a in iface.addresses}
    seen: dict[tuple, int] = {}
    out = []
    for i, table in enumerate(rules):
        p = f"dnat[{i}]."
        if not isinstance(table, dict):
            raise ConfigError(f"dnat[{i}]: expected a table, got {table!r}")
        _no_extra(table, {"interface", "proto", "port", "to_address", "to_port"}, p)
        side = _side(_take(table, "interface", p, str), f"{p}interface")
        proto = _take(table, "proto", p, str)
        if proto not in DNAT_PROTOCOLS:
            raise ConfigError(f"{p}proto: must be 'tcp' or 'udp', got {proto!r}")
        port = _port(_take(table, "port", p, int), f"{p}port")
        to = _address(_take(table, "to_address", p, str), f"{p}to_address")
        to_port = _take(table, "to_port", p, int, None)
        if to_port is not None:
            _port(to_port, f"{p}to_port")
        iface = lan if side == "lan" else wan
        if iface.address(to.version) is None:
            raise ConfigError(f"{p}to_address: an IPv{to.version} target, but {side} has no "
                              f"IPv{to.version} address to forward from")  # fmt: skip
        if to in own:
            raise ConfigError(f"{p}to_address: {to} is the firewall's own address")
        key = (side, proto, port, to.version)
        if key in seen:
            raise ConfigError(f"{p}port: {proto} {port} on {side} (IPv{to.version}) is already "
                              f"forwarded by dnat[{seen[key]}]")  # fmt: skip
        seen[key] = i
        out.append(PortForward(side, PROTOCOLS[proto], port, to, to_port))
    return tuple(out)


def _snat_ports(config: dict) -> tuple[int, int]:
    table = _take(config, "nat", "", dict, {})
    _no_extra(table, {"snat_ports"}, "nat.")
    ports = _take(table, "snat_ports", "nat.", list, [20000, 59999])
    if len(ports) != 2:
        raise ConfigError(f"nat.snat_ports: expected [first, last], got {ports!r}")
    first = _port(ports[0], "nat.snat_ports[0]")
    last = _port(ports[1], "nat.snat_ports[1]")
    if first > last:
        raise ConfigError(f"nat.snat_ports: first {first} > last {last}")
    if first < 1024:
        raise ConfigError(f"nat.snat_ports: {first} is a well-known port; start at >= 1024")
    return first, last


def _mss(config: dict) -> int | None:
    table = _take(config, "mss", "", dict, {})
    _no_extra(table, {"clamp_bytes"}, "mss.")
    clamp = _take(table, "clamp_bytes", "mss.", int, None)
    if clamp is not None and not MSS_MIN_BYTES <= clamp <= 65495:
        raise ConfigError(f"mss.clamp_bytes: must be in {MSS_MIN_BYTES}..65495, got {clamp}")
    return clamp


@overload
def _mbps(table: dict, key: str, path: str) -> int: ...
@overload
def _mbps(table: dict, key: str, path: str, default: None) -> int | None: ...
def _mbps(table: dict, key: str, path: str, default: Any = ...) -> int | None:
    value = _take(table, key, path, (int, float), default)
    if value is None:
        return None
    return int(_positive(value, f"{path}{key}", maximum=400_000) * 1_000_000)


def _cos(config: dict) -> CosConfig | None:
    if "cos" not in config:
        return None
    table = _take(config, "cos", "", dict)
    _no_extra(table, {"rate_mbps", "burst_bytes", "bulk", "priority"}, "cos.")
    rate_bps = _mbps(table, "rate_mbps", "cos.")
    burst = _take(table, "burst_bytes", "cos.", int, None)
    if burst is not None:
        _positive(burst, "cos.burst_bytes")
    bulk = _take(table, "bulk", "cos.", dict, {})
    _no_extra(bulk, {"guarantee_mbps", "buffer_bytes"}, "cos.bulk.")
    guarantee = _mbps(bulk, "guarantee_mbps", "cos.bulk.", None) or rate_bps
    if guarantee > rate_bps:
        raise ConfigError(f"cos.bulk.guarantee_mbps: {guarantee / 1e6:g} exceeds the root "
                          f"rate {rate_bps / 1e6:g}")  # fmt: skip
    buffer = _take(bulk, "buffer_bytes", "cos.bulk.", int, None)
    if buffer is not None:
        _positive(buffer, "cos.bulk.buffer_bytes")
    prio = _take(table, "priority", "cos.", dict, {})
    _no_extra(prio, {"rate_mbps", "protocols", "udp_ports", "tcp_ports"}, "cos.priority.")
    prio_rate = _mbps(prio, "rate_mbps", "cos.priority.", None) or max(rate_bps // 10, 1_000_000)
    if prio_rate > rate_bps:
        raise ConfigError("cos.priority.rate_mbps: exceeds the root rate")
    protocols = []
    for i, name in enumerate(_take(prio, "protocols", "cos.priority.", list, ["icmp", "icmpv6"])):
        if name not in PROTOCOLS:
            raise ConfigError(f"cos.priority.protocols[{i}]: unknown protocol {name!r}; "
                              f"known: {', '.join(PROTOCOLS)}")  # fmt: skip
        protocols.append(PROTOCOLS[name])
    udp = _take(prio, "udp_ports", "cos.priority.", list, [53])
    tcp = _take(prio, "tcp_ports", "cos.priority.", list, [])
    return CosConfig(
        rate_bps=rate_bps,
        burst_bytes=burst,
        bulk_guarantee_bps=guarantee,
        bulk_buffer_bytes=buffer,
        priority_rate_bps=prio_rate,
        priority_protocols=tuple(protocols),
        priority_udp_ports=_ports(udp, "cos.priority.udp_ports"),
        priority_tcp_ports=_ports(tcp, "cos.priority.tcp_ports"),
    )


def _forwarder(config: dict) -> ForwarderConfig:
    table = _take(config, "forwarder", "", dict, {})
    p = "forwarder."
    _no_extra(table, {"queues", "ring_size", "burst", "xdp_mode", "sessions", "busy_poll_us"}, p)
    d = ForwarderConfig()
    queues = _take(table, "queues", p, (int, str), d.queues)
    if queues != "all":
        if isinstance(queues, str):
            raise ConfigError(f'{p}queues: a number or "all", got {queues!r}')
        queues = _positive(queues, f"{p}queues", maximum=64)
    else:
        queues = QUEUES_ALL
    ring = _take(table, "ring_size", p, int, d.ring_size)
    if ring < 64 or ring & (ring - 1) or ring > 16384:
        raise ConfigError(f"{p}ring_size: a power of two in 64..16384, got {ring}")
    burst = _positive(_take(table, "burst", p, int, d.burst), f"{p}burst", maximum=256)
    mode = _take(table, "xdp_mode", p, str, d.xdp_mode)
    if mode not in XDP_MODES:
        raise ConfigError(f"{p}xdp_mode: one of {', '.join(XDP_MODES)}, got {mode!r}")
    sessions = _positive(
        _take(table, "sessions", p, int, d.sessions), f"{p}sessions", maximum=SESSIONS_MAX
    )
    busy_poll_us = _take(table, "busy_poll_us", p, int, d.busy_poll_us)
    if not 0 <= busy_poll_us <= MAX_BUSY_POLL_US:
        raise ConfigError(f"{p}busy_poll_us: 0..{MAX_BUSY_POLL_US}, got {busy_poll_us}")
    return ForwarderConfig(queues, ring, burst, mode, sessions, busy_poll_us)


def _icmp(config: dict) -> IcmpConfig:
    table = _take(config, "icmp", "", dict, {})
    p = "icmp."
    names = [f.name for f in dataclasses.fields(IcmpConfig)]
    _no_extra(table, set(names), p)
    d = IcmpConfig()
    return IcmpConfig(*(
        _positive(_take(table, n, p, int, getattr(d, n)), f"{p}{n}", maximum=1_000_000)
        for n in names
    ))  # fmt: skip


def parse_config(config: dict[str, Any]) -> FirewallConfig:
    """Validate a config dict (as loaded from TOML) into a FirewallConfig.

    Raises ConfigError naming the first offending key.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"top level: expected a table, got {type(config).__name__}")
    _no_extra(
        config,
        {
            "namespace",
            "lan",
            "wan",
            "routes",
            "neighbours",
            "nat",
            "mss",
            "cos",
            "forwarder",
            "icmp",
            "dnat",
            "kernel_routes",
        },
        "",
    )
    namespace = _take(config, "namespace", "", str, None)
    lan = _interface(config, "lan")
    wan = _interface(config, "wan")
    if lan.name == wan.name:
        raise ConfigError(f"wan.interface: same interface as lan ({lan.name!r})")
    for version in (4, 6):
        if lan.address(version) is None and wan.address(version) is not None:
            raise ConfigError(f"lan.addresses: WAN has IPv{version} but LAN has none")
        if lan.address(version) is not None and wan.address(version) is None:
            raise ConfigError(f"wan.addresses: LAN has IPv{version} but WAN has no "
                              f"IPv{version} address to translate to")  # fmt: skip
    for la in lan.addresses:
        for wa in wan.addresses:
            if la.version == wa.version and la.network.overlaps(wa.network):
                raise ConfigError(f"wan.addresses: {wa} overlaps the LAN subnet {la}")
    routes = _routes(config, lan, wan)
    kernel_routes = _take(config, "kernel_routes", "", bool, False)
    if kernel_routes and routes:
        raise ConfigError("kernel_routes: true takes the routes from the kernel's main table; "
                          "remove the [[routes]] entries")  # fmt: skip
    neighbours = _neighbours(config)
    seen: dict[tuple[str, object], int] = {}
    for i, n in enumerate(neighbours):
        if (n.interface, n.address) in seen:
            raise ConfigError(f"neighbours[{i}].address: {n.address} on {n.interface} is "
                              f"already neighbours[{seen[n.interface, n.address]}]")  # fmt: skip
        seen[(n.interface, n.address)] = i
        iface = lan if n.interface == "lan" else wan
        if not any(n.address in a.network for a in iface.addresses):
            raise ConfigError(f"neighbours[{i}].address: {n.address} is not on a subnet of "
                              f"{n.interface}")  # fmt: skip
    return FirewallConfig(
        lan=lan,
        wan=wan,
        routes=routes,
        neighbours=neighbours,
        snat_ports=_snat_ports(config),
        mss_clamp_bytes=_mss(config),
        cos=_cos(config),
        forwarder=_forwarder(config),
        namespace=namespace,
        icmp=_icmp(config),
        dnat=_dnat(config, lan, wan),
        kernel_routes=kernel_routes,
    )


def load_config(path: str | Path) -> FirewallConfig:
    """Read and validate a TOML firewall config; ConfigError on bad TOML or values."""
    try:
        import tomllib
    except ModuleNotFoundError:
        raise ConfigError("reading TOML configs needs Python >= 3.11 (tomllib)") from None
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def to_toml(config: dict[str, Any]) -> str:
    """TOML text of a config dict in the schema `parse_config` reads (scalars, tables one
    level deep with sub-tables, arrays of tables), e.g. to save a generated config."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and
                                                 isinstance(v[0], dict))]  # fmt: skip
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines += [
                f"{k} = {_toml_value(v)}" for k, v in value.items() if not isinstance(v, dict)
            ]
            for sub, table in value.items():
                if isinstance(table, dict):
                    lines.append(f"[{key}.{sub}]")
                    lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for table in value:
                lines.append(f"\n[[{key}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# --- building the forwarder --------------------------------------------------------------

PORT_LAN, PORT_WAN = 0, 1  # port indices inside each worker's pipeline
FLOW_CACHE_SETS, FLOW_CACHE_WAYS = 1024, 4


def routing(
    config: FirewallConfig, routes: Iterable[Route] | None = None
) -> tuple[list[tuple[str, int]], list[tuple]]:
    """Routes as (prefix, next-hop index) and next hops as (port, src_mac, dst), from
    `routes` (default: the config's).

    Each connected subnet (an interface address's network) routes to that interface with
    dst `CONNECTED`: each destination's MAC comes from the host's neighbour table. A
    static neighbour adds a host route with its fixed MAC. A configured route points at
    its gateway: the static neighbour's hop if there is one, else a hop whose dst is the
    gateway address (its MAC from the neighbour table); no gateway means on-link.
    Interface MACs must be known (config or `resolve_macs`).
    """
    hops: list[tuple] = []
    index: dict[tuple[str, object], int] = {}
    prefixes: list[tuple[str, int]] = []

    def hop(side: str, dst) -> int:
        iface = config.interface(side)
        if iface.mac is None:
            raise ConfigError(f"{side}.mac: unknown (resolve_macs() reads it)")
        if (side, dst) not in index:
            index[(side, dst)] = len(hops)
            hops.append((PORT_LAN if side == "lan" else PORT_WAN, iface.mac, dst))
        return index[(side, dst)]

    for side in SIDES:
        for a in config.interface(side).addresses:
            prefixes.append((str(a.network), hop(side, CONNECTED)))
    static = {}
    for n in config.neighbours:
        static[(n.interface, n.address)] = hop(n.interface, n.mac)
        prefixes.append(
            (f"{n.address}/{n.address.max_prefixlen}", static[(n.interface, n.address)])
        )
    for r in config.routes if routes is None else routes:
        if r.gateway is None:
            target = hop(r.interface, CONNECTED)
        else:
            known = static.get((r.interface, r.gateway))
            target = known if known is not None else hop(r.interface, r.gateway)
        prefixes.append((str(r.destination), target))
    return prefixes, hops


def route_table(prefixes: Iterable[tuple[str, int]]) -> RouteTable:
    """A RouteTable of (prefix, next-hop index) pairs."""
    table = RouteTable()
    for prefix, hop in prefixes:
        table.add(prefix, hop)
    return table


def kernel_route_installer(config: FirewallConfig, forwarder) -> Callable[[list], None]:
    """`HostWatcher.on_routes` for `kernel_routes = true`: each reading of the main table
    (KernelRoutes) becomes every worker's route and next-hop tables, swapped in between two
    of its polls (`Forwarder.update`), together with the interfaces' connected subnets and
    static neighbours."""

    def install(routes: list) -> None:
        prefixes, hops = routing(
            config,
            [Route(r.destination, "lan" if r.port == PORT_LAN else "wan", r.gateway)
             for r in routes],
        )  # fmt: skip

        def swap(pipe) -> None:
            pipe.set_next_hops(hops)  # also invalidates every flow-cache entry
            pipe.routes = route_table(prefixes)

        forwarder.update(swap)
        log.info("routes from the kernel: %d", len(routes))

    return install


def neighbour_summary(config: FirewallConfig) -> str:
    """One line saying where next-hop MACs come from (printed by `xpfdp forward --check`)."""
    static = {(n.interface, n.address) for n in config.neighbours}
    from_host = sorted(
        {
            str(r.gateway)
            for r in config.routes
            if r.gateway and (r.interface, r.gateway) not in static
        }
    )
    parts = [f"{len(static)} static neighbour{'s' if len(static) != 1 else ''}"]
    if from_host:
        parts.append(f"gateway MACs from the host's neighbour table: {', '.join(from_host)}")
    parts.append("other on-link hosts resolved by the host (ARP/ND)")
    return "; ".join(parts)


def dnat_summary(config: FirewallConfig) -> str:
    """One line listing the port forwards (printed by `xpfdp forward --check`), "" if none."""
    names = {v: k for k, v in PROTOCOLS.items()}
    rules = []
    for r in config.dnat:
        to = str(r.to_address) if r.to_address.version == 4 else f"[{r.to_address}]"
        rules.append(f"{names[r.proto]} {r.interface}:{r.port} -> {to}:{r.to_port or r.port}")
    return f"port forwards: {', '.join(rules)}" if rules else ""


def gateways(hops: list[tuple]) -> list[tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """(port, address) of every next hop whose MAC the host's neighbour table resolves."""
    return [
        (port, dst)
        for port, _src, dst in hops
        if isinstance(dst, (ipaddress.IPv4Address, ipaddress.IPv6Address))
    ]


def resolve_macs(config: FirewallConfig) -> FirewallConfig:
    """The config with LAN/WAN MACs read from the interfaces where the file gave none."""
    sides: dict[str, Any] = {}
    for side in SIDES:
        iface = config.interface(side)
        if iface.mac is None:
            try:
                mac = interface_mac(iface.name, config.namespace)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            iface = dataclasses.replace(iface, mac=mac)
        sides[side] = iface
    return dataclasses.replace(config, **sides)


QUEUE_BULK, QUEUE_PRIORITY = 0, 1  # CoS queue ids on WAN egress


def wan_scheduler(cos: CosConfig):
    """The WAN egress Scheduler: root token bucket at the configured rate over an exact
    MQFQ bulk queue (guarantee; surplus sharing when below the root rate) and a strict
    high-priority FIFO queue with its own guarantee."""
    sch = Scheduler(cos.rate_bps // 8, burst_bytes=cos.burst_bytes)
    sch.add_queue(
        QUEUE_BULK,
        priority=5,
        transmit_rate_bytes_per_s=cos.bulk_guarantee_bps // 8,
        exact=True,
        buffer_bytes=cos.bulk_buffer_bytes,
        surplus_sharing=cos.bulk_guarantee_bps < cos.rate_bps,
    )
    sch.add_queue(QUEUE_PRIORITY, priority=0, transmit_rate_bytes_per_s=cos.priority_rate_bps // 8)
    return sch


def cos_rules(cos: CosConfig) -> list[dict]:
    """CoS classification rules putting ICMP/DNS-like traffic in the priority queue."""
    rules = []
    for proto in sorted(set(cos.priority_protocols)):
        rule = {"queue": QUEUE_PRIORITY, "proto": proto}
        if proto in (PROTOCOLS["icmp"], PROTOCOLS["icmpv6"]):
            rule["family"] = 4 if proto == PROTOCOLS["icmp"] else 6
        rules.append(rule)
    for proto, ports in ((PROTOCOLS["udp"], cos.priority_udp_ports),
                         (PROTOCOLS["tcp"], cos.priority_tcp_ports)):  # fmt: skip
        rules.extend({"queue": QUEUE_PRIORITY, "proto": proto, "port": p} for p in ports)
    return rules


def dnat_rules(config: FirewallConfig) -> list[tuple[int, int, int, str, int]]:
    """The port forwards as `SessionStage.add_dnat` takes them: (ingress port index, proto,
    port, to_address, to_port or 0)."""
    return [
        (PORT_LAN if r.interface == "lan" else PORT_WAN, r.proto, r.port, str(r.to_address),
         r.to_port or 0)
        for r in config.dnat
    ]  # fmt: skip


def forwarded_ports(config: FirewallConfig) -> list[tuple[str, int, int, int]]:
    """The port forwards as `HostWatcher` keeps them away from the host: (interface name,
    IP version, proto, port)."""
    return [
        (config.interface(r.interface).name, r.to_address.version, r.proto, r.port)
        for r in config.dnat
    ]


def _first_addresses(iface: Interface) -> list[str]:
    return [str(a) for a in (iface.address(4), iface.address(6)) if a is not None]


def build_pipeline(
    config: FirewallConfig, lan_port, wan_port, neighbours=None, *, handoff=None, worker=0
):
    """One worker's pipeline over two ports (XskPort or MemPort) sharing a UMEM:
    parse → session (new flows only from the LAN and through the port forwards, SNAT to
    the WAN addresses; ICMP errors translated through the session they quote) → NAT →
    route → MTU → TTL → MSS clamp → L2 rewrite → fragment → count → CoS on WAN egress (if
    configured). The forwarder's own ICMP
    errors come from the ingress side's first address of the family. `neighbours`: the
    NeighbourTable next hops without a static MAC read (a new, empty one if None: only
    static neighbours resolve). With several workers, give each the same
    `xpfdp.pipeline.Handoff` and its index."""
    prefixes, hops = routing(config)
    routes = route_table(prefixes)
    snat = _first_addresses(config.wan)
    icmp = IcmpErrors(
        {PORT_LAN: _first_addresses(config.lan), PORT_WAN: _first_addresses(config.wan)},
        **dataclasses.asdict(config.icmp),
    )
    stages = firewall_stages(
        PORT_LAN,
        PORT_WAN,
        snat=snat,
        snat_ports=config.snat_ports,
        mss=config.mss_clamp_bytes,
        icmp=icmp,
        dnat=dnat_rules(config),
    )
    if config.cos is not None:
        stages.append(
            CosStage(
                {PORT_WAN: wan_scheduler(config.cos)},
                rules=cos_rules(config.cos),
                default_queue=QUEUE_BULK,
            )
        )
    return Pipeline(
        [lan_port, wan_port],
        stages,
        routes=routes,
        next_hops=hops,
        sessions=SessionTable(2 * config.forwarder.sessions),
        flow_cache=FlowCache(FLOW_CACHE_SETS, FLOW_CACHE_WAYS),
        names=list(SIDES),
        burst_size=config.forwarder.burst,
        handoff=handoff,
        worker=worker,
        neighbours=neighbours if neighbours is not None else NeighbourTable(),
    )


def build_forwarder(config: FirewallConfig, *, handle_signals: bool = True):
    """A `xpfdp.pipeline.Forwarder` with one worker per RX queue, each owning a UMEM and
    AF_XDP sockets on both interfaces (created inside `config.namespace`), and a
    `xpfdp.hostnet.HostWatcher` as its control thread: packets for the host's own
    addresses go to the kernel, next-hop MACs follow the kernel's neighbour table (all
    workers share one NeighbourTable). Not started; closing it, from any namespace,
    detaches everything. Needs root.

    With several queues each worker owns a slice of the SNAT port range and its session
    table; a packet that lands on a worker that does not own its flow is handed to the
    owner (`xpfdp.pipeline.Handoff`, docs/multicore.md), so no NIC hashing is assumed.
    ValueError when an interface has fewer RX queues than `forwarder.queues`.
    """
    if config.namespace is not None:
        require_namespace(config.namespace)  # missing or not enterable: say so, create nothing
    config = resolve_macs(config)
    f = config.forwarder
    counts = {side: interface_rx_queues(config.interface(side).name, config.namespace)
              for side in SIDES}  # fmt: skip
    queues = f.queues or min(counts.values())
    for side, available in counts.items():
        if queues > available:
            raise ConfigError(
                f"forwarder.queues: {queues}, but {config.interface(side).name} has "
                f"{available} RX queue{'s' if available != 1 else ''}; set queues <= {available}"
            )
    links = LinkWatch([config.lan.name, config.wan.name], config.namespace)
    for name, state in links.check().items():
        if state != "up" and name == config.wan.name:
            log.warning("WAN interface %s is %s at start: nothing reaches the WAN until it is "
                        "up", name, state)  # fmt: skip
    handoff = Handoff(queues, slots=HANDOFF_SLOTS) if queues > 1 else None
    # TX frames: handed-in packets are copied into them; the extra fragments of IPv4 packets
    # split to the egress MTU take them too
    tx_frames = (2 * f.ring_size if handoff else 0) + 4 * f.burst
    # per port: fill ring x2, in flight, TX queue; plus the TX frames
    frames = 2 * 3 * f.ring_size + 8 * f.burst + tx_frames
    port_options = {"mode": f.xdp_mode, "ring_size": f.ring_size, "fill_target": 2 * f.ring_size,
                    "busy_poll_us": f.busy_poll_us}  # fmt: skip
    neighbours = NeighbourTable()
    try:
        with inside(config.namespace):  # sockets and program attach belong to that namespace
            pipelines = xsk_workers(
                [config.lan.name, config.wan.name],
                lambda queue, ports: build_pipeline(
                    config, ports[0], ports[1], neighbours=neighbours, handoff=handoff, worker=queue
                ),
                queues=queues,
                frames=frames,
                tx_frames=tx_frames,
                **port_options,
            )
    except BaseException:
        links.close()
        raise
    watcher = host_watcher(config, pipelines, neighbours)
    forwarder = Forwarder(pipelines, handle_signals=handle_signals, links=links,
                          controls=[watcher])  # fmt: skip
    if config.kernel_routes:
        watcher.on_routes = kernel_route_installer(config, forwarder)
    return forwarder


def host_watcher(config: FirewallConfig, pipelines, neighbours) -> HostWatcher:
    """The control thread of a firewall forwarder: local delivery on both interfaces'
    programs (the WAN SNAT addresses keep their port range for NAT replies, each port
    forward's port stays with the forwarder on its interface's addresses), neighbours of
    both interfaces into `neighbours`, the routes' gateways kept resolved."""
    programs = {id(p.program): p.program for pipe in pipelines for p in pipe.ports}
    nat = {a: config.snat_ports for a in (config.wan.address(4), config.wan.address(6)) if a}
    _prefixes, hops = routing(config)
    return HostWatcher(
        {config.lan.name: PORT_LAN, config.wan.name: PORT_WAN},
        namespace=config.namespace,
        programs=programs.values(),
        nat_ports=nat,
        forwarded_ports=forwarded_ports(config),
        neighbours=neighbours,
        pipelines=pipelines,
        gateways=gateways(hops),
        follow_routes=config.kernel_routes,
    )
