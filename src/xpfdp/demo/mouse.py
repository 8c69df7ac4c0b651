"""The mouse flow's two ends as their own processes (standard library only).

`traffic.EchoServer` and `traffic.mouse_rtts_us` start this file with `ip netns exec`, so the
latency probe never waits for the GIL of the process that runs the bulk senders and the
sink: under load those threads hash and copy megabytes, and a probe sharing their
interpreter would measure the interpreter's thread switching (up to its 5 ms switch
interval), not the network.

    python mouse.py echo PORT ADDRESS [ADDRESS ...]   # until SIGTERM; then {"peers": [...]}
    python mouse.py probe PORT SERVER DURATION_S INTERVAL_S   # a line per request
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import struct
import sys
import time

REPLY_TIMEOUT_S = 0.5
REQUEST_BYTES = 64


def address_family(address: str) -> int:
    """AF_INET6 for an IPv6 address string, else AF_INET."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def echo(port: int, addresses: list[str]) -> dict:
    """Answer every datagram on (address, port) until SIGTERM; the peers seen."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sel = selectors.DefaultSelector()
    for address in addresses:
        s = socket.socket(address_family(address), socket.SOCK_DGRAM)
        s.bind((address, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, data=s)
    print("ready", flush=True)
    peers: set[str] = set()
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            sock: socket.socket = key.data
            try:
                data, peer = sock.recvfrom(2048)
            except BlockingIOError:
                continue
            peers.add(peer[0])
            sock.sendto(data, peer)
    return {"peers": sorted(peers)}


def probe(port: int, server: str, duration_s: float, interval_s: float) -> None:
    """A 64-byte request every `interval_s` for `duration_s` (or until SIGTERM), each
    waiting up to REPLY_TIMEOUT_S for its reply. Prints a line per request as it ends:
    `rtt <µs> <monotonic s it was sent at>` or `lost`."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with socket.socket(address_family(server), socket.SOCK_DGRAM) as s:
        s.settimeout(REPLY_TIMEOUT_S)
        s.connect((server, port))
        deadline = time.monotonic() + duration_s
        seq = 0
        while time.monotonic() < deadline and not stop:
            seq += 1
            request = struct.pack("!Q", seq) + bytes(REQUEST_BYTES - 8)
            sent_at = time.monotonic()
            t_send = time.perf_counter_ns()
            s.send(request)
            try:
                while True:
                    reply = s.recv(2048)
                    if reply[:8] == request[:8]:
                        break
                print(f"rtt {(time.perf_counter_ns() - t_send) / 1000} {sent_at}", flush=True)
            except (TimeoutError, ConnectionRefusedError):  # no reply, or the server is gone
                print("lost", flush=True)
            time.sleep(interval_s)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "echo":
        print(json.dumps(echo(int(argv[1]), argv[2:])), flush=True)
    elif len(argv) == 5 and argv[0] == "probe":
        probe(int(argv[1]), argv[2], float(argv[3]), float(argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
