"""The upload format, one module for both ends: what ``probe upload`` sends, what the
collector accepts, and the check that names the first field it cannot accept.

An upload is one JSON object (gzip-compressed, or zstd where the ``zstandard`` package is
installed on both ends)::

    {"version": 1,
     "runs": [{"run_id": hex32, "started_at": ISO-8601 with offset, "status": ..., ...}],
     "measurements": [{"id": int, "run_id": hex32, "service": ..., "verdict": ...,
                       "measured_at": ..., ..., "evidence": {...} or null}]}

A measurement's id is the pair (``run_id``, ``id``): ``run_id`` a uuid4 made per sweep,
``id`` the row's ``measurements.id`` in the probe's database. Neither ever changes (the
probe never deletes a measurement row, only evidence), and no two rows of one database
share a pair, so the same row is sent under the same pair by every upload, however often
it is retried: the idempotency key. The collector keys it as ``key(run_id, id)``,
``"<run_id>:<id>"``, hashed with the token's name (ingest.py). Sending the pair costs the
probe nothing to store; a uid per row made on the probe cost ~70 bytes a row, indexed.

Every measurement's run is in ``runs`` (its current state: a run uploaded again updates its
status, end and counts). ``evidence`` is null where ``probe prune`` deleted it already.
Nothing identifies the uploader but its token: no address, no host name.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from probe.classify.verdict import VERDICTS
from probe.store.models import RUN_STATUSES

VERSION = 1
PATH = "/v1/uploads"
_HEX32 = re.compile(r"[0-9a-f]{32}")


class WireError(ValueError):
    """An upload the collector refuses: the field (a path such as ``measurements[3].id``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class TooLarge(ValueError):
    """A body that decompresses past the limit."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A checked upload: its runs and measurements as column values, by model name."""

    runs: tuple[Mapping[str, Any], ...]
    measurements: tuple[Mapping[str, Any], ...]  # each with "evidence" (a dict or None)


def key(run_id: str, probe_id: int) -> str:
    """A measurement's id as the probe made it, one string: ``"<run_id>:<id>"``."""
    return f"{run_id}:{probe_id}"


# --- what each field must be ------------------------------------------------------------


def _text(limit: int | None, *, optional: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise ValueError("expected a string")
        if limit is not None and len(v) > limit:
            raise ValueError(f"longer than {limit} characters")
        return v

    return check


def _hex32(v: Any) -> str:
    if not isinstance(v, str) or not _HEX32.fullmatch(v):
        raise ValueError("expected 32 lowercase hex digits (a uuid4 hex)")
    return v


def _time(*, optional: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise ValueError("expected an ISO-8601 time with its offset")
        try:
            t = dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("expected an ISO-8601 time with its offset") from None
        if t.tzinfo is None:
            raise ValueError("a time without its offset")
        return t.astimezone(dt.UTC)

    return check


def _number(*, optional: bool = False, integer: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(v, bool) or not isinstance(v, kinds):
            raise ValueError("expected an integer" if integer else "expected a number")
        if integer and not 0 <= v < 1 << 63:
            raise ValueError("out of range")
        if not math.isfinite(v):  # Python's JSON reads NaN and Infinity; PostgreSQL does not
            raise ValueError("expected a finite number")
        return v

    return check


def _one_of(values: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v not in values:
            raise ValueError(f"expected one of {', '.join(values)}")
        return v

    return check


def _object(*, optional: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, dict):
            raise ValueError("expected an object")
        return v

    return check


RUN_FIELDS: dict[str, Callable[[Any], Any]] = {
    "run_id": _hex32,
    "started_at": _time(),
    "finished_at": _time(optional=True),
    "status": _one_of(RUN_STATUSES),
    "probe_version": _text(64),
    "vantage_name": _text(128, optional=True),
    "network_type": _text(32, optional=True),
    "asn": _number(optional=True, integer=True),
    "country": _text(2, optional=True),
    "settings": _object(),
    "counts": _object(optional=True),
    "network_name": _text(256, optional=True),
    "asn_source": _text(16, optional=True),
    "country_source": _text(16, optional=True),
    "location_note": _text(None, optional=True),
}
MEASUREMENT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": _number(integer=True),  # the probe's measurements.id; with run_id, the key
    "run_id": _hex32,
    "service": _text(128),
    "category": _text(32),
    "input": _text(4096),
    "verdict": _one_of(VERDICTS),
    "layer": _text(8, optional=True),
    "detail": _text(32),
    "rule": _text(64),
    "reason": _text(8192),
    "measured_at": _time(),
    "duration_ms": _number(),
    "throughput_kbps": _number(optional=True),
    "baseline_kbps": _number(optional=True),
    "throughput_bytes": _number(optional=True, integer=True),
    "throughput_address": _text(45, optional=True),
    "evidence": _object(optional=True),
}


def _record(
    kind: str, i: int, raw: Any, fields: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    where = f"{kind}[{i}]"
    if not isinstance(raw, dict):
        raise WireError(where, "expected an object")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise WireError(f"{where}.{unknown[0]}", "unknown field")
    out: dict[str, Any] = {}
    for name, check in fields.items():
        try:
            out[name] = check(raw.get(name))
        except ValueError as exc:
            problem = "missing" if name not in raw else str(exc)
            raise WireError(f"{where}.{name}", problem) from None
    return out


def parse(document: Any, max_items: int) -> Upload:
    """The checked upload; WireError naming the first field that is not as it must be."""
    if not isinstance(document, dict):
        raise WireError("(body)", "expected a JSON object")
    if document.get("version") != VERSION:
        raise WireError("version", f"expected {VERSION}")
    for name in ("runs", "measurements"):
        if not isinstance(document.get(name), list):
            raise WireError(name, "expected a list")
    extra = sorted(set(document) - {"version", "runs", "measurements"})
    if extra:
        raise WireError(extra[0], "unknown field")
    if len(document["measurements"]) > max_items or len(document["runs"]) > max_items:
        raise WireError("measurements", f"more than {max_items} in one upload")
    runs = [_record("runs", i, r, RUN_FIELDS) for i, r in enumerate(document["runs"])]
    known = {r["run_id"] for r in runs}
    measurements = []
    seen: dict[tuple[str, int], int] = {}
    for i, raw in enumerate(document["measurements"]):
        m = _record("measurements", i, raw, MEASUREMENT_FIELDS)
        if m["run_id"] not in known:
            raise WireError(f"measurements[{i}].run_id", "no such run in this upload's runs")
        # One row per key in one statement: the evidence of a key sent twice would be too.
        if (first := seen.setdefault((m["run_id"], m["id"]), i)) != i:
            raise WireError(f"measurements[{i}].id", f"the same run_id and id as [{first}]")
        measurements.append(m)
    return Upload(tuple(runs), tuple(measurements))


# --- bytes on the wire ------------------------------------------------------------------


def _zstd() -> Any:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        return None
    return zstandard


def encodings() -> tuple[str, ...]:
    """The Content-Encodings this end can read and write."""
    return ("gzip", "zstd") if _zstd() is not None else ("gzip",)


def encode(runs: list[dict[str, Any]], measurements: list[dict[str, Any]]) -> bytes:
    """An upload's body, gzip-compressed (JSON-ready values: times as ISO-8601 text)."""
    document = {"version": VERSION, "runs": runs, "measurements": measurements}
    raw = json.dumps(document, separators=(",", ":"), default=_jsonable).encode()
    return gzip.compress(raw, compresslevel=6)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    raise TypeError(f"{type(v).__name__} is not JSON")


def decode(body: bytes, encoding: str, limit: int) -> Any:
    """The JSON document of a body; TooLarge past ``limit`` bytes once decompressed."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        raw = body
    elif encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise WireError("(body)", f"not gzip: {exc}") from None
        if not inflater.eof and len(raw) <= limit:
            raise WireError("(body)", "truncated gzip stream")
    elif encoding == "zstd" and (zstd := _zstd()) is not None:
        try:
            reader = zstd.ZstdDecompressor().stream_reader(body)
            raw = reader.read(limit + 1)
        except zstd.ZstdError as exc:
            raise WireError("(body)", f"not zstd: {exc}") from None
    else:
        raise WireError("Content-Encoding", f"{encoding!r}: expected one of {encodings()}")
    if len(raw) > limit:
        raise TooLarge(f"more than {limit} bytes once decompressed")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError("(body)", f"not JSON: {exc}") from None
    except RecursionError:
        raise WireError("(body)", "nested too deeply") from None
