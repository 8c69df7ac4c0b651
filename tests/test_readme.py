"""Every ```python block of the README and of the executed docs runs as written (```py
blocks need root and a NIC)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXECUTED = [README, ROOT / "docs" / "stages.md"]


def blocks(path):
    """(first line number of the block's code, code); padding keeps tracebacks on its lines."""
    text = path.read_text()
    return [
        (text.count("\n", 0, m.start(1)), m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    ]


BLOCKS = [(path, line, code) for path in EXECUTED for line, code in blocks(path)]


def test_readme_has_examples():
    assert len(blocks(README)) >= 5


@pytest.mark.parametrize(
    ("path", "first_line", "code"),
    BLOCKS,
    ids=[f"{p.name}:line{n + 1}" for p, n, _ in BLOCKS],
)
def test_readme_block_runs(path, first_line, code):
    exec(compile("\n" * first_line + code, str(path), "exec"), {"__name__": "readme"})
