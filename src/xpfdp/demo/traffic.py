"""Real traffic with kernel sockets in the demo's client and server namespaces.

* `BulkSink` (server): accepts TCP bulk flows, records per flow the bytes per time bin,
  a SHA-256 of the payload, the peer address it saw (the SNAT address) and the MSS the
  server's TCP settled on (`TCP_MAXSEG` on the accepted socket).
* `bulk_send` (client): one TCP flow sending a deterministic pseudo-random stream for a
  duration, hashing what it sent.
* `EchoServer` / `mouse_rtts_us` (server/client): a small UDP request/response flow on the
  DNS port whose round-trip times measure latency under load; both ends run as processes
  of their own (mouse.py), so the probe never waits for this process's GIL.
* `ping`: ICMP/ICMPv6 echo through a datagram ("ping") socket.

Sockets are created inside a namespace and keep it; the work runs in threads (socket calls
and SHA-256 release the GIL).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from xpfdp.demo.mouse import address_family
from xpfdp.topology import Namespace

BIN_S = 0.1  # time resolution of per-flow throughput samples
CHUNK_BYTES = 64 * 1024
BULK_PORT = 5001
MOUSE_PORT = 53  # the DNS port: the firewall's priority class carries it
_HELLO = struct.Struct("!I")  # first 4 bytes of a bulk flow: its flow id


@dataclass
class FlowRecord:
    """What the server saw of one TCP bulk flow."""

    flow_id: int
    peer: str
    mss_bytes: int
    started_s: float
    bytes_received: int = 0
    sha256: str = ""
    bins: list[int] = field(default_factory=list)  # bytes received per BIN_S since t0

    def add(self, t_s: float, nbytes: int) -> None:
        i = int(t_s / BIN_S)
        if i >= len(self.bins):
            self.bins.extend([0] * (i + 1 - len(self.bins)))
        self.bins[i] += nbytes
        self.bytes_received += nbytes


class BulkSink:
    """TCP sink in `ns` on `BULK_PORT` for IPv4 and IPv6; `flows` maps flow id to record.

    All times are seconds since `t0` (a `time.monotonic()` value shared with the client).
    """

    def __init__(self, ns: Namespace, t0: float, addresses: tuple[str, ...]) -> None:
        self.t0 = t0
        self.flows: dict[int, FlowRecord] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listeners: list[socket.socket] = []
        with ns.inside():
            for address in addresses:
                s = socket.socket(address_family(address), socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, BULK_PORT))
                s.listen(64)
                s.settimeout(0.2)
                self._listeners.append(s)
        self._stop = threading.Event()
        for s in self._listeners:
            self._spawn(self._accept_loop, s)

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._receive, conn, peer[0])

    def _receive(self, conn: socket.socket, peer: str) -> None:
        conn.settimeout(30)
        with conn:
            hello = b""
            while len(hello) < _HELLO.size:
                part = conn.recv(_HELLO.size - len(hello))
                if not part:
                    return
                hello += part
            (flow_id,) = _HELLO.unpack(hello)
            mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
            record = FlowRecord(flow_id, peer, mss, time.monotonic() - self.t0)
            with self._lock:
                self.flows[flow_id] = record
            digest = hashlib.sha256()
            buf = bytearray(256 * 1024)
            view = memoryview(buf)
            while True:
                try:
                    n = conn.recv_into(buf)
                except OSError:
                    break
                if n == 0:
                    break
                digest.update(view[:n])
                record.add(time.monotonic() - self.t0, n)
            record.sha256 = digest.hexdigest()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting and wait up to `timeout_s` in all for the receivers to finish
        (an interrupted run does not wait for every flow's own timeout)."""
        self._stop.set()
        for s in self._listeners:
            s.close()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


@dataclass
class SendResult:
    """What the client sent on one TCP bulk flow."""

    flow_id: int
    bytes_sent: int = 0
    sha256: str = ""
    error: str = ""


def _pattern(flow_id: int) -> bytes:
    """A deterministic pseudo-random block per flow (so flows are not byte-identical)."""
    seed = hashlib.sha256(f"xpfdp-flow-{flow_id}".encode()).digest()
    return hashlib.shake_256(seed).digest(CHUNK_BYTES)


def bulk_send(
    ns: Namespace,
    server: str,
    flow_id: int,
    duration_s: float | None = None,
    total_bytes: int | None = None,
    result: SendResult | None = None,
    port: int = BULK_PORT,
) -> SendResult:
    """Send one TCP flow from `ns` to `server`:`port` until `duration_s` passes or
    `total_bytes` are sent, then close the write side and wait for the server to finish
    reading."""
    result = result or SendResult(flow_id)
    block = _pattern(flow_id)
    digest = hashlib.sha256()
    try:
        with ns.inside():
            s = socket.socket(address_family(server), socket.SOCK_STREAM)
        with s:
            s.settimeout(10)
            s.connect((server, port))
            s.sendall(_HELLO.pack(flow_id))
            deadline = time.monotonic() + duration_s if duration_s else None
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                chunk = block
                if total_bytes is not None:
                    left = total_bytes - result.bytes_sent
                    if left <= 0:
                        break
                    chunk = block[:left]
                s.sendall(chunk)
                digest.update(chunk)
                result.bytes_sent += len(chunk)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):  # the server closes after reading everything
                pass
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.sha256 = digest.hexdigest()
    return result


