"""Type stubs for xpfdp._fast.loops (the examples' nogil port loops)."""

import numpy as np
from numpy.typing import NDArray

from xpfdp._fast.xsk import Burst, Port

def forward(
    rx_port: Port,
    tx_port: Port,
    burst: Burst,
    seconds: float,
    swap_macs: bool = True,
    max_packets: int = 0,
) -> tuple[int, int, int]: ...
def bridge(a: Port, b: Port, burst: Burst, seconds: float) -> tuple[int, int, int]: ...
def drain(port: Port, burst: Burst, seconds: float) -> tuple[int, int]: ...
def generate(
    port: Port,
    burst: Burst,
    templates: tuple[NDArray[np.uint8], NDArray[np.uint32]],
    seconds: float,
    rate_pps: float = 0.0,
    max_packets: int = 0,
) -> tuple[int, int]: ...
