"""The request channel to the Resonate server over httpx, for the edges (functions, CLI).

It implements the SDK's seam, :class:`resonate_base.connections.Network`, as
the SDK's own ``resonate.connections.http.HttpConnection`` does over aiohttp,
with the same wire behaviour (``POST {url}/``, the JSON envelope as the body,
``Authorization: Bearer`` when there is a token, any HTTP status handed back
as the body text) but none of its costs on the edges' path: importing aiohttp
builds two TLS contexts and takes 150-250 ms of every cold start, while
httpx's own dependencies (h11, anyio) are already loaded by the ASGI server.

It never retries: a transport failure raises ``ConnectorError`` at once, so a
function can answer 503 within its time budget (the SDK's connection retries
for ever once started, which is right for a worker and wrong here).
"""

from __future__ import annotations

import functools
import logging
import ssl

import httpx
from resonate_base import ORIGIN_HEADER
from resonate_base.error import ConnectorError

#: Connections kept per process: the SDK's cap, above the fan-out of one request
#: (a cancel settles every vote at once) times the requests a function runs at once.
MAX_CONNECTIONS = 256
MAX_IDLE_CONNECTIONS = 64

# httpx logs every request at INFO ("HTTP Request: POST ..."): one more log entry per
# server call, several per function request. The SDK's aiohttp connection logs none.
logging.getLogger("httpx").setLevel(logging.WARNING)


class HttpxNetwork:
    """One keep-alive :class:`httpx.AsyncClient`, made on first use inside the running loop."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float | None = None) -> None:
        self._url = f"{url.rstrip('/')}/"
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._stopped = False

    async def start(self) -> None:
        """Nothing to start: the client is made by the first :meth:`send`."""

    async def stop(self) -> None:
        """Close the pooled connections; any later :meth:`send` raises ``ConnectorError``."""
        self._stopped = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        """POST one envelope and return the answer's body, whatever its HTTP status.

        The routing origin the SDK passes in ``headers`` is dropped: HTTP has one
        endpoint and the server reads the origin off the envelope (and its key,
        ``resonate:origin``, is not a valid HTTP field name, which h11 refuses).
        """
        if self._stopped:
            raise ConnectorError(RuntimeError("network has been stopped"))
        extra = {k: v for k, v in (headers or {}).items() if k != ORIGIN_HEADER}
        try:
            resp = await self._session().post(self._url, content=req, headers=extra or None)
        except httpx.HTTPError as exc:  # refused, reset, timed out, malformed answer
            raise ConnectorError(exc) from exc
        return resp.text

    def _session(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_IDLE_CONNECTIONS),
                verify=tls_context(self._url),
                # As the SDK's aiohttp session: no proxy or netrc from the environment.
                trust_env=False,
            )
        return self._client


def tls_context(url: str) -> ssl.SSLContext:
    """The TLS settings for ``url``: the system's CAs for https (built once per process,
    ~30 ms), else a bare context that costs nothing and verifies against no CA at all,
    so it could never accept a certificate should an http URL ever lead to TLS."""
    if url.startswith("https://"):
        return _system_ca_context()
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


@functools.cache
def _system_ca_context() -> ssl.SSLContext:
    return ssl.create_default_context()
