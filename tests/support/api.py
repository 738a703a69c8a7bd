"""What a user does, as functions: start, read status, find the email, open a link, decide.

:class:`Api` speaks to a :class:`Target`: the local stack (``devstack.stack``)
or a deployment. The e2e, browser, load and resilience suites all drive the
system through it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from devstack.smtpsink import links_in, read_inbox
from devstack.stack import Stack, wait_until
from hitl.model import policy
from hitl.model.request import ApprovalRequest
from hitl.notify.dispatcher import link
from hitl.security import signatures as webhook
from hitl.security import tokens

TIMEOUT = 10


def unique(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def claims_of(token: str) -> list[Any]:
    """The (unverified) claims inside a link token: [promise_id, approver, decision, expires_at]."""
    payload = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def tokens_on_page(html: str) -> dict[str, str]:
    """The tokens of the buttons a decision page offers, by decision (``approve``, ``reject``)."""
    return {claims_of(v)[2]: v for v in re.findall(r'name="token"\s+value="([^"]+)"', html)}


@dataclass(frozen=True)
class Click:
    """One press of a decision button, as a test plans it: on which request, which decision, with which token."""

    workflow_id: str
    decision: str  # "approve" | "reject"
    comment: str
    token: str


@dataclass(frozen=True)
class Target:
    """Where the e2e tests send requests: the local stack, or a deployment."""

    start_url: str
    unblock_url: str
    signing_key: str
    #: The SMTP sink's folder; ``None`` for a deployment (links are then minted with the key).
    inbox: Path | None = None
    #: Extra headers for ``start`` (an identity token for a deployment in IAM mode).
    headers: dict[str, str] = field(default_factory=dict)
    webhook_secret: str | None = None
    #: The local Resonate server (``None`` for a deployment): for tests that read its records.
    server_url: str | None = None

    @classmethod
    def local(cls, stack: Stack) -> Target:
        assert stack.start_fn is not None and stack.server is not None
        return cls(
            stack.start_fn.url + "/", stack.unblock_url, stack.signing_key, stack.inbox, server_url=stack.server.url
        )

    @classmethod
    def deployed(cls, env: dict[str, str]) -> Target:
        """From ``HITL_START_URL``, ``HITL_UNBLOCK_URL``, ``HITL_SIGNING_KEY`` (+ optional
        ``HITL_START_BEARER`` identity token and ``HITL_WEBHOOK_SECRET``)."""
        bearer = env.get("HITL_START_BEARER")
        return cls(
            env["HITL_START_URL"].rstrip("/") + "/",
            env["HITL_UNBLOCK_URL"].rstrip("/") + "/",
            env["HITL_SIGNING_KEY"],
            headers={"Authorization": f"Bearer {bearer}"} if bearer else {},
            webhook_secret=env.get("HITL_WEBHOOK_SECRET"),
        )


def deployed() -> Target | None:
    return Target.deployed(dict(os.environ)) if os.environ.get("HITL_START_URL") else None


class Api:
    def __init__(self, target: Target | Stack) -> None:
        self.target = target if isinstance(target, Target) else Target.local(target)
        self.start_url = self.target.start_url
        self.unblock_url = self.target.unblock_url
        #: The requests started through this API, by workflow id.
        self.started: dict[str, dict[str, Any]] = {}

    # -- start ------------------------------------------------------------------------

    def request_body(self, workflow_id: str | None = None, **fields: Any) -> dict[str, Any]:
        workflow_id = workflow_id or unique()
        return {
            "workflow_id": workflow_id,
            "approvers": ["alice@example.com"],
            "subject": f"Approve {workflow_id}",
            "details": {"service": "api", "version": "v42"},
            **fields,
        }

    def start(
        self, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None, path: str = ""
    ) -> requests.Response:
        """POST ``body`` to ``start`` (``path="cancel"`` for a cancel)."""
        if isinstance(body, dict) and isinstance(body.get("workflow_id"), str):
            self.started.setdefault(body["workflow_id"], body)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **self.target.headers, **(headers or {})}
        if self.target.webhook_secret:
            sent[webhook.HEADER] = webhook.sign(self.target.webhook_secret.encode(), data, int(time.time()))
        return requests.post(self.start_url + path, data=data, headers=sent, timeout=TIMEOUT)

    def status(self, workflow_id: str, wait: float | None = None) -> requests.Response:
        """``GET start?workflow_id=`` (a long poll with ``wait``), signed when the target has a webhook secret."""
        query = urlencode({"workflow_id": workflow_id} | ({"wait": f"{wait:g}"} if wait is not None else {}))
        sent = dict(self.target.headers)
        if self.target.webhook_secret:
            sent[webhook.HEADER] = webhook.sign(self.target.webhook_secret.encode(), query.encode(), int(time.time()))
        return requests.get(f"{self.start_url}?{query}", headers=sent, timeout=TIMEOUT + (wait or 0))

    def wait_done(self, workflow_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            r = self.status(workflow_id)
            return r.json() if r.status_code == 200 and r.json()["status"] != "pending" else None

        return wait_until(done, timeout=timeout, interval=0.1, what=f"{workflow_id} to finish")

    # -- mail ---------------------------------------------------------------------------

    def emails(self, workflow_id: str, approver: str | None = None) -> list[EmailMessage]:
        """Messages about ``workflow_id`` (its id is in every subject this API makes)."""
        assert self.target.inbox is not None, "only the local stack has an inbox"
        return [
            m
            for m in read_inbox(self.target.inbox)
            if workflow_id in str(m["Subject"]) and (approver is None or approver in str(m["To"]))
        ]

    def wait_email(
        self, workflow_id: str, approver: str = "alice@example.com", timeout: float = 15.0
    ) -> dict[str, str]:
        """The approve/reject links of the email to ``approver`` about ``workflow_id``.

        Against a deployment (no inbox to read) the links are minted with the signing key
        for the approver's vote promise (its id follows from the request), once it exists.
        """
        if self.target.inbox is None:
            links = self.mint_links(self.vote_id(workflow_id, approver), approver)
            wait_until(
                lambda: self.open(links["approve"]).status_code != 404,
                timeout=timeout,
                what="the run's decision promise",
            )
            return links
        messages = wait_until(
            lambda: self.emails(workflow_id, approver), timeout=timeout, what=f"email for {workflow_id}"
        )
        return links_in(messages[0])

    def vote_id(self, workflow_id: str, approver: str, round: int = 0) -> str:
        """The id of ``approver``'s vote promise in a request started through this API."""
        lay = policy.layout(ApprovalRequest.from_json(self.started[workflow_id]))
        return lay.rounds[round].vote_of(approver)

    def mint_links(self, promise_id: str, approver: str, expires_at: int | None = None) -> dict[str, str]:
        key = self.target.signing_key.encode()
        exp = expires_at or int(time.time()) + 3600
        return {
            d: link(self.unblock_url.rstrip("/"), tokens.sign(key, tokens.Claims(promise_id, approver, d, exp)))  # type: ignore[arg-type]
            for d in ("approve", "reject")
        }

    # -- unblock ------------------------------------------------------------------------

    def open(self, link: str, method: str = "GET") -> requests.Response:
        return requests.request(method, link, timeout=TIMEOUT)

    def page_tokens(self, link: str) -> dict[str, str]:
        """The Approve and Reject tokens the decision page offers."""
        return tokens_on_page(self.open(link).text)

    def submit(self, token: str, comment: str = "") -> requests.Response:
        return requests.post(self.unblock_url, data={"token": token, "comment": comment}, timeout=TIMEOUT)

    def decide(self, link: str, decision: str = "approve", comment: str = "") -> requests.Response:
        """Open the emailed link and press a button, as a person would."""
        return self.submit(self.page_tokens(link)[decision], comment)
