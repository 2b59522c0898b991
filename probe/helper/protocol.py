"""The control helper's JSON API, version 1: every message, its schema and its one validator.

Both ends use this module: the server reads requests and writes answers with it, the client
writes requests and reads answers with it, so the two cannot drift apart.

    POST /v1/check        CheckRequest       -> CheckReport       (or ErrorBody)
    POST /v1/throughput   ThroughputRequest  -> ThroughputReport  (or ErrorBody)
    GET  /v1/health                          -> Health (and where the SNI replay listens)
    GET  /v1/whoami                          -> Whoami: the asker's ASN and country, never
                                                its address (or ErrorBody, 501, without a
                                                database)

Each message is a frozen dataclass with ``to_json()`` (plain JSON types) and a classmethod
``from_json(data)`` that returns the message or raises ``ProtocolError`` naming the first
field that is wrong ("report.status: expected an integer 100-999"); it never raises
anything else, whatever ``data`` is.

Versions: the paths carry the major version (``/v1/``) and every answer carries
``"version": 1``. A message without ``version`` is taken as version 1 (requests from
clients before this module carry none); any other version is refused. Requests are
written without it, because servers before this module refuse a key they do not know.
Requests are closed (an unknown key is refused: the server says what it takes); answers
are open (an unknown key is ignored, so a newer server may add fields to version 1).
A field that may be null may also be absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from measurements.failures import Failure
from measurements.observations import ThroughputObservation
from probe.classify.evidence import HelperReport
from probe.helper import fields
from probe.helper.fields import ProtocolError as ProtocolError
from probe.helper.fields import Reader
from targets.model import Endpoint, url_problem

# The readers by the names the schemas below use (probe.helper.fields holds them).
_text, _boolean, _ip = fields.text, fields.boolean, fields.ip_address
_integer, _number, _one_of = fields.integer, fields.number, fields.one_of
_Optional, _list = fields.Optional, fields.list_of

VERSION = 1
MAX_REQUEST_BYTES = 4096  # a request is one short JSON object
# What one throughput request may ask of the helper: its operator's line pays for it.
MAX_TRANSFER_BYTES = 8 << 20
MAX_TRANSFER_SECONDS = 30.0
MIN_TRANSFER_SECONDS = 0.1
MAX_TRIALS = 5
OPERATIONS = ("connect", "tls_handshake", "http_request", "http_body")
STOPS = ("bytes", "seconds", "end")


def transfer_time_limit(trials: int, max_seconds: float) -> float:
    """How long the helper may take over a throughput request: its transfers, one after the
    other, and as long again waiting for another probe's test to finish."""
    return 2 * trials * max_seconds + 10.0


def _input(value: Any, path: str) -> str:
    """A URL or a host:port endpoint, as targets.model accepts them."""
    text = _text(value, path)
    if "://" in text:
        problem = url_problem(text)
        if problem:
            raise ProtocolError(path, problem)
        return text
    try:
        Endpoint.parse(text)
    except ValueError as exc:
        raise ProtocolError(path, f"expected a URL or host:port ({exc})") from None
    return text


def _url(value: Any, path: str) -> str:
    text = _text(value, path)
    problem = url_problem(text)
    if problem:
        raise ProtocolError(path, problem)
    return text


_COUNT = _integer(0)
_DURATION = _number(0)
_STATUS = _Optional(_integer(100, 999))  # three digits, as h11 takes them
_MS = _Optional(_DURATION)


def _sample(value: Any, path: str) -> tuple[float, int]:
    """(ms since the request started, body bytes so far)."""
    if not isinstance(value, list) or len(value) != 2:
        raise ProtocolError(path, "expected [ms, bytes]")
    return (_DURATION(value[0], f"{path}[0]"), _COUNT(value[1], f"{path}[1]"))


def _version(data: Mapping[str, Any], root: str) -> None:
    version = data.get("version", VERSION)
    if type(version) is not int or version != VERSION:
        raise ProtocolError(f"{root}.version", f"expected {VERSION}, the only version spoken here")


