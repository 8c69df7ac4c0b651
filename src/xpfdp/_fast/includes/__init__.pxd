# C declarations only (no module behind them): xpfdp_compat.h and the system headers.
