# Shared inline primitives (no module behind them): byte access, hashing, flow keys.
