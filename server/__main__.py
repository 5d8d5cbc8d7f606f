"""`python -m server`, or this file run by path (an MCPB host may run a bundle's entry point as a file)."""

import sys
from pathlib import Path

if not __package__:
    # Run as a file, Python puts this folder first on the import path, where its modules' names (app, errors,
    # settings, ...) could hide others: put the folder holding the package there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from server.cli import main  # after the path fix above

raise SystemExit(main())
