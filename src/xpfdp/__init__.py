"""xpfdp: AF_XDP packet processing for Python at close to C speed.

Per-packet work runs in Cython without the GIL (`xpfdp._fast`); Python composes pipelines,
builds topologies and supervises workers. The public API is re-exported here.
"""

from xpfdp.pcap import FrameBatch, PcapError, read_pcap, write_pcap

__version__ = "0.1.0"

__all__ = ["FrameBatch", "PcapError", "read_pcap", "write_pcap"]
