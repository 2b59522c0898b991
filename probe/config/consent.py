"""The volunteer's informed consent: what a sweep does, and whether they have accepted it.

Measuring blocked services can be risky for whoever runs the probe, so no sweep measures
until its user has read what it does and accepted: ``probe consent --accept`` (recorded in
the user's data directory, with the text's version and when), or ``vantage.consent = true``
in the config (PROBE_VANTAGE_CONSENT) for unattended machines whose operator decided.
A recorded acceptance of an older version of the text does not count: when what the probe
does changes in a way the text must say, CONSENT_VERSION goes up and the volunteer reads again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from probe.config.keys import APP
from probe.config.settings import Settings

CONSENT_VERSION = 1

CONSENT_TEXT = """\
Before this probe measures anything, please read what it does.

What it measures: from this machine, over your internet connection, it looks up the names of
social networks and messaging services (the bundled list, or your own), connects to them and
fetches their pages, and times some downloads. Many of these services may be blocked where
you are; measuring them means your connection really tries to reach them.

Who can see it: your internet provider, and anyone it reports to (in some countries the
state), can see that this connection tried to reach those services, when, and how often; the
pattern of a probe (many blocked services, every hour) may stand out. Nothing hides that. If
reaching blocked services could put you at risk, do not run the probe on this connection.
It also asks public DNS-over-HTTPS resolvers and, if you set one, a control helper, which see
your address and the names asked.

What is stored: a database on this machine (by default in your data directory) holds, for
each service and each sweep, the verdict (accessible, blocked, throttled or inconclusive),
the evidence behind it (what each lookup, connection and page returned, and what the controls
saw), and the sweep's settings. Your IP address is not stored. Your network's AS number,
name and country are: the ones you declare (vantage.asn, country), else those the control
helper or a local database (vantage.geoip_db) finds for your address. Nothing else that
identifies you or this place is stored unless you declare it (vantage.name, network_type).
Evidence older than the retention window (storage.retention, 30 days by default; 7 days
for accessible results, storage.retention_accessible) is deleted; verdicts are kept.
Nothing leaves this machine unless you export or upload it.

To accept:        probe consent --accept
For unattended machines whose operator decided: consent = true in [vantage] of the config
(or PROBE_VANTAGE_CONSENT=true). To withdraw: probe consent --revoke.
"""


class ConsentRequired(ValueError):
    """A sweep was asked for before the volunteer accepted what it does (exit 6)."""


@dataclass(frozen=True, slots=True)
class ConsentState:
    """Whether sweeps may measure, and why."""

    accepted: bool
    source: str | None  # "file:PATH", or "config (SOURCE)" for vantage.consent; None if not
    version: int | None = None  # the version recorded in the file
    accepted_at: dt.datetime | None = None
    problem: str | None = None  # why a recorded acceptance does not count

    def describe(self) -> str:
        """One line for ``probe consent``."""
        if self.accepted and self.accepted_at is not None:
            when = f"{self.accepted_at:%Y-%m-%d %H:%M:%S} UTC"
            return f"accepted (version {self.version}, {when}; recorded in {self.source})"
        if self.accepted:
            return f"accepted by the config: vantage.consent = true ({self.source})"
        return f"not accepted{f': {self.problem}' if self.problem else ''}"


def consent_path() -> Path:
    """Where acceptance is recorded: the user's data directory (XDG_DATA_HOME on Linux)."""
    return platformdirs.user_data_path(APP) / "consent.json"


def _recorded(path: Path) -> ConsentState:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = int(data["version"])
        at = dt.datetime.fromisoformat(str(data["accepted_at"])).astimezone(dt.UTC)
    except FileNotFoundError:
        return ConsentState(False, None)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return ConsentState(False, None, problem=f"{path} is unreadable ({exc}); accept again")
    if version < CONSENT_VERSION:
        problem = f"version {version} was accepted; the text has changed since (version "
        return ConsentState(False, None, version, at, f"{problem}{CONSENT_VERSION}): read it again")
    return ConsentState(True, f"file:{path}", version, at)


def current_state(settings: Settings) -> ConsentState:
    """The consent in force: the config's vantage.consent, else the recorded acceptance."""
    if settings.vantage.consent:
        return ConsentState(True, settings.sources.get("vantage.consent", "config"))
    return _recorded(consent_path())


def require_consent(settings: Settings) -> None:
    """Raise ConsentRequired (its message: the text and how to accept) unless accepted."""
    state = current_state(settings)
    if not state.accepted:
        why = (
            f"\n(The recorded consent does not count: {state.problem}.)\n" if state.problem else ""
        )
        end = "\nNothing was measured: consent is needed first."
        raise ConsentRequired(f"{CONSENT_TEXT}{why}{end}")


def accept(now: dt.datetime | None = None) -> ConsentState:
    """Record acceptance of the current text, atomically; return the new state."""
    path = consent_path()
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    record = {"version": CONSENT_VERSION, "accepted_at": at.isoformat().replace("+00:00", "Z")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".consent-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return ConsentState(True, f"file:{path}", CONSENT_VERSION, at)


def revoke() -> bool:
    """Remove the recorded acceptance; whether there was one."""
    try:
        consent_path().unlink()
    except FileNotFoundError:
        return False
    return True
