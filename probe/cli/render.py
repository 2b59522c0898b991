"""Output for people (tables, a progress bar) and for programs (versioned JSON)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the classifier is not imported by commands that only print
    from probe.classify.verdict import Location

JSON_VERSION = 1


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_json(kind: str, payload: Any, out: TextIO | None = None) -> None:
    """Machine output: one JSON document with a kind and a format version."""
    out = out or sys.stdout  # looked up now: tests and callers may have replaced it
    # One write: json.dump writes each token on its own (160,000 calls for a 2,000-input run).
    text = json.dumps({"version": JSON_VERSION, "kind": kind, **payload}, indent=2, default=str)
    out.write(text + "\n")


class ProgressBar:
    """A one-line progress bar on a terminal's stderr; silent elsewhere."""

    def __init__(self, out: TextIO | None = None, enabled: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.enabled = self.out.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, total: int, label: str = "") -> None:
        """Redraw (at most ten times a second, and always at the end)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if 0 < done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        elapsed = now - self.started
        self.out.write(f"\r[{bar}] {done}/{total} inputs  {elapsed:5.1f} s  {label[:40]:<40}")
        self.out.flush()

    def close(self) -> None:
        """End the line so later output starts clean."""
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


def location_json(location: Location) -> dict[str, Any]:
    """Where a run measured, as ``probe run --json`` and ``probe show --json`` print it."""
    return {
        "asn": location.asn, "country": location.country, "network_name": location.network_name,
        "asn_source": location.asn_source, "country_source": location.country_source,
        "note": location.note,
    }  # fmt: skip
