"""The typed, frozen sections the rest of the probe reads: one per TOML section.

Each field is a key of ``probe.config.keys`` (same section, same name) in its final form:
lists are tuples, CIDR ranges are parsed networks, a token file's token is read. The defaults
here are the keys' defaults in that form; ``tests/probe/test_config.py`` holds the two equal,
so a key added to one place and not the other fails a test, not a volunteer's sweep.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from measurements.addresses import Network

DURATION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(canonical: str) -> int | None:
    """The seconds of a canonical duration ("90d", keys.parse_retention's); None for "never"."""
    if canonical == "never":
        return None
    return int(canonical[:-1]) * DURATION_UNITS[canonical[-1]]


DEFAULT_DOH = ("https://cloudflare-dns.com/dns-query", "https://dns.google/dns-query")


@dataclass(frozen=True, slots=True)
class VantageSettings:
    """What the volunteer chooses to declare about the vantage point (never its address)."""

    name: str | None = None
    network_type: str | None = None
    asn: int | None = None
    country: str | None = None
    geoip_db: tuple[str, ...] = ()  # .mmdb files to place the vantage's own address in
    consent: bool = False  # the operator's acceptance (probe.config.consent)


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """The network under test: its resolver, the trust anchors, ranges to treat as public."""

    resolver: str | None = None  # None: the system's
    ca_bundle: str | None = None  # None: the system's
    routable: tuple[Network, ...] = ()
    metered: bool | str = "auto"  # "auto": NetworkManager says (probe.engine.linkbudget)


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """The controls: DoH resolvers, the control helper, reference hosts, the innocuous name."""

    doh: tuple[str, ...] = DEFAULT_DOH
    helper: str | None = None  # the control helper's URL
    helper_token_file: str | None = None
    reference: tuple[str, ...] = ()
    innocuous_name: str = "www.example.com"
    # Read from helper_token_file once, when the settings are built; kept out of every repr.
    helper_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where results are kept."""

    db: str | None = None  # None: the user data directory's SQLite file
    # Canonical (keys.parse_retention); "never": keep all evidence. 30 days: long enough to
    # re-check what a volunteer noticed this month; evidence kept longer belongs in a central
    # collection (export or upload it), not on a volunteer's disk (README "Retention").
    retention: str = "30d"
    # The evidence of `accessible` verdicts, at most this long ("never": as long as the
    # rest; and with retention "never" all evidence is kept). It is most of the evidence
    # (about 85% of an hourly sweep's rows, 1-3 KB each) and the least re-checked: a reader
    # re-checks what was blocked, throttled or inconclusive; a week of accessible evidence
    # still shows what "normal" looked like.
    retention_accessible: str = "7d"

    @property
    def retention_window(self) -> dt.timedelta | None:
        """How long evidence is kept; None: for ever."""
        seconds = duration_seconds(self.retention)
        return None if seconds is None else dt.timedelta(seconds=seconds)

    @property
    def accessible_window(self) -> dt.timedelta | None:
        """How long the evidence of accessible verdicts is kept (never longer than the
        rest's); None: for ever, as when retention is "never"."""
        seconds, rest = duration_seconds(self.retention_accessible), self.retention_window
        if seconds is None or rest is None:
            return rest
        return min(dt.timedelta(seconds=seconds), rest)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Bounds on every wait and every read, and on how much runs at once."""

    concurrency: int = 128
    per_host: int = 2
    target_timeout: float = 60.0
    sweep_timeout: float = 1800.0
    retries: int = 1
    retry_delay: float = 1.0
    dns_timeout: float = 5.0
    connect_timeout: float = 5.0
    http_timeout: float = 10.0
    max_body: int = 1 << 20


@dataclass(frozen=True, slots=True)
class ThroughputSettings:
    """Rule 7's throughput tests and their budgets (a volunteer's line may be metered)."""

    enabled: bool = True
    max_bytes_per_test: int = 1 << 20
    max_seconds_per_test: float = 30.0
    max_bytes_per_sweep: int = 10 << 20
    max_bytes_per_day: int = 50 << 20
    max_link_share: float = 0.5  # of the time timed transfers may hold the link
    trials: int = 3
    sample_interval: float = 0.1
    reference: tuple[str, ...] = ()  # empty: control.reference
    # The SNI replay (probe.engine.replay): per transfer; a test is 4 x trials transfers.
    replay: bool = True
    replay_bytes: int = 128 << 10
    replay_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class HelperServeSettings:
    """``probe helper serve``: where it listens and how it measures."""

    listen: str = "127.0.0.1:8080"
    resolver: str | None = None
    ca_bundle: str | None = None
    routable: tuple[Network, ...] = ()
    timeout: float = 5.0
    concurrency: int = 16
    token_file: str | None = None
    throughput_bytes_per_hour: int = 1 << 30
    read_timeout: float = 5.0
    replay_listen: str | None = None  # None: no SNI replay listener
    replay_public_port: int | None = None  # None: replay_listen's port
    asn_db: str | None = None  # .mmdb files GET /v1/whoami reads
    country_db: str | None = None
    per_client_connections: int = 32
    token: str | None = field(default=None, repr=False)  # read from token_file


@dataclass(frozen=True, slots=True)
class DaemonGroup:
    """A group of services swept on its own interval (no categories nor services: the rest)."""

    name: str
    categories: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    every: float = 3600.0  # seconds
    throughput_every: float | None = None  # None: daemon.throughput_every

    @property
    def takes_rest(self) -> bool:
        """Whether it takes every service no other group names."""
        return not self.categories and not self.services


# The schedule when none is configured: messaging (the apps blocked first) twice an hour.
DEFAULT_GROUPS = (
    DaemonGroup("messaging", categories=("messaging",), every=1800.0),
    DaemonGroup("rest", every=3600.0),
)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """``probe daemon``: its groups and intervals, jitter, and how it stops and watches."""

    group: tuple[DaemonGroup, ...] = ()  # empty: DEFAULT_GROUPS
    throughput_every: float = 6 * 3600.0
    jitter: float = 0.1
    jitter_max: float = 300.0
    stop_deadline: float = 10.0
    network_poll: float = 30.0

    @property
    def groups(self) -> tuple[DaemonGroup, ...]:
        """The configured groups, or the default schedule."""
        return self.group or DEFAULT_GROUPS


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """``probe upload`` and the daemon's uploads: where to, with which token, how much."""

    url: str | None = None  # None: no central collection
    token_file: str | None = None
    batch_size: int = 500
    upload_every: float = 300.0  # seconds
    # From token_file, else PROBE_COLLECTOR_TOKEN; kept out of every repr.
    token: str | None = field(default=None, repr=False)
