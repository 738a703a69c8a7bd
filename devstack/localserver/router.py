"""Delivery of pushed messages to the SSE streams of ``GET /poll/{group}/{pid}``.

Addresses are the SDK's ``poll://`` ones, read by the one parser the
validation uses (:func:`.rules.parse_address`) and routed as the real server's
``PollRegistry`` does: ``poll://uni@group/pid`` reaches that stream only;
``poll://any@group[/pid]`` reaches that pid when it is connected, else a
random stream of the group (each connection equally likely). Groups and pids
are compared exactly as written (a ``poll`` URL's host is never lowercased).
Two streams on one pid are both kept; a message for that pid goes to the one
that connected first, as the real registry's first match does. With nobody to
take it, a message is dropped: a pending task's execute comes again with the
30 s retry, exactly as on the real server.

One addition keeps a reconnect from losing anything: when the *server* ends a
stream (the periodic clean end that keeps the SDK's 300 s client timeout from
killing its listener), the pid is parked for a grace period and messages for
it (or, when its group has no other stream, for the group) are held and
flushed into its next stream. A stream the *client* dropped (a killed worker)
is removed at once and what was queued for it is routed again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from devstack.localserver.rules import parse_address

logger = logging.getLogger("devstack.localserver")

QUEUE_LIMIT = 1000

#: A message on its way: the address it was sent to and its SSE frame.
Delivery = tuple[str, bytes]


@dataclass(eq=False)
class Stream:
    group: str
    pid: str
    queue: asyncio.Queue[Delivery | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))

    def put(self, delivery: Delivery) -> bool:
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            logger.warning(
                "stream queue full, message dropped", extra={"fields": {"group": self.group, "pid": self.pid}}
            )
            return False
        return True

    def drain(self) -> list[Delivery]:
        backlog: list[Delivery] = []
        while not self.queue.empty():
            delivery = self.queue.get_nowait()
            if delivery is not None:
                backlog.append(delivery)
        return backlog


@dataclass
class _Parked:
    until: float
    frames: list[Delivery] = field(default_factory=list)


class Router:
    def __init__(self, *, grace: float = 10.0, clock=time.monotonic) -> None:
        self._groups: dict[str, dict[str, list[Stream]]] = {}
        #: group -> its streams, oldest first (a random anycast pick is one connection, uniformly).
        self._members: dict[str, list[Stream]] = {}
        self._parked: dict[tuple[str, str], _Parked] = {}
        self._grace = grace
        self._clock = clock

    def count(self) -> int:
        return sum(len(s) for pids in self._groups.values() for s in pids.values())

    def streams(self) -> list[Stream]:
        return [s for pids in self._groups.values() for ss in pids.values() for s in ss]

    def open(self, group: str, pid: str) -> Stream:
        stream = Stream(group, pid)
        self._groups.setdefault(stream.group, {}).setdefault(pid, []).append(stream)
        self._members.setdefault(stream.group, []).append(stream)
        parked = self._parked.pop((stream.group, pid), None)
        if parked is not None:
            for delivery in parked.frames:
                stream.put(delivery)
        logger.info("stream opened", extra={"fields": {"group": stream.group, "pid": pid}})
        return stream

    def close(self, stream: Stream, *, by_server: bool) -> None:
        """Remove ``stream``; park its pid when the server ended it, else re-route its backlog."""
        pids = self._groups.get(stream.group, {})
        same = pids.get(stream.pid, [])
        if stream in same:
            same.remove(stream)
        if not same:
            pids.pop(stream.pid, None)
        if not pids:
            self._groups.pop(stream.group, None)
        members = self._members.get(stream.group, [])
        if stream in members:
            members.remove(stream)
        if not members:
            self._members.pop(stream.group, None)
        backlog = stream.drain()
        if by_server and not same:
            self._parked[(stream.group, stream.pid)] = _Parked(self._clock() + self._grace, backlog)
        else:  # unicast messages die with their stream; anycast ones go to another member
            for address, frame in backlog:
                self.deliver(address, frame)
        logger.info(
            "stream closed",
            extra={"fields": {"group": stream.group, "pid": stream.pid, "by": "server" if by_server else "client"}},
        )

    def deliver(self, address: str, frame: bytes) -> bool:
        parsed = parse_address(address)
        if parsed is None or parsed.scheme != "poll":
            logger.warning("message for an address that is not poll:// dropped", extra={"fields": {"address": address}})
            return False
        cast, group, pid = parsed.cast, parsed.group, parsed.id
        assert group is not None
        if cast == "uni":
            return pid is not None and self._send_uni(group, pid, (address, frame))
        return self._send_any(group, pid, (address, frame))

    def _live(self, group: str, pid: str) -> Stream | None:
        streams = self._groups.get(group, {}).get(pid)
        return streams[0] if streams else None

    def _park(self, group: str, pid: str | None, frame: Delivery) -> bool:
        now = self._clock()
        for key in [k for k, p in self._parked.items() if p.until <= now]:
            del self._parked[key]
        if pid is not None and (group, pid) in self._parked:
            self._parked[(group, pid)].frames.append(frame)
            return True
        if pid is None:
            candidates = [p for (g, _), p in self._parked.items() if g == group]
            if candidates:
                random.choice(candidates).frames.append(frame)  # noqa: S311 - load spreading, not secrecy
                return True
        return False

    def _send_uni(self, group: str, pid: str, frame: Delivery) -> bool:
        stream = self._live(group, pid)
        if stream is not None:
            return stream.put(frame)
        if self._park(group, pid, frame):
            return True
        logger.debug("no stream for unicast message, dropped", extra={"fields": {"group": group, "pid": pid}})
        return False

    def _send_any(self, group: str, pid: str | None, frame: Delivery) -> bool:
        if pid is not None:
            stream = self._live(group, pid)
            if stream is not None:
                return stream.put(frame)
        members = self._members.get(group)
        if members:
            return random.choice(members).put(frame)  # noqa: S311 - spreading work, not secrets
        if (pid is not None and self._park(group, pid, frame)) or self._park(group, None, frame):
            return True
        logger.info("no stream in group, message dropped until the task retry", extra={"fields": {"group": group}})
        return False
