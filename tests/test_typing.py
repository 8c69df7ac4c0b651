"""The type stubs match the built extensions, and Cython classes show their real signatures.

`mypy.stubtest` imports every module of the package and compares each public name with its
stub (src/xpfdp/_fast/*.pyi) or annotated source, so an API change without a stub update
fails here. Class signatures come from the `Name(...)\\n--\\n\\n` line of each cdef class
docstring; `test_class_signatures_match_source` ties that line to the real `__init__` /
`__cinit__` in the .pyx source, and stubtest ties the stubs to that line.
"""

import importlib
import inspect
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import pytest

import xpfdp

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(xpfdp.__file__).resolve().parent.parent
FAST = SRC / "xpfdp" / "_fast"
ALLOWLIST = Path(__file__).resolve().parent / "stubtest_allowlist.txt"
EXTENSIONS = (
    "meta",
    "csum",
    "parse",
    "xsk",
    "loops",
    "session",
    "cos",
    "route",
    "pipeline",
    "verdict",
    "frag",
    "icmp",
)


def _mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_stubtest_passes():
    result = _mypy(
        "mypy.stubtest",
        "xpfdp",
        "--allowlist",
        str(ALLOWLIST),
        "--mypy-config-file",
        str(ROOT / "pyproject.toml"),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_extension_has_a_stub_and_the_package_is_typed():
    assert (SRC / "xpfdp" / "py.typed").exists()
    for name in EXTENSIONS:
        assert (FAST / f"{name}.pyi").exists(), name
    assert sorted(p.stem for p in FAST.glob("*.pyx")) == sorted(EXTENSIONS)


def test_mypy_sees_real_types_in_a_user_script(tmp_path):
    """A user's script: correct calls pass, a positional keyword-only argument and a wrong
    type are reported (they would be silently Any without stubs)."""
    script = tmp_path / "user.py"
    script.write_text(
        "from xpfdp.ports import Burst, MemPort, Umem, XskPort\n"
        "umem = Umem(64)\n"
        "port = MemPort(umem, None, capture=4)\n"
        "n: int = port.rx_burst(Burst(64))\n"
        "reveal_type(umem.buf)\n"
        'XskPort("eth0", 0, umem, "native")\n'
        'Umem("many")\n'
    )
    result = _mypy("mypy", "--no-incremental", str(script), cwd=tmp_path)
    out = result.stdout
    assert "numpy.ndarray" in out and "numpy.unsignedinteger" in out, out
    assert 'user.py:6: error: Too many positional arguments for "XskPort"' in out, out
    assert 'user.py:7: error: Argument 1 to "Umem" has incompatible type "str"' in out, out
    assert out.count("error:") == 2, out


def _source_classes():
    """(module name, class name, parameter text of __init__, else of __cinit__, else None)
    per cdef class."""
    found = []
    for module in EXTENSIONS:
        files = [FAST / f"{module}.pyx"]
        text = files[0].read_text()
        for inc in re.findall(r'^include "([^"]+)"', text, flags=re.M):
            files.append(FAST / inc)
        for path in files:
            source = path.read_text()
            starts = [m for m in re.finditer(r"^cdef class (\w+)", source, flags=re.M)]
            for i, m in enumerate(starts):
                body = source[m.end() : starts[i + 1].start() if i + 1 < len(starts) else None]
                defs = dict(
                    re.findall(r"\n    def (__init__|__cinit__)\(self,?(.*?)\):", body, re.S)
                )
                params = defs.get("__init__", defs.get("__cinit__"))
                found.append((module, m.group(1), params))
    return found


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in [*parts, cur] if p.strip()]


def _python_params(params: str, namespace: dict) -> list[tuple]:
    """(name, kind, default) per parameter of a Cython def, C types dropped."""
    out, kind = [], inspect.Parameter.POSITIONAL_OR_KEYWORD
    for part in _split_top(params):
        if part == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        if part.startswith("**"):
            out.append((part[2:], inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty))
            continue
        if part.startswith("*"):
            out.append((part[1:], inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.empty))
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        decl, _, default = part.partition("=")
        name = decl.replace("not None", "").split()[-1]
        value = eval(default, namespace) if default else inspect.Parameter.empty
        out.append((name, kind, value))
    return out


CLASSES = _source_classes()


@pytest.mark.parametrize(("module", "name", "params"), CLASSES, ids=[c[1] for c in CLASSES])
def test_class_signatures_match_source(module, name, params):
    mod = importlib.import_module(f"xpfdp._fast.{module}")
    cls = getattr(mod, name)
    if params is None:  # no constructor of its own (an internal holder): takes no arguments
        cls()
        return
    expected = _python_params(params, vars(mod))
    if any(k == inspect.Parameter.VAR_POSITIONAL for _, k, _ in expected):
        with pytest.raises(TypeError, match="abstract"):  # the abstract bases refuse any call
            cls()
        return
    sig = inspect.signature(cls)  # raises ValueError without a text signature
    got = [(p.name, p.kind, p.default) for p in sig.parameters.values()]
    assert got == expected, f"{name}: docstring says {sig}, source says ({params.strip()})"
    if sig.parameters:
        shown = pydoc.plain(pydoc.render_doc(cls))
        assert f"{name}{sig}" in shown, shown[:300]
