"""``python -m probe`` runs the CLI."""

from probe.cli import entry

entry()