def _read(data: Any, root: str, schema: Mapping[str, Reader], *, closed: bool) -> dict[str, Any]:
    """The fields of one JSON object by ``schema``; absent optional fields are None."""
    if not isinstance(data, dict):
        raise ProtocolError(root, "expected a JSON object")
    _version(data, root)
    if closed:
        extra = sorted(str(key) for key in data if key not in schema and key != "version")
        if extra:
            raise ProtocolError(f"{root}.{extra[0]}", "not a field of this message")
    values: dict[str, Any] = {}
    for name, reader in schema.items():
        if name not in data and not isinstance(reader, _Optional):
            raise ProtocolError(f"{root}.{name}", "missing")
        values[name] = reader(data.get(name), f"{root}.{name}")
    return values


def _plain(value: Any) -> Any:
    """A field's value as JSON types (tuples become lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class _Message:
    """What every message does with its schema: write it, and read it back or refuse it."""

    __slots__ = ()
    ROOT: ClassVar[str]  # how a ProtocolError names the message
    SCHEMA: ClassVar[Mapping[str, Reader]]
    # A request is closed and written without "version" (older servers refuse a key they
    # do not know); an answer is open and carries it.
    REQUEST: ClassVar[bool] = False

    def to_json(self) -> dict[str, Any]:
        """The message as plain JSON types."""
        body = {name: _plain(getattr(self, name)) for name in self.SCHEMA}
        return body if self.REQUEST else {"version": VERSION, **body}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """The message in ``data``, or ProtocolError naming the first field that is wrong."""
        return cls(**_read(data, cls.ROOT, cls.SCHEMA, closed=cls.REQUEST))


# ------------------------------------------------------------------ POST /v1/check


@dataclass(frozen=True, slots=True)
class CheckRequest(_Message):
    """A probe's question: what does ``input`` look like at ``address`` from the helper?"""

    input: str  # a URL or host:port
    address: str  # the IP address the probe measured

    PATH: ClassVar[str] = "/v1/check"
    ROOT: ClassVar[str] = "check"
    SCHEMA: ClassVar[Mapping[str, Reader]] = {"input": _input, "address": _ip}
    REQUEST: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class CheckReport(_Message):
    """The helper's answer to a check: the fields of the classifier's HelperReport."""

    addresses: tuple[str, ...] = ()  # what the helper's resolver gave for the name
    tcp_ok: bool | None = None
    tls_valid: bool | None = None
    status: int | None = None
    title: str | None = None
    body_length: int | None = None
    final_host: str | None = None
    first_byte_ms: float | None = None

    ROOT: ClassVar[str] = "report"
    SCHEMA: ClassVar[Mapping[str, Reader]] = {
        "addresses": _list(_ip),
        "tcp_ok": _Optional(_boolean),
        "tls_valid": _Optional(_boolean),
        "status": _STATUS,
        "title": _Optional(_text),
        "body_length": _Optional(_COUNT),
        "final_host": _Optional(_text),
        "first_byte_ms": _MS,
    }

    def evidence(self) -> HelperReport:
        """The report as the classifier takes it."""
        return HelperReport(**{name: getattr(self, name) for name in self.SCHEMA})


# ------------------------------------------------------------------ POST /v1/throughput


def _max_bytes(value: Any, path: str) -> int:
    # Read as a number, as before this module: a fraction of a byte is dropped.
    return int(_number(1, MAX_TRANSFER_BYTES)(value, path))


@dataclass(frozen=True, slots=True)
class ThroughputRequest(_Message):
    """A probe's request: time ``trials`` downloads of ``url`` from ``address``, each within
    ``max_bytes`` and ``max_seconds``."""

    url: str
    address: str
    max_bytes: int
    max_seconds: float
    trials: int

    PATH: ClassVar[str] = "/v1/throughput"
    ROOT: ClassVar[str] = "throughput"
    SCHEMA: ClassVar[Mapping[str, Reader]] = {
        "url": _url,
        "address": _ip,
        "max_bytes": _max_bytes,
        "max_seconds": _number(MIN_TRANSFER_SECONDS, MAX_TRANSFER_SECONDS),
        "trials": _integer(1, MAX_TRIALS),
    }
    REQUEST: ClassVar[bool] = True

    @property
    def time_limit(self) -> float:
        """How long the whole test may take, waiting for the helper's turn included."""
        return transfer_time_limit(self.trials, self.max_seconds)


