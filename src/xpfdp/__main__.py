"""`python -m xpfdp ...`: the same as the `xpfdp` command."""

import sys

from xpfdp.cli import main

# Guarded: pyroute2 starts helper processes that re-import the main module.
if __name__ == "__main__":
    sys.exit(main())
