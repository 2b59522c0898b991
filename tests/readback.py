"""Reading a test sweep's results back the way a user does: ``probe export`` and ``probe show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from probe.cli import main


def export_rows(
    db: Path, capsys: pytest.CaptureFixture[str], key: str = "service"
) -> dict[str, dict[str, Any]]:
    """``probe export --format jsonl``'s rows, by ``key`` (the service, or the input)."""
    capsys.readouterr()
    assert main(["export", "--db", str(db), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {str(r[key]): r for r in rows}


def shown_evidence(db: Path, row: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Any:
    """The evidence ``probe show ID --json`` prints for an exported row."""
    capsys.readouterr()
    assert main(["show", str(row["measurement_id"]), "--db", str(db), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["evidence"]
