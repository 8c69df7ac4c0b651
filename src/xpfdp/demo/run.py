"""`xpfdp demo`: real traffic through a NAT firewall between two namespaces, then a report.

Sequence: build client — firewall — server namespaces, start the forwarder in the firewall
namespace (xpfdp, or the Linux kernel as the baseline), ping over IPv4 and IPv6, measure
the idle round-trip time of a small UDP request/response flow, run several TCP bulk flows
(one IPv6) while the mouse flow keeps measuring and a status line prints once per second,
probe the firewall with unsolicited WAN → LAN packets, then print the report and write
`report.json` and a throughput plot. Everything is torn down on exit, on exceptions and on
Ctrl-C/SIGTERM (forwarder first, then links, then namespaces).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from xpfdp.demo import traffic
from xpfdp.demo.plot import PLOT_MISSING, DemoSeries, plot_available, plot_demo
from xpfdp.demo.report import (
    DemoReport,
    FlowReport,
    checksum_error_delta,
    fairness,
    format_report,
    latency_summary,
    steady_rate_bps,
)
from xpfdp.demo.topology import FirewallTopology
from xpfdp.firewall import build_forwarder, parse_config, to_toml
from xpfdp.ports import handle_signals
from xpfdp.stats import StatusLine, serve_prometheus, totals

WARMUP_S = 1.0  # bulk seconds left out of the steady-state rates (slow start, queue fill)
UNSOLICITED_PROBES = 5
SNAT_PORTS = (20000, 29999)
DEFAULT_SHAPER_MBPS = 400
DEFAULT_MSS_CLAMP_BYTES = 1360


class KernelForwarding:
    """The firewall namespace forwards with the Linux kernel (the baseline). `stats()`
    gives a pipeline-shaped snapshot from the kernel's link counters."""

    def __init__(self, topo: FirewallTopology) -> None:
        self.topo = topo

    def __enter__(self) -> KernelForwarding:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def stats(self) -> dict:
        ports, drops = {}, {}
        with self.topo.firewall.ipr() as ipr:
            for side, ifname in (("lan", self.topo.lan_if), ("wan", self.topo.wan_if)):
                link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
                s = link.get_attr("IFLA_STATS64")
                ports[side] = {
                    "rx_packets": s["rx_packets"],
                    "rx_bytes": s["rx_bytes"],
                    "tx_packets": s["tx_packets"],
                    "tx_bytes": s["tx_bytes"],
                }
                for key in ("rx_dropped", "tx_dropped"):
                    if s[key]:
                        drops[f"kernel_{side}_{key}"] = s[key]
        return {
            "rx_packets": sum(p["rx_packets"] for p in ports.values()),
            "tx_packets": sum(p["tx_packets"] for p in ports.values()),
            "drops": drops,
            "drops_total": sum(drops.values()),
            "ports": ports,
            "sessions": {},
        }


def _worker_snapshots(snapshot: dict) -> list[dict]:
    workers = snapshot.get("workers")
    return workers if isinstance(workers, list) else [snapshot]


def port_bytes(snapshot: dict, port: str, key: str = "tx_bytes") -> int:
    """`key` of the port named `port`, summed over workers."""
    return sum(w.get("ports", {}).get(port, {}).get(key, 0) for w in _worker_snapshots(snapshot))


def _totals(snapshot: dict) -> dict:
    """A forwarder's merged counters (`Forwarder.stats()["total"]`), or a single snapshot."""
    return snapshot.get("total", snapshot)


def drop_counts(snapshot: dict) -> dict[str, int]:
    """Drops by reason, summed over workers."""
    return dict(_totals(snapshot).get("drops") or {})


def session_counts(snapshot: dict) -> dict[str, int]:
    """Sessions active/created/expired, summed over workers."""
    return dict(_totals(snapshot).get("sessions") or {})


