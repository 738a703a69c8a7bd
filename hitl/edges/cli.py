"""``hitl``: the operator's command line, over the same client code as the functions.

    hitl start FILE|- [--wait [--timeout D]]  start an approval from a JSON request body (as for ``start``)
    hitl status WORKFLOW_ID           where a request stands (its result once decided)
    hitl wait WORKFLOW_ID [--timeout D]  block until the request ends; the exit code says how
    hitl list [--limit N]             pending requests: the current round's votes, who is waiting
    hitl decide WORKFLOW_ID --approver EMAIL (--approve|--reject) [--comment TEXT]
                                      record an approver's vote, as their click would
    hitl cancel WORKFLOW_ID [--reason TEXT]

Every command takes ``--json`` (one JSON document on stdout, for scripts).
Configuration comes from the environment. An operator points it at the server:
``RESONATE_URL``, ``RESONATE_TOKEN``, ``HITL_WORKER_GROUP``, ``HITL_SERVER_TIMEOUT``.
``decide`` writes the vote through the server as the approver's click would: the
authority is the server's (``RESONATE_TOKEN``), not a link's signature.

A start caller (a CI pipeline) points it at the ``start`` function instead, holding
only what ``start`` checks: ``HITL_START_URL`` and an identity token
(``HITL_START_AUTH=google`` mints it from Google's default credentials;
``HITL_START_TOKEN`` is a fixed one; ``HITL_START_TOKEN_COMMAND`` prints a fresh
one) or the webhook secret (``HITL_WEBHOOK_SECRET``). Then ``start``, ``status``, ``wait`` and
``cancel`` go through the function (waiting is its long poll), and ``decide`` and
``list``, which need the server, are refused: a pipeline cannot decide its own request.

Exit codes: 0 done; 1 not found or conflict (already decided, already ended);
2 usage or configuration error; 3 the Resonate server is unavailable. ``wait`` and
``start --wait`` end with the outcome: 0 approved, 4 rejected, 5 expired, 6 canceled,
7 still pending when ``--timeout`` ran out, 8 the run failed (1, 2, 3 as above).
Errors go to stderr as one line.

The CLI parses, asks :mod:`hitl.operations` and prints: it never talks to the
server itself (``functions/main.py`` is the other edge doing the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from hitl.client.sendonly import SendOnlyClient
    from hitl.client.start_function import Answer, StartFunction
    from hitl.model.policy import Progress
    from hitl.settings import CliSettings, ResonateSettings

OK, NOT_FOUND, USAGE, UNAVAILABLE = 0, 1, 2, 3
#: How ``wait`` ends: one code per outcome (approved is OK).
REJECTED, EXPIRED, CANCELED, TIMED_OUT, FAILED = 4, 5, 6, 7, 8
OUTCOME_CODES = {"approved": OK, "rejected": REJECTED, "expired": EXPIRED, "canceled": CANCELED}


class Failure(Exception):
    """Ends the command with ``code`` and one line on stderr (and ``extra`` in the JSON)."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Output:
    """What a command answers: a JSON document and its rendering as text."""

    doc: Any
    text: str
    code: int = OK
    #: The one-line error for stderr when ``code`` is not 0.
    error: str | None = None


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("hitl")
    except PackageNotFoundError:
        return "0+unknown"


def user_agent() -> str:
    return f"hitl-cli/{version()}"


def principal(settings: CliSettings) -> str:
    """Who decides through the CLI, as a vote records it: the ``sub`` the operator's server
    token names (read, not verified: the server verified it), else their account here."""
    token = settings.resonate.token if settings.resonate is not None else None
    if token and token.count(".") == 2:
        import google.auth.jwt

        with contextlib.suppress(ValueError):
            sub = google.auth.jwt.decode(token, verify=False).get("sub")  # type: ignore[no-untyped-call]
            if isinstance(sub, str) and sub:
                return sub
    return operator().removeprefix("cli:")


def operator() -> str:
    """Who runs the CLI, as recorded in a cancel: ``cli:<$USER>``."""
    name = os.environ.get("USER", "")
    if not name:
        with contextlib.suppress(Exception):
            name = getpass.getuser()
    return f"cli:{name or 'unknown'}"


# -- rendering --------------------------------------------------------------------------


