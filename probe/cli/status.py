"""``probe status``: whether a daemon runs, its schedule, results since, size, outages."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.cli.render import print_json, table
from probe.cli.runs import _common, _open

# Heavy imports (the store, SQLAlchemy) wait for the command to run: building the parser
# must stay cheap for every command (probe/cli/__init__.py).
if TYPE_CHECKING:
    from probe.store.daemon_state import GroupRow, OutageRow, StatusData
    from probe.store.database import Database


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("status", help="whether a daemon runs, its schedule, outages")
    _common(p)
    p.set_defaults(handler=show)


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


def database_bytes(db: Database) -> int | None:
    """The file and its WAL and shared-memory files (None: not a file)."""
    path = Path(db.label)
    if not path.is_file():
        return None
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
               if p.exists())  # fmt: skip


def _t(moment: dt.datetime | None) -> str | None:
    from probe.store.export import format_utc

    return format_utc(moment) if moment is not None else None


def _group_json(g: GroupRow) -> dict[str, Any]:
    return {
        "name": g.name, "every_s": g.every_s, "last_started_at": _t(g.last_started_at),
        "last_finished_at": _t(g.last_finished_at), "last_run_id": g.last_run_id,
        "last_status": g.last_status, "next_at": _t(g.next_at),
    }  # fmt: skip


def _outage_json(o: OutageRow) -> dict[str, Any]:
    return {
        "vantage": o.vantage_name, "started_at": _t(o.started_at), "ended_at": _t(o.ended_at),
        "open": o.ended_at is None, "detected_by": o.detected_by, "network": o.network,
    }  # fmt: skip


def as_json(data: StatusData, db: Database, size: int | None) -> dict[str, Any]:
    """The versioned JSON of ``probe status --json`` (kind "status")."""
    pid = data.groups[0].pid if data.groups else None
    running = pid is not None and alive(pid)
    last = data.last_run
    vantage = None
    if last is not None:
        v = last.vantage
        vantage = {"name": v.name, "network_type": v.network_type, "asn": v.asn,
                   "country": v.country, "network": data.last_network,
                   "last_run_at": _t(last.started_at)}  # fmt: skip
    return {
        "database": db.label,
        "database_bytes": size,
        "daemon": {
            "running": running,
            "pid": pid if running else None,
            "last_pid": pid,
            "started_at": _t(data.groups[0].daemon_started_at) if data.groups else None,
        },
        "groups": [_group_json(g) for g in data.groups],
        "results_since": _t(data.since),
        "verdicts": data.verdicts_since,
        "vantage": vantage,
        "outages": [_outage_json(o) for o in data.outages],
    }


def show(args: argparse.Namespace) -> int:
    """Print the status (read-only: nothing is created or changed)."""
    db = _open(args)
    try:
        from probe.store.daemon_state import status

        data = status(db)
        out = as_json(data, db, database_bytes(db))
    finally:
        db.close()
    if args.json:
        print_json("status", out)
    else:
        _print_human(out)
    return 0


def _print_human(out: dict[str, Any]) -> None:
    d = out["daemon"]
    if d["running"]:
        print(f"daemon: running, pid {d['pid']}, since {d['started_at']}")
    elif d["last_pid"] is not None:
        print(f"daemon: not running (last pid {d['last_pid']})")
    else:
        print("daemon: never ran on this database")
    size = out["database_bytes"]
    shown = f"{size / 1e6:.1f} MB" if size is not None else "not a file"
    print(f"database: {out['database']} ({shown})")
    if out["groups"]:
        rows = [(g["name"], f"{g['every_s']:g} s", g["last_started_at"] or "-",
                 g["last_status"] or "-", g["next_at"] or "-") for g in out["groups"]]  # fmt: skip
        print()
        print(table(("group", "every", "last sweep (UTC)", "status", "next (UTC)"), rows))
    counts = ", ".join(f"{v} {n}" for v, n in sorted(out["verdicts"].items())) or "none"
    print(f"\nresults since {out['results_since']}: {counts}")
    v = out["vantage"]
    if v is not None:
        where = " ".join(f"{k} {v[k]}" for k in ("name", "asn", "country", "network") if v[k])
        print(f"vantage as last seen ({v['last_run_at']}): {where or 'nothing declared'}")
    if out["outages"]:
        outage_rows = [(o["started_at"], o["ended_at"] or "still out", o["vantage"] or "-",
                 o["detected_by"]) for o in out["outages"]]  # fmt: skip
        print()
        print(table(("outage began (UTC)", "ended (UTC)", "vantage", "seen by"), outage_rows))
    else:
        print("outages: none recorded")