def frames_conserved(fw) -> str:
    """Stop the workers, return every frame the pipelines hold, and check each UMEM's
    frame accounting: "yes (N frames)" or the leak found."""
    from xpfdp.ports import FrameLeakError

    fw.stop()
    frames = 0
    for pipe in fw.pipelines:
        pipe.close()
        try:
            frames += sum(pipe.ports[0].umem.check_frames().values())
        except FrameLeakError as exc:
            return f"NO: {exc}"
    return f"yes ({frames:,} frames)"


def _probe_unsolicited(topo: FirewallTopology) -> None:
    """Send UDP datagrams from the WAN side to the firewall's WAN address on ports of the
    SNAT range (other ports belong to the firewall host's own sockets): no session matches
    them, so a stateful firewall must drop them."""
    with topo.server.inside():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        for i in range(UNSOLICITED_PROBES):
            s.sendto(b"unsolicited %d" % i, (topo.wan_v4, SNAT_PORTS[1] - i))


def demo_config(topo: FirewallTopology, shaper_mbps: float | None, mss_clamp: int) -> dict:
    """The demo's firewall config: the topology plus SNAT, MSS clamp and WAN shaping."""
    extra: dict = {"nat": {"snat_ports": list(SNAT_PORTS)}, "mss": {"clamp_bytes": mss_clamp}}
    if shaper_mbps:
        extra["cos"] = {
            "rate_mbps": shaper_mbps,
            "bulk": {},
            "priority": {"protocols": ["icmp", "icmpv6"], "udp_ports": [traffic.MOUSE_PORT]},
        }
    return topo.firewall_config(**extra)


