"""``python -m flowkit``: the command line."""

from __future__ import annotations

import sys

from flowkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
