#!/usr/bin/env python3
"""Receive on one AF_XDP queue and drop, printing one status line per second (like xdpsock -r).

Example (as root):  examples/rxdrop.py --iface eth1 --queue 0 --duration 10
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from xpfdp.netns import inside
from xpfdp.ports import Burst, Umem, XskPort, drain, handle_signals


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True, help="interface to receive on")
    p.add_argument("--queue", type=int, default=0, help="RX queue (default 0)")
    p.add_argument("--mode", choices=("auto", "native", "generic"), default="auto")
    p.add_argument("--ring-size", type=int, default=1024, help="RX/TX ring entries (power of 2)")
    p.add_argument("--batch", type=int, default=64, help="descriptors per burst")
    p.add_argument("--frames", type=int, default=4096, help="UMEM frames")
    p.add_argument("--duration", type=float, default=0, help="seconds to run (0: until ^C)")
    p.add_argument("--netns", help="network namespace of the interface")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with (
        handle_signals(),
        inside(args.netns),
        Umem(args.frames, tx_frames=0) as umem,
        XskPort(args.iface, args.queue, umem, mode=args.mode, ring_size=args.ring_size) as port,
        contextlib.suppress(KeyboardInterrupt),
    ):
        print(f"{port}: receiving, ^C to stop", flush=True)
        burst = Burst(args.batch)
        start = time.monotonic()
        total = 0
        while not args.duration or time.monotonic() - start < args.duration:
            t0, cpu0 = time.monotonic(), time.process_time()
            pkts, nbytes = drain(port, burst, 1.0)
            dt = time.monotonic() - t0
            cpu = (time.process_time() - cpu0) / dt * 100
            total += pkts
            s = port.stats()
            print(
                f"rx {pkts / dt / 1e6:7.3f} Mpps {nbytes * 8 / dt / 1e9:7.3f} Gb/s "
                f"cpu {cpu:.0f}% total {total} fill_empty {s['fill_empty']} "
                f"kernel rx_dropped {s['rx_dropped']} rx_ring_full {s['rx_ring_full']}",
                flush=True,
            )
        umem.check_frames()
    return 0


if __name__ == "__main__":
    sys.exit(main())
