"""The ``unblock`` function: the page behind an emailed link, and the decision it posts.

    GET|HEAD /?token=T    the decision page; changes nothing (mail scanners fetch links too)
    POST /                token, comment (a form) -> records the vote: 200, or 409/410 with what stood

Links are signed (:mod:`hitl.security.tokens`); a tampered, truncated or
expired one is a 403 whatever else is wrong. Every answer is an HTML page.
A click costs one settle and one read of the request beside it
(:func:`hitl.operations.decide`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

from resonate.ids import origin_of
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hitl import logs, operations
from hitl.clock import now_ms
from hitl.edges import pages
from hitl.edges.plumbing import RETRY_AFTER, Edge, Router, client_ip, read_body
from hitl.edges.signin import SWITCH_ACCOUNT_PATH, Gate, identity
from hitl.inboxes import RECENT_FOR_MS
from hitl.model.policy import MAX_COMMENT_CHARS, clean_comment
from hitl.model.records import LINK, Identity, Vote
from hitl.security import tokens
from hitl.settings import UnblockSettings

logger = logging.getLogger("hitl.edges.unblock")

MAX_FORM_BYTES = 16_384

INVALID_LINK = (403, "This link is not valid", "The link is incomplete, altered or has expired. Use the newest message you received.")  # fmt: skip
UNKNOWN = (404, "Request not found", "There is no approval request for this link.")
UNAVAILABLE = (
    503,
    "Try again in a moment",
    "The approval service is briefly unavailable, so your decision may not have been recorded. "
    "Open the link again in a moment: it shows whether it was.",
)
UNUSABLE = (
    409,
    "This vote is closed",
    "Your vote on this request can no longer be cast from this link. Ask the requester if you think this is wrong.",
)
CANCELED = (410, "This request was canceled", "The requester canceled it; there is nothing left to decide.")


SIGN_IN_REQUIRED = (
    403,
    "Sign-in required",
    "This request may be decided only by a signed-in approver, and this service has no sign-in. "
    "Nothing was decided; tell the requester.",
)

page = pages.response


def error(status: int, title: str, message: str, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return page(status, pages.error_page(status, title, message), headers)


class Unblock(Edge[UnblockSettings]):
    """The function's handlers (the settings carry the signing key); :meth:`router` is what it serves.

    With sign-in on (``settings.sign_in``), :attr:`gate` checks every request first.
    """

    @functools.cached_property
    def gate(self) -> Gate | None:
        return Gate(self.settings.sign_in) if self.settings.sign_in is not None else None

    def router(self) -> Router:
        return Router(
            {"": {"GET": self.show, "HEAD": self.show, "POST": self.decide}},
            refuse=refused,
            project=self.settings.project,
        )

    async def _acting(self, request: Request, claims: tokens.Claims) -> Identity | HTMLResponse:
        """How the person using ``claims`` is identified, or the page refusing them: with
        sign-in on, they must be signed in as the link's approver; without it, a link that
        requires sign-in is refused."""
        if self.gate is None:
            return error(*SIGN_IN_REQUIRED) if claims.sign_in else LINK
        person = await self.gate.who(request)
        if isinstance(person, HTMLResponse):
            return person
        return self.gate.acting_for(person, claims.approver) or identity(person)

    def _verify(self, token: str | None) -> tokens.Claims | None:
        if not token:
            return None
        try:
            return tokens.verify(self.settings.signing_key, token, now=self.clock())
        except tokens.TokenError as exc:
            logger.info("link refused", extra={"fields": {"reason": exc.reason}})
            return None

    async def show(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if not token and self.gate is not None:
            return await self.inbox(request)
        claims = self._verify(token)
        if claims is None:
            return error(*INVALID_LINK)
        acting = await self._acting(request, claims)  # the page shows the request: the right person only
        if isinstance(acting, HTMLResponse):
            return acting
        with logs.bind(workflow_id=origin_of(claims.promise_id), promise_id=claims.promise_id):
            try:
                found = await operations.read(self.client, claims.promise_id, timeout=self.timeout)
            except operations.ServerUnavailable:
                return error(*UNAVAILABLE, {"Retry-After": RETRY_AFTER})
            if found is None:
                return error(*UNKNOWN)
            ended = ended_page(found)
            if ended is not None:
                return ended
            key = self.settings.signing_key
            html = pages.decision_page(
                subject=found.request.subject,
                details=found.request.details,
                approver=claims.approver,
                deadline_at_iso=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.expires_at)),
                approve_token=tokens.sign(key, tokens.counterpart(claims, "approve")),
                reject_token=tokens.sign(key, tokens.counterpart(claims, "reject")),
                action_url=str(request.url.replace(query="")),
                progress={**found.progress.to_json(), "approvers": len(found.round.approvers)},
                signed_in=acting.email,
            )
            return page(200, html)

    async def decide(self, request: Request) -> Response:
        body = await read_body(request, MAX_FORM_BYTES)
        if body is None:
            return error(413, "Too large", "The comment is too long.")
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return error(415, "Unsupported form", "Submit the decision from the approval page.")
        form = parse_form(body)
        if form is None:
            return error(400, "Bad form", "Submit the decision from the approval page.")
        claims = self._verify(form.get("token"))
        if claims is None:
            return error(*INVALID_LINK)
        acting = await self._acting(request, claims)
        if isinstance(acting, HTMLResponse):
            return acting
        try:
            comment = clean_comment(form.get("comment", ""))
        except ValueError:
            return error(400, "Comment too long", f"Keep the comment under {MAX_COMMENT_CHARS} characters.")
        vote = Vote.cast(
            approve=claims.decision == "approve",
            by=claims.approver,
            comment=comment,
            at_ms=now_ms(),
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
            identity=acting,
        )
        with logs.bind(workflow_id=origin_of(claims.promise_id), promise_id=claims.promise_id):
            try:
                outcome, found = await operations.decide(
                    self.client, claims.promise_id, vote, timeout=self.timeout,
                    inbox_deadline_s=claims.expires_at if self.gate is not None else None,
                )  # fmt: skip
            except operations.ServerUnavailable:
                return error(*UNAVAILABLE, {"Retry-After": RETRY_AFTER})
            if outcome == "unknown" or found is None:
                return error(*UNKNOWN)
            if outcome != "recorded":
                logger.info("decision refused", extra={"fields": {"reason": outcome, "by": claims.approver}})
                return ended_page(found, refused=True) or error(
                    409, "Already decided", "This request was already decided."
                )
            logger.info(
                "decision recorded",
                extra={
                    "fields": {
                        "decision": vote.decision, "by": vote.by, "comment": comment, "ip": vote.ip,
                        "user_agent": vote.user_agent, "identity": acting.to_json(),
                    }
                },
            )  # fmt: skip
            if form.get("next") == "inbox" and self.gate is not None:  # back to the inbox, which says so
                return RedirectResponse(f"?{urlencode({'decided': claims.promise_id})}", status_code=303)
            return page(200, pages.done_page(vote.as_decision(), subject=found.request.subject))

    async def inbox(self, request: Request) -> Response:
        """What waits for the signed-in person (and what ended lately): each row decides as
        its emailed link does (the same signed tokens, posted to :meth:`decide`)."""
        assert self.gate is not None
        person = await self.gate.who(request)
        if isinstance(person, HTMLResponse):
            return person
        aliases = self.gate.settings.aliases.get(person.email.casefold(), frozenset())
        now = now_ms()
        try:
            listing = await operations.inbox(
                self.client, [person.email, *sorted(aliases)], now_ms=now, timeout=self.timeout
            )
        except operations.ServerUnavailable:
            return error(*UNAVAILABLE, {"Retry-After": RETRY_AFTER})
        key = self.settings.signing_key
        action = str(request.url.replace(query=""))
        decided = request.query_params.get("decided")
        notice = None
        pending = []
        for row in listing.pending:
            e = row.entry
            claims = tokens.Claims(e.vote_id, e.approver, "approve", e.deadline_s, sign_in=e.sign_in_required)
            approve, reject = (tokens.sign(key, tokens.counterpart(claims, d)) for d in ("approve", "reject"))
            pending.append(
                {
                    "subject": e.subject, "requester": e.requester, "approver": e.approver,
                    "asked": pages.when(e.asked_at_ms), "asked_ago": pages.relative(e.asked_at_ms - now),
                    "deadline": pages.when(e.deadline_ms), "deadline_in": pages.relative(e.deadline_ms - now),
                    "progress": row.progress, "approvers": len(e.approvers), "approve_token": approve,
                    "reject_token": reject, "open_url": f"{action}?{urlencode({'token': approve})}",
                }
            )  # fmt: skip
        ended = []
        for row in listing.ended:
            outcome = pages.outcome(row.state, row.entry.approver)
            ended.append(
                {"subject": row.entry.subject, "outcome": outcome,
                 "when": pages.when(row.settled_at_ms) if row.settled_at_ms else None}
            )  # fmt: skip
            if decided == row.entry.vote_id:
                notice = f"Recorded: {outcome.lower()} \u201c{row.entry.subject}\u201d."
        html = pages.inbox_page(
            signed_in=person.email, switch=SWITCH_ACCOUNT_PATH, action_url=action, pending=pending, ended=ended,
            more=listing.more, notice=notice, recent_days=RECENT_FOR_MS // 86_400_000,
        )  # fmt: skip
        logger.info("inbox shown", extra={"fields": {"pending": len(pending), "requests": listing.requests}})
        return page(200, html)


def refused(status: int, _: str, headers: Mapping[str, str]) -> HTMLResponse:
    """A path or method outside the routing table: a page, as every answer of this function."""
    return error(
        status, "Not here" if status == 404 else "Method not allowed", "Open the link from your message.", headers
    )


def ended_page(found: operations.Approval, *, refused: bool = False) -> HTMLResponse | None:
    """The page for a request this approver can no longer decide, else ``None``
    (``refused``: it answers a decision that was just submitted and did not count)."""
    subject = found.request.subject
    if found.voted is not None:
        return page(409, pages.conflict_page(found.voted.as_decision(), subject=subject, refused=refused))
    if found.canceled is not None:
        return error(*CANCELED)
    if found.closed is not None:
        return page(409, pages.conflict_page(found.closed, subject=subject, refused=refused))
    if found.unusable:
        return error(*UNUSABLE)
    return None


def parse_form(body: bytes) -> dict[str, str] | None:
    """The fields of an url-encoded form, or ``None`` when it cannot be parsed."""
    try:
        return dict(parse_qsl(body.decode("utf-8"), max_num_fields=10))
    except (UnicodeDecodeError, ValueError):
        return None
