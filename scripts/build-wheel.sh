#!/bin/sh
# Build the xpfdp wheel and vendor the shared libraries its extensions link (libxdp, libbpf,
# libelf and what they need) with `auditwheel repair`, so it installs with pip on a machine
# without the -dev packages or a compiler. Usage: scripts/build-wheel.sh PYTHON OUTDIR
# The compile step is incremental (setuptools reuses build/ when the C sources are older).
set -eu
PY=$1
OUT=$2
cd "$(dirname "$0")/.."
RAW=build/wheel-raw
rm -rf "$RAW"
mkdir -p "$RAW" "$OUT"
"$PY" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w "$RAW" .
rm -f "$OUT"/xpfdp-*.whl
# The most widely installable manylinux policy this build satisfies (glibc of the build host).
"$PY" -m auditwheel -q repair --strip -w "$OUT" "$RAW"/xpfdp-*.whl
ls "$OUT"/xpfdp-*.whl
