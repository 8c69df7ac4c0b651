"""Cython kernels: every per-packet loop of xpfdp lives here and runs without the GIL."""
