"""Real file systems for tests of the store: a tiny tmpfs (a full disk), a read-only mount.

Mounting needs root. Without it these tests are skipped with the reason; under CI=true
the lack is a failure, as for the lab, so a CI machine never passes them silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import prerequisites


def require_root() -> None:
    """Skip (or, in CI, fail) when this process cannot mount file systems."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        missing.append("mount and umount")
    if not missing:
        return
    prerequisites.missing("mounting a test file system needs " + " and ".join(missing))


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "256k") mounted on ``directory``, unmounted afterwards."""
    require_root()
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        check=True,
    )
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def remount_read_only(directory: Path) -> None:
    """Make a mounted tmpfs read-only (the kernel refuses every write after this)."""
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)


def resize(directory: Path, size: str) -> None:
    """Give a mounted tmpfs a new size (room made on a full disk)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(directory)], check=True)
