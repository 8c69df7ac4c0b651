"""`make fuzz` (scripts/fuzz.py): a short run finds nothing, and a crash is caught, reported
with its signal and kept as a replayable input."""

import subprocess
import sys
from pathlib import Path

FUZZ = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "fuzz.py")]


def run(*argv):
    return subprocess.run([*FUZZ, *argv], capture_output=True, text=True, timeout=120, check=False)


def test_a_short_fuzz_run_finds_no_crash_and_no_leak(tmp_path):
    out = run("--seconds", "4", "--out", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("fuzz: ") and summary.endswith("no crash and no leaked frame")
    assert int(summary.split()[1]) > 0  # cases really ran
    assert not list(tmp_path.glob("crash-*.npz"))


def test_a_crash_is_reported_and_its_input_kept(tmp_path):
    out = run("--seconds", "4", "--out", str(tmp_path), "--self-test")
    assert out.returncode == 1
    assert out.stdout.startswith("fuzz: FAILED (signal SIGSEGV) on case 2 of seed ")
    kept = list(tmp_path.glob("crash-*-2.npz"))
    assert len(kept) == 1 and f"input kept in {kept[0]}" in out.stdout
    replay = run("--replay", str(kept[0]))  # the saved case itself is harmless
    assert replay.returncode == 0 and replay.stdout.strip() == f"{kept[0]}: no crash"
