#!/usr/bin/env python3
"""L2 forwarder: reflect frames back out of one port with MACs swapped, or bridge two ports.

With --peer-iface both ports share one UMEM, so a frame received on one interface is
transmitted from the other straight out of the same memory (no userspace copy).
One status line per second. Examples (as root):
  examples/l2fwd.py --iface eth1                       # MAC-swap reflector
  examples/l2fwd.py --iface eth1 --peer-iface eth2     # two-port bridge
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from xpfdp.netns import inside
from xpfdp.ports import Burst, Umem, XskPort, bridge, forward, handle_signals


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True, help="first (or only) interface")
    p.add_argument("--peer-iface", help="second interface: bridge mode")
    p.add_argument("--queue", type=int, default=0)
    p.add_argument("--mode", choices=("auto", "native", "generic"), default="auto")
    p.add_argument("--ring-size", type=int, default=1024)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--duration", type=float, default=0, help="seconds (0: until ^C)")
    p.add_argument("--netns", help="network namespace of the interfaces")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    fill = 2 * args.ring_size
    ports = 2 if args.peer_iface else 1
    with contextlib.ExitStack() as stack:
        stack.enter_context(handle_signals())
        stack.enter_context(inside(args.netns))
        umem = stack.enter_context(Umem(ports * (fill + args.ring_size), tx_frames=0))
        a = stack.enter_context(
            XskPort(args.iface, args.queue, umem, mode=args.mode, ring_size=args.ring_size,
                    fill_target=fill)
        )  # fmt: skip
        b = None
        if args.peer_iface:
            b = stack.enter_context(
                XskPort(args.peer_iface, args.queue, umem, mode=args.mode,
                        ring_size=args.ring_size, fill_target=fill)
            )  # fmt: skip
        stack.enter_context(contextlib.suppress(KeyboardInterrupt))
        print(f"forwarding: {a}" + (f" <-> {b}" if b else " (MAC swap)"), flush=True)
        burst = Burst(args.batch)
        start = time.monotonic()
        while not args.duration or time.monotonic() - start < args.duration:
            t0, cpu0 = time.monotonic(), time.process_time()
            if b is None:
                rx, tx, dropped = forward(a, a, burst, 1.0, swap_macs=True)
                line = f"rx {rx / 1e6 / (time.monotonic() - t0):7.3f} Mpps tx {tx} drop {dropped}"
            else:
                ab, ba, dropped = bridge(a, b, burst, 1.0)
                dt = time.monotonic() - t0
                line = (
                    f"a->b {ab / dt / 1e6:7.3f} Mpps b->a {ba / dt / 1e6:7.3f} Mpps drop {dropped}"
                )
            cpu = (time.process_time() - cpu0) / (time.monotonic() - t0) * 100
            s = a.stats()
            print(
                f"{line} cpu {cpu:.0f}% total {s['rx_packets']} fill_empty {s['fill_empty']} "
                f"kicks {s['tx_kicks']}",
                flush=True,
            )
        umem.check_frames()
    return 0


if __name__ == "__main__":
    sys.exit(main())
