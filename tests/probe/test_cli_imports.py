"""Start-up: a command imports what it uses, and nothing heavy to print its version or help.

What is imported, not how long it takes: each test runs a fresh interpreter and reads its
``sys.modules``, so a busy machine cannot make it pass or fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The helper server (and aiohttp with it), the store (SQLAlchemy), the HTTP stack, the engine.
HEAVY = ("aiohttp", "sqlalchemy", "httpx", "httpcore", "probe.helper.server", "probe.store",
         "probe.engine", "cryptography")  # fmt: skip


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
        check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_version_imports_nothing_heavy() -> None:
    code = "from probe.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    assert heavy_in(modules_after(code)) == []


def test_version_through_python_m_probe() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "probe", "--version"], capture_output=True,
        text=True, cwd=ROOT, timeout=120, check=False, env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("probe ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert heavy_in(imported) == []


def test_the_whole_grammar_imports_nothing_heavy() -> None:
    """build_parser() registers every command, and `probe --help` needs no more than that."""
    code = "from probe.cli import build_parser\nbuild_parser().format_help()"
    assert heavy_in(modules_after(code)) == []


def test_every_command_still_parses() -> None:
    from probe.cli import build_parser

    parser = build_parser()
    for argv in (["run", "--json"], ["daemon"], ["status"], ["consent"], ["prune"],
                 ["export"], ["list"], ["show", "x"], ["targets", "list"], ["config", "show"],
                 ["helper", "serve"]):  # fmt: skip
        args = parser.parse_args(argv)
        assert callable(args.handler), argv


def test_version_flag_in_the_grammar(capsys: object) -> None:
    from probe.cli import build_parser

    try:
        build_parser().parse_args(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    else:
        raise AssertionError("--version did not exit")


def test_a_command_builds_its_own_grammar_only() -> None:
    """`probe run` imports no other command's module (the report's, the collector's)."""
    code = "from probe.cli import build_parser\nbuild_parser(['run', '--json'])"
    modules = modules_after(code)
    assert "probe.cli.run" in modules
    others = sorted(m for m in modules if m.startswith("probe.cli.") and m.endswith("_cmd"))
    assert others == [], others
    assert not any(m.startswith("probe.report") for m in modules)


def test_help_and_unknown_commands_still_list_every_command() -> None:
    from probe.cli import COMMANDS, build_parser

    for argv in ([], ["--help"], ["no-such-command"]):
        text = build_parser(argv).format_help()
        assert all(name in text for name in COMMANDS), (argv, text)
