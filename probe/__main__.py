"""``python -m probe`` runs the CLI."""

import sys

from probe.cli import main

sys.exit(main())
