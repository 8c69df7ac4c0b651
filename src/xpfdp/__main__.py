"""`python -m xpfdp ...`: the same as the `xpfdp` command."""

import sys

from xpfdp.cli import main

sys.exit(main())
