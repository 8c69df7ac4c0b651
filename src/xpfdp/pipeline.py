"""Forwarding pipelines: compiled stages over bursts, workers per RX queue, stats.

A `Pipeline` is one worker. Each poll it receives a burst from every port (the first
port rotates so none starves), runs its stages in order over the whole burst without the
GIL, and queues every packet on its egress port's TX ring (in place when the egress port
shares the UMEM, copied otherwise) or returns the frame as a drop counted by reason.

Public API
----------

Stages (``xpfdp.pipeline``), run in the order given:

* ``ParseStage(allow_non_ip=False)`` -- parser into ``burst.meta``; malformed frames are
  dropped as ``parse_error:<status>`` (later fragments, status ``nonfirst_frag``, pass).
* ``SessionStage(new_flow_ports=None, snat=None)`` -- flow cache → session table → new flow.
  ``new_flow_ports``: port indices allowed to open sessions (None = any); others get
  ``policy_denied`` unless the packet matches a session. ``snat={egress_port: (addresses,
  (port_lo, port_hi))}``: new flows leaving through ``egress_port`` are SNATed to the
  address of their family with a free port (``set_snat()`` changes it later).
  ``dnat=[(ingress, proto, dport, to_address, to_port)]`` / ``add_dnat(...)``: port
  forwards; such new flows are allowed from ``ingress`` and routed to ``to_address``.
  Fragments: later fragments take their first fragment's decision through the pipeline's
  ``fragments`` table (held until the first arrives; ``frag_limit``,
  ``frag_session_gone`` drops; docs/fragments.md).
* ``NatStage()`` -- applies the session's SNAT/DNAT (incremental checksums).
* ``RouteStage()`` -- LPM on the post-NAT destination; verdict = next hop's port
  (``no_route`` otherwise); stores resolved flows in the flow cache.
* ``TtlStage(icmp=None)`` -- TTL / hop limit decrement; an expiring packet becomes an ICMP
  Time Exceeded back out of its ingress port when ``icmp`` (an ``IcmpErrors``) is given and
  its rate limits allow, else a ``ttl_expired`` drop.
* ``MtuStage(icmp=None)`` -- packets longer than the egress ``Port.mtu``: IPv6 and IPv4 with
  DF get Packet Too Big / Fragmentation Needed (``mtu_exceeded`` drop when none can be
  sent), IPv4 without DF is marked for ``FragmentStage()``, which splits it after the L2
  rewrite (``fragment_no_tx_frame`` when TX frames are short).
* ``IcmpErrors({port: addresses}, rate_per_s=1000, burst=50, peer_interval_ms=1000,
  peer_burst=6)`` -- source addresses and Linux-like rate limits for the errors the
  forwarder sends itself (see docs/icmp.md).
* ``MssClampStage(mss_v4, mss_v6=None)`` -- clamps SYN MSS options (v6 default mss_v4 - 20).
* ``L2Stage()`` -- writes the next hop's source/destination MACs; a packet whose next hop
  is resolved through the ``NeighbourTable`` and has no MAC yet queues a resolution
  request and waits in the pipeline's hold (``neighbour_hold`` frames, at most
  ``neighbour_hold_ns``), dropped as ``neighbour_unresolved`` when it is full or expires.
* ``CountStage(name="count")`` -- packets and bytes reaching it.
* ``CosStage({port: xpfdp.cos.Scheduler}, rules=[{"queue": id, "proto": 17 | "icmp",
  "family": 4, "dscp": 46, "port": 53}, ...], default_queue=0)`` -- classify packets for
  shaped ports into scheduler queues (admission drops ``cos_drop:<reason>``); the
  pipeline drains each scheduler to TX every poll and settles back what the ring refuses.
* ``PyStage(fn, name=None, *, needs=(), provides=())`` -- ``fn(burst)`` once per burst
  with the GIL; may set ``burst.verdict[i]`` (``Verdict.DROP`` → ``user_drop``,
  ``Verdict.PASS``, >= 0 egress port), drop with a named reason through
  ``burst.drop(mask, reason=...)`` and edit frames via ``burst.frame(i)``. An exception
  stops the worker (``Pipeline.error``).

Every stage declares ``needs`` and ``provides`` (facts such as ``parsed`` / ``routed`` and
the resources ``routes`` / ``sessions`` / ``fragments`` / ``gil``); the constructor refuses
an order that leaves a need unmet. The contract, with examples: docs/stages.md.

``firewall_stages(lan, wan, snat=..., mss=..., icmp=...)`` returns the standard list
parse → session → nat → route → mtu → ttl → mss_clamp → l2 → fragment → count.

``Pipeline(ports, stages, *, routes=None, next_hops=(), sessions=None, flow_cache=None,
fragments=None, burst_size=64, names=None, tx_queue=4 * burst_size, neighbours=None,
neighbour_hold=64, neighbour_hold_ns=1_000_000_000, handoff=None, worker=0)``:

* ``ports``: XskPort/MemPort list; the index is the port number used by verdicts and next
  hops. ``routes``: ``xpfdp.route.RouteTable`` whose values index ``next_hops``, a list of
  ``(port_index, src_mac, dst)`` (both None: no L2 rewrite). ``dst`` is a static MAC, an
  ``ipaddress`` gateway address or ``CONNECTED`` (the packet's destination), the last two
  resolved per packet through ``neighbours``, a ``NeighbourTable(capacity=4096)`` that
  one control thread fills (``set(port, address, mac_or_None)``) while workers read it
  without locks; it may be shared by every worker. ``take_neighbour_requests()`` returns
  the (port, address) pairs packets waited or were dropped for (xpfdp.hostnet asks the
  kernel to resolve them). ``sessions``:
  ``xpfdp.session.SessionTable``. ``flow_cache``: ``FlowCache(sets=1024, ways=4)`` or None.
  ``fragments``: ``xpfdp.frag.FragTable`` (a default one when a stage needs it and none is
  given); frames it holds time out as ``frag_timeout``.
* ``poll(now_ns=None) -> int``: one round (packets received). ``run(seconds=None, *,
  max_packets=0, until_idle=False) -> int``; ``stop()`` from another thread.
* ``set_next_hops(hops)``, ``invalidate()`` (config change: flow cache entries go stale;
  route changes and session removal invalidate by themselves).
* ``handoff``/``worker``: a ``Handoff`` shared by all workers and this worker's index in
  it. The ``SessionStage`` then decides which worker owns each packet's flow (SNAT replies
  by the slice of the port range their destination port is in -- each worker allocates
  from its own ``snat_slice`` --, DNAT flows by client endpoint, others by direction-free
  5-tuple; docs/multicore.md); packets owned elsewhere are copied to the owner through a
  lock-free SPSC ring and run there from the session stage on. Later IP fragments (no
  ports) go to their datagram's fragment owner (``fragment_owner(frame, workers)``), to
  which the worker that resolved the first fragment sends a fragment note with the
  decision (docs/fragments.md). Needs TX frames in every UMEM. Drops:
  ``handoff_ring_full``, ``handoff_oversize``, ``frag_note_ring_full``.
* ``pending_tx()``, ``close(close_ports=False)`` (flushes, returns every held frame,
  counts packets still waiting in the rings into this worker as ``shutdown`` drops).
* ``stats() -> dict``::

      {"rx_packets", "tx_packets", "drops": {reason: n (non-zero only)}, "drops_total",
       "polls", "idle_polls", "pending_tx",
       "ports": {name: port.stats()}, "stages": {name: {"packets", "drops", ...}},
       "tx_latency": {"bucket_upper_ns": [1024, 2048, ..., None], "counts": [16 ints],
                      "sum_ns": total of every sample (for a Prometheus _sum)},
       "sessions": {"active", "created", "expired", "evicted"},
       "flow_cache": {"hits", "misses", "stale", "insertions", "evictions", "entries",
                      "capacity"} or None,
       "fragments": {"recorded", "translated", "held", "released", "timed_out",
                     "dropped_limit", "completed", "expired", "noted", "entries",
                     "held_frames"} or None,
       "neighbour_requests_lost", "neighbour_held",
       "worker": index in the Handoff (0 without one),
       "handoff": {"out", "in" (packets), "notes_out", "notes_in" (fragment notes)}}

  Drop reasons are named: ``DROP_REASONS`` (built-in, ``DropReason``) plus those stages
  register with ``drop_reason(name)``. TX latency is submit → completion per accepted
  descriptor, bucket k counting latencies below ``bucket_upper_ns[k]``.

``xsk_workers(ifnames, build, *, queues=1, frames=8192, tx_frames=None, **port_kw)``:
for each RX queue q a Umem and one XskPort per interface on it, then ``build(q, ports)``
returns that worker's Pipeline (own routes copy, SessionTable, FlowCache, schedulers).
ValueError naming the real count when an interface has fewer than ``queues`` RX queues.

``Handoff(workers, *, slots=512, frame_bytes=3584)``: one ring of ``slots`` packets per
ordered worker pair; ``ready(src, dst)`` counts what waits. ``snat_slice(lo, hi, worker,
workers)`` / ``snat_port_owner(lo, hi, port, workers)``: the per-worker SNAT slices.

``Forwarder(pipelines, *, handle_signals=True, controls=())``: one thread per pipeline
(worker), ``start()``, ``stop()``, ``run(duration_s)``, context manager; ``controls`` are
objects with ``start()``/``stop()`` (e.g. ``xpfdp.hostnet.HostWatcher``) started before
the workers and stopped after them; ``errors`` lists worker
failures (also re-raised by ``stop()``/``run()``); ``update(fn)`` runs ``fn(pipeline)``
in each worker's thread between polls -- the only safe way to change routes, next hops,
NAT rules or sessions while running; interface MTUs are re-read every second
(``refresh_mtus()`` does it at once); ``stats()`` is ``{"workers": [per
pipeline stats], "total": summed counters}``. Teardown closes pipelines, then ports
(sockets), then UMEMs, also on exceptions and SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from xpfdp._fast.pipeline import (
    CONNECTED,
    DROP_REASONS,
    FACT_PROVIDERS,
    LATENCY_BUCKET_UPPER_NS,
    PARSE_STATUS_NAMES,
    RESOURCES,
    CosStage,
    CountStage,
    FlowCache,
    FragmentStage,
    Handoff,
    IcmpErrors,
    L2Stage,
    MssClampStage,
    MtuStage,
    NatStage,
    NeighbourTable,
    ParseStage,
    Pipeline,
    PyStage,
    RouteStage,
    SessionStage,
    Stage,
    TtlStage,
    fragment_owner,
    snat_port_owner,
    snat_slice,
)
from xpfdp._fast.verdict import DropReason, Verdict, drop_reason, drop_reason_name, drop_reasons


def firewall_stages(lan, wan, *, snat=None, snat_ports=(1024, 65535), mss=None, icmp=None):
    """The stateful NAT firewall stage list: new flows only from port index `lan`, SNAT of
    flows leaving through `wan` to `snat` (address or list, one per family), egress MTU
    (errors or fragments), TTL, MSS clamp; `icmp` (an IcmpErrors) lets the forwarder send
    Time Exceeded / Packet Too Big / Fragmentation Needed itself."""
    stages = [
        ParseStage(),
        SessionStage(
            new_flow_ports=[lan],
            snat={wan: (snat, snat_ports)} if snat else None,
        ),
        NatStage(),
        RouteStage(),
        MtuStage(icmp),
        TtlStage(icmp),
    ]
    if mss:
        stages.append(MssClampStage(mss))
    stages += [L2Stage(), FragmentStage(), CountStage()]
    return stages


MTU_POLL_S = 1.0  # how often a running Forwarder re-reads its interfaces' MTUs

_SUMMED = (
    "rx_packets", "tx_packets", "drops_total", "polls", "idle_polls", "pending_tx",
    "neighbour_requests_lost",
)  # fmt: skip


def merge_stats(snapshots):
    """Sum per-worker `Pipeline.stats()` dicts into one (drops, latency, sessions, cache,
    fragments)."""
    total = {k: 0 for k in _SUMMED}
    drops: dict[str, int] = {}
    counts = [0] * len(LATENCY_BUCKET_UPPER_NS)
    latency_sum_ns = 0
    sessions = {"active": 0, "created": 0, "expired": 0, "evicted": 0}
    cache: dict[str, int] = {}
    fragments: dict[str, int] = {}
    for s in snapshots:
        for k in _SUMMED:
            total[k] += s[k]
        for reason, n in s["drops"].items():
            drops[reason] = drops.get(reason, 0) + n
        counts = [a + b for a, b in zip(counts, s["tx_latency"]["counts"], strict=False)]
        latency_sum_ns += s["tx_latency"].get("sum_ns", 0)
        for k in sessions:
            sessions[k] += s["sessions"].get(k, 0)
        for k, v in (s["flow_cache"] or {}).items():
            cache[k] = cache.get(k, 0) + v
        for k, v in (s.get("fragments") or {}).items():
            fragments[k] = fragments.get(k, 0) + v
    total["drops"] = drops
    total["tx_latency"] = {
        "bucket_upper_ns": list(LATENCY_BUCKET_UPPER_NS),
        "counts": counts,
        "sum_ns": latency_sum_ns,
    }
    total["sessions"] = sessions
    total["flow_cache"] = cache or None
    total["fragments"] = fragments or None
    total["handoff"] = {
        k: sum(s.get("handoff", {}).get(k, 0) for s in snapshots)
        for k in ("out", "in", "notes_out", "notes_in")
    }
    return total


def xsk_workers(ifnames, build, *, queues=1, frames=8192, tx_frames=None, **port_kw):
    """One worker per RX queue: for each queue q, a Umem and one XskPort per interface (in
    `ifnames` order, all on that UMEM so forwarding needs no copy), then
    `build(q, ports) -> Pipeline`. `port_kw` goes to XskPort (mode, ring_size, ...).
    ValueError, naming the real count, when an interface has fewer than `queues` RX queues.
    Every interface is checked for another owner's XDP program before anything is
    attached. If anything fails, everything built so far is closed (ports before UMEMs)."""
    from xpfdp.netns import interface_rx_queues
    from xpfdp.ports import Umem, XskPort, programs

    for name in ifnames:
        have = interface_rx_queues(name)
        if queues > have:
            raise ValueError(f"{name} has {have} RX queue{'s' * (have != 1)}, {queues} asked")
    programs.check_interfaces(ifnames)
    pipelines, opened = [], []
    try:
        for q in range(queues):
            umem = Umem(frames, tx_frames=tx_frames)
            ports: list = []
            opened.append((umem, ports))
            for name in ifnames:
                ports.append(XskPort(name, q, umem, **port_kw))
            pipelines.append(build(q, list(ports)))
    except BaseException:
        for p in pipelines:
            p.close()
        for umem, ports in opened:
            for port in ports:
                port.close()
            umem.close()
        raise
    return pipelines


class Forwarder:
    """Runs pipelines (one per RX queue) each in its own thread with the GIL released.

    Each pipeline owns its ports, UMEM, session table, flow cache and CoS state, so workers
    share nothing on the hot path. A worker that raises is recorded in `errors` and the
    exception is re-raised by `stop()`/`run()`.
    """

    def __init__(self, pipelines, *, handle_signals: bool = True, links=None, controls=()):
        self._mtu_stop = threading.Event()
        self._mtu_watch: threading.Thread | None = None
        self.pipelines = list(pipelines)
        self.links = links  # an xpfdp.links.LinkWatch, checked by check_links()
        self.controls = list(controls)
        if not self.pipelines:
            raise ValueError("a Forwarder needs at least one pipeline")
        owners: dict[int, int] = {}
        for i, p in enumerate(self.pipelines):
            if not isinstance(p, Pipeline):
                raise TypeError(f"expected Pipeline, got {type(p).__name__}")
            owned = [p.sessions, p.flow_cache, *p.ports, *(x.umem for x in p.ports)]
            for obj in {id(o): o for o in owned if o is not None}.values():
                if owners.setdefault(id(obj), i) != i:
                    raise ValueError(
                        f"workers {owners[id(obj)]} and {i} share {type(obj).__name__}: "
                        "each worker needs its own ports, UMEM, session table and flow cache"
                    )
        self.errors: list[tuple[int, BaseException]] = []
        self._threads: list[threading.Thread] = []
        self._handle_signals = handle_signals
        self._old_handlers: dict[int, Any] = {}
        self._signalled: int | None = None
        self._closed = False
        self.started_ns = 0
        self._update_lock = threading.Lock()
        self._updates: list[list] = [[] for _ in self.pipelines]

    def _worker(self, index: int, pipe: Pipeline) -> None:
        try:
            while not self._stopping:
                pipe.run(seconds=0.2)
                self._run_updates(index, pipe)
        except BaseException as exc:  # reported, never silent
            self.errors.append((index, exc))

    def _run_updates(self, index: int, pipe: Pipeline) -> None:
        with self._update_lock:
            todo = self._updates[index]
            self._updates[index] = []
        for fn, done, failures in todo:
            try:
                fn(pipe)
            except BaseException as exc:  # handed to the caller of update()
                failures.append((index, exc))
            finally:
                done.set()

    def update(self, fn, timeout_s: float = 5.0) -> None:
        """Run `fn(pipeline)` for every worker in that worker's own thread, between polls.

        Route, next-hop, SNAT/DNAT and session-table changes must go through here while
        the forwarder runs (the nogil loop reads those tables without locks). Waits until
        every worker applied it; re-raises the first exception `fn` raised."""
        failures: list = []
        if not self._threads:
            for i, p in enumerate(self.pipelines):
                try:
                    fn(p)
                except BaseException as exc:
                    failures.append((i, exc))
        else:
            events = []
            with self._update_lock:
                for i in range(len(self.pipelines)):
                    done = threading.Event()
                    self._updates[i].append((fn, done, failures))
                    events.append(done)
            for p in self.pipelines:
                p.stop()  # leave run() now; the worker applies updates, then resumes
            deadline = time.monotonic() + timeout_s
            for i, done in enumerate(events):
                if not done.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"worker {i} did not apply the update in {timeout_s} s")
        if failures:
            index, failure = failures[0]
            raise RuntimeError(f"update failed on worker {index}: {failure!r}") from failure

    def start(self) -> Forwarder:
        """Start one thread per pipeline (and SIGINT/SIGTERM handlers in the main thread)."""
        if self._threads:
            raise RuntimeError("forwarder already started")
        if self._closed:
            raise RuntimeError("forwarder is closed")
        self._stopping = False
        for k, c in enumerate(self.controls):
            try:
                c.start()
            except BaseException:
                for started in self.controls[:k]:
                    started.stop()
                raise
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
        self._mtu_stop.clear()
        self._mtu_watch = threading.Thread(target=self._watch_mtus, name="xpfdp-mtu", daemon=True)
        self._mtu_watch.start()
        return self

    def refresh_mtus(self) -> None:
        """Re-read the MTU of every AF_XDP port's interface. Workers see a new value from
        their next packet on (one aligned word, read without a lock)."""
        for p in self.pipelines:
            for port in p.ports:
                if hasattr(port, "refresh_mtu") and not port.closed:
                    port.refresh_mtu()

    def _watch_mtus(self) -> None:
        """Follow interface MTU changes while running, once per MTU_POLL_S."""
        while not self._mtu_stop.wait(MTU_POLL_S):
            try:
                self.refresh_mtus()
            except (OSError, ValueError):  # a port closing under us: the next round sees it
                continue

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
        self._mtu_stop.set()
        if self._mtu_watch is not None:
            self._mtu_watch.join()
            self._mtu_watch = None
        for p in self.pipelines:
            p.stop()
        for t in self._threads:
            t.join()
        self._threads = []
        for c in self.controls:
            c.stop()
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers = {}
        if self.errors:
            index, exc = self.errors[0]
            raise RuntimeError(f"worker {index} failed: {exc!r}") from exc

    def check_links(self) -> list[str]:
        """Check the watched interfaces (logged and counted by the LinkWatch); when one
        was deleted, stop the workers: returns the deleted interfaces ([] if none)."""
        if self.links is None:
            return []
        self.links.check()
        lost = self.links.missing
        if lost:
            self._stopping = True
            for p in self.pipelines:
                p.stop()
        return lost

    def run(self, duration_s: float) -> dict:
        """Start, forward for `duration_s` (or until a signal, a worker error or a watched
        interface is deleted), stop; returns `stats()`."""
        self.start()
        try:
            deadline = time.monotonic() + duration_s
            next_check = 0.0
            while time.monotonic() < deadline and not self._stopping and not self.errors:
                if time.monotonic() >= next_check:
                    self.check_links()
                    next_check = time.monotonic() + 1.0
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
            "links": (
                {"state": dict(self.links.states), "events": dict(self.links.events)}
                if self.links is not None
                else None
            ),
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
            if self.links is not None:
                self.links.close()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = [
    "CONNECTED",
    "DROP_REASONS",
    "FACT_PROVIDERS",
    "LATENCY_BUCKET_UPPER_NS",
    "PARSE_STATUS_NAMES",
    "RESOURCES",
    "CosStage",
    "CountStage",
    "DropReason",
    "FlowCache",
    "Forwarder",
    "FragmentStage",
    "Handoff",
    "IcmpErrors",
    "L2Stage",
    "MssClampStage",
    "MtuStage",
    "NatStage",
    "NeighbourTable",
    "ParseStage",
    "Pipeline",
    "PyStage",
    "RouteStage",
    "SessionStage",
    "Stage",
    "TtlStage",
    "Verdict",
    "drop_reason",
    "drop_reason_name",
    "drop_reasons",
    "firewall_stages",
    "fragment_owner",
    "merge_stats",
    "snat_port_owner",
    "snat_slice",
    "xsk_workers",
]
