"""``make run``: the whole system on this machine, durable, until Ctrl-C.

Starts the local Resonate server (its database in ``state/``), an SMTP sink
(its inbox in ``state/inbox``), one worker, and the ``start`` and ``unblock``
functions, each as its own process with its log in ``state/logs``.

``HITL_SIGN_IN=iap make run`` (or ``--sign-in``) turns approver sign-in on: the
development sign-in (:mod:`devstack.signin`, never deployed) stands where IAP
would, in front of ``unblock``, and ``unblock``'s inbox lists what waits for
whoever signs in.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import threading
from pathlib import Path

from devstack.stack import ROOT, Stack


def signing_key(state: Path) -> str:
    """The development signing key, made once and kept in ``state/``."""
    path = state / "signing.key"
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def banner(stack: Stack) -> str:
    assert stack.server
    assert stack.start_fn
    assert stack.unblock_fn
    assert stack.sink
    start = stack.start_fn.url
    sign_in = (
        f"\n  approver sign-in ON: the development sign-in (never deployed) asks for an email in front of unblock;"
        f"\n                   inbox of what waits for you: {stack.unblock_url}\n"
        if stack.sign_in
        else ""
    )
    return f"""
hitl is running (Ctrl-C stops everything; state survives in {stack.state}):
  Resonate server  {stack.server.url}
  start            {start}/
  unblock          {stack.unblock_url}
  SMTP sink        127.0.0.1:{stack.sink.port}  ->  {stack.inbox}
  logs             {stack.logs}{sign_in}

Try it:
  curl -s -X POST {start}/ -H 'Content-Type: application/json' \\
    -d '{{"workflow_id": "demo-1", "approvers": ["alice@example.com"], "subject": "Deploy v42", "details": {{"service": "api"}}}}'
  # the approval email's links appear in {stack.logs / "smtpsink.log"}; open one in a browser
  curl -s '{start}/?workflow_id=demo-1'
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.dev", description=__doc__.split("\n")[0])
    p.add_argument("--state", type=Path, default=ROOT / "state", help="folder for the database, inbox and logs")
    p.add_argument("--server-port", type=int, default=int(os.environ.get("HITL_DEV_SERVER_PORT", 8001)))
    p.add_argument("--smtp-port", type=int, default=int(os.environ.get("HITL_DEV_SMTP_PORT", 2525)))
    p.add_argument("--start-port", type=int, default=int(os.environ.get("HITL_DEV_START_PORT", 8080)))
    p.add_argument("--unblock-port", type=int, default=int(os.environ.get("HITL_DEV_UNBLOCK_PORT", 8081)))
    p.add_argument(
        "--sign-in",
        action="store_true",
        default=os.environ.get("HITL_SIGN_IN") == "iap",
        help="approvers sign in (the development sign-in in front of unblock); also HITL_SIGN_IN=iap",
    )
    args = p.parse_args(argv)

    stack = Stack(
        args.state,
        signing_key=signing_key(args.state),
        durable=True,
        server_port=args.server_port,
        smtp_port=args.smtp_port,
        start_port=args.start_port,
        unblock_port=args.unblock_port,
        sign_in=args.sign_in,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start()
        print(banner(stack), flush=True)
        while not stop.wait(1.0):
            dead = [proc.name for proc in stack.processes() if not proc.alive()]
            if dead:
                print(f"stopping: {', '.join(dead)} exited (see {stack.logs})", flush=True)
                break
    finally:
        stack.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
