"""Asking the control helper what an input looks like from an uncensored network."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from measurements import trust
from measurements.observations import ThroughputObservation
from probe.classify.evidence import HelperReport

_TRANSFER_FIELDS = {f.name: f for f in dataclasses.fields(ThroughputObservation)}
_OPTIONAL_FLOATS = ("connect_ms", "tls_ms", "first_byte_ms", "goodput_kbps")
_OPTIONAL_TEXTS = ("sni", "failure", "operation", "stopped", "error")


def report_from_json(data: Any) -> HelperReport | None:
    """A HelperReport from the helper's JSON, or None when it is not one."""
    if not isinstance(data, dict) or data.get("version") != 1:
        return None

    def opt(key: str, kind: type) -> Any:
        value = data.get(key)
        if kind is bool:
            return value if isinstance(value, bool) else None
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    addresses = data.get("addresses")
    return HelperReport(
        addresses=tuple(a for a in addresses if isinstance(a, str))
        if isinstance(addresses, list)
        else (),
        tcp_ok=opt("tcp_ok", bool),
        tls_valid=opt("tls_valid", bool),
        status=opt("status", int),
        title=opt("title", str),
        body_length=opt("body_length", int),
        final_host=opt("final_host", str),
        first_byte_ms=opt("first_byte_ms", float),
    )


def transfer_time_limit(trials: int, max_seconds: float) -> float:
    """How long the helper may take over a throughput request: its transfers, one after the
    other, and as long again waiting for another probe's test to finish."""
    return 2 * trials * max_seconds + 10.0


def transfer_from_json(data: Any) -> ThroughputObservation | None:
    """One of the helper's timed downloads, or None when it is not one (checked field by field:
    the helper is another machine, and what it sends ends up in the evidence)."""
    if not isinstance(data, dict):
        return None

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    samples = data.get("samples")
    ok = (
        isinstance(data.get("url"), str)
        and isinstance(data.get("ip"), str)
        and isinstance(data.get("verified"), bool)
        and (data.get("status") is None or type(data.get("status")) is int)
        and type(data.get("bytes")) is int
        and number(data.get("duration_ms"))
        and all(data.get(k) is None or number(data.get(k)) for k in _OPTIONAL_FLOATS)
        and all(data.get(k) is None or isinstance(data.get(k), str) for k in _OPTIONAL_TEXTS)
        and isinstance(samples, list)
        and all(
            isinstance(s, list) and len(s) == 2 and number(s[0]) and type(s[1]) is int
            for s in samples
        )
    )
    if not ok:
        return None
    assert isinstance(samples, list)
    fields: dict[str, Any] = {k: data.get(k) for k in _TRANSFER_FIELDS if k != "samples"}
    return ThroughputObservation(**fields, samples=tuple((float(t), int(b)) for t, b in samples))


class HelperClient:
    """One HTTP client to the helper for the whole sweep."""

    def __init__(
        self, base_url: str, ca_bundle: str | None, timeout: float, *, token: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client: httpx.AsyncClient | None = None

    async def check(self, input_: str, address: str) -> HelperReport | None:
        """The helper's view of ``input_`` at ``address``; None when the helper failed."""
        try:
            body = {"input": input_, "address": address}
            response = await self._post("/v1/check", body, seconds=self._timeout)
            if response.status_code != 200:
                return None
            return report_from_json(response.json())
        except (httpx.HTTPError, ValueError):
            # The helper being unreachable is a missing control, not an observation.
            return None

    async def throughput(
        self, url: str, address: str, *, max_bytes: int, max_seconds: float, trials: int
    ) -> tuple[ThroughputObservation, ...]:
        """The helper's timed downloads of ``url`` from ``address``; () when it failed."""
        request = {
            "url": url, "address": address, "max_bytes": max_bytes,
            "max_seconds": max_seconds, "trials": trials,
        }  # fmt: skip
        timeout = transfer_time_limit(trials, max_seconds) + self._timeout
        try:
            response = await self._post("/v1/throughput", request, seconds=timeout)
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return ()
        if not isinstance(data, dict) or data.get("version") != 1:
            return ()
        found = [transfer_from_json(t) for t in data.get("transfers") or ()]
        return tuple(t for t in found if t is not None)

    async def _post(self, path: str, body: dict[str, Any], *, seconds: float) -> httpx.Response:
        if self._client is None:
            ctx = await trust.context_async(self._ca_bundle)
            # trust_env off: an environment proxy must not stand between probe and helper.
            # As many connections as the helper checks at once by default (16), and half of
            # what it lets one address hold (32): more would wait there or be turned away.
            self._client = httpx.AsyncClient(
                verify=ctx, trust_env=False, timeout=self._timeout, headers=self._headers,
                limits=httpx.Limits(max_connections=16),
            )  # fmt: skip
        return await self._client.post(f"{self.base_url}{path}", json=body, timeout=seconds)

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
