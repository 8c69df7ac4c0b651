#!/usr/bin/env python3
"""End-to-end firewall benchmarks on veth (root), all sides in the same session.

1. ``loop`` -- packet rate of the full firewall pipeline against l2fwd and the C reference.
   The demo topology (client — firewall — server namespaces). The client and server veth
   ends run an XDP "answer" program (benches/c/xdp_answer.bpf.c: MACs, IPs and UDP ports
   swapped, TTL reset, XDP_TX), so ``--inflight`` injected 64-byte UDP frames circulate
   client -> firewall (SNAT) -> server -> firewall (un-NAT) -> client ... for good.
   Interleaved per round on the same namespaces and veths:
     * C        -- benches/c/xsk_ref.c l2fwd (MAC swap) on the firewall's LAN port;
     * l2fwd    -- examples/l2fwd.py on the same port;
     * firewall -- `xpfdp forward` with the demo's config (parse, session/flow cache,
                   NAT, route, TTL, MSS clamp, L2 rewrite, count; no shaper) on both ports.
   Rates are the programs' own per-second counts (medians, first second skipped); the
   headline ratio is the median of per-round ratios to the C run of the same round.
2. ``tcp`` -- TCP goodput of 4 flows (3 IPv4, 1 IPv6, SHA-256 checked) through the xpfdp
   firewall (no shaper) vs the same namespaces forwarded by the Linux kernel (plain
   routing: no NAT/clamp/shaping there), with the demo's traffic code, interleaved per
   round. The firewall runs as `xpfdp forward` in its own process and, as a third row, in
   the demo's process (whose Python traffic threads then share that process). Each run also
   counts the CPU time the whole box spent meanwhile (user + system + irq + softirq from
   /proc/stat: senders, receivers, kernel forwarding or the forwarder), so the rows compare
   goodput per CPU-second as well as goodput. ``--busy-poll-us N`` adds a row with the
   forwarder's sockets busy-polling (docs/performance.md).

Usage: ``.venv/bin/python benches/e2e_firewall.py --duration 5 --rounds 3``
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benches")]

import e2e_veth as harness  # noqa: E402

from xpfdp.csum import internet_checksum  # noqa: E402
from xpfdp.demo import traffic  # noqa: E402
from xpfdp.demo.report import steady_rate_bps  # noqa: E402
from xpfdp.demo.run import WARMUP_S, demo_config, run_demo  # noqa: E402
from xpfdp.demo.topology import FirewallTopology  # noqa: E402
from xpfdp.firewall import to_toml  # noqa: E402

FIREWALL_RATE = re.compile(r"\brx\s+([\d,]+) pps")


def build_answer(out_dir: Path) -> Path:
    """Compile the XDP answer program with whatever clang is installed."""
    obj = out_dir / "xdp_answer.o"
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    cmd = ["clang", "-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]
    if multiarch:
        cmd += ["-I", f"/usr/include/{multiarch}"]
    subprocess.run([*cmd, "-c", str(ROOT / "benches" / "c" / "xdp_answer.bpf.c"), "-o",
                    str(obj)], check=True)  # fmt: skip
    return obj


def inject_requests(topo: FirewallTopology, count: int) -> None:
    """`count` 64-byte client -> server UDP frames (valid IPv4 checksum) into the loop."""
    src, dst = socket.inet_aton(topo.client_v4), socket.inet_aton(topo.server_v4)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 50, 0, 0, 64, 17, 0, src, dst))
    struct.pack_into("!H", ip, 10, internet_checksum(bytes(ip)))
    udp = struct.pack("!HHHH", 40000, 9, 30, 0) + bytes(22)  # UDP checksum 0: none (IPv4)
    eth = bytes.fromhex(topo.lan_mac.replace(":", "") + topo.client_mac.replace(":", ""))
    frame = eth + b"\x08\x00" + bytes(ip) + udp
    with topo.client.inside():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with raw:
        raw.bind((topo.client_if, 0))
        for _ in range(count):
            raw.send(frame)


def firewall_rate(proc: subprocess.Popen) -> float:
    """Median Mpps of `xpfdp forward` status lines (first skipped)."""
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"xpfdp forward failed: {err.strip()}")
    rates = [int(m.group(1).replace(",", "")) / 1e6 for m in FIREWALL_RATE.finditer(out)][1:]
    if not rates:
        raise RuntimeError(f"no status lines from xpfdp forward: {out!r}")
    return statistics.median(rates)


def run_loop(args, ref: Path, answer: Path, tmp: Path) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"C": [], "l2fwd": [], "firewall": []}
    with FirewallTopology(prefix="xb") as topo:
        for ns, ifname in ((topo.client, topo.client_if), (topo.server, topo.server_if)):
            ns.run("ip", "link", "set", "dev", ifname, "xdpdrv", "obj", str(answer), "sec", "xdp")
        config = tmp / "fw.toml"
        config.write_text(to_toml(demo_config(topo, shaper_mbps=None, mss_clamp=1360)))
        d = str(args.duration)
        commands = {
            "C": [str(ref), "l2fwd", topo.lan_if, d, str(harness.BPF_DIR / "xsk_redirect.o")],
            "l2fwd": [sys.executable, str(harness.EXAMPLES / "l2fwd.py"), "--iface",
                      topo.lan_if, "--duration", d],
            "firewall": [sys.executable, "-m", "xpfdp", "forward", "--config", str(config),
                         "--duration", d],
        }  # fmt: skip
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                proc = harness.start(cmd, topo.firewall.name)
                time.sleep(0.3)
                inject_requests(topo, args.inflight)
                if name == "firewall":
                    results[name].append(firewall_rate(proc))
                else:
                    results[name].append(harness.finish(proc)[0])
                time.sleep(0.5)  # circulating frames die with the program's sockets
    return results


def busy_cpu_s() -> float:
    """CPU-seconds the whole box has spent busy since boot (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def tcp_goodput_bps(
    topo: FirewallTopology, duration_s: float, flows: int = 4, cpu: list | None = None
) -> float:
    """Aggregate steady-state goodput of `flows` TCP flows (the last one IPv6) from client
    to server, measured at the server; every flow must arrive intact. `cpu` gets the box's
    busy CPU-seconds per wall second during the send."""
    t0 = time.monotonic()
    sink = traffic.BulkSink(topo.server, t0, (topo.server_v4, topo.server_v6))
    results = [traffic.SendResult(i) for i in range(flows)]
    targets = [topo.server_v6 if i == flows - 1 else topo.server_v4 for i in range(flows)]
    senders = [threading.Thread(target=traffic.bulk_send,
                                args=(topo.client, targets[i], i, duration_s, None, results[i]))
               for i in range(flows)]  # fmt: skip
    start = time.monotonic() - t0
    busy0 = busy_cpu_s()
    for t in senders:
        t.start()
    for t in senders:
        t.join(timeout=duration_s + 30)
    if cpu is not None:
        cpu.append((busy_cpu_s() - busy0) / (time.monotonic() - t0 - start))
    time.sleep(0.3)
    sink.close()
    for r in results:
        rec = sink.flows.get(r.flow_id)
        if r.error or rec is None or rec.sha256 != r.sha256:
            raise RuntimeError(f"flow {r.flow_id} failed: {r.error or 'bytes differ'}")
    window = (start + WARMUP_S, start + duration_s - 0.2)
    return sum(steady_rate_bps(sink.flows[r.flow_id].bins, *window) for r in results)


def xpfdp_tcp(
    topo: FirewallTopology, duration_s: float, tmp: Path, cpu: list, busy_poll_us: int = 0
) -> float:
    """tcp_goodput_bps through `xpfdp forward` (no shaper) in its own process. With
    `busy_poll_us`, its sockets busy-poll and the firewall's veths defer their softirq
    (napi_defer_hard_irqs 2, gro_flush_timeout 200 µs), as busy polling needs."""
    config = demo_config(topo, shaper_mbps=None, mss_clamp=1360)
    if busy_poll_us:
        config["forwarder"] = {"busy_poll_us": busy_poll_us}
        for dev in (topo.lan_if, topo.wan_if):
            for knob, value in (("napi_defer_hard_irqs", 2), ("gro_flush_timeout", 200_000)):
                topo.firewall.run("sh", "-c", f"echo {value} > /sys/class/net/{dev}/{knob}")
    path = tmp / "fw-tcp.toml"
    path.write_text(to_toml(config))
    proc = harness.start([sys.executable, "-m", "xpfdp", "forward", "--config", str(path),
                          "--quiet"], topo.firewall.name)  # fmt: skip
    try:
        return tcp_goodput_bps(topo, duration_s, cpu=cpu)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def run_tcp(args, tmp: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per round: kernel forwarding and the xpfdp firewall in its own process (`xpfdp
    forward`), each with the box's busy CPUs during the send (with --busy-poll-us, the
    firewall busy-polling too); then the demo's in-process forwarder (traffic threads share
    its process; goodput only)."""
    rows = ["kernel", "xpfdp"] + (["xpfdp-busy-poll"] if args.busy_poll_us else [])
    results: dict[str, list[float]] = {name: [] for name in [*rows, "xpfdp-in-process"]}
    cpus: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        with FirewallTopology(mode="kernel", prefix="xb") as topo:
            results["kernel"].append(tcp_goodput_bps(topo, args.duration, cpu=cpus["kernel"]) / 1e9)
        for name, busy_poll_us in (("xpfdp", 0), ("xpfdp-busy-poll", args.busy_poll_us)):
            if name in rows:
                with FirewallTopology(mode="xpfdp", prefix="xb") as topo:
                    bps = xpfdp_tcp(topo, args.duration, tmp, cpus[name], busy_poll_us)
                results[name].append(bps / 1e9)
        report = run_demo(mode="xpfdp", duration_s=args.duration, flows=4, shaper_mbps=None,
                          out_dir=tmp / "demo", emit=lambda line: None)  # fmt: skip
        if not report.ok:
            raise RuntimeError("in-process xpfdp TCP run failed its checks")
        results["xpfdp-in-process"].append(report.aggregate_bps / 1e9)
    return results, cpus


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--inflight", type=int, default=256, help="frames circulating (loop)")
    p.add_argument("--workloads", default="loop,tcp")
    p.add_argument("--cpu", type=int, help="pin the programs under test to this CPU (loop)")
    p.add_argument(
        "--busy-poll-us",
        type=int,
        default=0,
        help="tcp: also run the firewall with busy polling (forwarder.busy_poll_us)",
    )
    args = p.parse_args(argv)
    if args.cpu is not None:
        harness.PIN[:] = ["taskset", "-c", str(args.cpu)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        workloads = args.workloads.split(",")
        if "loop" in workloads:
            res = run_loop(args, harness.build_reference(tmp), build_answer(tmp), tmp)
            print(f"\nclosed loop, 64-byte UDP, {args.inflight} in flight, {args.rounds} rounds "
                  f"x {args.duration:g} s (Mpps; ratio = median of per-round x/C)")  # fmt: skip
            for name, rates in res.items():
                ratio = statistics.median(r / c for r, c in zip(rates, res["C"], strict=True))
                runs = ", ".join(f"{r:.3f}" for r in rates)
                print(f"  {name:9} {statistics.median(rates):7.3f} Mpps  x{ratio:5.3f} of C  "
                      f"[{runs}]")  # fmt: skip
        if "tcp" in workloads:
            res, cpus = run_tcp(args, tmp)
            print(f"\nTCP goodput, 4 flows, {args.rounds} rounds x {args.duration:g} s (Gbit/s; "
                  "busy CPUs of the whole box; Gbit per busy CPU-second)")  # fmt: skip
            for name, rates in res.items():  # name: kernel, xpfdp, xpfdp-in-process
                ratio = statistics.median(r / k for r, k in zip(rates, res["kernel"], strict=True))
                runs = ", ".join(f"{r:.2f}" for r in rates)
                line = (f"  {name:16} {statistics.median(rates):6.2f} Gbit/s  x{ratio:5.3f} of "
                        f"kernel  [{runs}]")  # fmt: skip
                if name in cpus:
                    per_cpu = [r / c for r, c in zip(rates, cpus[name], strict=True)]
                    per_ratio = statistics.median(
                        p / (k / c) for p, k, c in
                        zip(per_cpu, res["kernel"], cpus["kernel"], strict=True))  # fmt: skip
                    line += (
                        f"  CPUs {statistics.median(cpus[name]):4.2f}  "
                        f"{statistics.median(per_cpu):5.2f} Gbit/CPU-s  x{per_ratio:5.3f}"
                    )
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