def clean(value: Any) -> str:
    """One printable line: stored text (comments, reasons) may hold line breaks or
    terminal escape sequences, which must not reach the operator's terminal raw."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name  value`` lines, values aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {clean(v)}".rstrip() for k, v in pairs)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (the last one is not padded)."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def render_status(run: dict[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [("workflow_id", run["workflow_id"]), ("status", run["status"])]
    result = run.get("result") or {}
    decisions = result.get("decisions") or []
    if run["status"] == "failed":
        pairs.append(("state", result.get("state")))
    elif result:
        pairs += [
            (k, result.get(k) if result.get(k) is not None else "-")
            for k in ("decision", "by", "comment", "decided_at")
        ]
    text = fields(pairs)
    if decisions:
        rows = [
            [d.get("decided_at") or "-", d.get("by"), d.get("decision") + (" (late)" if d.get("late") else ""),
             identified(d.get("identity")), d.get("ip"), d.get("comment") or d.get("error") or ""]
            for d in decisions
        ]  # fmt: skip
        text += "\n\n" + table(["DECIDED_AT", "BY", "DECISION", "IDENTIFIED", "FROM", "COMMENT"], rows)
    if run.get("on_decision"):
        rows = [
            [d.get("type"), d.get("id") or d.get("host"), d.get("state"), d.get("attempts"), d.get("last_attempt_at") or "-",
             d.get("error") or "-"]
            for d in run["on_decision"]
        ]  # fmt: skip
        text += "\n\n" + table(["DELIVERY", "TO", "STATE", "ATTEMPTS", "LAST_ATTEMPT", "ERROR"], rows)
    return text


def identified(identity: Any) -> str:
    """How a vote's person was identified, in a word: ``iap:<email>``, ``link``, ``cli:<principal>``."""
    if not isinstance(identity, dict):
        return "-"
    method = str(identity.get("method", "-"))
    who = identity.get("email") if method == "iap" else identity.get("principal") if method == "cli" else None
    return f"{method}:{who}" if who else method


def render_progress(progress: Progress) -> list[tuple[str, Any]]:
    return [
        ("required", progress.required),
        ("approved", progress.approved),
        ("rejected", progress.rejected),
        ("waiting", ", ".join(progress.waiting) or "-"),
    ]


# -- commands ---------------------------------------------------------------------------


def read_body(path: str) -> bytes:
    from hitl.model.request import MAX_BODY_BYTES

    # One byte over the limit is enough for parse_start to refuse it.
    try:
        if path == "-":
            return sys.stdin.buffer.read(MAX_BODY_BYTES + 1)
        with Path(path).open("rb") as f:
            return f.read(MAX_BODY_BYTES + 1)
    except OSError as exc:
        raise Failure(USAGE, f"cannot read {path}: {exc.strerror or exc}") from None


def valid_id(workflow_id: str) -> str:
    from hitl.model.request import RequestError, validate_workflow_id

    try:
        return validate_workflow_id(workflow_id)
    except RequestError as exc:
        raise Failure(USAGE, f"invalid {exc}") from None


def not_found(workflow_id: str) -> Failure:
    return Failure(NOT_FOUND, f"no approval with workflow_id {workflow_id!r}", workflow_id=workflow_id)


async def cmd_start(ctx: Context, args: argparse.Namespace) -> Output:
    from hitl import operations
    from hitl.model.request import RequestError, parse_start

    body = read_body(args.file)
    try:
        req = parse_start(body, "application/json")
    except RequestError as exc:
        raise Failure(USAGE, f"invalid request: {exc}", **exc.to_json()) from None
    if ctx.start is not None:
        doc = answered(await ctx.start.start(body), req.workflow_id)
        if args.wait:
            return await waited(ctx, req.workflow_id, args.timeout)
        return Output(doc, render_status(doc))
    server, resonate = ctx.server()
    try:
        run = await operations.start(server, resonate.group, req, timeout=ctx.timeout)
    except operations.IdConflict:
        raise Failure(
            NOT_FOUND, f"workflow_id {req.workflow_id!r} is already used by a different request", field="workflow_id"
        ) from None
    except RequestError as exc:  # a promise target it may not have
        raise Failure(USAGE if exc.status == 400 else NOT_FOUND, f"refused: {exc}", **exc.to_json()) from None
    if args.wait:
        return await waited(ctx, req.workflow_id, args.timeout)
    return Output(run.to_json(), render_status(run.to_json()))


