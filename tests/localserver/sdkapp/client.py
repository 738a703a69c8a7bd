"""A send-only client on the Resonate SDK (``sources=[]``: it listens to nothing).

    python tests/localserver/sdkapp/client.py URL start ID ARG       # rpc "wf" on group sdkworker
    python tests/localserver/sdkapp/client.py URL resolve PID VALUE  # resolve a promise
    python tests/localserver/sdkapp/client.py URL get ID             # read a promise

ARG and VALUE are JSON. Each command prints one JSON line:
``{"id", "state", "value"}`` (the promise as the SDK decoded it).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from resonate.resonate import Resonate
from resonate.types import PromiseRecord, Value


def show(record: PromiseRecord) -> dict[str, Any]:
    return {"id": record.id, "state": record.state, "value": record.value.data}


async def main(url: str, command: str, id: str, raw: str | None) -> dict[str, Any]:
    r = Resonate(url=url, sources=[])
    if command == "start":
        handle = r.options(target="sdkworker").rpc(id, "wf", json.loads(raw or "null"))
        await handle.id()  # returns once promise.create was answered
        return show(await r.promises.get(id))
    if command == "resolve":
        return show(await r.promises.resolve(id, Value(data=json.loads(raw or "null"))))
    if command == "get":
        return show(await r.promises.get(id))
    raise SystemExit(f"unknown command {command!r}")


async def run(argv: list[str]) -> None:
    url, command, id, *rest = argv
    out = await asyncio.wait_for(main(url, command, id, rest[0] if rest else None), 20)
    print(json.dumps(out), flush=True)
    # The rpc handle keeps waiting for the result in the background; a
    # send-only CLI has nothing more to wait for, so leave at once.
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1:]))
