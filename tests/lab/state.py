"""The lab's state directory: the PIDs it started, its root CA, the policies, the logs.

It lives under /run (a tmpfs, emptied at boot exactly when the namespaces vanish), so a
stale state can only describe a lab that crashed, never one from before a reboot.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from tests.lab import policy

STATE_DIR = Path(os.environ.get("PROBE_LAB_STATE", "/run/probe-lab"))


@dataclass(frozen=True, slots=True)
class Paths:
    """Where each lab file is."""

    root: Path = STATE_DIR

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def ca_cert(self) -> Path:
        """The lab root's certificate: the probe's --ca-bundle."""
        return self.root / "lab-root.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "lab-root.key"

    @property
    def isp_policy(self) -> Path:
        return self.root / "isp.json"

    @property
    def net_policy(self) -> Path:
        return self.root / "internet.json"

    def ready(self, role: str) -> Path:
        """Written by a server process once every listener is bound."""
        return self.root / f"ready-{role}"

    def log(self, role: str) -> Path:
        return self.root / f"{role}.log"


@dataclass
class State:
    """What the lab started: processes by PID (each with a word of its command line)."""

    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    helper: bool = False

    @classmethod
    def load(cls, paths: Paths) -> State | None:
        """The recorded state, or None when there is none (or it is unreadable)."""
        try:
            data = json.loads(paths.state.read_text(encoding="utf-8"))
            return cls(dict(data["processes"]), float(data["created"]), bool(data["helper"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, paths: Paths) -> None:
        """Record it atomically (called after every process started)."""
        policy.write(
            paths.state,
            {"processes": self.processes, "created": self.created, "helper": self.helper},
        )


def new_ca(paths: Paths) -> trustme.CA:
    """A fresh lab root, written where the servers and the probe read it."""
    ca = trustme.CA(organization_name="Probe Lab Root")
    ca.cert_pem.write_to_path(str(paths.ca_cert))
    ca.private_key_pem.write_to_path(str(paths.ca_key))
    return ca


def load_ca(paths: Paths) -> trustme.CA:
    """The lab root written by ``new_ca`` (servers inside namespaces issue from it)."""
    return trustme.CA.from_pem(paths.ca_cert.read_bytes(), paths.ca_key.read_bytes())


def mark_ready(paths: Paths, role: str) -> None:
    """Tell the lab that a server process listens (its PID, for a sanity check)."""
    paths.ready(role).write_text(str(os.getpid()), encoding="utf-8")
