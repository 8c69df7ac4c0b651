"""Clamp TCP MSS, SNAT and decrement TTL over a pcap with the xpfdp batch kernels.

Without --input it first writes a sample capture (TCP SYNs with several MSS values over
IPv4 and IPv6, with and without VLAN tags, plus ACKs, UDP, ICMP echo, a TTL-1 packet, ARP
and a truncated frame). The whole capture is processed as one batch: parse_batch, then
clamp_mss_batch, rewrite_nat_batch and decrement_ttl_batch, with no Python work per
packet. Frames whose TTL expires are dropped. The result is written as a pcap, read back,
and every checksum is verified by a full recomputation; the exit status is 1 if any fails.

    python examples/clamp_pcap.py --out-dir demo-out [--input in.pcap] [--mss 1360]
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from xpfdp import csum, parse
from xpfdp.pcap import FrameBatch, read_pcap, write_pcap

ETH_ADDRS = bytes.fromhex("020000000002") + bytes.fromhex("020000000001")
V4_HOSTS = (ipaddress.ip_address("10.1.0.10").packed, ipaddress.ip_address("192.0.2.80").packed)
V6_HOSTS = (ipaddress.ip_address("fd00::10").packed, ipaddress.ip_address("2001:db8::80").packed)


# ---- sample traffic (checksums are filled in by fix_checksums_batch) --------------------------


def ethernet(ethertype: int, l3: bytes, vlan_id: int | None) -> bytes:
    tag = b"" if vlan_id is None else struct.pack(">HH", 0x8100, vlan_id)
    return ETH_ADDRS + tag + struct.pack(">H", ethertype) + l3


def ip_packet(family: int, proto: int, l4: bytes, vlan_id: int | None, ttl: int = 64) -> bytes:
    if family == 4:
        src, dst = V4_HOSTS
        head = struct.pack(
            ">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, ttl, proto, 0, src, dst
        )
        return ethernet(0x0800, head + l4, vlan_id)
    src, dst = V6_HOSTS
    head = struct.pack(">IHBB16s16s", 6 << 28, len(l4), proto, ttl, src, dst)
    return ethernet(0x86DD, head + l4, vlan_id)


def tcp(flags: int, options: bytes = b"", payload: bytes = b"") -> bytes:
    options += bytes(-len(options) % 4)
    doff = (20 + len(options)) // 4
    head = struct.pack(">HHIIBBHHH", 40000, 443, 1000, 0, doff << 4, flags, 64240, 0, 0)
    return head + options + payload


def mss_option(mss: int) -> bytes:
    return b"\x02\x04" + struct.pack(">H", mss)


def sample_frames() -> list[bytes]:
    """A mix of traffic exercising every decision the demo reports."""
    frames = []
    timestamps = b"\x01\x01\x08\x0a" + bytes(8)
    for family in (4, 6):
        for vlan_id in (None, 100):
            for mss in (536, 1200, 1360, 1440, 1460, 8960):
                frames.append(
                    ip_packet(family, 6, tcp(0x02, mss_option(mss) + b"\x04\x02"), vlan_id)
                )
            # MSS after NOP NOP timestamps; a single NOP puts the value at an odd offset.
            frames.append(ip_packet(family, 6, tcp(0x02, timestamps + mss_option(1460)), vlan_id))
            frames.append(ip_packet(family, 6, tcp(0x12, b"\x01" + mss_option(1460)), vlan_id))
            frames.append(ip_packet(family, 6, tcp(0x10, payload=bytes(100)), vlan_id))
            frames.append(
                ip_packet(family, 17, struct.pack(">HHHH", 5353, 53, 12, 0) + b"abcd", vlan_id)
            )
            echo = 8 if family == 4 else 128
            frames.append(
                ip_packet(
                    family,
                    1 if family == 4 else 58,
                    struct.pack(">BBHHH", echo, 0, 0, 7, 1),
                    vlan_id,
                )
            )
            frames.append(ip_packet(family, 6, tcp(0x02, mss_option(1460)), vlan_id, ttl=1))
    frames.append(ETH_ADDRS + b"\x08\x06" + bytes(28))  # ARP: not IP, passed through
    frames.append(ip_packet(4, 6, tcp(0x02, mss_option(1460)), None)[:40])  # truncated
    return frames


def write_sample(path: Path) -> None:
    batch = FrameBatch.from_frames(sample_frames())
    meta = np.zeros(len(batch), dtype=parse.PKT_META)
    parse.parse_batch(batch.buf, batch.offsets, batch.lengths, meta)
    csum.fix_checksums_batch(batch.buf, batch.offsets, batch.lengths, meta)
    # One IPv4 UDP datagram keeps "no checksum" (0), which NAT must leave at 0.
    first_udp = int(np.flatnonzero((meta["protocol"] == 17) & (meta["ip_version"] == 4))[0])
    at = int(batch.offsets[first_udp]) + int(meta["l4_off"][first_udp]) + 6
    batch.buf[at : at + 2] = 0
    write_pcap(path, batch)


# ---- the processing job -----------------------------------------------------------------------


def process(batch: FrameBatch, mss: int, snat_v4: str, snat_v6: str) -> tuple[FrameBatch, dict]:
    """Parse, clamp, SNAT and decrement TTL in place; returns the surviving frames and stats."""
    args = (batch.buf, batch.offsets, batch.lengths)
    meta = np.zeros(len(batch), dtype=parse.PKT_META)
    status_counts = parse.parse_batch(*args, meta)

    mss_before = csum.mss_batch(*args, meta)
    clamp = csum.clamp_mss_batch(*args, meta, mss)
    mss_after = csum.mss_batch(*args, meta)
    nat4 = csum.rewrite_nat_batch(*args, meta, src=snat_v4)
    nat6 = csum.rewrite_nat_batch(*args, meta, src=snat_v6)
    ttl = csum.decrement_ttl_batch(*args, meta)

    keep = ttl != csum.TTL_EXPIRED
    out = FrameBatch(batch.buf, batch.offsets[keep], batch.lengths[keep], batch.timestamps_ns[keep])
    syn = mss_before >= 0
    stats = {
        "status": {parse.PARSE_STATUS_NAMES[i]: int(n) for i, n in enumerate(status_counts) if n},
        "syns_with_mss": int(syn.sum()),
        "clamped": int((clamp == csum.DONE).sum()),
        "mss_histogram": Counter(
            (int(b), int(a)) for b, a in zip(mss_before[syn], mss_after[syn], strict=True)
        ),
        "nat_rewritten": int(((nat4 == csum.DONE) | (nat6 == csum.DONE)).sum()),
        "ttl_expired": int((~keep).sum()),
    }
    return out, stats


def verify(path: Path) -> tuple[int, int]:
    """Read a capture back and verify every IP frame by full recomputation: (checked, bad)."""
    batch = read_pcap(path)
    meta = np.zeros(len(batch), dtype=parse.PKT_META)
    parse.parse_batch(batch.buf, batch.offsets, batch.lengths, meta)
    ip = (meta["status"] == parse.OK) | (meta["status"] == parse.NONFIRST_FRAG)
    ok = csum.checksums_ok_batch(batch.buf, batch.offsets, batch.lengths, meta)
    return int(ip.sum()), int((ip & ~ok).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("demo-out"), help="where pcaps go")
    parser.add_argument("--input", type=Path, help="pcap to process (default: generate one)")
    parser.add_argument("--mss", type=int, default=1360, help="MSS clamp value (default 1360)")
    parser.add_argument("--snat-v4", default="198.51.100.7", help="IPv4 SNAT source address")
    parser.add_argument("--snat-v6", default="2001:db8:ffff::7", help="IPv6 SNAT source address")
    args = parser.parse_args(argv)
    if not 0 < args.mss <= 0xFFFF:
        parser.error("--mss must be in 1..65535")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    source = args.input
    if source is None:
        source = args.out_dir / "input.pcap"
        write_sample(source)
    batch = read_pcap(source)
    out, stats = process(batch, args.mss, args.snat_v4, args.snat_v6)
    result = args.out_dir / "output.pcap"
    write_pcap(result, out)
    checked, bad = verify(result)

    print(f"input   {source}: {len(batch)} frames")
    print("parse   " + ", ".join(f"{name} {n}" for name, n in stats["status"].items()))
    print(f"mss     {stats['clamped']} of {stats['syns_with_mss']} SYNs clamped to {args.mss}")
    for (before, after), n in sorted(stats["mss_histogram"].items()):
        mark = "->" if before != after else "=="
        print(f"          {before:5d} {mark} {after:5d}  x{n}")
    print(f"nat     {stats['nat_rewritten']} frames SNATed ({args.snat_v4}, {args.snat_v6})")
    print(f"ttl     {stats['ttl_expired']} frames expired and dropped")
    print(f"output  {result}: {len(out)} frames")
    print(f"verify  {checked} IP frames re-parsed and fully recomputed: {bad} checksum errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
