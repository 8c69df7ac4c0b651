"""Independent reassembly for fragment tests: rebuild the whole datagram from its
fragments (as seen on the wire) so checksums can be checked by full recomputation."""

from __future__ import annotations

import struct

from csum_reference import checksum


def reassemble(frames: list[bytes]) -> bytes:
    """One Ethernet frame holding the datagram the fragments in `frames` (any order, one
    datagram, IPv4 or IPv6 with the Fragment header right after the fixed header) carry.
    Raises AssertionError on a gap, an overlap or fragments of different datagrams."""
    l2 = frames[0][:14]
    parts = []
    for f in frames:
        ip = f[14:]
        if ip[0] >> 4 == 4:
            ihl = (ip[0] & 15) * 4
            tot, ident, frag = struct.unpack("!HHH", ip[2:8])
            key = (ip[12:20], ip[9], ident)
            parts.append((key, (frag & 0x1FFF) * 8, bool(frag & 0x2000), ip[:ihl], ip[ihl:tot]))
        else:
            assert ip[6] == 44, "the Fragment header must follow the fixed header"
            plen = struct.unpack("!H", ip[4:6])[0]
            nh, frag, ident = ip[40], struct.unpack("!H", ip[42:44])[0], ip[44:48]
            key = (ip[8:40], nh, ident)
            parts.append((key, frag & 0xFFF8, bool(frag & 1), ip[:40], ip[48 : 40 + plen]))
    assert len({p[0] for p in parts}) == 1, "fragments of different datagrams"
    parts.sort(key=lambda p: p[1])
    data = b""
    for _key, off, _more, _hdr, payload in parts:
        assert off == len(data), f"gap or overlap at {off} (have {len(data)})"
        data += payload
    assert not parts[-1][2] and parts[0][1] == 0, "first or last fragment missing"
    hdr = bytearray(parts[0][3])
    if hdr[0] >> 4 == 4:
        struct.pack_into("!HHH", hdr, 2, len(hdr) + len(data), struct.unpack("!H", hdr[4:6])[0], 0)
        struct.pack_into("!H", hdr, 10, 0)
        struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    else:
        hdr[6] = parts[0][0][1]
        struct.pack_into("!H", hdr, 4, len(data))
    return l2 + bytes(hdr) + data
