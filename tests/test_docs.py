"""docs/architecture.md against the code: the paths it names exist, its import table holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from measurements.failures import Failure

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
_PATH = re.compile(r"`((?:probe|measurements|targets|tests|bench|docs)/[\w./-]*)`")
_ROOM_ROW = re.compile(r"^\| `([\w/]+/)` \| (.*?) \|")


def _section(text: str, title: str) -> str:
    """The body of the ``## title`` section."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _table() -> dict[str, set[str]]:
    """room -> the rooms it may import, as the doc's table says."""
    rows: dict[str, set[str]] = {}
    for line in _section(DOC.read_text(encoding="utf-8"), "What each room may import").splitlines():
        match = _ROOM_ROW.match(line)
        if match:
            rows[match[1]] = set(re.findall(r"`([\w/]+/)`", match[2]))
    return rows


def _room_of(module: str, rooms: list[str]) -> str | None:
    """The room a dotted module name belongs to (the longest room that holds it)."""
    if module == "probe.__main__":
        return "probe/cli/"  # `python -m probe` is the command's entry point
    path = module.replace(".", "/") + "/"
    found = [room for room in rooms if path.startswith(room)]
    return max(found, key=len) if found else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (a function's import counts too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            found.add(node.module)
            # ``from measurements import dns`` imports the module measurements.dns.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _code_files() -> list[Path]:
    return sorted(
        p for top in ("probe", "measurements", "targets") for p in (ROOT / top).rglob("*.py")
    )


def test_every_path_named_exists() -> None:
    """Every path in backquotes is in the tree, but for those the doc says are reserved."""
    text = DOC.read_text(encoding="utf-8")
    reserved = set(_PATH.findall(_section(text, "Reserved places")))
    missing = [p for p in _PATH.findall(text) if p not in reserved and not (ROOT / p).exists()]
    assert missing == []


def test_every_room_of_the_code_has_a_row() -> None:
    """A new room cannot escape the import check: each package of the code is in the table."""
    rooms = list(_table())
    packages = {
        str(p.parent.relative_to(ROOT)) + "/"
        for p in _code_files()
        if p.name == "__init__.py" and p.parent != ROOT / "probe"
    }
    assert {
        pkg for pkg in packages if _room_of(pkg.rstrip("/").replace("/", "."), rooms) is None
    } == set()


@pytest.mark.parametrize("path", _code_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_import_table_holds(path: Path) -> None:
    table = _table()
    rooms = list(table)
    own = _room_of(_module_name(path), rooms)
    if own is None:
        assert path.relative_to(ROOT).as_posix() == "probe/__init__.py", "a file outside any room"
        return
    allowed = table[own] | {own}
    forbidden = sorted(
        f"{module} ({room})"
        for module in _imports(path)
        if (room := _room_of(module, rooms)) is not None and room not in allowed
    )
    assert forbidden == [], f"{own} may import only {sorted(table[own]) or 'nothing'}"


def test_nothing_imports_the_cli() -> None:
    rooms = list(_table())
    importers = [
        str(p.relative_to(ROOT))
        for p in _code_files()
        if _room_of(_module_name(p), rooms) != "probe/cli/"
        and any(m == "probe.cli" or m.startswith("probe.cli.") for m in _imports(p))
    ]
    assert importers == []


def test_no_reference_to_the_outside_design_file() -> None:
    """The code cites docs/architecture.md, which lives beside it, not a file outside it."""
    files = [p for top in ("probe", "measurements", "targets", "tests", "bench")
             for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".toml")]  # fmt: skip
    citing = [str(p.relative_to(ROOT)) for p in files if p != Path(__file__) and re.search(
        r"DESIGN(\.md| rules?\b)", p.read_text(encoding="utf-8"))]  # fmt: skip
    assert citing == []


def test_the_failure_vocabulary_is_the_code_s() -> None:
    named = set(
        re.findall(r"`([a-z_]+)`", _section(DOC.read_text(encoding="utf-8"), "Failure vocabulary"))
    )
    assert named == {f.value for f in Failure}