async def cmd_wait(ctx: Context, args: argparse.Namespace) -> Output:
    return await waited(ctx, valid_id(args.workflow_id), args.timeout)


async def waited(ctx: Context, workflow_id: str, timeout: int | None) -> Output:
    """Block until the request ends (or ``timeout`` seconds pass); the exit code is its outcome."""
    from hitl import operations

    seconds = float(timeout) if timeout is not None else float("inf")
    if ctx.start is not None:
        doc = await long_polled(ctx.start, workflow_id, seconds)
    else:
        server, resonate = ctx.server()
        run = await operations.wait(server, resonate, workflow_id, seconds=seconds, timeout=ctx.timeout)
        if run is None:
            raise not_found(workflow_id)
        doc = run.to_json()
    return outcome(doc, workflow_id, timeout)


def outcome(doc: dict[str, Any], workflow_id: str, timeout: int | None) -> Output:
    """How a wait ends, from the status answer: the exit code says how the request ended."""
    if doc.get("status") == "pending":
        return Output(doc, render_status(doc), TIMED_OUT, f"{workflow_id!r} is still pending after {timeout}s")
    result = doc.get("result") or {}
    decision = result.get("decision")
    if doc.get("status") != "done" or decision not in OUTCOME_CODES:
        return Output(doc, render_status(doc), FAILED, f"the run of {workflow_id!r} failed ({result.get('state')})")
    code = OUTCOME_CODES[decision]
    return Output(doc, render_status(doc), code, None if code == OK else f"{workflow_id!r} ended {decision}")


async def long_polled(start: StartFunction, workflow_id: str, seconds: float) -> dict[str, Any]:
    """The status once the request ended, or after ``seconds``: long polls of ``start``, a minute
    each. A call that fails on the way (a 5xx, a dropped connection) is tried again, with a
    growing pause, until the time is up: a day's wait must outlive a blip."""
    import aiohttp

    ends = time.monotonic() + seconds
    failures = 0
    while True:
        left = ends - time.monotonic()
        try:
            answer = await start.status(workflow_id, wait=max(min(left, 60.0), 0.0))
        except (aiohttp.ClientError, TimeoutError) as exc:
            answer = None
            error = f"the start function is unreachable: {type(exc).__name__}"
        if answer is not None and answer.status < 500:
            doc = answered(answer, workflow_id)
            if doc.get("status") != "pending" or left <= 0:
                return doc
            failures = 0
            continue
        if answer is not None:
            error = f"the start function answered {answer.status}"
        failures += 1
        pause = min(2.0**failures, 30.0)
        if time.monotonic() + pause >= ends:
            raise Failure(UNAVAILABLE, error)
        await asyncio.sleep(pause)


def answered(answer: Answer, workflow_id: str) -> dict[str, Any]:
    """The JSON of a 200 or 202 from ``start``; any other answer ends the command as it should."""
    doc = answer.doc
    if answer.status in (200, 202):
        return doc
    error = str(doc.get("error", f"HTTP {answer.status}"))
    if answer.status == 404:
        raise not_found(workflow_id)
    if answer.status in (401, 403):
        raise Failure(
            USAGE,
            f"the start function refused the credentials (HTTP {answer.status}: {error}); "
            "check HITL_START_AUTH, HITL_START_TOKEN, HITL_START_TOKEN_COMMAND or HITL_WEBHOOK_SECRET",
        )
    if answer.status == 409:
        raise Failure(NOT_FOUND, error, **doc)
    if 400 <= answer.status < 500:
        raise Failure(USAGE, f"refused: {error}", **doc)
    raise Failure(UNAVAILABLE, f"the start function answered {answer.status}: {error}")


async def cmd_status(ctx: Context, args: argparse.Namespace) -> Output:
    from hitl import operations

    workflow_id = valid_id(args.workflow_id)
    if ctx.start is not None:
        doc = answered(await ctx.start.status(workflow_id), workflow_id)
        return Output(doc, render_status(doc))
    server, _ = ctx.server()
    run = await operations.status(server, workflow_id, timeout=ctx.timeout)
    if run is None:
        raise not_found(workflow_id)
    return Output(run.to_json(), render_status(run.to_json()))


