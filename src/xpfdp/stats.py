"""Stats snapshots out: Prometheus text exposition and an xdpsock-style status line.

Both read the plain dict a `Pipeline.stats()` / `Forwarder.stats()` returns (shape in
`xpfdp.pipeline`), so they work on live forwarders, on saved snapshots and in tests.

* `metric_families(snapshot)` maps a snapshot to metric families labelled by worker, port,
  stage and drop reason, following the Prometheus naming conventions: base units (the TX
  latency histogram is in seconds, with `_sum` and `_count`), monotonic counts typed as
  counters (exposed with `_total`), levels as gauges, every drop reason exported from the
  start (at zero) so rates and alerts work before the first drop, and HELP text that says
  what is counted. Exposition goes through the `prometheus_client` library (the optional
  extra `metrics`): a custom collector yields the families at scrape time, so a served
  endpoint always shows the current snapshot. `render_prometheus()` returns the text;
  `serve_prometheus()` serves it on a localhost port.
* `StatusLine` turns successive snapshots into one line per second: packets per second in
  and out, Mbit/s, pipeline drops per second (and total), the kernel's AF_XDP ring drops
  (RX ring full, RX dropped, fill ring starvation, invalid TX descriptors), sessions
  and, with several workers, packets handed between workers per second and each
  worker's share of RX.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from xpfdp.errors import XpfdpError
from xpfdp.pipeline import drop_reasons

PREFIX = "xpfdp"
METRICS_MISSING = (
    "Prometheus exposition needs prometheus-client: pip install 'xpfdp[metrics]' "
    "(or .venv/bin/pip install prometheus-client)"
)

# HELP text per key of each snapshot section; a key listed under _GAUGES is a level, every
# other number is a monotonic count (a counter).
_WORKER_HELP = {
    "rx_packets": "Packets the worker received from all of its ports",
    "tx_packets": "Packets the worker handed to a port for transmission",
    "polls": "Poll rounds over every port of the worker",
    "idle_polls": "Poll rounds that received no packet",
}
_PORT_HELP = {
    "rx_packets": "Packets received on the port",
    "rx_bytes": "Bytes received on the port (Ethernet frames, no FCS)",
    "tx_packets": "Packets the port's TX ring accepted",
    "tx_bytes": "Bytes the port's TX ring accepted (Ethernet frames, no FCS)",
    "tx_kicks": "sendto() wake-ups of the kernel to drain the TX ring",
    "tx_kick_again": "TX wake-ups the kernel answered with EAGAIN/EBUSY (retried)",
    "tx_kick_errors": "TX wake-ups that failed with another error",
    "rx_wakeups": "poll()/recvfrom() wake-ups of the kernel for the fill ring",
    "fill_empty": "Refills that found no free frame for the fill ring",
    "fill_short": "Refills that could stock fewer frames than wanted",
    "tx_ring_full": "Transmit attempts refused because the TX ring was full",
    "completions": "TX completions reaped from the completion ring",
    "bad_desc": "Received descriptors outside the UMEM, recycled",
    "rx_oversize": "Received frames longer than a UMEM frame, dropped",
    "capture_dropped": "MemPort TX frames not kept because the capture was full",
    "tx_queue_drops": "Oldest frames dropped from the bounded software TX queue",
    "rx_dropped": "Kernel: frames dropped on this socket for other reasons (XDP_STATISTICS)",
    "rx_invalid_descs": "Kernel: invalid descriptors on the fill ring",
    "tx_invalid_descs": "Kernel: invalid descriptors on the TX ring",
    "rx_ring_full": "Kernel: frames dropped because the RX ring was full",
    "rx_fill_ring_empty_descs": "Kernel: times the fill ring was empty (fill starvation)",
    "tx_ring_empty_descs": "Kernel: times the kernel found the TX ring empty",
    "frames_fill_ring": "UMEM frames of this port on the fill ring now",
    "frames_rx_ring": "UMEM frames of this port on the RX ring now",
    "frames_pending_tx": "UMEM frames waiting in this port's software TX queue now",
    "frames_tx_ring": "UMEM frames of this port on the TX ring or in flight now",
}
_STAGE_HELP = {
    "packets": "Packets that reached the stage (not dropped earlier)",
    "drops": "Packets the stage dropped",
    "bytes": "Bytes that reached a counting stage",
    "clamped": "TCP SYNs whose MSS option the stage lowered",
    "admitted": "Packets the CoS stage queued for shaped transmission",
    "ecn_marked": "Packets the CoS stage marked ECN Congestion Experienced",
    "nat_allocations": "SNAT port allocations for new flows",
    "nat_collisions": "SNAT port candidates already in use (retried)",
}
_SESSIONS_HELP = {
    "active": "Sessions in the worker's table now (forward and reverse entries)",
    "created": "Sessions the pipeline opened",
    "expired": "Sessions removed after their idle timeout",
    "evicted": "Unreplied sessions evicted early to make room in a full table",
}
_FLOW_CACHE_HELP = {
    "hits": "Flow cache lookups that returned a valid decision",
    "misses": "Flow cache lookups that found no entry",
    "stale": "Flow cache entries found invalid (route, config or session changed)",
    "insertions": "Decisions stored in the flow cache",
    "evictions": "Flow cache entries replaced by LRU",
    "entries": "Live flow cache entries now",
    "capacity": "Flow cache entries it can hold (sets x ways)",
}
_GAUGES = {
    "port": {k for k in _PORT_HELP if k.startswith("frames_")},
    "sessions": {"active"},
    "flow_cache": {"entries", "capacity"},
}
_TOP_LEVEL_HELP = {"uptime_seconds": "Seconds since the forwarder started"}
# Kernel ring drop counters the status line shows, by the label it prints.
RING_DROPS = {
    "ring_full": "rx_ring_full",
    "rx_dropped": "rx_dropped",
    "fill_empty": "rx_fill_ring_empty_descs",
    "tx_invalid": "tx_invalid_descs",
}


@dataclass
class Family:
    """One metric family: name without prefix and without `_total`, kind (counter, gauge
    or histogram), help text, samples as (labels, value); a histogram sample's value is
    (upper bounds in seconds with None for +Inf, per-bucket counts, sum in seconds)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], Any]] = field(default_factory=list)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Families:
    """Families keyed by name, created on first use (so each name has one kind)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Family] = {}

    def add(self, name: str, kind: str, help_text: str, labels: dict, value) -> None:
        fam = self.by_name.get(name)
        if fam is None:
            fam = self.by_name[name] = Family(name, kind, help_text)
        fam.samples.append((dict(labels), value))


def _table(fams: _Families, table: Mapping, section: str, helps: dict, labels: dict) -> None:
    """Every number of `table` as `<section>_<key>`, a gauge if listed in _GAUGES."""
    gauges = _GAUGES.get(section, set())
    for key, value in table.items():
        if _number(value):
            kind = "gauge" if key in gauges else "counter"
            text = helps.get(key, f"{section.replace('_', ' ')} count {key!r}")
            fams.add(f"{section}_{key}", kind, text, labels, value)


def _latency(fams: _Families, lat: Mapping, labels: dict) -> None:
    uppers_s = [None if u is None else u / 1e9 for u in lat["bucket_upper_ns"]]
    value = (uppers_s, list(lat["counts"]), lat.get("sum_ns", 0) / 1e9)
    fams.add("tx_latency_seconds", "histogram",
             "Time from a frame's TX ring submission to its completion", labels, value)  # fmt: skip


def _worker(fams: _Families, snap: Mapping, labels: dict) -> None:
    """The families of one pipeline snapshot, every sample carrying `labels`."""
    for key, text in _WORKER_HELP.items():
        if _number(snap.get(key)):
            fams.add(key, "counter", text, labels, snap[key])
    if _number(snap.get("pending_tx")):
        fams.add("pending_tx_frames", "gauge", "Frames the pipeline holds for TX, not in a ring",
                 labels, snap["pending_tx"])  # fmt: skip
    drops = snap.get("drops") or {}
    registered = drop_reasons()
    for reason in (*registered, *(r for r in drops if r not in registered)):
        fams.add("drops", "counter", "Packets the pipeline dropped, by reason",
                 {**labels, "reason": reason}, drops.get(reason, 0))  # fmt: skip
    for port, table in (snap.get("ports") or {}).items():
        _table(fams, table, "port", _PORT_HELP, {**labels, "port": str(port)})
    for stage, table in (snap.get("stages") or {}).items():
        _table(fams, table, "stage", _STAGE_HELP, {**labels, "stage": str(stage)})
    sessions = snap.get("sessions")
    if isinstance(sessions, Mapping):
        _table(fams, sessions, "sessions", _SESSIONS_HELP, labels)
    elif _number(sessions):
        fams.add("sessions_active", "gauge", _SESSIONS_HELP["active"], labels, sessions)
    handoff = snap.get("handoff")
    if isinstance(handoff, Mapping):
        for direction in ("out", "in"):
            fams.add("handoff_packets", "counter",
                     "Packets handed to (out) or from (in) another worker's flows",
                     {**labels, "direction": direction}, handoff.get(direction, 0))  # fmt: skip
    if isinstance(snap.get("flow_cache"), Mapping):
        _table(fams, snap["flow_cache"], "flow_cache", _FLOW_CACHE_HELP, labels)
    lat = snap.get("tx_latency")
    if isinstance(lat, Mapping) and lat.get("counts"):
        _latency(fams, lat, labels)


def metric_families(snapshot: Mapping) -> list[Family]:
    """The metric families of a Pipeline or Forwarder snapshot.

    A forwarder snapshot lists its workers under ``"workers"``; their samples carry a
    ``worker`` label. Other top-level numbers become gauges (``uptime_s`` as
    ``uptime_seconds``).
    """
    if not isinstance(snapshot, Mapping):
        raise TypeError(f"a stats snapshot is a dict, got {type(snapshot).__name__}")
    fams = _Families()
    workers = snapshot.get("workers")
    if isinstance(workers, list):
        for i, worker in enumerate(workers):
            _worker(fams, worker, {"worker": str(i)})
    else:
        _worker(fams, snapshot, {})
    known = {*_WORKER_HELP, "pending_tx", "drops_total", "worker"}
    for key, value in snapshot.items():
        if _number(value) and key not in known:
            name = key[: -len("_s")] + "_seconds" if key.endswith("_s") else key
            fams.add(name, "gauge", _TOP_LEVEL_HELP.get(name, name.replace("_", " ")), {}, value)
    return list(fams.by_name.values())


def _require_client():
    try:
        import prometheus_client
    except ImportError:
        raise RuntimeError(METRICS_MISSING) from None
    return prometheus_client


class SnapshotCollector:
    """A prometheus_client collector exposing `snapshot_fn()` at every scrape."""

    def __init__(self, snapshot_fn: Callable[[], Mapping]) -> None:
        self._snapshot_fn = snapshot_fn
        _require_client()

    def collect(self) -> Iterator:
        from prometheus_client import core

        for fam in metric_families(self._snapshot_fn()):
            name = f"{PREFIX}_{fam.name}"
            label_names = sorted({k for labels, _ in fam.samples for k in labels})
            out: Any
            if fam.kind == "histogram":
                out = core.HistogramMetricFamily(name, fam.help, labels=label_names)
                for labels, (uppers, counts, sum_s) in fam.samples:
                    buckets, total = [], 0
                    for upper, count in zip(uppers, counts, strict=True):
                        total += count
                        buckets.append(("+Inf" if upper is None else repr(upper), total))
                    if buckets[-1][0] != "+Inf":
                        buckets.append(("+Inf", total))
                    out.add_metric([labels.get(k, "") for k in label_names], buckets, sum_s)
            else:
                cls = core.CounterMetricFamily if fam.kind == "counter" else core.GaugeMetricFamily
                out = cls(name, fam.help, labels=label_names)
                for labels, value in fam.samples:
                    out.add_metric([labels.get(k, "") for k in label_names], value)
            yield out


def render_prometheus(snapshot: Mapping) -> str:
    """The Prometheus text exposition (format 0.0.4) of one snapshot."""
    client = _require_client()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snapshot))
    return client.generate_latest(registry).decode()


class MetricsPortError(XpfdpError, OSError):
    """The Prometheus port cannot be bound (in use, or privileged)."""


class PrometheusServer:
    """An HTTP endpoint on `address:port` serving `snapshot_fn()` at every scrape.

    Localhost by default. Port 0 picks a free port (see `.port`). Use as a context
    manager or call `close()`.
    """

    def __init__(
        self, snapshot_fn: Callable[[], Mapping], port: int, address: str = "127.0.0.1"
    ) -> None:
        client = _require_client()
        self._registry = client.CollectorRegistry(auto_describe=False)
        self._registry.register(SnapshotCollector(snapshot_fn))
        try:
            self._server, self._thread = client.start_http_server(
                port, addr=address, registry=self._registry
            )
        except OSError as exc:
            raise MetricsPortError(
                exc.errno,
                f"cannot serve Prometheus metrics on {address}:{port}: {exc.strerror} "
                "(choose another --prometheus-port)",
            ) from None
        self.address = address
        self.port = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve_prometheus(snapshot_fn: Callable[[], Mapping], port: int) -> PrometheusServer:
    """Serve `snapshot_fn()` as Prometheus text on 127.0.0.1:`port`."""
    return PrometheusServer(snapshot_fn, port)


@dataclass(frozen=True)
class Totals:
    """Cumulative totals of a snapshot (summed over workers and ports)."""

    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    drops: int
    sessions: int
    ring_drops: dict[str, int] = field(default_factory=dict)
    handoffs: int = 0
    worker_rx: tuple[int, ...] = ()


def totals(snapshot: Mapping) -> Totals:
    """Sum a Pipeline or Forwarder snapshot into the numbers a status line needs."""
    workers = snapshot.get("workers")
    snaps = workers if isinstance(workers, list) else [snapshot]
    rx = tx = rxb = txb = drops = sessions = handoffs = 0
    ring = dict.fromkeys(RING_DROPS, 0)
    for s in snaps:
        handoffs += (s.get("handoff") or {}).get("out", 0)
        rx += s.get("rx_packets", 0)
        tx += s.get("tx_packets", 0)
        drops += s.get("drops_total", sum((s.get("drops") or {}).values()))
        for port in (s.get("ports") or {}).values():
            rxb += port.get("rx_bytes", 0)
            txb += port.get("tx_bytes", 0)
            for label, key in RING_DROPS.items():
                ring[label] += port.get(key, 0)
        sess = s.get("sessions")
        sessions += sess.get("active", 0) if isinstance(sess, Mapping) else int(sess or 0)
    worker_rx = tuple(s.get("rx_packets", 0) for s in snaps) if len(snaps) > 1 else ()
    return Totals(rx, tx, rxb, txb, drops, sessions, ring, handoffs, worker_rx)


class StatusLine:
    """One status line per interval from successive snapshots, like xdpsock's.

    `update(snapshot, now_s)` returns the line for the interval since the previous call,
    or None on the first call (nothing to difference yet). Rates are per second; Mbit/s
    counts transmitted frame bytes (Ethernet header included, no preamble/FCS). The
    kernel's ring drops (XskPort only; zero on MemPort) are totals since the start.
    """

    def __init__(self) -> None:
        self._prev: tuple[float, Totals] | None = None
        self._start_s: float | None = None

    def update(self, snapshot: Mapping, now_s: float | None = None) -> str | None:
        now_s = time.monotonic() if now_s is None else now_s
        cur = totals(snapshot)
        prev, self._prev = self._prev, (now_s, cur)
        if self._start_s is None:
            self._start_s = now_s
        if prev is None:
            return None
        dt = now_s - prev[0]
        if dt <= 0:
            raise ValueError(f"status snapshots must advance in time (dt={dt})")
        p = prev[1]
        return format_status(
            elapsed_s=now_s - self._start_s,
            rx_pps=(cur.rx_packets - p.rx_packets) / dt,
            tx_pps=(cur.tx_packets - p.tx_packets) / dt,
            tx_mbps=(cur.tx_bytes - p.tx_bytes) * 8 / dt / 1e6,
            drops_per_s=(cur.drops - p.drops) / dt,
            drops_total=cur.drops,
            sessions=cur.sessions,
            ring_drops=cur.ring_drops,
            handoffs_per_s=(cur.handoffs - p.handoffs) / dt if cur.worker_rx else None,
            worker_rx_share=_shares(cur.worker_rx, p.worker_rx),
        )


def _shares(cur: tuple[int, ...], prev: tuple[int, ...]) -> tuple[float, ...]:
    """Each worker's fraction of the packets received over the interval (empty: 1 worker)."""
    if not cur or len(cur) != len(prev):
        return ()
    deltas = [c - p for c, p in zip(cur, prev, strict=True)]
    whole = sum(deltas)
    return tuple(d / whole if whole else 0.0 for d in deltas)


