"""A TCP port on 127.0.0.1 with a thread accepting connections: the base of the tests' fake relays."""

from __future__ import annotations

import contextlib
import socket
import threading


class Listener:
    """Accepts connections on a free port and hands each to :meth:`on_accept` (in its own thread)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def on_accept(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.on_accept(conn)

    def close(self) -> None:
        """Stop listening (the port is free again once this returns)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self.sock.close()
        self._thread.join(5)
