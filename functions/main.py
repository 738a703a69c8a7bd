"""Cloud Run function entry points: ``start`` and ``unblock``.

The HTTP edge only: parse, ask :mod:`hitl.operations`, answer. Each function
is stateless; it holds one send-only Resonate client, made on first use
(never at import, so a cold start pays for nothing it does not use).

    functions-framework --source functions/main.py --target start --port 8080
    functions-framework --source functions/main.py --target unblock --port 8081
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from hitl import logs, operations
from hitl.clock import now_ms
from hitl.edges import pages
from hitl.model import policy
from hitl.model.request import (
    MAX_BODY_BYTES,
    ApprovalRequest,
    RequestError,
    parse_cancel,
    parse_start,
    validate_workflow_id,
)
from hitl.security import signatures as webhook
from hitl.security import tokens
from hitl.settings import StartSettings, UnblockSettings

if TYPE_CHECKING:
    from hitl.client.sendonly import SendOnlyClient

logger = logging.getLogger("hitl.functions")

RETRY_AFTER = "5"
MAX_FORM_BYTES = 16_384


# -- shared edge plumbing -----------------------------------------------------------


def _context[S: (StartSettings, UnblockSettings)](component: str, settings_class: type[S]) -> tuple[S, SendOnlyClient]:
    """Settings (read once), logging, and the send-only client: made on first use, never at import."""
    from hitl.client.sendonly import send_only

    settings = settings_class.from_env()
    logs.setup(component, settings.log_format, secrets=logs.secrets_from_env(os.environ))
    return settings, send_only(settings.resonate)


@functools.cache
def _start_context() -> tuple[StartSettings, SendOnlyClient]:
    return _context("start", StartSettings)


@functools.cache
def _unblock_context() -> tuple[UnblockSettings, SendOnlyClient]:
    return _context("unblock", UnblockSettings)


def _trace(request: Request, project: str | None) -> str | None:
    return logs.trace_from_header(request.headers.get("x-cloud-trace-context"), project)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it exceeds ``limit`` bytes (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _json(status: int, body: dict[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers or None)


def _unavailable_json(exc: Exception) -> JSONResponse:
    logger.warning("resonate server unavailable", extra={"fields": {"error": str(exc)}})
    return _json(503, {"error": "the workflow server is unavailable, try again later"}, **{"Retry-After": RETRY_AFTER})


# -- start ----------------------------------------------------------------------------


@functions_framework.aio.http
async def start(request: Request) -> Response:
    """POST a request to start an approval; GET ``?workflow_id=`` for its status;
    POST ``/cancel`` with ``{"workflow_id", "reason"?}`` to cancel a pending one."""
    settings, client = _start_context()
    with logs.bind(trace=_trace(request, settings.project)):
        if request.method == "GET":
            return await _status(request, settings, client)
        if request.method != "POST":
            return _json(405, {"error": "use POST to start, GET to read a status"}, Allow="GET, POST")
        body = await _read_body(request, MAX_BODY_BYTES)
        if body is None:
            return _json(413, {"error": f"the body must be at most {MAX_BODY_BYTES} bytes"})
        if settings.webhook_secret is not None:
            try:
                webhook.verify(settings.webhook_secret, body, request.headers.get(webhook.HEADER), now=time.time())
            except webhook.SignatureError as exc:
                return _json(401, {"error": str(exc)})
        if request.url.path.rstrip("/").endswith("/cancel"):
            return await _cancel(request, body, settings, client)
        try:
            req = parse_start(body, request.headers.get("content-type"))
            _check_channels(req, settings)
        except RequestError as exc:
            return _json(exc.status, exc.to_json())
        with logs.bind(workflow_id=req.workflow_id):
            try:
                run = await operations.start(client, settings.resonate.group, req, timeout=settings.resonate.timeout)
            except operations.IdConflict:
                return _json(
                    409, {"error": "this workflow_id is already used by a different request", "field": "workflow_id"}
                )
            except operations.ServerUnavailable as exc:
                return _unavailable_json(exc)
            logger.info("approval started", extra={"fields": {"status": run.status}})
            return _json(202 if run.status == "pending" else 200, run.to_json())


def _check_channels(req: ApprovalRequest, settings: StartSettings) -> None:
    """Slack and webhook URLs must point at an allowed host (the worker will POST there).

    The check's module is imported only when a channel names a URL: it parses with yarl
    (as the worker's aiohttp POST will), ~15 ms an email-only start need not pay.
    """
    for i, channel in enumerate(req.notify):
        if channel.url is not None:
            from hitl.notify.urls import NotifyError, check_url

            try:
                check_url(channel.url, allowed_hosts=settings.hosts.for_channel(channel.type))
            except NotifyError as exc:
                raise RequestError(400, f"notify[{i}].url", str(exc)) from None


async def _cancel(request: Request, body: bytes, settings: StartSettings, client: SendOnlyClient) -> Response:
    try:
        workflow_id, reason = parse_cancel(body, request.headers.get("content-type"))
    except RequestError as exc:
        return _json(exc.status, exc.to_json())
    with logs.bind(workflow_id=workflow_id):
        try:
            outcome = await operations.cancel(
                client, workflow_id, by=_caller(request), reason=reason, timeout=settings.resonate.timeout
            )
        except operations.ServerUnavailable as exc:
            return _unavailable_json(exc)
        if outcome is None:
            return _json(404, {"error": "no approval with this workflow_id", "field": "workflow_id"})
        canceled, run = outcome
        if not canceled:
            return _json(409, {"error": "the request has already ended", **run.to_json()})
        logger.info("approval canceled", extra={"fields": {"by": _caller(request)}})
        return _json(202, {"workflow_id": workflow_id, "status": "canceling"})


def _caller(request: Request) -> str:
    """Who asked: the authenticated principal Cloud Run forwards, else ``requester``."""
    return (
        request.headers.get("x-goog-authenticated-user-email", "").removeprefix("accounts.google.com:") or "requester"
    )


async def _status(request: Request, settings: StartSettings, client: SendOnlyClient) -> Response:
    try:
        workflow_id = validate_workflow_id(request.query_params.get("workflow_id"))
    except RequestError as exc:
        return _json(exc.status, exc.to_json())
    try:
        run = await operations.status(client, workflow_id, timeout=settings.resonate.timeout)
    except operations.ServerUnavailable as exc:
        return _unavailable_json(exc)
    if run is None:
        return _json(404, {"error": "no approval with this workflow_id", "field": "workflow_id"})
    return _json(202 if run.status == "pending" else 200, run.to_json())


# -- unblock --------------------------------------------------------------------------


def _page(status: int, html: str, **headers: str) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={**pages.HEADERS, "X-Frame-Options": "DENY", **headers})


def _error(status: int, title: str, message: str, **headers: str) -> HTMLResponse:
    return _page(status, pages.error_page(status, title, message), **headers)


_INVALID_LINK = (
    403,
    "This link is not valid",
    "The link is incomplete, altered or has expired. Use the newest message you received.",
)
_UNKNOWN = (404, "Request not found", "There is no approval request for this link.")
_UNAVAILABLE = (
    503,
    "Try again in a moment",
    "The approval service is briefly unavailable, so your decision may not have been recorded. "
    "Open the link again in a moment: it shows whether it was.",
)
_CANCELED = (410, "This request was canceled", "The requester canceled it; there is nothing left to decide.")


@functions_framework.aio.http
async def unblock(request: Request) -> Response:
    """GET/HEAD: the decision page (changes nothing). POST: record the decision."""
    settings, client = _unblock_context()
    with logs.bind(trace=_trace(request, settings.project)):
        if request.method in ("GET", "HEAD"):
            return await _show(request, settings, client)
        if request.method == "POST":
            return await _decide(request, settings, client)
        return _error(405, "Method not allowed", "Open the link from your message.", Allow="GET, HEAD, POST")


def _verify(settings: UnblockSettings, token: str | None) -> tokens.Claims | None:
    if not token:
        return None
    try:
        return tokens.verify(settings.signing_key, token, now=time.time())
    except tokens.TokenError as exc:
        logger.info("link refused", extra={"fields": {"reason": exc.reason}})
        return None


def _ended(found: operations.Approval, *, refused: bool = False) -> HTMLResponse | None:
    """The page for a request this approver can no longer decide, else ``None``
    (``refused``: it answers a decision that was just submitted and did not count)."""
    subject = found.request.subject
    if found.voted is not None:
        return _page(409, pages.conflict_page(found.voted, subject=subject, refused=refused))
    if found.canceled is not None:
        return _error(*_CANCELED)
    if found.closed is not None:
        return _page(409, pages.conflict_page(found.closed, subject=subject, refused=refused))
    return None


async def _show(request: Request, settings: UnblockSettings, client: SendOnlyClient) -> Response:
    claims = _verify(settings, request.query_params.get("token"))
    if claims is None:
        return _error(*_INVALID_LINK)
    with logs.bind(workflow_id=claims.promise_id.split(":", 1)[0], promise_id=claims.promise_id):
        try:
            found = await operations.read(client, claims.promise_id, timeout=settings.resonate.timeout)
        except operations.ServerUnavailable:
            return _error(*_UNAVAILABLE, **{"Retry-After": RETRY_AFTER})
        if found is None:
            return _error(*_UNKNOWN)
        ended = _ended(found)
        if ended is not None:
            return ended
        key = settings.signing_key
        html = pages.decision_page(
            subject=found.request.subject,
            details=found.request.details,
            approver=claims.approver,
            deadline_at_iso=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.expires_at)),
            approve_token=tokens.sign(key, tokens.counterpart(claims, "approve")),
            reject_token=tokens.sign(key, tokens.counterpart(claims, "reject")),
            action_url=str(request.url.replace(query="")),
            progress={**found.progress, "approvers": len(found.round.approvers)},
        )
        return _page(200, html)


def _client_ip(request: Request) -> str:
    """The caller's address: the first hop of X-Forwarded-For (Cloud Run's front end sets it)."""
    forwarded = request.headers.get("x-forwarded-for", "")
    first = forwarded.split(",")[0].strip()
    return first or (request.client.host if request.client else "")


async def _decide(request: Request, settings: UnblockSettings, client: SendOnlyClient) -> Response:
    body = await _read_body(request, MAX_FORM_BYTES)
    if body is None:
        return _error(413, "Too large", "The comment is too long.")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _error(415, "Unsupported form", "Submit the decision from the approval page.")
    form = _form(body)
    if form is None:
        return _error(400, "Bad form", "Submit the decision from the approval page.")
    claims = _verify(settings, form.get("token"))
    if claims is None:
        return _error(*_INVALID_LINK)
    try:
        comment = policy.clean_comment(form.get("comment", ""))
    except ValueError:
        return _error(400, "Comment too long", f"Keep the comment under {policy.MAX_COMMENT_CHARS} characters.")
    value = policy.vote_value(
        approve=claims.decision == "approve",
        by=claims.approver,
        comment=comment,
        at_ms=now_ms(),
        ip=_client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    with logs.bind(workflow_id=claims.promise_id.split(":", 1)[0], promise_id=claims.promise_id):
        try:
            outcome, found = await operations.decide(
                client, claims.promise_id, value, timeout=settings.resonate.timeout
            )
        except operations.ServerUnavailable:
            return _error(*_UNAVAILABLE, **{"Retry-After": RETRY_AFTER})
        if outcome == "unknown" or found is None:
            return _error(*_UNKNOWN)
        if outcome != "recorded":
            logger.info("decision refused", extra={"fields": {"reason": outcome, "by": claims.approver}})
            return _ended(found, refused=True) or _error(409, "Already decided", "This request was already decided.")
        logger.info(
            "decision recorded",
            extra={
                "fields": {
                    "decision": value["decision"],
                    "by": value["by"],
                    "comment": comment,
                    "ip": value["ip"],
                    "user_agent": value["user_agent"],
                }
            },
        )
        return _page(200, pages.done_page(value, subject=found.request.subject))


def _form(body: bytes) -> dict[str, str] | None:
    """The fields of an url-encoded form, or ``None`` when it cannot be parsed."""
    try:
        return dict(parse_qsl(body.decode("utf-8"), max_num_fields=10))
    except (UnicodeDecodeError, ValueError):
        return None
