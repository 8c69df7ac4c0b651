"""Session table: directional 5-tuple keys, forward/reverse NAT pairs, GC and sync deltas.

The table itself (`SessionTable`) and every per-packet operation live in
`xpfdp._fast.session`; this module re-exports them and adds helpers that build keys,
decisions and metadata from ordinary Python values (addresses as strings or
`ipaddress` objects), for setup code and tests.
"""

from __future__ import annotations

import enum
import ipaddress

import numpy as np

from xpfdp._fast.session import (
    DECISION_DTYPE,
    DEFAULT_ICMP_TIMEOUT_S,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_TCP_TIMEOUT_S,
    DEFAULT_UDP_TIMEOUT_S,
    DELTA_DTYPE,
    DELTA_KINDS,
    DISPOSITIONS,
    GC_INTERVAL_NS,
    KEY_DTYPE,
    MAX_SESSION_DELTAS,
    MAX_SESSIONS,
    MAX_TIME_NS,
    META_DTYPE,
    NAT_FLAGS,
    ORIGINS,
    RECORD_BYTES,
    SESSION_DTYPE,
    SESSION_FLAGS,
    TCP_CLOSING_TIMEOUT_S,
    WHEEL_BUCKETS,
    WHEEL_TICK_NS,
    DeltaFeed,
    SessionTable,
    forward_wire,
    keys_from_meta,
    reverse_canonical,
    reverse_decisions,
    reverse_wire,
    translated,
)

__all__ = [
    "DECISION_DTYPE",
    "DEFAULT_ICMP_TIMEOUT_S",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_TCP_TIMEOUT_S",
    "DEFAULT_UDP_TIMEOUT_S",
    "DELTA_DTYPE",
    "GC_INTERVAL_NS",
    "KEY_DTYPE",
    "MAX_SESSIONS",
    "MAX_SESSION_DELTAS",
    "MAX_TIME_NS",
    "META_DTYPE",
    "RECORD_BYTES",
    "SESSION_DTYPE",
    "TCP_CLOSING_TIMEOUT_S",
    "WHEEL_BUCKETS",
    "WHEEL_TICK_NS",
    "DeltaFeed",
    "DeltaKind",
    "Disposition",
    "NatFlag",
    "Origin",
    "SessionFlag",
    "SessionTable",
    "forward_wire",
    "key_fields",
    "keys_from_meta",
    "make_decision",
    "make_key",
    "make_keys",
    "make_meta",
    "reverse_canonical",
    "reverse_decisions",
    "reverse_wire",
    "translated",
]

AF_INET = 2
AF_INET6 = 10

Origin = enum.IntEnum("Origin", {name.upper(): i for i, name in enumerate(ORIGINS)})
Origin.__doc__ = "Where a session came from (docs/sessions.md, Origins); decides deltas."
Disposition = enum.IntEnum("Disposition", {name.upper(): i for i, name in enumerate(DISPOSITIONS)})
Disposition.__doc__ = "Forwarding outcome stored in a decision; only two are cacheable."
NatFlag = enum.IntFlag("NatFlag", {name.upper(): v for name, v in NAT_FLAGS.items()})
NatFlag.__doc__ = "Which NAT rewrites a decision carries (DECISION_DTYPE.nat_flags)."
SessionFlag = enum.IntFlag("SessionFlag", {n.upper(): v for n, v in SESSION_FLAGS.items()})
SessionFlag.__doc__ = "META_DTYPE.flags bits: arrived over the fabric, reply-direction entry."
DeltaKind = enum.IntEnum("DeltaKind", {n.upper(): v for n, v in DELTA_KINDS.items()})
DeltaKind.__doc__ = "DELTA_DTYPE.kind: a session opened or closed."

_ICMP_PROTOCOLS = (1, 58)


