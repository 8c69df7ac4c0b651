#!/usr/bin/env python3
"""AF_XDP UDP generator: rate, frame size, flow count and duration; one status line per second.

Flows differ by UDP source port. IPv4 and UDP checksums are complete, so receivers accept
the frames. Example (as root):
  examples/txgen.py --iface eth1 --dst-mac 02:00:00:00:00:02 --src-ip 10.0.0.1 \\
      --dst-ip 10.0.0.2 --size 64 --flows 16 --rate 100000 --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import sys
import time

import numpy as np

from xpfdp.csum import fix_checksums
from xpfdp.netns import inside, interface_mac
from xpfdp.ports import Burst, Umem, XskPort, generate, handle_signals

ETH_IPV4_UDP_HEADER_BYTES = 14 + 20 + 8


def udp_frame(dst_mac, src_mac, src_ip, dst_ip, sport, dport, size) -> bytes:
    """One Ethernet/IPv4/UDP frame of `size` bytes (without FCS) with valid checksums."""
    payload = bytes((i * 7) & 0xFF for i in range(size - ETH_IPV4_UDP_HEADER_BYTES))
    udp_len = 8 + len(payload)
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    frame = bytearray(
        bytes.fromhex(dst_mac.replace(":", ""))
        + bytes.fromhex(src_mac.replace(":", ""))
        + b"\x08\x00"
        + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0, src, dst)
        + struct.pack("!HHHH", sport, dport, udp_len, 0)
        + payload
    )
    fix_checksums(frame)  # IPv4 header and UDP (a computed 0 is stored as 0xFFFF)
    return bytes(frame)


def templates(args, src_mac: str) -> tuple[np.ndarray, np.ndarray]:
    frames = [
        udp_frame(args.dst_mac, src_mac, args.src_ip, args.dst_ip,
                  args.src_port + f, args.dst_port, args.size)
        for f in range(args.flows)
    ]  # fmt: skip
    rows = np.zeros((len(frames), args.size), dtype=np.uint8)
    for i, f in enumerate(frames):
        rows[i] = np.frombuffer(f, np.uint8)
    return rows, np.full(len(frames), args.size, dtype=np.uint32)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True, help="interface to transmit on")
    p.add_argument("--queue", type=int, default=0)
    p.add_argument("--mode", choices=("auto", "native", "generic"), default="auto")
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--src-mac", help="default: the interface's own MAC")
    p.add_argument("--src-ip", default="10.0.0.1")
    p.add_argument("--dst-ip", default="10.0.0.2")
    p.add_argument("--src-port", type=int, default=10000, help="first flow's UDP source port")
    p.add_argument("--dst-port", type=int, default=9)
    p.add_argument("--size", type=int, default=64, help="frame bytes without FCS (>= 42)")
    p.add_argument("--flows", type=int, default=1, help="distinct UDP source ports")
    p.add_argument("--rate", type=float, default=0, help="packets/s (0: as fast as possible)")
    p.add_argument("--duration", type=float, default=10, help="seconds (0: until ^C)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ring-size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=4096)
    p.add_argument("--netns", help="network namespace of the interface")
    args = p.parse_args(argv)
    if not ETH_IPV4_UDP_HEADER_BYTES <= args.size <= 3584:
        p.error("--size must be in [42, 3584]")
    if not 1 <= args.flows <= 65535 - args.src_port:
        p.error("--flows out of range for --src-port")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    with (
        handle_signals(),
        inside(args.netns),
        Umem(args.frames, tx_frames=args.frames) as umem,
        XskPort(args.iface, args.queue, umem, mode=args.mode, ring_size=args.ring_size,
                fill_target=1) as port,
        contextlib.suppress(KeyboardInterrupt),
    ):  # fmt: skip
        tpl = templates(args, args.src_mac or interface_mac(args.iface))
        print(f"{port}: sending {args.flows} flow(s) of {args.size} B", flush=True)
        burst = Burst(args.batch)
        start = time.monotonic()
        total = 0
        while not args.duration or time.monotonic() - start < args.duration:
            second = (
                1.0 if not args.duration else min(1.0, args.duration - (time.monotonic() - start))
            )
            if second <= 0:
                break
            t0, cpu0 = time.monotonic(), time.process_time()
            sent, refused = generate(port, burst, tpl, second, args.rate)
            dt = time.monotonic() - t0
            cpu = (time.process_time() - cpu0) / dt * 100
            total += sent
            s = port.stats()
            print(
                f"tx {sent / dt / 1e6:7.3f} Mpps {sent * args.size * 8 / dt / 1e9:7.3f} Gb/s "
                f"cpu {cpu:.0f}% total {total} refused {refused} ring_full {s['tx_ring_full']} "
                f"kicks {s['tx_kicks']} "
                f"completions {s['completions']}",
                flush=True,
            )
        port.poll()
        umem.check_frames()
    return 0


if __name__ == "__main__":
    sys.exit(main())
