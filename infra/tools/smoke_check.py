#!/usr/bin/env python3
"""Judge one answer of the deployed ``start`` function to ``GET ?workflow_id=ID`` (Cloud Build's smoke test).

    smoke_check.py --status CODE --body FILE --workflow-id ID

Only the function's own answer passes: a 404 whose JSON body is the function's
"no such approval" error (``{"error": ..., "field": "workflow_id"}``), or a
200/202 whose JSON body reports that workflow. A 404 from Google's front end or
Cloud Run's router (an HTML page: wrong URL, service not there yet) proves
nothing about the function, the server or the database, and does not pass.

Exit status: 0 the chain answered; 75 (EX_TEMPFAIL) try again (5xx, no
answer, not the function's answer yet); 1 give up (401/403: the caller may not
invoke ``start``; any other 4xx).

Standard library only: it runs in the Cloud SDK image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OK = 0
FAIL = 1
RETRY = 75


def judge(status: int, body: bytes, workflow_id: str) -> tuple[int, str]:
    """``(exit status, reason)`` for one answer."""
    if status in (401, 403):
        return FAIL, f"HTTP {status}: the build's service account may not invoke start (start_invokers)"
    doc = _json_object(body)
    if status == 404:
        if doc is not None and doc.get("field") == "workflow_id" and isinstance(doc.get("error"), str):
            return OK, f"HTTP 404 from start itself ({doc['error']}): function, server and database answered"
        return RETRY, "HTTP 404 that is not start's answer (a routing or front-end 404)"
    if status in (200, 202):
        if doc is not None and doc.get("workflow_id") == workflow_id and isinstance(doc.get("status"), str):
            return OK, f"HTTP {status} from start itself (status {doc['status']})"
        return RETRY, f"HTTP {status} whose body is not start's status answer"
    if status == 0 or status >= 500 or status == 429:
        return RETRY, f"HTTP {status or 'no answer'}"
    return FAIL, f"HTTP {status}: unexpected"


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--status", required=True, help="the HTTP status (curl's %%{http_code}; 000: no answer)")
    parser.add_argument("--body", required=True, type=Path, help="file holding the response body")
    parser.add_argument("--workflow-id", required=True, help="the workflow_id the request asked about")
    args = parser.parse_args(argv)
    try:
        status = int(args.status)
    except ValueError:
        status = 0
    body = args.body.read_bytes() if args.body.exists() else b""
    code, reason = judge(status, body, args.workflow_id)
    sys.stdout.write(f"smoke: {reason}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