def _addr16(addr) -> tuple[int, bytes]:
    """(af, 16-byte field) for an address; IPv4 fills bytes 0..3 and zeroes the rest."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return AF_INET, ip.packed + bytes(12)
    return AF_INET6, ip.packed


def make_key(src, dst, sport: int = 0, dport: int = 0, proto: int = 6) -> np.ndarray:
    """One KEY_DTYPE record for `proto src:sport > dst:dport`.

    For ICMP/ICMPv6 pass the echo identifier as `sport`; `dport` must be 0, as in every
    key the parser builds.
    """
    af, s = _addr16(src)
    af2, d = _addr16(dst)
    if af != af2:
        raise ValueError(f"src {src} and dst {dst} are different address families")
    if not (0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF and 0 <= proto <= 255):
        raise ValueError("ports must be 0..65535 and proto 0..255")
    if proto in _ICMP_PROTOCOLS and dport != 0:
        raise ValueError("ICMP keys carry the echo identifier in sport and 0 in dport")
    key = np.zeros((), dtype=KEY_DTYPE)
    key["af"], key["proto"], key["sport"], key["dport"] = af, proto, sport, dport
    key["src"] = np.frombuffer(s, dtype=np.uint8)
    key["dst"] = np.frombuffer(d, dtype=np.uint8)
    return key


def make_keys(tuples) -> np.ndarray:
    """KEY_DTYPE array from an iterable of (src, dst, sport, dport, proto) tuples."""
    rows = [make_key(*t) for t in tuples]
    return np.array(rows, dtype=KEY_DTYPE).reshape(-1)


def make_decision(
    snat=None,
    snat_port: int | None = None,
    dnat=None,
    dnat_port: int | None = None,
    disposition: int = Disposition.FORWARD_CANDIDATE,
    egress_port: int = 0,
    nat64: bool = False,
    nptv6: bool = False,
) -> np.ndarray:
    """One DECISION_DTYPE record: optional source/destination address and port rewrites."""
    dec = np.zeros((), dtype=DECISION_DTYPE)
    flags = 0
    if snat is not None:
        flags |= NatFlag.RS
        dec["rs"] = np.frombuffer(_addr16(snat)[1], dtype=np.uint8)
    if dnat is not None:
        flags |= NatFlag.RD
        dec["rd"] = np.frombuffer(_addr16(dnat)[1], dtype=np.uint8)
    if snat_port is not None:
        flags |= NatFlag.RSP
        dec["rsp"] = snat_port
    if dnat_port is not None:
        flags |= NatFlag.RDP
        dec["rdp"] = dnat_port
    if nat64:
        flags |= NatFlag.NAT64
    if nptv6:
        flags |= NatFlag.NPTV6
    dec["nat_flags"] = int(flags)
    dec["disposition"] = int(disposition)
    dec["egress_port"] = egress_port
    return dec


def make_meta(
    owner_rg: int = 0,
    ingress_zone: int = 0,
    egress_zone: int = 0,
    fabric_ingress: bool = False,
    reverse: bool = False,
) -> np.ndarray:
    """One META_DTYPE record (owner redundancy group, zones, flags)."""
    meta = np.zeros((), dtype=META_DTYPE)
    meta["owner_rg"] = owner_rg
    meta["ingress_zone"] = ingress_zone
    meta["egress_zone"] = egress_zone
    meta["flags"] = (SessionFlag.FABRIC_INGRESS if fabric_ingress else 0) | (
        SessionFlag.REVERSE if reverse else 0
    )
    return meta


def key_fields(key) -> tuple:
    """(proto, src, sport, dst, dport) of a KEY_DTYPE record, addresses as ipaddress
    objects (IPv6 addresses in an af=2 key, as NAT64 aliases produce, stay IPv6)."""
    key = np.asarray(key, dtype=KEY_DTYPE).reshape(())
    src, dst = bytes(key["src"]), bytes(key["dst"])
    if int(key["af"]) == AF_INET and not any(src[4:]) and not any(dst[4:]):
        s, d = ipaddress.ip_address(src[:4]), ipaddress.ip_address(dst[:4])
    else:
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return (int(key["proto"]), s, int(key["sport"]), d, int(key["dport"]))
