"""Local ports for the tests that need a connection refused.

A free port (``devstack.stack.free_port``) is closed when it is returned, so
another process may take it before the test connects; :func:`refused_port`
holds the port bound (never listening) for as long as the test runs, so a
connection to it is refused, every time.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
