"""``python -m rlm`` runs the command line."""

from __future__ import annotations

import sys

from rlm.cli import main

sys.exit(main())