# One timed download, as measurements.throughput observes it.
TRANSFER_SCHEMA: Mapping[str, Reader] = {
    "url": _text,
    "ip": _ip,
    "sni": _Optional(_text),
    "verified": _boolean,
    "failure": _Optional(_one_of(tuple(Failure), "a failure of the closed vocabulary")),
    "operation": _Optional(_one_of(OPERATIONS)),
    "status": _STATUS,
    "connect_ms": _MS,
    "tls_ms": _MS,
    "first_byte_ms": _MS,
    "samples": _list(_sample),
    "bytes": _COUNT,
    "duration_ms": _DURATION,
    "goodput_kbps": _MS,
    "stopped": _Optional(_one_of(STOPS)),
    "error": _Optional(_text),
    "direction": _Optional(_one_of(("down", "up"))),  # absent before the SNI replay: "down"
}
# What observations.to_jsonable adds to each transfer, kept on the wire as before.
_KIND = ThroughputObservation.__name__
_KINDED: Mapping[str, Reader] = {**TRANSFER_SCHEMA, "kind": _Optional(_one_of((_KIND,)))}


def _transfer(value: Any, path: str) -> ThroughputObservation:
    found = _read(value, path, _KINDED, closed=False)
    del found["kind"]
    found["direction"] = found["direction"] or "down"
    return ThroughputObservation(**found)


@dataclass(frozen=True, slots=True)
class ThroughputReport(_Message):
    """The helper's answer to a throughput request: every transfer, whole."""

    transfers: tuple[ThroughputObservation, ...]

    ROOT: ClassVar[str] = "throughput_report"
    SCHEMA: ClassVar[Mapping[str, Reader]] = {"transfers": _list(_transfer)}

    def to_json(self) -> dict[str, Any]:
        """The answer's body."""
        transfers = [
            {**{name: _plain(getattr(t, name)) for name in TRANSFER_SCHEMA}, "kind": _KIND}
            for t in self.transfers
        ]
        return {"version": VERSION, "transfers": transfers}


# ------------------------------------------------------------------ GET /v1/health, errors


@dataclass(frozen=True, slots=True)
class Health(_Message):
    """The helper's answer to a health check."""

    ok: bool = True
    replay_port: int | None = None  # the SNI replay listener's (probe.helper.replay), if any
    replay_certificate_sha256: str | None = None  # its certificate, for probes to pin

    PATH: ClassVar[str] = "/v1/health"
    ROOT: ClassVar[str] = "health"
    SCHEMA: ClassVar[Mapping[str, Reader]] = {"ok": _boolean, "replay_port": _Optional(
        _integer(1, 65535)), "replay_certificate_sha256": _Optional(_text)}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The answer's body; without a replay listener, what it was before there was one."""
        body = _Message.to_json(self)
        return body if self.replay_port is not None else {"version": VERSION, "ok": self.ok}


def _country(value: Any, path: str) -> str:
    text = _text(value, path)
    if len(text) != 2 or not text.isascii() or not text.isupper():
        raise ProtocolError(path, "expected a two-letter country code")
    return text


@dataclass(frozen=True, slots=True)
class Whoami(_Message):
    """Where the helper places the asker, from its IP-to-ASN database: never the address.

    A field the database does not know is null, and ``unknown`` says why.
    """

    asn: int | None = None
    network_name: str | None = None  # the AS's organisation
    country: str | None = None  # ISO 3166 alpha-2
    unknown: str | None = None  # why a field is null ("not in the helper's database")

    PATH: ClassVar[str] = "/v1/whoami"
    ROOT: ClassVar[str] = "whoami"
    SCHEMA: ClassVar[Mapping[str, Reader]] = {
        "asn": _Optional(_integer(1, (1 << 32) - 1)),
        "network_name": _Optional(_text),
        "country": _Optional(_country),
        "unknown": _Optional(_text),
    }


@dataclass(frozen=True, slots=True)
class ErrorBody(_Message):
    """Why the helper refused a request (the body of every answer of 400 and over)."""

    error: str

    ROOT: ClassVar[str] = "error_body"
    SCHEMA: ClassVar[Mapping[str, Reader]] = {"error": _text}


Message = (
    CheckRequest | CheckReport | ThroughputRequest | ThroughputReport | Health | Whoami | ErrorBody
)
MESSAGES: tuple[type[Message], ...] = (
    CheckRequest, CheckReport, ThroughputRequest, ThroughputReport, Health, Whoami, ErrorBody,
)  # fmt: skip