def format_status(
    *,
    elapsed_s: float,
    rx_pps: float,
    tx_pps: float,
    tx_mbps: float,
    drops_per_s: float,
    drops_total: int,
    sessions: int,
    ring_drops: Mapping[str, int] | None = None,
    handoffs_per_s: float | None = None,
    worker_rx_share: tuple[float, ...] = (),
) -> str:
    """The status line text (fixed-width columns, so lines stack into a table).

    `ring_drops` maps the labels of `RING_DROPS` to totals (missing ones print as 0). With
    several workers it ends with handoffs per second and each worker's share of RX.
    """
    ring = ring_drops or {}
    kernel = " ".join(f"{label} {ring.get(label, 0):,}" for label in RING_DROPS)
    line = (
        f"{elapsed_s:6.1f}s  rx {rx_pps:>11,.0f} pps  tx {tx_pps:>11,.0f} pps  "
        f"{tx_mbps:>9,.1f} Mbps  drops {drops_per_s:>8,.0f}/s ({drops_total:,} total)  "
        f"sessions {sessions:,}  kernel {kernel}"
    )
    if handoffs_per_s is not None:
        shares = "/".join(f"{100 * s:.0f}" for s in worker_rx_share) or "-"
        line += f"  handoffs {handoffs_per_s:>9,.0f}/s  rx% per worker {shares}"
    return line
