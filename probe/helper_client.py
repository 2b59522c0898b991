"""Asking the control helper what an input looks like from an uncensored network."""

from __future__ import annotations

from typing import Any

import httpx

from measurements import trust
from probe.evidence import HelperReport


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
    )


class HelperClient:
    """One HTTP client to the helper for the whole sweep."""

    def __init__(self, base_url: str, ca_bundle: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def check(self, input_: str, address: str) -> HelperReport | None:
        """The helper's view of ``input_`` at ``address``; None when the helper failed."""
        if self._client is None:
            ctx = await trust.context_async(self._ca_bundle)
            # trust_env off: an environment proxy must not stand between probe and helper.
            self._client = httpx.AsyncClient(verify=ctx, trust_env=False, timeout=self._timeout)
        try:
            response = await self._client.post(
                f"{self.base_url}/v1/check", json={"input": input_, "address": address}
            )
            if response.status_code != 200:
                return None
            return report_from_json(response.json())
        except (httpx.HTTPError, ValueError):
            # The helper being unreachable is a missing control, not an observation.
            return None

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
