"""pcap round trips, foreign byte order and µs files, and clear errors on bad input."""

import struct

import numpy as np
import pytest

from xpfdp.pcap import FrameBatch, PcapError, read_pcap, write_pcap


def test_round_trip_preserves_frames_and_timestamps(tmp_path):
    frames = [bytes(range(60)), b"\xff" * 1514, b"\x01" * 14]
    batch = FrameBatch.from_frames(frames, timestamps_ns=[1, 2_000_000_001, 3])
    path = tmp_path / "x.pcap"
    write_pcap(path, batch)
    back = read_pcap(path)
    assert [back.frame(i).tobytes() for i in range(len(back))] == frames
    assert back.timestamps_ns.tolist() == [1, 2_000_000_001, 3]
    assert back.offsets.tolist() == [0, 60, 1574]


def test_reads_big_endian_microsecond_files(tmp_path):
    header = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack(">IIII", 7, 5, 3, 3) + b"abc"
    path = tmp_path / "be.pcap"
    path.write_bytes(header + record)
    batch = read_pcap(path)
    assert batch.frame(0).tobytes() == b"abc"
    assert batch.timestamps_ns[0] == 7_000_005_000


def test_empty_capture(tmp_path):
    path = tmp_path / "empty.pcap"
    write_pcap(path, FrameBatch.from_frames([]))
    batch = read_pcap(path)
    assert len(batch) == 0 and batch.buf.dtype == np.uint8


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x00" * 10, "shorter"),
        (b"\x00" * 24, "magic"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101), "link type"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"\x00" * 8, "header"),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            + struct.pack("<IIII", 0, 0, 100, 100)
            + b"x",
            "past the end",
        ),
    ],
)
def test_bad_files_raise_pcap_error(tmp_path, blob, message):
    path = tmp_path / "bad.pcap"
    path.write_bytes(blob)
    with pytest.raises(PcapError, match=message):
        read_pcap(path)