def run_demo(
    *,
    mode: str = "xpfdp",
    duration_s: float = 10.0,
    flows: int = 4,
    shaper_mbps: float | None = DEFAULT_SHAPER_MBPS,
    mss_clamp: int = DEFAULT_MSS_CLAMP_BYTES,
    out_dir: str | Path = "demo-out",
    prometheus_port: int | None = None,
    emit: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the whole demo and return its report (also printed through `emit`, by default
    to stdout line by line)."""
    emit = emit or functools.partial(print, flush=True)
    if duration_s < WARMUP_S + 1:
        raise ValueError(f"duration_s must be >= {WARMUP_S + 1} s, got {duration_s}")
    if not 1 <= flows <= 16:
        raise ValueError(f"flows must be in 1..16, got {flows}")
    out_dir = Path(out_dir)
    with contextlib.ExitStack() as stack:
        topo = stack.enter_context(FirewallTopology(mode=mode))
        emit(
            f"topology: client {topo.client.name} ({topo.client_v4}, {topo.client_v6}) -- "
            f"firewall {topo.firewall.name} [{topo.lan_if} | {topo.wan_if}] -- "
            f"server {topo.server.name} ({topo.server_v4}, {topo.server_v6})"
        )
        config = None
        if mode == "xpfdp":
            raw_config = demo_config(topo, shaper_mbps, mss_clamp)
            config = parse_config(raw_config)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "fw.toml").write_text(to_toml(raw_config))  # this run's config
            fw = stack.enter_context(build_forwarder(config, handle_signals=False))
            fw.start()
            emit(f"forwarder: xpfdp, {len(fw.pipelines)} worker(s) in {topo.firewall.name}")
        else:
            fw = stack.enter_context(KernelForwarding(topo))
            emit(f"forwarder: Linux kernel (ip_forward) in {topo.firewall.name}")
        if prometheus_port is not None:
            server = stack.enter_context(serve_prometheus(fw.stats, prometheus_port))
            emit(f"prometheus: http://127.0.0.1:{server.port}/metrics")
        csum_before = {ns.name: traffic.checksum_errors(ns) for ns in (topo.client, topo.server)}
        report, series = _exercise(topo, fw, config, mode, duration_s, flows, emit, stack)
        for ns in (topo.client, topo.server):
            delta = checksum_error_delta(csum_before[ns.name], traffic.checksum_errors(ns))
            for proto, n in delta.items():
                report.checksum_errors[proto] = report.checksum_errors.get(proto, 0) + n
        if mode == "xpfdp":
            report.frames_conserved = frames_conserved(fw)
    emit(format_report(report))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    emit(f"wrote {out_dir / 'report.json'}")
    if plot_available():
        png = plot_demo(series, out_dir / "throughput.png", title=plot_title(report))
        emit(f"wrote {png}")
    else:
        emit(PLOT_MISSING)
    return report


def plot_title(report: DemoReport) -> str:
    """The configuration the picture shows, in one line."""
    v6 = sum(f.family == "IPv6" for f in report.flows)
    flows = f"{len(report.flows)} TCP flows" + (f" ({v6} IPv6)" if v6 else "")
    if report.mode == "kernel":
        setup = "Linux kernel forwarding (no NAT, MSS clamp or shaping)"
    else:
        shaper = (f"shaper {report.shaper_rate_bps / 1e6:g} Mbit/s" if report.shaper_rate_bps
                  else "no shaper")  # fmt: skip
        mss = f"MSS clamp {report.mss_clamp_bytes} B" if report.mss_clamp_bytes else "no MSS clamp"
        setup = f"xpfdp NAT firewall, {shaper}, {mss}"
    return f"{setup}\n{flows} + a UDP mouse flow, {report.duration_s:g} s of bulk"


def _exercise(topo, fw, config, mode, duration_s, n_flows, emit, stack):
    """Pings, idle mouse, bulk + mouse under load with status lines, probes.

    Returns the report and the time series of the picture.
    """
    pings = {
        "ipv4": [traffic.ping(topo.client, topo.server_v4, 3), 3],
        "ipv6": [traffic.ping(topo.client, topo.server_v6, 3), 3],
    }
    t0 = time.monotonic()
    sink = traffic.BulkSink(topo.server, t0, (topo.server_v4, topo.server_v6))
    stack.callback(sink.close)
    echo = traffic.EchoServer(topo.server, (topo.server_v4,))
    stack.callback(echo.close)
    idle = traffic.mouse_rtts_us(topo.client, topo.server_v4, 1.5)

    before = fw.stats()
    results = [traffic.SendResult(i) for i in range(n_flows)]
    targets = [topo.server_v6 if i == n_flows - 1 and n_flows > 1 else topo.server_v4
               for i in range(n_flows)]  # fmt: skip
    senders = [
        threading.Thread(
            target=traffic.bulk_send,
            args=(topo.client, targets[i], i, duration_s, None, results[i]),
            daemon=True,
        )
        for i in range(n_flows)
    ]
    bulk_start = time.monotonic()
    for t in senders:
        t.start()
    load = traffic.MouseResult()
    mouse_stop = threading.Event()
    stack.callback(mouse_stop.set)  # an interrupted run stops the probe before its server
    mouse = threading.Thread(
        target=traffic.mouse_rtts_us,
        args=(topo.client, topo.server_v4, duration_s - WARMUP_S),
        kwargs={"result": load, "stop": mouse_stop},
        daemon=True,
    )
    time.sleep(WARMUP_S / 2)
    mouse.start()
    status = StatusLine()
    status.update(fw.stats())
    wan_samples: list[tuple[float, int]] = []
    drop_samples = [(time.monotonic(), totals(fw.stats()))]
    while any(t.is_alive() for t in senders):
        time.sleep(1.0)
        snap = fw.stats()
        now = time.monotonic()
        wan_samples.append((now, port_bytes(snap, "wan")))
        drop_samples.append((now, totals(snap)))
        line = status.update(snap, now)
        if line:
            emit(line)
        if time.monotonic() - bulk_start > duration_s + 20:
            raise RuntimeError("bulk flows did not finish 20 s after their deadline")
    mouse.join(timeout=5)
    bulk_end = bulk_start + duration_s
    time.sleep(0.3)  # the last bytes reach the sink
    sink.close()

    before_probe = drop_counts(fw.stats())
    _probe_unsolicited(topo)
    time.sleep(0.3)
    after = fw.stats()

    window = (bulk_start - t0 + WARMUP_S, bulk_end - t0 - 0.2)
    flows = []
    for r in results:
        rec = sink.flows.get(r.flow_id)
        flows.append(
            FlowReport(
                flow_id=r.flow_id,
                family="IPv6" if ":" in targets[r.flow_id] else "IPv4",
                bytes_sent=r.bytes_sent,
                bytes_received=rec.bytes_received if rec else 0,
                intact=bool(rec) and rec.sha256 == r.sha256 and rec.bytes_received == r.bytes_sent,
                rate_bps=steady_rate_bps(rec.bins, *window) if rec else 0.0,
                server_saw_peer=rec.peer if rec else "",
                server_mss_bytes=rec.mss_bytes if rec else 0,
                error=r.error,
            )
        )
    steady = [(t, b) for t, b in wan_samples if window[0] <= t - t0 <= window[1] + 0.5]
    if len(steady) < 2:  # a short run on a slow box: every sample of the bulk phase
        steady = wan_samples
    wan_bps = None
    if len(steady) >= 2:
        wan_bps = (steady[-1][1] - steady[0][1]) * 8 / (steady[-1][0] - steady[0][0])
    drops_before, drops_after = drop_counts(before), drop_counts(after)
    drops = {k: v - drops_before.get(k, 0) for k, v in drops_after.items()}
    drops = {k: v for k, v in drops.items() if v}
    notes = []
    unsolicited = None
    if mode == "xpfdp":
        unsolicited = drop_counts(after).get("policy_denied", 0) - before_probe.get(
            "policy_denied", 0
        )
    else:
        notes.append("kernel baseline: plain routing (no NAT, MSS clamp or shaping)")
    cos = config.cos if config is not None else None
    report = DemoReport(
        mode=mode,
        duration_s=duration_s,
        flows=flows,
        jain_index=fairness(flows),
        aggregate_bps=sum(f.rate_bps for f in flows),
        shaper_rate_bps=cos.rate_bps if cos else None,
        wan_wire_bps=wan_bps,
        mss_clamp_bytes=config.mss_clamp_bytes if config else None,
        snat_address=", ".join(sorted({f.server_saw_peer for f in flows} | echo.peers)),
        mouse_idle_us=latency_summary(idle.rtts_us),
        mouse_load_us=latency_summary(load.rtts_us),
        mouse_lost=idle.lost + load.lost,
        pings={k: list(v) for k, v in pings.items()},
        sessions=session_counts(after),
        drops=drops,
        unsolicited_dropped=unsolicited,
        checksum_errors={},
        notes=notes,
    )
    intervals = list(itertools.pairwise(drop_samples))
    series = DemoSeries(
        bins_by_flow={
            f"flow {r.flow_id} ({flows[r.flow_id].family})": sink.flows[r.flow_id].bins
            for r in results
            if r.flow_id in sink.flows
        },
        bulk_end_s=bulk_end - t0,
        mouse_times_s=[s - t0 for s in load.sent_at_s],
        mouse_rtts_us=load.rtts_us,
        drop_times_s=[b[0] - t0 for _, b in intervals],
        drops_per_s=[(b[1].drops - a[1].drops) / (b[0] - a[0]) for a, b in intervals],
        ring_drops_per_s=[
            (sum(b[1].ring_drops.values()) - sum(a[1].ring_drops.values())) / (b[0] - a[0])
            for a, b in intervals
        ],
        shaper_rate_bps=report.shaper_rate_bps,
    )
    return report, series


def main_demo(args) -> int:
    """CLI body of `xpfdp demo` (arguments from xpfdp.cli)."""
    try:
        with handle_signals():
            report = run_demo(
                mode=args.mode,
                duration_s=args.duration,
                flows=args.flows,
                shaper_mbps=args.shaper_mbps or None,
                mss_clamp=args.mss_clamp,
                out_dir=args.out_dir,
                prometheus_port=args.prometheus_port,
            )
    except KeyboardInterrupt:
        print("interrupted: everything torn down", file=sys.stderr)
        return 130
    return 0 if report.ok else 1
