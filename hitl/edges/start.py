"""The ``start`` function: start an approval, read its status, cancel it.

    POST /         a request body (JSON)   -> 202 pending, 200 done, 400/409/413/415, 401 (signature)
    GET  /?workflow_id=ID[&wait=SECONDS]    -> 202 pending, 200 done, 404 (wait: a long poll, at most 60 s),
                                               401 (signature: with a webhook secret, over the query string)
    POST /cancel   {"workflow_id", "reason"?} -> 202, 404, 409

It parses, asks :mod:`hitl.operations`, and answers; it holds nothing between
requests. Every answer is JSON; a server that does not answer in time is a 503
with ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from hitl import logs, operations
from hitl.edges.plumbing import RETRY_AFTER, Edge, Router, json_response, read_body
from hitl.model.request import (
    MAX_BODY_BYTES,
    ApprovalRequest,
    RequestError,
    parse_cancel,
    parse_start,
    parse_wait,
    validate_workflow_id,
)
from hitl.security import signatures
from hitl.settings import StartSettings

logger = logging.getLogger("hitl.edges.start")

NOT_FOUND = {"error": "no approval with this workflow_id", "field": "workflow_id"}


class Start(Edge[StartSettings]):
    """The function's handlers; :meth:`router` is what it serves."""

    def router(self) -> Router:
        return Router(
            {"": {"GET": self.status, "POST": self.start}, "/cancel": {"POST": self.cancel}},
            refuse=lambda status, message, headers: json_response(status, {"error": message}, **headers),
            project=self.settings.project,
        )

    async def _signed_body(self, request: Request) -> bytes | Response:
        """The body, once it is within the size limit and signed (when a secret is set)."""
        body = await read_body(request, MAX_BODY_BYTES)
        if body is None:
            return json_response(413, {"error": f"the body must be at most {MAX_BODY_BYTES} bytes"})
        return self._unsigned(request, body) or body

    def _unsigned(self, request: Request, signed: bytes) -> Response | None:
        """The 401 for a request whose ``signed`` bytes (a POST's body, a GET's query string)
        the webhook secret does not sign, when one is set; ``None`` when it may go on."""
        if self.settings.webhook_secret is None:
            return None
        try:
            signatures.verify(
                self.settings.webhook_secret, signed, request.headers.get(signatures.HEADER), now=self.clock()
            )
        except signatures.SignatureError as exc:
            return json_response(401, {"error": str(exc)})
        return None

    async def start(self, request: Request) -> Response:
        body = await self._signed_body(request)
        if isinstance(body, Response):
            return body
        try:
            req = parse_start(body, request.headers.get("content-type"))
            self._check_channels(req)
            self._check_sign_in(req)
        except RequestError as exc:
            return json_response(exc.status, exc.to_json())
        with logs.bind(workflow_id=req.workflow_id):
            try:
                run = await operations.start(self.client, self.settings.resonate.group, req, timeout=self.timeout)
            except operations.IdConflict:
                return json_response(
                    409, {"error": "this workflow_id is already used by a different request", "field": "workflow_id"}
                )
            except RequestError as exc:  # a promise target it may not have (hitl.bindings)
                logger.info("approval refused", extra={"fields": {"status": exc.status, "field": exc.field}})
                return json_response(exc.status, exc.to_json())
            except operations.ServerUnavailable as exc:
                return unavailable(exc)
            logger.info("approval started", extra={"fields": {"status": run.status}})
            return json_response(202 if run.status == "pending" else 200, run.to_json())

    def _check_sign_in(self, req: ApprovalRequest) -> None:
        """A request requiring sign-in needs a deployment with sign-in: nobody may believe they
        have a protection they do not have."""
        if req.sign_in_required and self.settings.sign_in == "none":
            raise RequestError(
                400, "sign_in", "this deployment has no approver sign-in (approver_sign_in): it cannot be required"
            )

    def _check_channels(self, req: ApprovalRequest) -> None:
        """Slack and webhook URLs (notification channels, ``on_decision`` webhooks) must point
        at an allowed host: the worker will POST there.

        The check's module is imported only when a request names a URL: it parses with yarl
        (as the worker's aiohttp POST will), ~15 ms an email-only start need not pay.
        """
        hosts = self.settings.hosts
        urls = [(f"notify[{i}].url", c.url, hosts.for_channel(c.type)) for i, c in enumerate(req.notify) if c.url]
        urls += [
            (f"on_decision[{i}].url", t.address, hosts.webhook)
            for i, t in enumerate(req.on_decision)
            if t.type == "webhook"
        ]
        if not urls:
            return
        from hitl.notify.urls import NotifyError, check_url

        for name, url, allowed in urls:
            try:
                check_url(url, allowed_hosts=allowed)
            except NotifyError as exc:
                raise RequestError(400, name, str(exc)) from None

    async def status(self, request: Request) -> Response:
        """The status; with ``wait=SECONDS`` (at most 60), as soon as the request ends (a long poll).

        With a webhook secret (a public ``start``) the query string must be signed too: a
        status carries the audit trail (who decided, when, from where, with which comment).
        """
        refused = self._unsigned(request, request.scope.get("query_string", b""))
        if refused is not None:
            return refused
        try:
            workflow_id = validate_workflow_id(request.query_params.get("workflow_id"))
            wait = parse_wait(request.query_params.get("wait"))
        except RequestError as exc:
            return json_response(exc.status, exc.to_json())
        try:
            if wait:
                run = await operations.wait(
                    self.client, self.settings.resonate, workflow_id, seconds=wait, timeout=self.timeout
                )
            else:
                run = await operations.status(self.client, workflow_id, timeout=self.timeout)
        except operations.ServerUnavailable as exc:
            return unavailable(exc)
        if run is None:
            return json_response(404, NOT_FOUND)
        return json_response(202 if run.status == "pending" else 200, run.to_json())

    async def cancel(self, request: Request) -> Response:
        body = await self._signed_body(request)
        if isinstance(body, Response):
            return body
        try:
            workflow_id, reason = parse_cancel(body, request.headers.get("content-type"))
        except RequestError as exc:
            return json_response(exc.status, exc.to_json())
        by = caller(request.headers)
        with logs.bind(workflow_id=workflow_id):
            try:
                outcome = await operations.cancel(
                    self.client, workflow_id, by=by, reason=reason, timeout=self.timeout,
                    inboxes_on=self.settings.sign_in == "iap",
                )  # fmt: skip
            except operations.ServerUnavailable as exc:
                return unavailable(exc)
            if outcome is None:
                return json_response(404, NOT_FOUND)
            canceled, run = outcome
            if not canceled:
                return json_response(409, {"error": "the request has already ended", **run.to_json()})
            logger.info("approval canceled", extra={"fields": {"by": by}})
            return json_response(202, {"workflow_id": workflow_id, "status": "canceling"})


def caller(headers: Mapping[str, str]) -> str:
    """Who asked: the authenticated principal Cloud Run forwards, else ``requester``."""
    return headers.get("x-goog-authenticated-user-email", "").removeprefix("accounts.google.com:") or "requester"


def unavailable(exc: Exception) -> Response:
    logger.warning("resonate server unavailable", extra={"fields": {"error": str(exc)}})
    return json_response(
        503, {"error": "the workflow server is unavailable, try again later"}, **{"Retry-After": RETRY_AFTER}
    )
