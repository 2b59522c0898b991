"""The README's "Reading the results" examples, run as a reader would: each pandas block in a
fresh interpreter, and the sqlite3 shell line, against a real database filled by the store
(tests/probe/results_data.py), in the directory that holds it as results.sqlite."""

from __future__ import annotations

import contextlib
import importlib
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.prerequisites import missing
from tests.probe.results_data import fill

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"```(python|sh)\n(.*?)\n```", re.S)


def blocks(language: str) -> list[str]:
    """The code blocks of one language in the README's "Reading the results" section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Reading the results\n")
    end = text.index("\n## ", start + 1)
    return [code for lang, code in _BLOCK.findall(text[start:end]) if lang == language]


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """A directory holding a filled results.sqlite, where the examples run."""
    fill(str(tmp_path / "results.sqlite"))
    return tmp_path


def run_python(code: str, where: Path) -> str:
    """One example in a fresh interpreter; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=where, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_section_has_three_pandas_examples_and_a_shell_line() -> None:
    assert len(blocks("python")) == 3 and len(blocks("sh")) == 1
    assert all("pd.read_sql" in code for code in blocks("python"))


def test_reading_a_view(here: Path) -> None:
    _need_pandas()
    out = run_python(blocks("python")[0], here)
    assert "KZ" in out and "throttle.sni" in out and "dns.bogon" in out


def test_the_hours_of_day_pivot(here: Path) -> None:
    _need_pandas()
    out = run_python(blocks("python")[1], here)
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    # The CDN throttled at 18 UTC, not at 19; telegram (home, then mobile) never.
    assert lines["cdn"][:2] == ["1.0", "0.0"] and set(lines["telegram"]) == {"0.0"}


def test_the_asn_as_a_nullable_integer(here: Path) -> None:
    pandas = _need_pandas()
    out = run_python(blocks("python")[2], here)
    assert "9198" in out and "9198.0" not in out and "<NA>" in out
    # What the example warns of: without the dtype, a NULL turns the column into floats.
    with contextlib.closing(sqlite3.connect(here / "results.sqlite")) as db:
        plain = pandas.read_sql("SELECT asn FROM latest_verdicts", db)
        typed = pandas.read_sql("SELECT asn FROM latest_verdicts", db, dtype={"asn": "Int64"})
    assert str(plain["asn"].dtype) == "float64" and str(typed["asn"].dtype) == "Int64"


def test_the_sqlite3_shell_line(here: Path) -> None:
    if shutil.which("sqlite3") is None:
        missing("no sqlite3 shell (Debian's sqlite3 package)")
    done = subprocess.run(
        ["bash", "-c", blocks("sh")[0]], cwd=here, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "telegram" in done.stdout and "dns.bogon" in done.stdout and "first_seen" in done.stdout


def _need_pandas() -> ModuleType:
    """pandas, or a skip (a failure under CI: it is in the test extra)."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        missing("pandas is not installed (the test extra)")
        raise
