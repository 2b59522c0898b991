"""Policy files: how the lab tells its running servers what to do in the current scenario.

The runner writes a JSON file atomically (a new inode each time); a server re-reads it when
its identity changes, checked at each query or connection, so a change applies to the very
next packet without restarting anything or waiting for a reload.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write(path: Path, data: dict[str, Any]) -> None:
    """Replace the policy at ``path`` atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PolicyFile:
    """A policy file as a server reads it: the current content, reloaded when replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        """The policy now in force ({} when there is no file, or it cannot be read)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._identity, self._data = None, {}
            return self._data
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        if identity != self._identity:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return self._data  # a torn read cannot happen (atomic replace); be safe anyway
            self._identity, self._data = identity, data if isinstance(data, dict) else {}
        return self._data
