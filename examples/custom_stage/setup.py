"""Build the out-of-tree DscpRemark stage against an installed xpfdp.

    python setup.py build_ext --inplace

`xpfdp.get_include()` lists the directories that hold xpfdp's .pxd files and C headers.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

import xpfdp

setup(
    name="xpfdp-dscp-stage",
    ext_modules=cythonize(
        [
            Extension(
                "dscp_stage",
                ["dscp_stage.pyx"],
                include_dirs=xpfdp.get_include(),
                extra_compile_args=["-O3"],
            )
        ],
        include_path=xpfdp.get_include(),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
)
