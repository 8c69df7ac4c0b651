"""Type stubs for xpfdp._fast.meta (the PKT_META and xdp_desc record dtypes)."""

import numpy as np

PKT_META: np.dtype[np.void]
XDP_DESC: np.dtype[np.void]
PARSE_STATUS_NAMES: tuple[str, ...]
META_FLAG_NAMES: dict[str, int]
