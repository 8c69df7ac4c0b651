"""Stats snapshots out: Prometheus text exposition and an xdpsock-style status line.

Both read the plain dict a `Pipeline.stats()` / `Forwarder.stats()` returns (shape in
`xpfdp.pipeline`), so they work on live forwarders, on saved snapshots and in tests.

* `metric_families(snapshot)` maps a snapshot to metric families (counters, gauges, the
  TX latency histogram) labelled by worker, port, stage and drop reason. Exposition goes
  through the `prometheus_client` library (the optional extra `metrics`): a custom
  collector yields those families at scrape time, so a served endpoint always shows the
  current snapshot and the text format (escaping, `_total`, histogram buckets) is the
  library's. `render_prometheus()` returns the text; `serve_prometheus()` serves it on a
  localhost port.
* `StatusLine` turns successive snapshots into one line per second: packets per second in
  and out, Mbit/s, drops per second (and total), active sessions and, with several
  workers, packets handed between workers per second and each worker's share of RX.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from xpfdp.errors import XpfdpError

PREFIX = "xpfdp"
METRICS_MISSING = (
    "Prometheus exposition needs prometheus-client: pip install 'xpfdp[metrics]' "
    "(or .venv/bin/pip install prometheus-client)"
)
_COUNTER_SUFFIXES = ("_packets", "_bytes", "_drops", "_kicks", "_errors", "_again", "_wakeups",
                     "_descs", "_dropped", "_full", "_empty", "_short", "_oversize", "_desc",
                     "completions", "hits", "misses", "stale", "insertions", "evictions",
                     "polls", "clamped", "packets", "drops", "created", "expired",
                     "evicted")  # fmt: skip


@dataclass
class Family:
    """One metric family: name without prefix, kind (counter/gauge/histogram), help text,
    samples as (labels, value); a histogram sample's value is (upper_bounds, counts)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], Any]] = field(default_factory=list)


def _is_counter(key: str) -> bool:
    return key.endswith(_COUNTER_SUFFIXES) and not key.startswith("frames_")


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


def _numeric_table(fams: _Families, table: Mapping, prefix: str, what: str, labels: dict) -> None:
    """Every numeric entry of `table` as `<prefix>_<key>` (counter or gauge by its name)."""
    for key, value in table.items():
        if _number(value):
            kind = "counter" if _is_counter(key) else "gauge"
            fams.add(f"{prefix}_{key}", kind, f"{what} {key.replace('_', ' ')}", labels, value)


def _worker(fams: _Families, snap: Mapping, labels: dict) -> None:
    """The families of one pipeline snapshot, every sample carrying `labels`."""
    for key in ("rx_packets", "tx_packets", "polls", "idle_polls"):
        if _number(snap.get(key)):
            fams.add(key, "counter", f"Worker {key.replace('_', ' ')}", labels, snap[key])
    if _number(snap.get("pending_tx")):
        fams.add("pending_tx_frames", "gauge", "Frames queued for TX, not yet in a ring",
                 labels, snap["pending_tx"])  # fmt: skip
    for reason, count in (snap.get("drops") or {}).items():
        fams.add("drops", "counter", "Dropped packets by reason", {**labels, "reason": reason},
                 count)  # fmt: skip
    for port, table in (snap.get("ports") or {}).items():
        _numeric_table(fams, table, "port", "Port", {**labels, "port": str(port)})
    for stage, table in (snap.get("stages") or {}).items():
        _numeric_table(fams, table, "stage", "Stage", {**labels, "stage": str(stage)})
    sessions = snap.get("sessions")
    if isinstance(sessions, Mapping):
        _numeric_table(fams, sessions, "sessions", "Sessions", labels)
    elif _number(sessions):
        fams.add("sessions_active", "gauge", "Sessions active", labels, sessions)
    handoff = snap.get("handoff")
    if isinstance(handoff, Mapping):
        for direction in ("out", "in"):
            fams.add("handoff_packets", "counter",
                     "Packets handed to (out) or from (in) another worker's flows",
                     {**labels, "direction": direction}, handoff.get(direction, 0))  # fmt: skip
    if isinstance(snap.get("flow_cache"), Mapping):
        _numeric_table(fams, snap["flow_cache"], "flow_cache", "Flow cache", labels)
    lat = snap.get("tx_latency")
    if isinstance(lat, Mapping) and lat.get("counts"):
        fams.add("tx_latency_ns", "histogram", "TX submit to completion latency (ns)", labels,
                 (list(lat["bucket_upper_ns"]), list(lat["counts"])))  # fmt: skip