def bulk_send_each(
    ns: Namespace, servers: tuple[str, ...], total_bytes: int, timeout_s: float = 60.0
) -> list[SendResult]:
    """One TCP flow of `total_bytes` from `ns` to each of `servers` at once (flow ids 0, 1,
    ...); returns their results once all have finished (or `timeout_s` passed)."""
    results = [SendResult(i) for i in range(len(servers))]
    senders = [
        threading.Thread(target=bulk_send, args=(ns, server, i, None, total_bytes, results[i]))
        for i, server in enumerate(servers)
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join(timeout=timeout_s)
    return results


MOUSE_SCRIPT = Path(__file__).with_name("mouse.py")


def _mouse_process(ns: Namespace, *args: str) -> tuple[subprocess.Popen, IO[str]]:
    """mouse.py in its own process inside `ns` (no GIL shared with the bulk threads), and
    its stdout."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, sys.executable, str(MOUSE_SCRIPT), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.stdout is None:
        raise RuntimeError("no pipe to the mouse process")
    return proc, proc.stdout


class EchoServer:
    """UDP echo on `MOUSE_PORT` for each address in `ns` (the mouse flow's far end), in its
    own process; `peers` (the addresses it answered) is filled in by close()."""

    def __init__(self, ns: Namespace, addresses: tuple[str, ...]) -> None:
        self.peers: set[str] = set()
        self._proc, out = _mouse_process(ns, "echo", str(MOUSE_PORT), *addresses)
        if out.readline().strip() != "ready":
            self._proc.kill()
            self._proc.wait()
            raise RuntimeError(f"the echo server did not start in {ns.name}")

    def close(self) -> None:
        if self._proc.returncode is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        out, _ = self._proc.communicate(timeout=10)
        if self._proc.returncode != 0:
            raise RuntimeError(f"the echo server failed with exit code {self._proc.returncode}")
        self.peers = set(json.loads(out.strip().splitlines()[-1])["peers"])


@dataclass
class MouseResult:
    """Round-trip times of the request/response flow (with the `time.monotonic()` each
    answered request was sent at); `lost` requests got no reply."""

    rtts_us: list[float] = field(default_factory=list)
    sent_at_s: list[float] = field(default_factory=list)
    lost: int = 0


def mouse_rtts_us(
    ns: Namespace,
    server: str,
    duration_s: float,
    interval_s: float = 0.005,
    stop: threading.Event | None = None,
    result: MouseResult | None = None,
) -> MouseResult:
    """Send 64-byte UDP requests from `ns` every `interval_s` for `duration_s` (or until
    `stop` is set), waiting for each reply (timeout 0.5 s); record the RTTs in µs. The
    requests are sent by a process of their own (mouse.py); results arrive as they happen."""
    result = result or MouseResult()
    proc, out = _mouse_process(
        ns, "probe", str(MOUSE_PORT), server, str(duration_s), str(interval_s)
    )
    try:
        for line in out:  # a line per request, as it ends
            word = line.split()
            if word[0] == "rtt":
                result.rtts_us.append(float(word[1]))
                result.sent_at_s.append(float(word[2]))
            else:
                result.lost += 1
            if stop is not None and stop.is_set() and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"mouse probe failed with exit code {proc.returncode}")
    return result


def ping(ns: Namespace, address: str, count: int = 3, timeout_s: float = 1.0) -> int:
    """Send `count` ICMP (or ICMPv6) echo requests from `ns`; return the replies received.

    Uses a datagram ICMP socket: the kernel fills in the identifier and checksums, so a
    reply arrives only if the path translated and checksummed it correctly both ways.
    """
    v6 = ":" in address
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    echo_request, echo_reply = (128, 129) if v6 else (8, 0)
    with ns.inside():
        s = socket.socket(family, socket.SOCK_DGRAM, proto)
    replies = 0
    with s:
        s.settimeout(timeout_s)
        s.connect((address, 0))
        payload = os.urandom(32)
        for seq in range(1, count + 1):
            s.send(struct.pack("!BBHHH", echo_request, 0, 0, 0, seq) + payload)
            try:
                while True:
                    reply = s.recv(2048)
                    rtype, _, _, _, rseq = struct.unpack("!BBHHH", reply[:8])
                    if rtype == echo_reply and rseq == seq and reply[8:] == payload:
                        replies += 1
                        break
            except TimeoutError:
                pass
    return replies


def checksum_errors(ns: Namespace) -> dict[str, int]:
    """The kernel's receive checksum error counters in `ns` (TCP, UDP, ICMP; v4 and v6)."""
    counters: dict[str, int] = {}
    snmp = ns.run("cat", "/proc/net/snmp").stdout.splitlines()
    for head, values in zip(snmp[::2], snmp[1::2], strict=False):
        proto, names = head.split(":", 1)
        _, nums = values.split(":", 1)
        for name, value in zip(names.split(), nums.split(), strict=True):
            if name == "InCsumErrors":
                counters[proto] = int(value)
    for line in ns.run("cat", "/proc/net/snmp6").stdout.splitlines():
        name, _, value = line.partition(" ")
        if name.endswith("InCsumErrors"):
            counters[name.removesuffix("InCsumErrors")] = int(value.strip())
    return counters
