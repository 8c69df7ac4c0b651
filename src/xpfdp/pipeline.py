"""Forwarding pipelines: compiled stages over bursts, workers per RX queue, stats.

A `Pipeline` is one worker. Each poll it receives a burst from every port (the first
port rotates so none starves), runs its stages in order over the whole burst without the
GIL, and queues every packet on its egress port's TX ring (in place when the egress port
shares the UMEM, copied otherwise) or returns the frame as a drop counted by reason.

Public API
----------

Stages (``xpfdp.pipeline``), run in the order given:

* ``ParseStage(allow_non_ip=False)`` -- parser into ``burst.meta``; malformed frames are
  dropped as ``parse_error:<status>``.
* ``SessionStage(new_flow_ports=None, snat=None)`` -- flow cache → session table → new flow.
  ``new_flow_ports``: port indices allowed to open sessions (None = any); others get
  ``policy_denied`` unless the packet matches a session. ``snat={egress_port: (addresses,
  (port_lo, port_hi))}``: new flows leaving through ``egress_port`` are SNATed to the
  address of their family with a free port (``set_snat()`` changes it later).
* ``NatStage()`` -- applies the session's SNAT/DNAT (incremental checksums).
* ``RouteStage()`` -- LPM on the post-NAT destination; verdict = next hop's port
  (``no_route`` otherwise); stores resolved flows in the flow cache.
* ``TtlStage()`` -- TTL / hop limit decrement; ``ttl_expired`` drops.
* ``MssClampStage(mss_v4, mss_v6=None)`` -- clamps SYN MSS options (v6 default mss_v4 - 20).
* ``L2Stage()`` -- writes the next hop's source/destination MACs.
* ``CountStage(name="count")`` -- packets and bytes reaching it.
* ``PyStage(fn, name=None)`` -- ``fn(burst)`` once per burst with the GIL; may set
  ``burst.verdict[i]`` (-1 drop → ``user_drop``, >= 0 egress port) and edit frames via
  ``burst.frame(i)``. An exception stops the worker (``Pipeline.error``).

``firewall_stages(lan, wan, snat=..., mss=...)`` returns the standard list
parse → session → nat → route → ttl → mss_clamp → l2 → count.

``Pipeline(ports, stages, *, routes=None, next_hops=(), sessions=None, flow_cache=None,
burst_size=64, names=None, tx_queue=4 * burst_size)``:

* ``ports``: XskPort/MemPort list; the index is the port number used by verdicts and next
  hops. ``routes``: ``xpfdp.route.RouteTable`` whose values index ``next_hops``, a list of
  ``(port_index, src_mac, dst_mac)`` (MACs None: no L2 rewrite). ``sessions``:
  ``xpfdp.session.SessionTable``. ``flow_cache``: ``FlowCache(sets=1024, ways=4)`` or None.
* ``poll(now_ns=None) -> int``: one round (packets received). ``run(seconds=None, *,
  max_packets=0, until_idle=False) -> int``; ``stop()`` from another thread.
* ``set_next_hops(hops)``, ``invalidate()`` (config change: flow cache entries go stale;
  route changes and session removal invalidate by themselves).
* ``pending_tx()``, ``close(close_ports=False)`` (flushes, returns every held frame).
* ``stats() -> dict``::

      {"rx_packets", "tx_packets", "drops": {reason: n (non-zero only)}, "drops_total",
       "polls", "idle_polls", "pending_tx",
       "ports": {name: port.stats()}, "stages": {name: {"packets", "drops", ...}},
       "tx_latency": {"bucket_upper_ns": [1024, 2048, ..., None], "counts": [16 ints]},
       "sessions": {"active", "created", "expired"},
       "flow_cache": {"hits", "misses", "stale", "insertions", "evictions", "entries",
                      "capacity"} or None}

  Drop reasons are ``DROP_REASONS``. TX latency is submit → completion per accepted
  descriptor, bucket k counting latencies below ``bucket_upper_ns[k]``.

``Forwarder(pipelines, *, handle_signals=True)``: one thread per pipeline (worker),
``start()``, ``stop()``, ``run(duration_s)``, context manager; ``errors`` lists worker
failures (also re-raised by ``stop()``/``run()``); ``stats()`` is ``{"workers": [per
pipeline stats], "total": summed counters}``. Teardown closes pipelines, then ports
(sockets), then UMEMs, also on exceptions and SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
import threading
import time

from xpfdp._fast.pipeline import (
    DROP_REASONS,
    LATENCY_BUCKET_UPPER_NS,
    PARSE_STATUS_NAMES,
    VERDICT_DROP,
    VERDICT_PASS,
    CountStage,
    FlowCache,
    L2Stage,
    MssClampStage,
    NatStage,
    ParseStage,
    Pipeline,
    PyStage,
    RouteStage,
    SessionStage,
    Stage,
    TtlStage,
)


def firewall_stages(lan, wan, *, snat=None, snat_ports=(1024, 65535), mss=None):
    """The stateful NAT firewall stage list: new flows only from port index `lan`, SNAT of
    flows leaving through `wan` to `snat` (address or list, one per family), MSS clamp."""
    stages = [
        ParseStage(),
        SessionStage(
            new_flow_ports=[lan],
            snat={wan: (snat, snat_ports)} if snat else None,
        ),
        NatStage(),
        RouteStage(),
        TtlStage(),
    ]
    if mss:
        stages.append(MssClampStage(mss))
    stages += [L2Stage(), CountStage()]
    return stages


_SUMMED = ("rx_packets", "tx_packets", "drops_total", "polls", "idle_polls", "pending_tx")


def merge_stats(snapshots):
    """Sum per-worker `Pipeline.stats()` dicts into one (drops, latency, sessions, cache)."""
    total = {k: 0 for k in _SUMMED}
    drops: dict[str, int] = {}
    counts = [0] * len(LATENCY_BUCKET_UPPER_NS)
    sessions = {"active": 0, "created": 0, "expired": 0}
    cache: dict[str, int] = {}
    for s in snapshots:
        for k in _SUMMED:
            total[k] += s[k]
        for reason, n in s["drops"].items():
            drops[reason] = drops.get(reason, 0) + n
        counts = [a + b for a, b in zip(counts, s["tx_latency"]["counts"], strict=False)]
        for k in sessions:
            sessions[k] += s["sessions"][k]
        for k, v in (s["flow_cache"] or {}).items():
            cache[k] = cache.get(k, 0) + v
    total["drops"] = drops
    total["tx_latency"] = {"bucket_upper_ns": list(LATENCY_BUCKET_UPPER_NS), "counts": counts}
    total["sessions"] = sessions
    total["flow_cache"] = cache or None
    return total


class Forwarder:
    """Runs pipelines (one per RX queue) each in its own thread with the GIL released.

    Each pipeline owns its ports, UMEM, session table, flow cache and CoS state, so workers
    share nothing on the hot path. A worker that raises is recorded in `errors` and the
    exception is re-raised by `stop()`/`run()`.
    """

    def __init__(self, pipelines, *, handle_signals: bool = True):
        self.pipelines = list(pipelines)
        if not self.pipelines:
            raise ValueError("a Forwarder needs at least one pipeline")
        for p in self.pipelines:
            if not isinstance(p, Pipeline):
                raise TypeError(f"expected Pipeline, got {type(p).__name__}")
        self.errors: list[tuple[int, BaseException]] = []
        self._threads: list[threading.Thread] = []
        self._handle_signals = handle_signals
        self._old_handlers: dict[int, object] = {}
        self._signalled: int | None = None
        self._closed = False
        self.started_ns = 0

    def _worker(self, index: int, pipe: Pipeline) -> None:
        try:
            while not self._stopping:
                pipe.run(seconds=0.2)
        except BaseException as exc:  # reported, never silent
            self.errors.append((index, exc))

    def start(self) -> Forwarder:
        """Start one thread per pipeline (and SIGINT/SIGTERM handlers in the main thread)."""
        if self._threads:
            raise RuntimeError("forwarder already started")
        if self._closed:
            raise RuntimeError("forwarder is closed")
        self._stopping = False
        if self._handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        self.started_ns = time.monotonic_ns()
        for i, p in enumerate(self.pipelines):
            t = threading.Thread(
                target=self._worker, args=(i, p), name=f"xpfdp-worker-{i}", daemon=True
            )
            self._threads.append(t)
            t.start()
        return self

    def _on_signal(self, signum, frame):
        self._signalled = signum
        self._stopping = True
        for p in self.pipelines:
            p.stop()

    @property
    def running(self) -> bool:
        """True while any worker thread is alive."""
        return any(t.is_alive() for t in self._threads)

    @property
    def signalled(self) -> int | None:
        """The signal number that stopped the forwarder, or None."""
        return self._signalled

    def stop(self) -> None:
        """Stop and join the workers, restore signal handlers; re-raise a worker error."""
        self._stopping = True
        for p in self.pipelines:
            p.stop()
        for t in self._threads:
            t.join()
        self._threads = []
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers = {}
        if self.errors:
            index, exc = self.errors[0]
            raise RuntimeError(f"worker {index} failed: {exc!r}") from exc

    def run(self, duration_s: float) -> dict:
        """Start, forward for `duration_s` (or until a signal or a worker error), stop;
        returns `stats()`."""
        self.start()
        try:
            deadline = time.monotonic() + duration_s
            while time.monotonic() < deadline and not self._stopping and not self.errors:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        finally:
            self.stop()
        return self.stats()

    def stats(self) -> dict:
        """{"workers": [Pipeline.stats() ...], "total": merged counters, "errors": [...]}."""
        workers = [p.stats() for p in self.pipelines]
        return {
            "workers": workers,
            "total": merge_stats(workers),
            "errors": [f"worker {i}: {exc!r}" for i, exc in self.errors],
            "uptime_s": (time.monotonic_ns() - self.started_ns) / 1e9 if self.started_ns else 0.0,
        }

    def close(self) -> None:
        """Stop workers, then tear down in dependency order: pipelines (held frames back),
        ports (sockets; XDP programs detach with their last socket), UMEMs. Idempotent."""
        if self._closed:
            return
        try:
            if self._threads:
                self.stop()
        finally:
            self._closed = True
            umems = []
            for p in self.pipelines:
                p.close()
                for port in p.ports:
                    if port.umem not in umems:
                        umems.append(port.umem)
                    port.close()
            for u in umems:
                u.close()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "DROP_REASONS",
    "LATENCY_BUCKET_UPPER_NS",
    "PARSE_STATUS_NAMES",
    "VERDICT_DROP",
    "VERDICT_PASS",
    "CountStage",
    "FlowCache",
    "Forwarder",
    "L2Stage",
    "MssClampStage",
    "NatStage",
    "ParseStage",
    "Pipeline",
    "PyStage",
    "RouteStage",
    "SessionStage",
    "Stage",
    "TtlStage",
    "firewall_stages",
    "merge_stats",
]