def metric_families(snapshot: Mapping) -> list[Family]:
    """The metric families of a Pipeline or Forwarder snapshot.

    A forwarder snapshot lists its workers under ``"workers"``; their samples carry a
    ``worker`` label. Top-level numbers outside the known sections become gauges.
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
    known = {"rx_packets", "tx_packets", "polls", "idle_polls", "pending_tx", "drops_total",
             "worker"}  # fmt: skip
    for key, value in snapshot.items():
        if _number(value) and key not in known:
            fams.add(key, "gauge", key.replace("_", " "), {}, value)
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
        from prometheus_client import core

        self._core = core

    def collect(self) -> Iterator:
        core = self._core
        for fam in metric_families(self._snapshot_fn()):
            name = f"{PREFIX}_{fam.name}"
            label_names = sorted({k for labels, _ in fam.samples for k in labels})
            if fam.kind == "histogram":
                out = core.HistogramMetricFamily(name, fam.help, labels=label_names)
                for labels, (uppers, counts) in fam.samples:
                    buckets, total = [], 0
                    for upper, count in zip(uppers, counts, strict=True):
                        total += count
                        buckets.append(("+Inf" if upper is None else str(upper), total))
                    if buckets[-1][0] != "+Inf":
                        buckets.append(("+Inf", total))
                    # No _sum: the worker keeps bucket counts only, not summed latencies.
                    out.add_metric([labels.get(k, "") for k in label_names], buckets, None)
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
    handoffs: int = 0
    worker_rx: tuple[int, ...] = ()


def totals(snapshot: Mapping) -> Totals:
    """Sum a Pipeline or Forwarder snapshot into the numbers a status line needs."""
    workers = snapshot.get("workers")
    snaps = workers if isinstance(workers, list) else [snapshot]
    rx = tx = rxb = txb = drops = sessions = handoffs = 0
    for s in snaps:
        handoffs += (s.get("handoff") or {}).get("out", 0)
        rx += s.get("rx_packets", 0)
        tx += s.get("tx_packets", 0)
        drops += s.get("drops_total", sum((s.get("drops") or {}).values()))
        for port in (s.get("ports") or {}).values():
            rxb += port.get("rx_bytes", 0)
            txb += port.get("tx_bytes", 0)
        sess = s.get("sessions")
        sessions += sess.get("active", 0) if isinstance(sess, Mapping) else int(sess or 0)
    worker_rx = tuple(s.get("rx_packets", 0) for s in snaps) if len(snaps) > 1 else ()
    return Totals(rx, tx, rxb, txb, drops, sessions, handoffs, worker_rx)


class StatusLine:
    """One status line per interval from successive snapshots, like xdpsock's.

    `update(snapshot, now_s)` returns the line for the interval since the previous call,
    or None on the first call (nothing to difference yet). Rates are per second; Mbit/s
    counts transmitted frame bytes (Ethernet header included, no preamble/FCS).
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
    handoffs_per_s: float | None = None,
    worker_rx_share: tuple[float, ...] = (),
) -> str:
    """The status line text (fixed-width columns, so lines stack into a table). With
    several workers it ends with handoffs per second and each worker's share of RX."""
    line = (
        f"{elapsed_s:6.1f}s  rx {rx_pps:>11,.0f} pps  tx {tx_pps:>11,.0f} pps  "
        f"{tx_mbps:>9,.1f} Mbps  drops {drops_per_s:>8,.0f}/s ({drops_total:,} total)  "
        f"sessions {sessions:,}"
    )
    if handoffs_per_s is not None:
        shares = "/".join(f"{100 * s:.0f}" for s in worker_rx_share) or "-"
        line += f"  handoffs {handoffs_per_s:>9,.0f}/s  rx% per worker {shares}"
    return line
