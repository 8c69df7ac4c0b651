"""An out-of-tree Cython stage (examples/custom_stage) builds against xpfdp's .pxd files
with its own setup.py and `xpfdp.get_include()`, and runs in a Pipeline like a built-in
stage: bytes rewritten with valid checksums, its own drop reason counted, frames conserved,
its declared needs checked."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.all import ARP, IP, UDP, Ether, IPv6

import xpfdp
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import ParseStage, Pipeline, RouteStage
from xpfdp.ports import MemPort
from xpfdp.route import RouteTable

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_stage"
EF = 46  # the DSCP the stage writes
BLOCKED = 8


@pytest.fixture(scope="module")
def dscp_stage(tmp_path_factory):
    """The example built in a temporary directory with its own setup.py."""
    build = tmp_path_factory.mktemp("custom_stage")
    for name in ("setup.py", "dscp_stage.pyx"):
        shutil.copy(EXAMPLE / name, build / name)
    env = dict(os.environ)
    package_root = str(Path(xpfdp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=build,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    [built] = build.glob("dscp_stage*.so")
    spec = importlib.util.spec_from_file_location("dscp_stage", built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_get_include_names_the_pxd_and_header_directories():
    root, headers = (Path(p) for p in xpfdp.get_include())
    assert (root / "xpfdp" / "_fast" / "pipeline.pxd").is_file()
    assert (root / "xpfdp" / "_fast" / "lib" / "flowkey.pxd").is_file()
    assert (headers / "xpfdp_compat.h").is_file()


def test_the_out_of_tree_stage_rewrites_drops_and_conserves_frames(dscp_stage, umem_factory):
    v4 = IP(src="10.0.0.2", dst="192.0.2.1")
    v6 = IPv6(src="fd00::2", dst="2001:db8::1")
    sent = [
        Ether() / v4.copy() / UDP(sport=1, dport=2),  # tos 0 -> EF
        Ether() / IP(src="10.0.0.2", dst="192.0.2.1", tos=0x03) / UDP(),  # ECN kept
        Ether() / v6.copy() / UDP(),  # traffic class 0 -> EF
        Ether() / IP(src="10.0.0.2", dst="192.0.2.1", tos=BLOCKED << 2) / UDP(),  # dropped
        Ether() / IP(src="10.0.0.2", dst="192.0.2.1", tos=EF << 2) / UDP(),  # already EF
    ]
    expected = [
        Ether() / IP(src="10.0.0.2", dst="192.0.2.1", tos=EF << 2) / UDP(sport=1, dport=2),
        Ether() / IP(src="10.0.0.2", dst="192.0.2.1", tos=(EF << 2) | 0x03) / UDP(),
        Ether() / IPv6(src="fd00::2", dst="2001:db8::1", tc=EF << 2) / UDP(),
        Ether() / IP(src="10.0.0.2", dst="192.0.2.1", tos=EF << 2) / UDP(),
    ]
    u = umem_factory(1024)
    lan = MemPort(u, FrameBatch.from_frames([bytes(f) for f in sent]))
    wan = MemPort(u, None, capture=16)
    routes = RouteTable()
    routes.add("0.0.0.0/0", 0)
    routes.add("::/0", 0)
    stage = dscp_stage.DscpRemark(EF, blocked=BLOCKED)
    pipe = Pipeline(
        [lan, wan], [ParseStage(), stage, RouteStage()], routes=routes, next_hops=[(1, None, None)]
    )
    pipe.run(until_idle=True)
    assert wan.captured() == [bytes(f) for f in expected]  # checksums recomputed by scapy
    assert pipe.stats()["drops"] == {"dscp_blocked": 1}
    assert stage.stats() == {"packets": 5, "drops": 1, "remarked": 3}
    pipe.close(close_ports=True)
    u.check_frames()


def test_the_out_of_tree_stage_leaves_non_ip_alone_and_declares_its_needs(dscp_stage, umem_factory):
    u = umem_factory(256)
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP())
    lan = MemPort(u, FrameBatch.from_frames([arp]))
    wan = MemPort(u, None, capture=4)
    with pytest.raises(ValueError, match="DscpRemark needs 'parsed', provided by ParseStage"):
        Pipeline([lan, wan], [dscp_stage.DscpRemark(EF), ParseStage(allow_non_ip=True)])
    with pytest.raises(ValueError, match="DSCP values"):
        dscp_stage.DscpRemark(64)
    stage = dscp_stage.DscpRemark(EF)

    def to_wan(burst):
        burst.verdict[: burst.n] = 1

    from xpfdp.pipeline import PyStage

    pipe = Pipeline([lan, wan], [ParseStage(allow_non_ip=True), stage, PyStage(to_wan)])
    pipe.run(until_idle=True)
    assert wan.captured() == [arp] and stage.remarked == 0
    pipe.close(close_ports=True)
    u.check_frames()
