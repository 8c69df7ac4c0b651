#!/usr/bin/env python3
"""End-to-end AF_XDP throughput on veth: xpfdp examples against the C reference (root).

Both sides run in the same session, interleaved, for the same duration, on the same
namespaces, XDP program and UMEM geometry:

* ``l2fwd`` -- closed loop. The far veth end runs an XDP_TX reflector (bpf/xdp_reflect);
  the harness injects ``--inflight`` frames from the peer namespace once, and they
  circulate between the reflector and the MAC-swapping forwarder under test
  (examples/l2fwd.py vs ``xsk_ref l2fwd``). The rate is the forwarder's own count.
* ``txgen`` -- generator in the DUT namespace transmitting 64-byte UDP frames as fast as it
  can (examples/txgen.py vs ``xsk_ref txgen``); the peer kernel discards them.
* ``rxdrop`` -- the C generator in the peer namespace sends as fast as it can; the receiver
  under test (examples/rxdrop.py vs ``xsk_ref rxdrop``) counts and drops.

Each run's rate is the median of its per-second rates (first second skipped), and its CPU
cost the median of (process CPU time / packets) per second, in ns/packet. Reports the
medians of each side and the medians of the per-pair ratios xpfdp / C (each xpfdp run
directly follows a C run). On veth the kernel copy dominates; the CPU column shows the
userspace process's own cost.

Usage: ``.venv/bin/python benches/e2e_veth.py --duration 4 --rounds 5 --cpu 1 --sender-cpu 0``
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from xpfdp.topology import Namespace, VethPair  # noqa: E402

BPF_DIR = ROOT / "src" / "xpfdp" / "bpf"
EXAMPLES = ROOT / "examples"
STATUS = re.compile(r"(?:rx|tx|l2fwd|rxdrop|txgen)\s+([\d.]+) Mpps.*? cpu (\d+)%")


def build_reference(out_dir: Path) -> Path:
    """Compile benches/c/xsk_ref.c (cc -O2 -lxdp -lbpf)."""
    binary = out_dir / "xsk_ref"
    subprocess.run(
        ["cc", "-O2", "-I", str(ROOT / "bpf"), "-o", str(binary),
         str(ROOT / "benches" / "c" / "xsk_ref.c"), "-lxdp", "-lbpf"],
        check=True,
    )  # fmt: skip
    return binary


PIN: list[str] = []  # taskset prefix for the programs under test (--cpu)
PIN_SENDER: list[str] = []  # taskset prefix for the rxdrop traffic source (--sender-cpu)


def start(argv: list[str], netns: str, pin: list[str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, *(PIN if pin is None else pin), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.readline()  # the "ready"/banner line: bound and running
    return proc


def finish(proc: subprocess.Popen) -> tuple[float, float]:
    """(Mpps, CPU ns per packet) of a finished run: medians over its per-second lines,
    the first second skipped."""
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} failed: {err.strip()}")
    lines = [(float(m.group(1)), float(m.group(2))) for m in STATUS.finditer(out)][1:]
    if not lines:
        raise RuntimeError(f"too few status lines from {proc.args}: {out!r}")
    mpps = statistics.median(r for r, _ in lines)
    cpu_ns = statistics.median(c * 10 / r if r else float("inf") for r, c in lines)
    return mpps, cpu_ns


def inject(peer: Namespace, ifname: str, dst_mac: str, src_mac: str, count: int) -> None:
    """Send `count` 64-byte IPv4/UDP frames from the peer end into the loop."""
    frame = (
        bytes.fromhex(dst_mac.replace(":", ""))
        + bytes.fromhex(src_mac.replace(":", ""))
        + b"\x08\x00"
        + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 50, 0, 0, 64, 17, 0,
                      socket.inet_aton("10.0.0.2"), socket.inet_aton("10.0.0.1"))
        + struct.pack("!HHHH", 9, 9, 30, 0)
        + bytes(22)
    )  # fmt: skip
    with peer.inside():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((ifname, 0))
    for _ in range(count):
        raw.send(frame)
    raw.close()


def run_l2fwd(args, ref: Path, dut: Namespace, peer: Namespace, v: VethPair) -> tuple:
    peer.run("ip", "link", "set", "dev", v.b, "xdpdrv", "obj", str(BPF_DIR / "xdp_reflect.o"),
             "sec", "xdp")  # fmt: skip
    try:
        d = str(args.duration)
        c_cmd = [str(ref), "l2fwd", v.a, d, str(BPF_DIR / "xsk_redirect.o")]
        py_cmd = [sys.executable, str(EXAMPLES / "l2fwd.py"), "--iface", v.a, "--duration", d]
        results = {"C": [], "xpfdp": []}
        for _ in range(args.rounds):
            for name, cmd in (("C", c_cmd), ("xpfdp", py_cmd)):
                proc = start(cmd, dut.name)
                time.sleep(0.3)
                inject(peer, v.b, v.mac_a, v.mac_b, args.inflight)
                results[name].append(finish(proc))
        return results
    finally:
        peer.run("ip", "link", "set", "dev", v.b, "xdpdrv", "off", check=False)


def run_txgen(args, ref: Path, dut: Namespace, peer: Namespace, v: VethPair) -> dict:
    d = str(args.duration)
    c_cmd = [str(ref), "txgen", v.a, d, str(BPF_DIR / "xsk_redirect.o"), v.mac_b, "64"]
    py_cmd = [sys.executable, str(EXAMPLES / "txgen.py"), "--iface", v.a, "--dst-mac",
              v.mac_b, "--size", "64", "--duration", d]  # fmt: skip
    results = {"C": [], "xpfdp": []}
    for _ in range(args.rounds):
        for name, cmd in (("C", c_cmd), ("xpfdp", py_cmd)):
            results[name].append(finish(start(cmd, dut.name)))
    return results


def run_rxdrop(args, ref: Path, dut: Namespace, peer: Namespace, v: VethPair) -> dict:
    d = str(args.duration)
    c_cmd = [str(ref), "rxdrop", v.a, d, str(BPF_DIR / "xsk_redirect.o")]
    py_cmd = [sys.executable, str(EXAMPLES / "rxdrop.py"), "--iface", v.a, "--duration", d]
    gen = [str(ref), "txgen", v.b, str(args.duration + 2), str(BPF_DIR / "xsk_redirect.o"),
           v.mac_a, "64"]  # fmt: skip
    results = {"C": [], "xpfdp": []}
    for _ in range(args.rounds):
        for name, cmd in (("C", c_cmd), ("xpfdp", py_cmd)):
            receiver = start(cmd, dut.name)
            sender = start(gen, peer.name, PIN_SENDER)
            results[name].append(finish(receiver))
            finish(sender)
    return results


WORKLOADS = {"l2fwd": run_l2fwd, "txgen": run_txgen, "rxdrop": run_rxdrop}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--rounds", type=int, default=2, help="interleaved C/xpfdp pairs")
    p.add_argument("--inflight", type=int, default=256, help="l2fwd closed-loop frames")
    p.add_argument("--workloads", default="l2fwd,txgen,rxdrop")
    p.add_argument("--cpu", type=int, help="pin the program under test to this CPU")
    p.add_argument("--sender-cpu", type=int, help="pin the rxdrop traffic source to this CPU")
    args = p.parse_args(argv)
    if args.cpu is not None:
        PIN[:] = ["taskset", "-c", str(args.cpu)]
    if args.sender_cpu is not None:
        PIN_SENDER[:] = ["taskset", "-c", str(args.sender_cpu)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = build_reference(Path(tmp))
        for workload in args.workloads.split(","):
            with Namespace(prefix="xb") as dut, Namespace(prefix="xb") as peer:
                dut.disable_ipv6()
                peer.disable_ipv6()
                with VethPair(dut, peer) as v:
                    dut.disable_offloads(v.a)
                    peer.disable_offloads(v.b)
                    res = WORKLOADS[workload](args, ref, dut, peer, v)
            rows.append((workload, res))
    print(
        f"\n{'workload':8} {'C Mpps':>7} {'xpfdp':>7} {'ratio':>6} {'C cpu':>7} {'xpfdp':>7}"
        f" {'ratio':>6}   (rates, CPU ns/packet; ratios = median of paired xpfdp/C runs)"
    )
    for workload, res in rows:
        c_rate, c_cpu = (statistics.median(v) for v in zip(*res["C"], strict=True))
        p_rate, p_cpu = (statistics.median(v) for v in zip(*res["xpfdp"], strict=True))
        # Each xpfdp run directly follows a C run: per-pair ratios cancel slow drifts of
        # background load, so their medians are the headline numbers.
        pairs = list(zip(res["C"], res["xpfdp"], strict=True))
        rate_ratio = statistics.median(p[0] / c[0] for c, p in pairs)
        cpu_ratio = statistics.median(p[1] / c[1] for c, p in pairs)
        print(
            f"{workload:8} {c_rate:7.3f} {p_rate:7.3f} {rate_ratio:6.3f} {c_cpu:7.0f} "
            f"{p_cpu:7.0f} {cpu_ratio:6.3f}"
        )
        for name in ("C", "xpfdp"):
            runs = ", ".join(f"{r:.3f} Mpps/{c:.0f} ns" for r, c in res[name])
            print(f"    {name:6} {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
