"""Build xpfdp: Cython extensions in src/xpfdp/_fast, the libbpf cffi module, bpf/*.bpf.c objects.

Everything happens in build commands, nothing when this file is imported (so `sdist` and
metadata need neither clang nor the -dev packages):

* `build_py` and `build_ext` first compile every bpf/*.bpf.c with clang into
  src/xpfdp/bpf/*.o (package data; skipped when up to date).
* `build_ext` resolves the pkg-config libraries each extension declares in SYSTEM_LIBS (a
  missing one stops the build with one line naming its Debian package), turns each
  `_fast/*.pyx` into C with Cython (only what changed) and compiles it with -O3, stripped.

`pip install --no-build-isolation -e .` (what `make build` runs) or `pip wheel .` drive
them; `make wheel` also vendors the shared libraries with auditwheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

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
LDFLAGS = ["-s"]  # no symbol tables or debug info in the shipped modules

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "embedsignature": True,
    "embedsignature.format": "python",
}


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
    """One Extension per _fast/*.pyx (system libraries are added by build_ext)."""
    return [
        Extension(
            f"xpfdp._fast.{pyx.stem}",
            [str(pyx.relative_to(ROOT))],
            include_dirs=[str(FAST_DIR), str(FAST_DIR / "includes")],
            extra_compile_args=CFLAGS,
            extra_link_args=LDFLAGS,
            # flags live here: a change rebuilds every extension; xsk also compiles in the
            # ABI header it shares with the XDP program (an ABI bump must rebuild it)
            depends=["setup.py", *(["bpf/xsk_abi.h"] if pyx.stem == "xsk" else [])],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for pyx in sorted(FAST_DIR.glob("*.pyx"))
    ]


def compile_bpf_objects() -> None:
    """Compile every bpf/*.bpf.c with clang into src/xpfdp/bpf/*.o (no CO-RE, no BTF needed)."""
    sources = sorted(BPF_SRC_DIR.glob("*.bpf.c"))
    if not sources:
        return
    newest_input = max(p.stat().st_mtime for p in BPF_SRC_DIR.glob("*.[ch]"))
    outputs = [BPF_OUT_DIR / (src.name[: -len(".bpf.c")] + ".o") for src in sources]
    if all(out.exists() and out.stat().st_mtime >= newest_input for out in outputs):
        return
    clang = shutil.which("clang")
    if clang is None:
        fail("clang not found (needed for bpf/*.bpf.c): apt-get install clang llvm")
    pkg_config("libbpf")  # bpf/bpf_helpers.h comes from libbpf-dev
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    BPF_OUT_DIR.mkdir(exist_ok=True)
    for src, out in zip(sources, outputs, strict=True):
        cmd = [clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I", str(BPF_SRC_DIR)]
        if multiarch:
            cmd += ["-I", f"/usr/include/{multiarch}"]
        cmd += ["-c", str(src), "-o", str(out)]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"clang failed on {src.name}:\n{result.stderr}")


class BuildPy(build_py):
    """Copy the package, the XDP objects included (compiled first)."""

    def run(self) -> None:
        compile_bpf_objects()
        super().run()


class BuildExt(build_ext):
    """XDP objects, then .pyx -> .c (Cython, incremental) -> extension, with the pkg-config
    flags of the system libraries each extension links."""

    def run(self) -> None:
        import numpy

        compile_bpf_objects()
        for ext in self.extensions:
            stem = ext.name.rsplit(".", 1)[-1]
            if not ext.name.startswith("xpfdp._fast."):
                continue
            ext.include_dirs.append(numpy.get_include())
            for lib in SYSTEM_LIBS.get(stem, []):
                inc, libdir, libs = pkg_config(lib)
                ext.include_dirs += inc
                ext.library_dirs += libdir
                ext.libraries += [name for name in libs if name not in ext.libraries]
        super().run()

    def build_extension(self, ext: Extension) -> None:
        if any(str(s).endswith(".pyx") for s in ext.sources):
            from Cython.Build import cythonize

            compiled = cythonize(
                ext,
                include_path=[str(ROOT / "src")],
                compiler_directives=CYTHON_DIRECTIVES,
                quiet=True,
                force=self.force,
            )[0]
            # The C sources, plus the flags the .pyx header adds (`# distutils: ...`).
            for attr in ("sources", "extra_compile_args", "extra_link_args", "libraries"):
                setattr(ext, attr, getattr(compiled, attr))
        inplace = ROOT / "src" / Path(*ext.name.split(".")).with_suffix(
            sysconfig.get_config_var("EXT_SUFFIX")
        )
        if self.editable_mode and self._current(inplace, ext):
            # `pip install -e` builds in a fresh temporary directory every time; reuse the
            # module in the source tree when nothing it is built from changed.
            target = self.get_ext_fullpath(ext.name)
            self.mkpath(str(Path(target).parent))
            self.copy_file(str(inplace), target)  # (newer setuptools take no `verbose`)
            return
        super().build_extension(ext)

    @staticmethod
    def _current(module: Path, ext: Extension) -> bool:
        """`module` exists and is newer than its C sources, dependencies and this file."""
        if not module.exists():
            return False
        inputs = [Path(p) for p in (*ext.sources, *ext.depends)] + [Path(__file__)]
        built = module.stat().st_mtime
        return all(p.exists() and p.stat().st_mtime <= built for p in inputs)


def cffi_modules() -> list[str]:
    """cffi build scripts (src/xpfdp/_*_build.py); each defines `ffibuilder`."""
    return [
        f"{p.relative_to(ROOT)}:ffibuilder"
        for p in sorted((ROOT / "src" / "xpfdp").glob("_*_build.py"))
    ]


setup(
    ext_modules=fast_extensions(),
    cffi_modules=cffi_modules(),
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
)
