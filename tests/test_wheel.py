"""The built wheel installs into a fresh venv outside the source tree and works there.

`make wheel` builds it (scripts/build-wheel.sh: pip wheel, then auditwheel repair, which
copies libxdp, libbpf, libelf and their dependencies into the wheel). This test installs it
with pip into a new virtual environment in a temporary directory, checks what the wheel
holds, that the extensions load the vendored libraries rather than the system's, and runs
the README's API tour and a MemPort forwarder with the installed package. Marked slow: plain
`pytest` skips it, `make test` runs it after `make wheel`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
pytestmark = pytest.mark.slow

FORWARDER = """
import time
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
import xpfdp
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import Forwarder, Pipeline, ParseStage, RouteStage, CountStage
from xpfdp.ports import MemPort, Umem
from xpfdp.route import RouteTable

assert "site-packages" in xpfdp.__file__, xpfdp.__file__
umem = Umem(2048)
frame = bytes(Ether() / IP(dst="192.0.2.1") / UDP())
lan = MemPort(umem, FrameBatch.from_frames([frame] * 32), loop=True)
wan = MemPort(umem, None)
routes = RouteTable()
routes.add("0.0.0.0/0", 0)
pipe = Pipeline([lan, wan], [ParseStage(), RouteStage(), CountStage()], routes=routes,
                next_hops=[(1, None, None)], names=["lan", "wan"])
with Forwarder([pipe], handle_signals=False) as fw:
    fw.start()
    deadline = time.monotonic() + 10
    while fw.stats()["total"]["tx_packets"] < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    fw.stop()
    assert fw.stats()["total"]["tx_packets"] >= 1000, fw.stats()["total"]
umem.check_frames()
print("forwarded", fw.stats()["total"]["tx_packets"])
"""


def _run(*cmd, cwd: Path, timeout: int = 300) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )  # fmt: skip
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The repaired wheel `make wheel` left in dist/ (built here if it is missing)."""
    found = sorted(DIST.glob("xpfdp-*manylinux*.whl"))
    if not found:
        _run(ROOT / "scripts" / "build-wheel.sh", sys.executable, DIST, cwd=ROOT, timeout=3000)
        found = sorted(DIST.glob("xpfdp-*manylinux*.whl"))
    assert len(found) == 1, found
    return found[0]


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert re.search(r"-manylinux_2_\d+_x86_64\.whl$", wheel.name), wheel.name
    assert not [n for n in names if n.endswith(".c")], "generated C in the wheel"
    for lib in ("libxdp", "libbpf", "libelf"):
        assert any(re.match(rf"xpfdp\.libs/{lib}[-.]", n) for n in names), lib
    for required in ("xpfdp/py.typed", "xpfdp/_fast/xsk.pyi", "xpfdp/_fast/pipeline.pxd",
                     "xpfdp/bpf/xsk_redirect.o"):  # fmt: skip
        assert required in names, required
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_installs_in_a_fresh_venv_and_runs_the_readme(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    py = venv / "bin" / "python"
    # The metrics extra (the README's tour renders Prometheus text) and scapy (it builds
    # packets with it); numpy, cffi and pyroute2 come as the wheel's own dependencies.
    pip = (py, "-m", "pip", "install", "-q", "--disable-pip-version-check")
    _run(*pip, f"{wheel}[metrics]", "scapy", cwd=tmp_path)

    # Every extension is stripped and loads the vendored libraries, not /usr/lib ones.
    site = Path(_run(py, "-c", "import xpfdp, os; print(os.path.dirname(xpfdp.__file__))",
                     cwd=tmp_path).strip())  # fmt: skip
    assert site.is_relative_to(venv), site
    modules = sorted(site.glob("_fast/*.so")) + sorted(site.glob("_libbpf_cffi*.so"))
    assert len(modules) >= 9, modules
    for module in modules:
        sections = _run("readelf", "-S", "-W", module, cwd=tmp_path)
        assert ".symtab" not in sections and ".debug_info" not in sections, module.name
        deps = _run("ldd", module, cwd=tmp_path)
        for lib in re.findall(r"^\s*(lib(?:xdp|bpf|elf)[^ ]*) => (\S+)", deps, flags=re.M):
            assert Path(lib[1]).is_relative_to(venv), (module.name, lib)

    # The README's API tour, as a user would paste it, from a directory outside the tree.
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 5
    for i, code in enumerate(blocks):
        script = tmp_path / f"readme_{i}.py"
        script.write_text(code)
        _run(py, script, cwd=tmp_path)
    script = tmp_path / "forwarder.py"
    script.write_text(FORWARDER)
    assert _run(py, script, cwd=tmp_path).startswith("forwarded ")
