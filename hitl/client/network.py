"""The edges' request channel to the Resonate server: the standard library's ``http.client``.

It implements the SDK's seam, :class:`resonate_base.connections.Network`, with
the wire behaviour of the SDK's own aiohttp ``HttpConnection`` (``POST {url}/``,
the JSON envelope as the body, ``Authorization: Bearer`` when there is a token,
any HTTP status handed back as the body text), for the functions and the CLI.

Why not the SDK's connection: importing aiohttp takes ~200 ms of a function's
cold start (two TLS contexts built at import, and its modules), where
``http.client`` is already loaded by functions-framework. Why not httpx:
measured against the local server it took 1.7-2.0 ms of client CPU per request
(aiohttp 0.7) and its pool stalled with 64 requests in flight (p99 2.6 s).

Each call runs in a small thread pool, on a kept-alive connection taken from
a shared idle list (the most recently used first) and put back after. A connection the server closed while it sat idle fails on reuse
before any answer arrives; the request is then sent once more on a new
connection, which is safe because every request of the protocol is idempotent
(creates and settles by id). It never retries otherwise: a refused or timed-out
call raises ``ConnectorError`` at once and the caller answers 503.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from resonate_base import ORIGIN_HEADER
from resonate_base.error import ConnectorError

#: Calls in flight at once per process (each holds a thread and a connection while it runs).
MAX_IN_FLIGHT = 32

#: Failures of a reused connection that mean "closed while idle", before any answer.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class StdlibNetwork:
    """POSTs envelopes over ``http.client`` from a thread pool, on pooled kept-alive connections."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path.rstrip("/") or "") + "/"
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        #: Connections between calls (guarded by ``_lock``), and every connection open.
        self._idle: list[http.client.HTTPConnection] = []
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._tls: ssl.SSLContext | None = None
        self._stopped = False

    async def start(self) -> None:
        """Nothing to start: threads and connections are made by the first :meth:`send`."""

    async def stop(self) -> None:
        """Close every connection; any later :meth:`send` raises ``ConnectorError``."""
        self._stopped = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            conns, self._open, self._idle = self._open, set(), []
        for conn in conns:
            conn.close()

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        """POST one envelope and return the answer's body, whatever its HTTP status.

        The routing origin the SDK passes in ``headers`` is dropped: HTTP has one
        endpoint, and the server reads the origin off the envelope.
        """
        if self._stopped:
            raise ConnectorError(RuntimeError("network has been stopped"))
        extra = {k: v for k, v in (headers or {}).items() if k != ORIGIN_HEADER}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="resonate-http")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._post, req.encode(), extra)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, garbled
            raise ConnectorError(exc) from exc
        except RuntimeError as exc:  # the pool was shut down by stop()
            raise ConnectorError(exc) from exc

    # -- in a pool thread --------------------------------------------------------------

    def _post(self, body: bytes, extra: dict[str, str]) -> str:
        conn = self._take()
        if conn is not None:
            try:
                return self._exchange(conn, body, extra)
            except _STALE:
                pass  # closed while idle (and discarded): once more, on a new connection
        return self._exchange(self._connect(), body, extra)

    def _exchange(self, conn: http.client.HTTPConnection, body: bytes, extra: dict[str, str]) -> str:
        """One request and its answer on ``conn``; on any failure ``conn`` is discarded, never
        reused in whatever state it was left (timed out mid-answer, say)."""
        try:
            conn.request("POST", self._path, body=body, headers={**self._headers, **extra})
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            self._discard(conn)
            raise
        if resp.will_close:
            self._discard(conn)
        else:
            self._give_back(conn)
        return data.decode("utf-8", errors="replace")

    def _take(self) -> http.client.HTTPConnection | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if conn in self._open and len(self._idle) < MAX_IN_FLIGHT:
                self._idle.append(conn)
                return
        self._discard(conn)  # stopped meanwhile, or more idle than could ever be used at once

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        with self._lock:
            self._open.add(conn)
        return conn

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._lock:
            self._open.discard(conn)

    def _tls_context(self) -> ssl.SSLContext:
        """The system's CAs, loaded once, and only for an https server (~30 ms)."""
        with self._lock:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            return self._tls
