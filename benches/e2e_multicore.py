#!/usr/bin/env python3
"""Multicore scaling of the NAT firewall on veth (root): 1 worker vs 2 workers, same run.

The demo topology with 2-queue veth pairs. The client and server veth ends run the XDP
"answer" program (benches/c/xdp_answer.bpf.c: MACs, IPs and UDP ports swapped, XDP_TX),
so ``--inflight`` injected 64-byte UDP frames over ``--flows`` flows circulate client ->
firewall (SNAT) -> server -> firewall (un-NAT) -> client for good. The client's raw
socket spreads the flows over both LAN queues; the answers come back on whichever queue
the answering CPU maps to, so many replies land on a worker that does not own their
flow and are handed over.

Interleaved per round: `xpfdp forward` with ``queues = 1`` on a topology with 1-queue
veths (every frame reaches its one worker) and with ``queues = 2`` on 2-queue veths.
Rates are the forwarder's per-second status lines (median, first second skipped); the
headline is the median of per-round ratios 2 workers / 1 worker. Handoffs per second are
read from the same status lines.

Usage: ``.venv/bin/python benches/e2e_multicore.py --duration 5 --rounds 3``
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benches")]

import e2e_firewall  # noqa: E402
import e2e_veth as harness  # noqa: E402

from xpfdp.csum import internet_checksum  # noqa: E402
from xpfdp.demo.run import demo_config  # noqa: E402
from xpfdp.demo.topology import FirewallTopology  # noqa: E402
from xpfdp.firewall import to_toml  # noqa: E402

RX_RATE = re.compile(r"\brx\s+([\d,]+) pps")
HANDOFF_RATE = re.compile(r"\bhandoffs\s+([\d,]+)/s")


def inject_flows(topo: FirewallTopology, count: int, flows: int) -> None:
    """`count` 64-byte client -> server UDP frames over `flows` source ports."""
    src, dst = socket.inet_aton(topo.client_v4), socket.inet_aton(topo.server_v4)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 50, 0, 0, 64, 17, 0, src, dst))
    struct.pack_into("!H", ip, 10, internet_checksum(bytes(ip)))
    eth = bytes.fromhex(topo.lan_mac.replace(":", "") + topo.client_mac.replace(":", ""))
    with topo.client.inside():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with raw:
        raw.bind((topo.client_if, 0))
        for i in range(count):
            udp = struct.pack("!HHHH", 40000 + i % flows, 9, 30, 0) + bytes(22)  # no checksum
            raw.send(eth + b"\x08\x00" + bytes(ip) + udp)


def forward_rates(proc) -> tuple[float, float]:
    """(median Mpps, median handoffs/s) of `xpfdp forward` status lines (first skipped)."""
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"xpfdp forward failed: {err.strip()}")
    lines = [line for line in out.splitlines() if RX_RATE.search(line)][1:]
    if not lines:
        raise RuntimeError(f"no status lines from xpfdp forward: {out!r}")
    rates = [int(RX_RATE.search(line).group(1).replace(",", "")) / 1e6 for line in lines]
    handoffs = [int(m.group(1).replace(",", "")) if (m := HANDOFF_RATE.search(line)) else 0
                for line in lines]  # fmt: skip
    return statistics.median(rates), statistics.median(handoffs)


def one_run(args, answer: Path, tmp: Path, queues: int) -> tuple[float, float]:
    with FirewallTopology(prefix="xb", queues=queues) as topo:
        for ns, ifname in ((topo.client, topo.client_if), (topo.server, topo.server_if)):
            ns.run("ip", "link", "set", "dev", ifname, "xdpdrv", "obj", str(answer), "sec", "xdp")
        config = demo_config(topo, shaper_mbps=None, mss_clamp=1360)
        config["forwarder"] = {"queues": queues}
        path = tmp / f"fw{queues}.toml"
        path.write_text(to_toml(config))
        proc = harness.start([sys.executable, "-m", "xpfdp", "forward", "--config", str(path),
                              "--duration", str(args.duration)], topo.firewall.name)  # fmt: skip
        time.sleep(0.5)
        inject_flows(topo, args.inflight, args.flows)
        return forward_rates(proc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--inflight", type=int, default=512, help="frames circulating")
    p.add_argument("--flows", type=int, default=64, help="distinct UDP flows among them")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        answer = e2e_firewall.build_answer(tmp)
        res: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for queues in (1, 2):
                res[queues].append(one_run(args, answer, tmp, queues))
    print(f"\nclosed loop, 64-byte UDP, {args.inflight} in flight over {args.flows} flows, "
          f"{args.rounds} rounds x {args.duration:g} s")  # fmt: skip
    for queues, runs in res.items():
        ratio = statistics.median(r[0] / o[0] for r, o in zip(runs, res[1], strict=True))
        rates = ", ".join(f"{r:.3f}" for r, _ in runs)
        handoffs = statistics.median(h for _, h in runs)
        print(f"  {queues} worker{'s' if queues > 1 else ' '} "
              f"{statistics.median(r for r, _ in runs):7.3f} Mpps  x{ratio:5.2f} of 1 worker  "
              f"handoffs {handoffs:,.0f}/s  [{rates}]")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
