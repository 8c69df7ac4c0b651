"""Every ```python block of the README runs as written (```py blocks need root and a NIC)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()
# (first line number of the block's code, code); padding keeps tracebacks on README lines.
BLOCKS = [
    (TEXT.count("\n", 0, m.start(1)), m.group(1))
    for m in re.finditer(r"^```python\n(.*?)^```", TEXT, flags=re.S | re.M)
]


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize(("first_line", "code"), BLOCKS, ids=[f"line{n + 1}" for n, _ in BLOCKS])
def test_readme_block_runs(first_line, code):
    exec(compile("\n" * first_line + code, str(README), "exec"), {"__name__": "readme"})
