#!/usr/bin/env python3
"""Fuzz the packet kernels and a pipeline with random frames and random metadata.

The parent process starts children that each run cases from a seed until the time budget
ends. Before each case a child saves its input (frames and records) to
``<out>/current.npz``; if the child dies from a signal (a crash) or reports a broken
invariant (a leaked frame), the parent keeps that input as ``<out>/crash-<seed>-<case>.npz``,
prints how it failed and exits 1. Exit 0 means no case failed.

    python scripts/fuzz.py --seconds 60 --out fuzz-out        # what `make fuzz` runs
    python scripts/fuzz.py --replay fuzz-out/crash-7-123.npz  # re-run one saved case

Each case: up to 32 Ethernet frames (IPv4/IPv6, TCP/UDP/ICMP, VLAN, options), some bytes
mutated, some truncated; parsed, then some records overwritten with random fields. Every
batch kernel that takes records runs on them with each frame against an unreadable page
(any access past a frame faults), then the firewall pipeline runs the frames on MemPort with
a stage that scribbles the same records over the parser's, and frames must be conserved.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

META_FIELDS = ("status", "ip_version", "protocol", "tcp_flags", "l3_off", "l4_off",
               "payload_off", "l3_len", "sport", "dport", "flags", "icmp_type")  # fmt: skip
EXIT_INVARIANT = 3  # a child found a broken invariant (not a crash)


# ---- case generation ---------------------------------------------------------------------


def _frame(rng: np.random.Generator) -> bytes:
    """A random, mostly well-formed Ethernet frame with valid checksums."""
    from xpfdp import csum

    proto = int(rng.choice([6, 17, 1, 58, 47]))
    payload = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
    ports = rng.integers(0, 65536, 2).astype(">u2").tobytes()
    if proto == 6:
        options = bytes([2, 4]) + rng.integers(0, 65536, 1).astype(">u2").tobytes()
        l4 = ports + bytes(8) + bytes([0x60, int(rng.integers(0, 256))]) + bytes(6) + options
    elif proto == 17:
        l4 = ports + (8 + len(payload)).to_bytes(2, "big") + bytes(2)
    else:
        l4 = bytes([int(rng.choice([0, 8, 128, 129])), 0, 0, 0]) + ports
    l4 += payload
    v6 = bool(rng.integers(0, 2)) or proto == 58
    if v6:
        l3 = (bytes([0x60, int(rng.integers(0, 256)), 0, 0]) + len(l4).to_bytes(2, "big")
              + bytes([proto, int(rng.integers(0, 256))])
              + rng.integers(0, 256, 32, dtype=np.uint8).tobytes())  # fmt: skip
        ethertype = b"\x86\xdd"
    else:
        words = int(rng.integers(0, 3))
        l3 = (bytes([0x45 + words, int(rng.integers(0, 256))])
              + (20 + 4 * words + len(l4)).to_bytes(2, "big") + bytes(4)
              + bytes([int(rng.integers(0, 256)), proto, 0, 0])
              + rng.integers(0, 256, 8, dtype=np.uint8).tobytes() + bytes(4 * words))  # fmt: skip
        ethertype = b"\x08\x00"
    tag = b"\x81\x00" + bytes(2) if rng.integers(0, 4) == 0 else b""
    frame = bytearray(bytes(12) + tag + ethertype + l3 + l4)
    csum.fix_checksums(frame)
    return bytes(frame)


def make_case(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Frames (packed, with lengths) and the records the kernels will be given."""
    from xpfdp import parse
    from xpfdp.pcap import FrameBatch

    frames = []
    for _ in range(int(rng.integers(1, 33))):
        frame = bytearray(_frame(rng))
        for _ in range(int(rng.integers(0, 3))):
            frame[int(rng.integers(0, len(frame)))] = int(rng.integers(0, 256))
        frames.append(bytes(frame[: int(rng.integers(0, len(frame) + 1))]))
    batch = FrameBatch.from_frames(frames)
    meta = np.zeros(len(frames), dtype=parse.PKT_META)
    parse.parse_batch(batch.buf, batch.offsets, batch.lengths, meta)
    for i in range(len(frames)):
        for name in META_FIELDS:
            if rng.integers(0, 4) == 0:
                limit = np.iinfo(meta.dtype[name]).max
                meta[i][name] = int(rng.choice([rng.integers(0, limit + 1), rng.integers(0, 80)]))
    return {"buf": batch.buf, "lengths": batch.lengths, "offsets": batch.offsets, "meta": meta}


# ---- running one case --------------------------------------------------------------------


def run_kernels(case: dict[str, np.ndarray]) -> None:
    """Every batch kernel taking records, each frame against a guard page."""
    from guard_pages import GuardedPages

    from xpfdp import csum
    from xpfdp.cos import XDP_DESC, FlowFairQueue
    from xpfdp.route import RouteTable
    from xpfdp.session import KEY_DTYPE, keys_from_meta

    routes = RouteTable()
    routes.add("0.0.0.0/0", 0)
    routes.add("::/0", 1)
    pages = GuardedPages()
    for i in range(len(case["meta"])):
        start, length = int(case["offsets"][i]), int(case["lengths"][i])
        addrs, lens = pages.place(case["buf"][start : start + length].tobytes())
        meta = case["meta"][i : i + 1]
        args = (pages.array, addrs, lens)
        csum.fix_checksums_batch(*args, meta.copy())
        csum.checksums_ok_batch(*args, meta.copy())
        csum.clamp_mss_batch(*args, meta.copy(), 536)
        csum.mss_batch(*args, meta.copy())
        csum.decrement_ttl_batch(*args, meta.copy())
        csum.mark_ecn_ce_batch(*args, meta.copy())
        csum.rewrite_nat_batch(*args, meta.copy(), sport=7, dport=9)
        csum.rewrite_nat_batch(*args, meta.copy(), src=bytes(4), dst=bytes(4))
        csum.rewrite_nat_batch(*args, meta.copy(), src=bytes(16), sport=np.array([3]))
        routes.lookup_batch(meta.copy(), np.zeros(1, np.int32))
        keys_from_meta(meta.copy(), np.zeros(1, KEY_DTYPE))
        desc = np.zeros(1, XDP_DESC)
        desc["addr"], desc["len"] = addrs, lens
        FlowFairQueue(seed=i).enqueue_batch(desc, meta.copy(), pages.array)