async def cmd_list(ctx: Context, args: argparse.Namespace) -> Output:
    from hitl import operations

    server, _ = ctx.server("list")
    found = await operations.pending(server, timeout=ctx.timeout, limit=args.limit)
    doc = [
        {"workflow_id": req.workflow_id, "subject": req.subject, "round": index, **progress.to_json()}
        for req, index, progress in found
    ]
    if not doc:
        return Output(doc, "no pending approvals")
    rows = [
        [
            d["workflow_id"],
            d["round"],
            d["required"],
            d["approved"],
            d["rejected"],
            ", ".join(d["waiting"]) or "-",
            d["subject"],
        ]
        for d in doc
    ]
    text = table(["WORKFLOW_ID", "ROUND", "REQUIRED", "APPROVED", "REJECTED", "WAITING", "SUBJECT"], rows)
    if len(doc) >= args.limit:
        text += f"\n(the first {args.limit}; use --limit to see more)"
    return Output(doc, text)


async def cmd_decide(ctx: Context, args: argparse.Namespace) -> Output:
    from hitl import operations
    from hitl.clock import now_ms
    from hitl.model import policy
    from hitl.model.records import Identity, Vote

    workflow_id = valid_id(args.workflow_id)
    try:
        comment = policy.clean_comment(args.comment or "")
    except ValueError as exc:
        raise Failure(USAGE, f"--comment: {exc}") from None
    server, _ = ctx.server("decide")
    found = await operations.request_of(server, workflow_id, timeout=ctx.timeout)
    if found is None:
        raise not_found(workflow_id)
    _, req = found
    rnd = await operations.active_round(server, req, timeout=ctx.timeout)
    wanted = args.approver.strip().casefold()
    approver = next((a for a in rnd.approvers if a.casefold() == wanted), None)
    if approver is None:
        asked = {a.casefold() for r in policy.layout(req).rounds for a in r.approvers}
        where = "in the current round" if wanted in asked else "by this request"
        raise Failure(
            NOT_FOUND, f"{args.approver} is not asked {where} ({', '.join(rnd.approvers)})", workflow_id=workflow_id
        )
    vote = Vote.cast(
        approve=args.decision == "approve", by=approver, comment=comment, at_ms=now_ms(), ip="cli",
        user_agent=user_agent(), identity=Identity("cli", principal=principal(ctx.settings)),
    )  # fmt: skip
    root, _ = found
    lay = policy.layout(req)
    deadline_s = lay.ends_at(policy.started_at(root.timeout_at, lay), rnd.index) // 1000
    outcome, state = await operations.decide(
        server, rnd.vote_of(approver), vote, timeout=ctx.timeout, inbox_deadline_s=deadline_s
    )  # (an entry exists only with sign-in on: settling a missing one costs a call, nothing else)
    doc: dict[str, Any] = {"workflow_id": workflow_id, "approver": approver, "outcome": outcome}
    if outcome == "unknown" or state is None:
        raise Failure(
            NOT_FOUND, f"{workflow_id!r} has no vote for {approver} yet (the run is starting); try again", **doc
        )
    progress = policy.progress(rnd, await operations.round_states(server, req, rnd, timeout=ctx.timeout))
    doc["progress"] = progress.to_json()
    if outcome == "recorded":
        doc["vote"] = vote.as_decision().to_json()
        pairs = [("workflow_id", workflow_id), ("vote", "recorded"), *doc["vote"].items(), *render_progress(progress)]
        return Output(doc, fields(pairs))
    if outcome == "already" and state.voted is not None:
        doc["vote"] = state.voted.as_decision().to_json()
        error = f"{approver} already decided: {state.voted.decision} at {state.voted.decided_at}"
    else:  # closed
        ended = state.closed
        doc["result"] = ended.to_json() if ended is not None else None
        error = "the request has ended" + (
            f": {ended.decision}" + (f" by {ended.by}" if ended.by else "") if ended else ""
        )
    shown = doc.get("vote") or doc.get("result") or {}
    pairs = [("workflow_id", workflow_id), ("vote", outcome), *shown.items(), *render_progress(progress)]
    return Output(doc, fields(pairs), NOT_FOUND, clean(error))


