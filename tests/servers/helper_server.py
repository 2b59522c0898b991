"""The control helper's web application served in the test's own loop, on 127.0.0.1.

async with running_helper(HelperSettings(...)) as url:
    client = HelperClient(url, None, 5.0)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from probe.helper.server import HelperSettings, HelperSite, make_runner


@contextlib.asynccontextmanager
async def running_helper(settings: HelperSettings) -> AsyncIterator[str]:
    """Serve the helper on a random port, as ``probe helper serve`` does; yields its base URL."""
    runner = make_runner(settings)
    await runner.setup()
    site = HelperSite(runner, "127.0.0.1", 0, settings.per_client_connections)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site.port}"
    finally:
        await runner.cleanup()