def run_pipeline(case: dict[str, np.ndarray]) -> None:
    """The firewall pipeline on MemPort, records overwritten after parsing; frames must be
    conserved (FrameLeakError otherwise)."""
    from xpfdp.cos import Scheduler
    from xpfdp.pcap import FrameBatch
    from xpfdp.pipeline import CosStage, Pipeline, PyStage, firewall_stages
    from xpfdp.ports import MemPort, Umem
    from xpfdp.route import RouteTable
    from xpfdp.session import SessionTable

    records = case["meta"]

    def scribble(burst):
        burst.meta[: burst.n] = np.resize(records, burst.n)

    spans = zip(case["offsets"], case["lengths"], strict=True)
    frames = [case["buf"][o : o + n].tobytes() for o, n in spans]
    umem = Umem(512)
    lan = MemPort(umem, FrameBatch.from_frames([f for f in frames if f] or [bytes(60)]),
                  capture=64)  # fmt: skip
    wan = MemPort(umem, None, capture=64)
    routes = RouteTable()
    routes.add("0.0.0.0/0", 1)
    routes.add("::/0", 1)
    sched = Scheduler(shaping_rate_bytes_per_s=10_000_000)
    sched.add_queue(0, priority=0, transmit_rate_bytes_per_s=5_000_000, exact=True)
    stages = firewall_stages(lan=0, wan=1, snat="198.51.100.1", mss=1200)
    stages.insert(1, PyStage(scribble))
    stages.insert(-1, CosStage({1: sched}, rules=[{"queue": 0}]))
    pipe = Pipeline(
        [lan, wan],
        stages,
        routes=routes,
        sessions=SessionTable(1024),
        next_hops=[(0, None, None), (1, "02:00:00:00:00:01", "02:00:00:00:00:02")],
    )
    pipe.run(until_idle=True)
    for _ in range(4):
        pipe.poll()
    pipe.close(close_ports=True)
    umem.check_frames()
    umem.close()


def run_case(case: dict[str, np.ndarray]) -> None:
    run_kernels(case)
    run_pipeline(case)


# ---- processes ---------------------------------------------------------------------------


def child(seed: int, deadline: float, out: Path, crash_on: int | None) -> int:
    """Run cases from `seed` until `deadline`, saving each input first; print the count."""
    from xpfdp.ports import FrameLeakError

    rng = np.random.default_rng(seed)
    current = out / "current.npz"
    done = 0
    while time.monotonic() < deadline:
        case = make_case(rng)
        with open(current, "wb") as f:
            np.savez(f, **case, case=np.array([done]))
        if crash_on is not None and done == crash_on:
            os.kill(os.getpid(), signal.SIGSEGV)  # --self-test: a crash is caught and kept
        try:
            run_case(case)
        except FrameLeakError as exc:
            print(f"case {done}: {exc}", file=sys.stderr, flush=True)
            return EXIT_INVARIANT
        done += 1
    print(done, flush=True)
    return 0


def parent(seconds: float, out: Path, self_test: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + seconds
    seed, total = int.from_bytes(os.urandom(4), "little"), 0
    while time.monotonic() < deadline:
        child_s = min(10.0, max(0.1, deadline - time.monotonic()))
        argv = [sys.executable, __file__, "--child", str(seed), "--seconds", str(child_s),
                "--out", str(out)] + (["--crash-on", "2"] if self_test else [])  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            case = int(np.load(out / "current.npz")["case"][0])
            kept = out / f"crash-{seed}-{case}.npz"
            shutil.copy(out / "current.npz", kept)
            how = (f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
                   else f"exit {proc.returncode}")  # fmt: skip
            print(f"fuzz: FAILED ({how}) on case {case} of seed {seed}; input kept in {kept}; "
                  f"replay: {sys.executable} {__file__} --replay {kept}")  # fmt: skip
            if proc.stderr.strip():
                print(proc.stderr.strip().splitlines()[-1])
            return 1
        total += int(proc.stdout.split()[-1])
        seed += 1
    print(f"fuzz: {total} cases in {seconds:g} s, no crash and no leaked frame")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="where inputs go")
    parser.add_argument("--replay", type=Path, help="re-run one saved case in this process")
    parser.add_argument("--self-test", action="store_true", help="crash on purpose (harness)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--crash-on", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay is not None:
        saved = np.load(args.replay)
        run_case({k: saved[k] for k in ("buf", "lengths", "offsets", "meta")})
        print(f"{args.replay}: no crash")
        return 0
    if args.child is not None:
        return child(args.child, time.monotonic() + args.seconds, args.out, args.crash_on)
    return parent(args.seconds, args.out, args.self_test)


if __name__ == "__main__":
    sys.exit(main())