async def cmd_cancel(ctx: Context, args: argparse.Namespace) -> Output:
    from hitl import operations
    from hitl.model.request import RequestError, parse_cancel

    # The same rules as a cancel sent to the start function.
    body = json.dumps({"workflow_id": args.workflow_id, "reason": args.reason}).encode()
    try:
        workflow_id, reason = parse_cancel(body, "application/json")
    except RequestError as exc:
        raise Failure(USAGE, f"invalid {exc}") from None
    if ctx.start is not None:
        answer = await ctx.start.cancel(workflow_id, reason)
        if answer.status == 409:  # it had ended: its status, as for the server
            return Output(answer.doc, render_status(answer.doc), NOT_FOUND, "the request has already ended")
        doc = answered(answer, workflow_id)
        return Output(doc, fields(list(doc.items())))
    server, _ = ctx.server()
    outcome = await operations.cancel(
        server, workflow_id, by=operator(), reason=reason, timeout=ctx.timeout, inboxes_on=True
    )
    if outcome is None:
        raise not_found(workflow_id)
    canceled, run = outcome
    if not canceled:
        doc = {"error": "the request has already ended", **run.to_json()}
        return Output(doc, render_status(run.to_json()), NOT_FOUND, "the request has already ended")
    doc = {"workflow_id": workflow_id, "status": "canceling"}
    return Output(doc, fields(list(doc.items())))


# -- plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    settings: CliSettings
    #: The Resonate server (an operator's credentials), when configured.
    client: SendOnlyClient | None
    #: The start function (a start caller's credentials), when configured.
    start: StartFunction | None = None

    @property
    def timeout(self) -> float:
        return self.settings.resonate.timeout if self.settings.resonate is not None else 5.0

    def server(self, command: str | None = None) -> tuple[SendOnlyClient, ResonateSettings]:
        """The server's client, or the usage error of a command that needs one."""
        if self.client is None or self.settings.resonate is None:
            what = f"hitl {command}" if command else "this command"
            raise Failure(
                USAGE,
                f"{what} needs the Resonate server (RESONATE_URL and an operator's RESONATE_TOKEN); "
                "a start caller's credentials (HITL_START_URL) can start, wait, read and cancel, not decide",
            )
        return self.client, self.settings.resonate


Command = Callable[[Context, argparse.Namespace], Coroutine[Any, Any, Output]]


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USAGE)


def parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON document on stdout")
    p = Parser(
        prog="hitl",
        description="Operate durable human-in-the-loop approvals.",
        epilog="Environment: an operator's RESONATE_URL, RESONATE_TOKEN, HITL_WORKER_GROUP, HITL_SERVER_TIMEOUT; "
        "or a start caller's HITL_START_URL with HITL_START_AUTH=google, HITL_START_TOKEN, "
        "HITL_START_TOKEN_COMMAND or HITL_WEBHOOK_SECRET (start, status, wait, cancel only). "
        "Exit codes: 0 ok (approved), 1 not found or conflict, 2 usage or configuration, "
        "3 server unavailable; wait: 4 rejected, 5 expired, 6 canceled, 7 timed out, 8 failed.",
    )
    p.add_argument("--json", action="store_true", default=False, help="one JSON document on stdout")
    p.add_argument("--version", action="version", version=f"hitl {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    s = sub.add_parser("start", parents=[common], help="start an approval from a JSON request body")
    s.add_argument("file", metavar="FILE|-", help="the request body (as POSTed to start); - reads stdin")
    s.add_argument("--wait", action="store_true", help="then wait until it ends; the exit code says how")
    s.add_argument("--timeout", type=_duration, metavar="DURATION", help="with --wait: give up after this long")
    s.set_defaults(run=cmd_start)

    s = sub.add_parser("wait", parents=[common], help="wait until a request ends; the exit code says how")
    s.add_argument("workflow_id", metavar="WORKFLOW_ID")
    s.add_argument(
        "--timeout", type=_duration, metavar="DURATION", help='give up after this long: seconds, or "90s", "15m", "24h"'
    )
    s.set_defaults(run=cmd_wait)

    s = sub.add_parser("status", parents=[common], help="where a request stands")
    s.add_argument("workflow_id", metavar="WORKFLOW_ID")
    s.set_defaults(run=cmd_status)

    s = sub.add_parser("list", parents=[common], help="pending requests and who has not decided")
    s.add_argument("--limit", type=_positive, default=100, help="at most this many (default 100)")
    s.set_defaults(run=cmd_list)

    s = sub.add_parser("decide", parents=[common], help="record an approver's vote, as their click would")
    s.add_argument("workflow_id", metavar="WORKFLOW_ID")
    s.add_argument("--approver", required=True, metavar="EMAIL", help="whose vote this is")
    choice = s.add_mutually_exclusive_group(required=True)
    choice.add_argument("--approve", dest="decision", action="store_const", const="approve")
    choice.add_argument("--reject", dest="decision", action="store_const", const="reject")
    s.add_argument("--comment", default="", metavar="TEXT")
    s.set_defaults(run=cmd_decide)

    s = sub.add_parser("cancel", parents=[common], help="cancel a pending request")
    s.add_argument("workflow_id", metavar="WORKFLOW_ID")
    s.add_argument("--reason", default="", metavar="TEXT")
    s.set_defaults(run=cmd_cancel)
    return p


def _duration(raw: str) -> int:
    from hitl.model.request import parse_duration

    try:
        seconds = parse_duration(int(raw) if raw.isdigit() else raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 1:
        raise argparse.ArgumentTypeError("must be at least 1 second")
    return seconds


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {raw!r}")
    return int(raw)


async def execute(run: Command, args: argparse.Namespace) -> Output:
    import aiohttp
    from resonate.error import ServerError

    from hitl import operations
    from hitl.client.sendonly import send_only
    from hitl.client.start_function import CredentialError, StartFunction, Tokens
    from hitl.settings import CliSettings, ConfigError

    try:
        settings = CliSettings.from_env()
    except ConfigError as exc:
        raise Failure(USAGE, f"{exc.var} {exc.reason}") from None
    client = send_only(settings.resonate) if settings.resonate is not None else None
    caller = settings.start
    try:
        async with contextlib.AsyncExitStack() as stack:
            start = None
            if caller is not None:
                start = await stack.enter_async_context(
                    StartFunction(
                        caller.url,
                        tokens=Tokens(
                            token=caller.token,
                            command=caller.token_command,
                            google_audience=caller.url if caller.google else None,
                        ),
                        webhook_secret=caller.webhook_secret,
                        timeout=caller.timeout,
                    )
                )
            return await run(Context(settings, client, start), args)
    except operations.ServerUnavailable as exc:
        url = settings.resonate.url if settings.resonate else ""
        raise Failure(UNAVAILABLE, f"the Resonate server at {url} is unavailable: {exc}") from None
    except ServerError as exc:
        if exc.code in (401, 403):
            raise Failure(
                USAGE, f"the Resonate server refused the credentials ({exc.code}); check RESONATE_TOKEN"
            ) from None
        raise Failure(UNAVAILABLE, f"the Resonate server answered {exc.code}: {exc.message}") from None
    except CredentialError as exc:
        raise Failure(USAGE, str(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        url = caller.url if caller else ""
        raise Failure(UNAVAILABLE, f"the start function at {url} is unreachable: {type(exc).__name__}") from None
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)


def main(argv: Sequence[str] | None = None) -> int:
    # Library warnings (the SDK, asyncio) must not add lines to stderr: one line per error.
    logging.getLogger().addHandler(logging.NullHandler())
    args = parser().parse_args(argv)
    as_json = bool(args.json)
    try:
        out = asyncio.run(execute(args.run, args))
    except Failure as exc:
        out = Output({"error": exc.message, **exc.extra}, "", exc.code, exc.message)
    except KeyboardInterrupt:
        print("hitl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unexpected answer: still one line, no traceback
        out = Output({"error": f"unexpected error: {exc!r}"}, "", NOT_FOUND, f"unexpected error: {exc!r}")
    if as_json:
        print(json.dumps(out.doc, ensure_ascii=False, indent=2))
    elif out.text:
        print(out.text)
    if out.error is not None:
        print(f"hitl: {clean(out.error)}", file=sys.stderr)
    sys.stdout.flush()
    return out.code


if __name__ == "__main__":
    raise SystemExit(main())
