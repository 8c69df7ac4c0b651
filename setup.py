"""Build xpfdp: Cython extensions in src/xpfdp/_fast, the libbpf cffi module, bpf/*.bpf.c objects.

Every `_fast/*.pyx` becomes an extension compiled with -O3. Extensions listed in
SYSTEM_LIBS also link the named pkg-config libraries; a missing one stops the build with a
single line naming the Debian package that provides it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
FAST_DIR = ROOT / "src" / "xpfdp" / "_fast"
BPF_SRC_DIR = ROOT / "bpf"
BPF_OUT_DIR = ROOT / "src" / "xpfdp" / "bpf"

# pkg-config name -> Debian package that ships its headers and .pc file.
DEBIAN_PACKAGE = {"libxdp": "libxdp-dev", "libbpf": "libbpf-dev", "libelf": "libelf-dev"}

# Extension module name (file stem under _fast/) -> pkg-config libraries it links.
SYSTEM_LIBS: dict[str, list[str]] = {
    "xsk": ["libxdp", "libbpf"],
    "pipeline": ["libxdp", "libbpf"],
    "loops": ["libxdp", "libbpf"],
}

CFLAGS = [
    "-O3",
    "-fno-strict-aliasing",
    "-Wno-unused-function",
    "-Wno-unreachable-code",
    "-Wno-sign-compare",
]


def fail(message: str) -> None:
    """Stop the build with one readable line instead of a compiler trace."""
    sys.stderr.write(f"xpfdp build: {message}\n")
    raise SystemExit(1)


def pkg_config(name: str) -> tuple[list[str], list[str], list[str]]:
    """Return (include_dirs, library_dirs, libraries) for a pkg-config package."""
    if shutil.which("pkg-config") is None:
        fail("pkg-config not found: apt-get install pkg-config")
    probe = subprocess.run(["pkg-config", "--exists", name], check=False)
    if probe.returncode != 0:
        fail(f"{name} not found: apt-get install {DEBIAN_PACKAGE.get(name, name + '-dev')}")
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", name], check=True, capture_output=True, text=True
    ).stdout.split()
    return (
        [f[2:] for f in flags if f.startswith("-I")],
        [f[2:] for f in flags if f.startswith("-L")],
        [f[2:] for f in flags if f.startswith("-l")],
    )


def fast_extensions() -> list[Extension]:
    """One Extension per _fast/*.pyx, with the system libraries it declares."""
    extensions = []
    for pyx in sorted(FAST_DIR.glob("*.pyx")):
        include_dirs = [numpy.get_include(), str(FAST_DIR), str(FAST_DIR / "includes")]
        library_dirs: list[str] = []
        libraries: list[str] = []
        for lib in SYSTEM_LIBS.get(pyx.stem, []):
            inc, libdir, libs = pkg_config(lib)
            include_dirs += inc
            library_dirs += libdir
            libraries += [name for name in libs if name not in libraries]
        extensions.append(
            Extension(
                f"xpfdp._fast.{pyx.stem}",
                [str(pyx.relative_to(ROOT))],
                include_dirs=include_dirs,
                library_dirs=library_dirs,
                libraries=libraries,
                extra_compile_args=CFLAGS,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return extensions


def compile_bpf_objects() -> None:
    """Compile every bpf/*.bpf.c with clang into src/xpfdp/bpf/*.o (no CO-RE, no BTF needed)."""
    sources = sorted(BPF_SRC_DIR.glob("*.bpf.c"))
    if not sources:
        return
    clang = shutil.which("clang")
    if clang is None:
        fail("clang not found (needed for bpf/*.bpf.c): apt-get install clang llvm")
    pkg_config("libbpf")  # bpf/bpf_helpers.h comes from libbpf-dev
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    BPF_OUT_DIR.mkdir(exist_ok=True)
    for src in sources:
        out = BPF_OUT_DIR / (src.name[: -len(".bpf.c")] + ".o")
        if out.exists() and out.stat().st_mtime >= max(
            p.stat().st_mtime for p in BPF_SRC_DIR.glob("*.[ch]")
        ):
            continue
        cmd = [clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I", str(BPF_SRC_DIR)]
        if multiarch:
            cmd += ["-I", f"/usr/include/{multiarch}"]
        cmd += ["-c", str(src), "-o", str(out)]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"clang failed on {src.name}:\n{result.stderr}")


def cffi_modules() -> list[str]:
    """cffi build scripts (src/xpfdp/_*_build.py); each defines `ffibuilder`."""
    return [
        f"{p.relative_to(ROOT)}:ffibuilder"
        for p in sorted((ROOT / "src" / "xpfdp").glob("_*_build.py"))
    ]


# Runs before setup() so the objects exist as package data for every build command.
compile_bpf_objects()
setup(
    ext_modules=cythonize(
        fast_extensions(),
        language_level=3,
        include_path=[str(ROOT / "src")],
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
        quiet=True,
    ),
    cffi_modules=cffi_modules(),
)
