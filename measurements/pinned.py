"""An httpx transport whose connections go to one chosen address, whatever the URL says.

The URL keeps its own host, so httpx sends it as the Host header and httpcore as the TLS SNI
and checks the certificate against it; only the TCP connect is redirected, by a network
backend that swaps the host for the pinned IP literal. anyio connects to a literal directly,
so no name is ever resolved: DNS is measured on its own, and a system lookup here would both
leak the name and blur connect time.

httpx 0.28 has no public way to give its own ``AsyncHTTPTransport`` a network backend, so this
is a small ``AsyncBaseTransport`` over ``httpcore.AsyncConnectionPool``, doing what
``AsyncHTTPTransport.handle_async_request`` does. HTTP/1.1 only: the ``h2`` package is not a
dependency, and one protocol keeps timings and blockpage bodies comparable between probes.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

import httpcore
import httpx

# httpcore's exceptions as httpx's, most specific first, so callers (and failures.failure_of,
# which knows httpx's) see the types an httpx transport promises. This names library types; it
# does not decide failure strings, which stay in measurements.failures.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextlib.contextmanager
def _httpx_exceptions() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _CountingStream(httpcore.AsyncNetworkStream):
    """A stream that counts what the peer sent above TLS (what HTTP read, or failed to parse).

    A peer that sent bytes and closed before any response could be parsed answered with
    something that is not HTTP; one that sent nothing cut the exchange. httpcore reports both
    as "Server disconnected without sending a response": only the count tells them apart.
    """

    def __init__(self, stream: httpcore.AsyncNetworkStream, backend: PinnedBackend) -> None:
        self._stream = stream
        self._backend = backend

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        data = await self._stream.read(max_bytes, timeout)
        self._backend.received += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        self._backend.received = 0  # the handshake's bytes are not an answer
        return _CountingStream(inner, self._backend)

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects to ``ip`` whenever httpcore asks for ``host``."""

    def __init__(self, host: str, ip: str, backend: httpcore.AsyncNetworkBackend | None = None):
        self._host = host.lower()
        self._ip = ip
        self._backend = backend or httpcore.AnyIOBackend()
        self.received = 0  # bytes the peer sent above TLS, on this backend's connections

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the pinned address; any other host is refused, never resolved."""
        if host.lower() != self._host:
            raise httpcore.ConnectError(f"no pinned address for {host}")
        stream = await self._backend.connect_tcp(
            self._ip,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        return _CountingStream(stream, self)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Not used: measurements only talk TCP."""
        raise httpcore.ConnectError("unix sockets are not measured")

    async def sleep(self, seconds: float) -> None:
        """Sleep through the wrapped backend (httpcore's retry backoff)."""
        await self._backend.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_exceptions():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with _httpx_exceptions():
                await self._stream.aclose()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport (HTTP/1.1) whose connections for ``host`` all go to ``ip``."""

    def __init__(self, host: str, ip: str, ssl_context: ssl.SSLContext) -> None:
        self.backend = PinnedBackend(host, ip)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=self.backend,
            http1=True,
            http2=False,
            retries=0,  # a retry would hide the failure being measured
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the pinned pool."""
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_exceptions():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every connection of the pool."""
        with _httpx_exceptions():
            await self._pool.aclose()
