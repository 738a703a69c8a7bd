"""Start a deploy run of the caller's workflow, and (with ``--wait``) print how it ended.

    RESONATE_URL=http://127.0.0.1:8001 .venv/bin/python -m examples.caller_workflow.trigger \\
        deploy-api-v42 api v42 alice@example.com [--deadline 2h] [--wait SECONDS]

The run id (``deploy-api-v42``) names the run: the same id is the same run. Prints one
JSON line: ``{"id", "state", "value"}`` (``value``: the workflow's result once it ended).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import timedelta

from resonate.resonate import Resonate


async def main(args: argparse.Namespace) -> dict[str, object]:
    resonate = Resonate(url=os.environ["RESONATE_URL"], token=os.environ.get("RESONATE_TOKEN") or None, sources=[])
    group = os.environ.get("CALLER_GROUP", "deploys")
    # The run must outlive the approval's deadline (the SDK's default is a day).
    run = resonate.options(target=group, timeout=timedelta(days=30)).rpc(
        args.id, "deploy", args.service, args.version, args.approvers, args.deadline
    )
    await run.id()  # returns once the run's promise exists
    ends = time.monotonic() + args.wait
    record = await resonate.promises.get(args.id)
    while record.state == "pending" and time.monotonic() < ends:
        await asyncio.sleep(0.2)
        record = await resonate.promises.get(args.id)
    return {"id": record.id, "state": record.state, "value": record.value.data}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("id")
    p.add_argument("service")
    p.add_argument("version")
    p.add_argument("approvers", nargs="+")
    p.add_argument("--deadline", default="24h", help='the approval\'s deadline, e.g. "2h" (default 24h)')
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the run to end")
    out = asyncio.run(main(p.parse_args()))
    print(json.dumps(out), flush=True)
    os._exit(0)  # the rpc handle's background subscription has nothing left to do


if __name__ == "__main__":
    cli()
