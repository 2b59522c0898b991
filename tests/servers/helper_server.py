"""The control helper's web application served in the test's own loop, on 127.0.0.1.

async with running_helper(HelperSettings(...)) as url:
    client = HelperClient(url, None, 5.0)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from probe.servers.helper import HelperSettings, make_runner


@contextlib.asynccontextmanager
async def running_helper(settings: HelperSettings) -> AsyncIterator[str]:
    """Serve the helper on a random port; yields its base URL."""
    runner = make_runner(settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
