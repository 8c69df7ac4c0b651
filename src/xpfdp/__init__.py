"""xpfdp: AF_XDP packet processing for Python at close to C speed.

Per-packet work runs in Cython without the GIL (`xpfdp._fast`); Python composes pipelines,
builds topologies and supervises workers. The public API is re-exported here; each concern
keeps its own module (`xpfdp.csum`, `xpfdp.parse`, `xpfdp.ports`, `xpfdp.session`,
`xpfdp.cos`, `xpfdp.route`, `xpfdp.pipeline`, `xpfdp.topology`, `xpfdp.bpf`, `xpfdp.pcap`).

Importing xpfdp does not need root or libxdp at run time beyond the shared libraries the
extensions link; creating an `XskPort` does.
"""

from pathlib import Path

from xpfdp import csum, parse
from xpfdp._fast.meta import XDP_DESC
from xpfdp.cos import FifoQueue, FlowFairQueue, Scheduler, TokenBucket
from xpfdp.errors import XpfdpError
from xpfdp.parse import PKT_META, parse_batch, parse_frame
from xpfdp.pcap import FrameBatch, PcapError, read_pcap, write_pcap
from xpfdp.pipeline import FlowCache, Forwarder, Pipeline, firewall_stages, xsk_workers
from xpfdp.ports import Burst, FrameLeakError, MemPort, Umem, XskPort
from xpfdp.route import RouteTable
from xpfdp.session import (
    DECISION_DTYPE,
    DELTA_DTYPE,
    KEY_DTYPE,
    META_DTYPE,
    SESSION_DTYPE,
    SessionTable,
    keys_from_meta,
    make_decision,
    make_key,
    make_meta,
)

__version__ = "0.1.0"


def get_include() -> list[str]:
    """Directories a Cython extension built outside xpfdp needs on both its Cython include
    path and its C include path to `cimport xpfdp._fast...` (the .pxd files, and the C
    headers they name); see docs/stages.md and examples/custom_stage."""
    package = Path(__file__).resolve().parent
    return [str(package.parent), str(package / "_fast" / "includes")]


__all__ = [
    "DECISION_DTYPE",
    "DELTA_DTYPE",
    "KEY_DTYPE",
    "META_DTYPE",
    "PKT_META",
    "SESSION_DTYPE",
    "XDP_DESC",
    "Burst",
    "FifoQueue",
    "FlowCache",
    "FlowFairQueue",
    "Forwarder",
    "FrameBatch",
    "FrameLeakError",
    "MemPort",
    "PcapError",
    "Pipeline",
    "RouteTable",
    "Scheduler",
    "SessionTable",
    "TokenBucket",
    "Umem",
    "XpfdpError",
    "XskPort",
    "csum",
    "firewall_stages",
    "get_include",
    "keys_from_meta",
    "make_decision",
    "make_key",
    "make_meta",
    "parse",
    "parse_batch",
    "parse_frame",
    "read_pcap",
    "write_pcap",
    "xsk_workers",
]
