"""Pure-Python reference of the session table semantics (docs/sessions.md).

Written from the spec with plain dicts and tuples, independently of the Cython table, so
tests can run the same operation sequence on both and compare. Keys are tuples
(af, proto, sport, dport, src16, dst16); decisions are `Decision`; metas are `Meta`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from xpfdp.session import DECISION_DTYPE, KEY_DTYPE, META_DTYPE

RS, RD, RSP, RDP, NAT64, NPTV6 = 1, 2, 4, 8, 16, 32
FABRIC_INGRESS, REVERSE = 1, 2
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
FIN, RST = 0x01, 0x04
LOCAL_DELIVERY, FORWARD_CANDIDATE, FABRIC_REDIRECT = 0, 1, 2
FORWARD_FLOW, REVERSE_FLOW, LOCAL_MISS, SEED = 0, 1, 2, 3
SYNC_IMPORT, SHARED_MATERIALIZE, SHARED_PROMOTE, WORKER_LOCAL_IMPORT = 4, 5, 6, 7
OPEN, CLOSE = 1, 2
NS = 1_000_000_000
MAX_DELTAS = 4096


@dataclass(frozen=True)
class Decision:
    """NAT rewrites plus disposition and egress port, as plain values."""

    flags: int = 0
    disposition: int = FORWARD_CANDIDATE
    rsp: int = 0
    rdp: int = 0
    egress_port: int = 0
    rs: bytes = bytes(16)
    rd: bytes = bytes(16)


@dataclass(frozen=True)
class Meta:
    """Owner RG, zones and flags, as plain values."""

    owner_rg: int = 0
    ingress_zone: int = 0
    egress_zone: int = 0
    flags: int = 0


@dataclass
class Entry:
    """One stored session of the model."""

    decision: Decision
    meta: Meta
    origin: int
    last_seen_ns: int
    expires_after_s: int
    closing: bool
    incarnation: int


def peer_synced(origin: int) -> bool:
    return origin in (SYNC_IMPORT, SHARED_MATERIALIZE, WORKER_LOCAL_IMPORT)


def emits(entry: Entry) -> bool:
    return not entry.meta.flags & REVERSE and not peer_synced(entry.origin) and entry.origin != SEED


# ----------------------------------------------------------------------- transforms


def _icmp(proto: int) -> bool:
    return proto in (ICMP, ICMPV6)


def _nat64(af: int, proto: int) -> tuple[int, int]:
    if af == 10:
        return 2, ICMP if proto == ICMPV6 else proto
    return 10, ICMPV6 if proto == ICMP else proto


def translated(k: tuple, d: Decision) -> tuple:
    af, proto, sp, dp, src, dst = k
    src = d.rs if d.flags & RS else src
    dst = d.rd if d.flags & RD else dst
    if not _icmp(proto):
        sp = d.rsp if d.flags & RSP else sp
        dp = d.rdp if d.flags & RDP else dp
    return (af, proto, sp, dp, src, dst)


def forward_wire(k: tuple, d: Decision) -> tuple:
    t = translated(k, d)
    if d.flags & NAT64:
        return (*_nat64(t[0], t[1]), *t[2:])
    return t


def reverse_wire(k: tuple, d: Decision) -> tuple:
    af, proto, sp, dp, src, dst = k
    nsrc = d.rd if d.flags & RD else dst
    ndst = d.rs if d.flags & RS else src
    if _icmp(proto):
        ports = (sp, dp)
    else:
        ports = (d.rdp if d.flags & RDP else dp, d.rsp if d.flags & RSP else sp)
    if d.flags & NAT64:
        af, proto = _nat64(af, proto)
    return (af, proto, *ports, nsrc, ndst)


def reverse_canonical(k: tuple) -> tuple:
    af, proto, sp, dp, src, dst = k
    if _icmp(proto):
        return (af, proto, sp, dp, dst, src)
    return (af, proto, dp, sp, dst, src)


def reverse_decision(k: tuple, d: Decision, egress_port: int = 0) -> Decision:
    _, _, sp, dp, src, dst = k
    flags = d.flags & (NAT64 | NPTV6)
    rs = rd = bytes(16)
    rsp = rdp = 0
    if d.flags & RD:
        flags, rs = flags | RS, dst
    if d.flags & RS:
        flags, rd = flags | RD, src
    if d.flags & RDP:
        flags, rsp = flags | RSP, dp
    if d.flags & RSP:
        flags, rdp = flags | RDP, sp
    return Decision(flags, d.disposition, rsp, rdp, egress_port, rs, rd)


# ----------------------------------------------------------------------- conversions


def key_tuple(rec) -> tuple:
    return (
        int(rec["af"]),
        int(rec["proto"]),
        int(rec["sport"]),
        int(rec["dport"]),
        bytes(rec["src"]),
        bytes(rec["dst"]),
    )


def key_array(keys) -> np.ndarray:
    out = np.zeros(len(keys), dtype=KEY_DTYPE)
    for i, (af, proto, sp, dp, src, dst) in enumerate(keys):
        out[i] = (af, proto, sp, dp, 0, np.frombuffer(src, np.uint8), np.frombuffer(dst, np.uint8))
    return out


def decision_tuple(rec) -> Decision:
    return Decision(
        int(rec["nat_flags"]),
        int(rec["disposition"]),
        int(rec["rsp"]),
        int(rec["rdp"]),
        int(rec["egress_port"]),
        bytes(rec["rs"]),
        bytes(rec["rd"]),
    )


def decision_array(decs) -> np.ndarray:
    out = np.zeros(len(decs), dtype=DECISION_DTYPE)
    for i, d in enumerate(decs):
        out[i] = (
            d.flags,
            d.disposition,
            d.rsp,
            d.rdp,
            d.egress_port,
            np.frombuffer(d.rs, np.uint8),
            np.frombuffer(d.rd, np.uint8),
        )
    return out


def meta_tuple(rec) -> Meta:
    return Meta(
        int(rec["owner_rg"]), int(rec["ingress_zone"]), int(rec["egress_zone"]), int(rec["flags"])
    )


def meta_array(metas) -> np.ndarray:
    out = np.zeros(len(metas), dtype=META_DTYPE)
    for i, m in enumerate(metas):
        out[i] = (m.owner_rg, m.ingress_zone, m.egress_zone, m.flags)
    return out


# ----------------------------------------------------------------------- the model


class ModelTable:
    """Dict-based session table with the spec's semantics (and xpfdp's decisions)."""

    def __init__(self, max_sessions=131072, tcp_s=300, udp_s=60, icmp_s=60):
        self.max_sessions = max_sessions
        self.tcp_s, self.udp_s, self.icmp_s = tcp_s, udp_s, icmp_s
        self.entries: dict[tuple, Entry] = {}
        self.natrev: dict[tuple, tuple] = {}
        self.fwire: dict[tuple, tuple] = {}
        self.alias: dict[tuple, tuple] = {}
        self.deltas: deque = deque()
        self.delta_drops = 0
        self.create_drops = 0
        self.last_gc_ns: int | None = None
        self._incarnations = 0

    # timeouts
    def timeout_s(self, proto: int, flags: int) -> int:
        if proto == TCP:
            return 30 if flags & (FIN | RST) else self.tcp_s
        if proto == UDP:
            return self.udp_s
        if _icmp(proto):
            return self.icmp_s
        return 30

    # indices
    def _index(self, key: tuple, e: Entry) -> None:
        if not e.meta.flags & REVERSE:
            self.natrev[reverse_wire(key, e.decision)] = key
            rc = reverse_canonical(key)
            if rc != key:
                self.natrev[rc] = key
            fw = forward_wire(key, e.decision)
            if fw != key:
                self.fwire[fw] = key
        elif not e.decision.flags & NAT64:
            tr = translated(key, e.decision)
            if tr != key:
                self.alias[tr] = key

    def _unindex(self, key: tuple, e: Entry) -> None:
        def drop(index, k):
            if index.get(k) == key:
                del index[k]

        if not e.meta.flags & REVERSE:
            drop(self.natrev, reverse_wire(key, e.decision))
            drop(self.natrev, reverse_canonical(key))
            drop(self.fwire, forward_wire(key, e.decision))
        else:
            drop(self.alias, translated(key, e.decision))

    def _remove(self, key: tuple) -> Entry | None:
        e = self.entries.pop(key, None)
        if e is not None:
            self._unindex(key, e)
        return e

    def _delta(self, kind: int, key: tuple, e: Entry) -> None:
        if len(self.deltas) >= MAX_DELTAS:
            self.delta_drops += 1
        else:
            self.deltas.append((kind, key, e.origin))

    def _insert(self, key, dec, meta, origin, now, flags, capped, emit) -> int | None:
        if capped and key not in self.entries and len(self.entries) >= self.max_sessions:
            self.create_drops += 1
            return None
        self._remove(key)
        self._incarnations += 1
        meta = replace(meta, flags=meta.flags & (FABRIC_INGRESS | REVERSE))
        e = Entry(
            dec,
            meta,
            origin,
            now,
            self.timeout_s(key[1], flags),
            key[1] == TCP and bool(flags & (FIN | RST)),
            self._incarnations,
        )
        self.entries[key] = e
        self._index(key, e)
        if emit and emits(e):
            self._delta(OPEN, key, e)
        return e.incarnation

    # public operations (mirroring SessionTable)
    def install(self, key, dec, meta, origin, now, flags=0):
        return self._insert(key, dec, meta, origin, now, flags, True, True)

    def install_pair(self, key, dec, meta, now, flags=0, reverse_egress_port=0):
        if dec.disposition == LOCAL_DELIVERY:
            return None, None
        with_rev = not (dec.disposition == FABRIC_REDIRECT and not meta.flags & FABRIC_INGRESS)
        rkey = reverse_wire(key, dec)
        needed = (key not in self.entries) + (with_rev and rkey not in self.entries)
        if len(self.entries) + needed > self.max_sessions:
            self.create_drops += needed
            return None, None
        fmeta = replace(meta, flags=meta.flags & FABRIC_INGRESS)
        f = self._insert(key, dec, fmeta, FORWARD_FLOW, now, flags, False, True)
        if not with_rev:
            return f, None
        rdec = reverse_decision(key, dec, reverse_egress_port)
        rmeta = Meta(
            meta.owner_rg,
            meta.egress_zone,
            meta.ingress_zone,
            (meta.flags & FABRIC_INGRESS) | REVERSE,
        )
        r = self._insert(rkey, rdec, rmeta, REVERSE_FLOW, now, flags, False, True)
        return f, r

    def resolve(self, key) -> tuple[tuple | None, bool]:
        """(primary key of the session a lookup reaches, via_alias)."""
        if key in self.entries:
            return key, False
        target = self.alias.get(key)
        return target, target is not None

    def lookup(self, key, now, flags=0):
        target, via = self.resolve(key)
        if target is None:
            return None, False
        e = self.entries[target]
        if key[1] == TCP and flags & (FIN | RST):
            e.closing = True
        e.last_seen_ns = now
        e.expires_after_s = 30 if key[1] == TCP and e.closing else self.timeout_s(key[1], flags)
        return target, via

    def find_forward_nat(self, reply):
        return self.natrev.get(reply)

    def find_forward_wire(self, wire):
        return self.fwire.get(wire)

    def touch(self, key, now) -> bool:
        e = self.entries.get(key)
        if e is None:
            return False
        e.last_seen_ns = now
        return True

    def delete(self, key) -> bool:
        return self._remove(key) is not None

    def upsert_synced(self, key, dec, meta, origin, now, flags, allow_replace_local):
        e = self.entries.get(key)
        if e is not None and not peer_synced(e.origin) and not allow_replace_local:
            return None
        return self._insert(key, dec, meta, origin, now, flags, False, False)

    def expired_bounds(self, now) -> tuple[set, set]:
        """(must, may): sessions an ungated GC at `now` must return / may return. The wheel
        detects an expiry once its expiry tick has passed; within that tick it may or may
        not have been popped yet."""
        now_tick = now // NS
        must, may = set(), set()
        for k, e in self.entries.items():
            timeout_ns = e.expires_after_s * NS
            if now - e.last_seen_ns > timeout_ns:
                may.add(k)
                if (e.last_seen_ns + timeout_ns) // NS < now_tick:
                    must.add(k)
        return must, may

    def gc_gated(self, now) -> bool:
        return self.last_gc_ns is not None and 0 <= now - self.last_gc_ns < NS

    def apply_expired(self, now, keys_in_order) -> None:
        self.last_gc_ns = now
        for k in keys_in_order:
            e = self._remove(k)
            if emits(e):
                self._delta(CLOSE, k, e)

    def drain(self, max_deltas) -> list:
        n = min(max_deltas, len(self.deltas))
        return [self.deltas.popleft() for _ in range(n)]
