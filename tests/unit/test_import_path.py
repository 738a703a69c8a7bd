"""The edges' import path: none of the worker's machinery, and no aiohttp.

``resonate.resonate`` (the SDK's runtime: registry, scheduler, every
connection), the workflow, the notifiers and aiohttp (~200 ms: two TLS
contexts and its modules) are the worker's; a function that imported them
would pay for them in every cold start. Each check runs in a fresh
interpreter, so nothing imported by other tests counts.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.stack import ROOT

FORBIDDEN = ("aiohttp", "resonate.resonate", "hitl.approval", "hitl.notify.dispatcher", "hitl.notify.post")


def imported_after(statement: str) -> set[str]:
    """The modules of :data:`FORBIDDEN` a fresh interpreter has loaded after ``statement``."""
    probe = f"{statement}\nimport sys\nprint(' '.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        "import functions.main",
        "import hitl.client.sendonly, hitl.operations, hitl.edges.cli",
        "import hitl.notify.urls",  # what start imports when a channel names a URL
        # What the first request of each function runs before it talks to the server.
        "import os; os.environ.update(RESONATE_URL='http://127.0.0.1:1', HITL_SIGNING_KEY='k' * 43,"
        " HITL_SLACK_ALLOWED_HOSTS='hooks.slack.com', HITL_WEBHOOK_ALLOWED_HOSTS='.example.com')\n"
        "import functions.main as m; m._start_router(); m._unblock_router()",
    ],
)
def test_the_edges_never_import_the_workers_machinery(statement: str) -> None:
    assert imported_after(statement) == set()


def test_the_probe_sees_them_when_they_are_imported() -> None:
    assert imported_after("import hitl.approval") == set(FORBIDDEN)
