"""The demo job examples/clamp_pcap.py: its output verifies by the independent reference
oracle, its report matches the capture, and a bad input checksum makes it exit 1."""

import importlib.util
from pathlib import Path

import csum_reference as ref

from xpfdp.pcap import read_pcap, write_pcap

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "clamp_pcap.py"
spec = importlib.util.spec_from_file_location("clamp_pcap", EXAMPLE)
clamp_pcap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clamp_pcap)


def test_demo_output_is_clamped_natted_and_valid(tmp_path, capsys):
    assert clamp_pcap.main(["--out-dir", str(tmp_path), "--mss", "1300"]) == 0
    report = capsys.readouterr().out
    assert "0 checksum errors" in report
    before, after = read_pcap(tmp_path / "input.pcap"), read_pcap(tmp_path / "output.pcap")
    expired = [i for i in range(len(before)) if ref.parse(before.frame(i).tobytes())["ttl"] == 1]
    assert len(after) == len(before) - len(expired)
    assert f"{len(expired)} frames expired" in report
    for i in range(len(after)):
        frame = after.frame(i).tobytes()
        m = ref.parse(frame)
        if m["status"] != "ok":
            continue
        assert ref.checksums_ok(frame)
        assert m["src"][:4] == bytes([198, 51, 100, 7]) or m["src"][:2] == b"\x20\x01"
        at = ref.mss_option_at(frame)
        if at is not None:
            assert int.from_bytes(frame[at : at + 2], "big") <= 1300


def test_demo_exits_1_on_a_bad_checksum(tmp_path, capsys):
    clamp_pcap.main(["--out-dir", str(tmp_path)])
    batch = read_pcap(tmp_path / "input.pcap")
    start = int(batch.offsets[0])
    batch.buf[start + 14 + 20 + 16] ^= 0xFF  # corrupt the first SYN's TCP checksum
    write_pcap(tmp_path / "bad.pcap", batch)
    assert clamp_pcap.main(["--out-dir", str(tmp_path), "--input", str(tmp_path / "bad.pcap")]) == 1
    assert "1 checksum errors" in capsys.readouterr().out
