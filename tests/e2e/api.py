"""What a user does, as functions: start, read status, find the email, open a link, decide."""

from __future__ import annotations

import base64
import json
import re
import uuid
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from hitl.smtpsink import links_in, read_inbox
from hitl.stack import Stack, wait_until

TIMEOUT = 10


def unique(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def claims_of(token: str) -> list[Any]:
    """The (unverified) claims inside a link token: [promise_id, approver, decision, expires_at]."""
    payload = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Api:
    def __init__(self, stack: Stack) -> None:
        assert stack.start_fn is not None
        self.stack = stack
        self.start_url = stack.start_fn.url + "/"
        self.unblock_url = stack.unblock_url

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

    def start(self, body: dict[str, Any] | bytes, **kwargs: Any) -> requests.Response:
        if isinstance(body, bytes):
            return requests.post(self.start_url, data=body, timeout=TIMEOUT, **kwargs)
        return requests.post(self.start_url, json=body, timeout=TIMEOUT, **kwargs)

    def status(self, workflow_id: str) -> requests.Response:
        return requests.get(self.start_url, params={"workflow_id": workflow_id}, timeout=TIMEOUT)

    def wait_done(self, workflow_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            r = self.status(workflow_id)
            return r.json() if r.status_code == 200 and r.json()["status"] != "pending" else None

        return wait_until(done, timeout=timeout, interval=0.1, what=f"{workflow_id} to finish")

    # -- mail ---------------------------------------------------------------------------

    def emails(self, workflow_id: str, approver: str | None = None) -> list[EmailMessage]:
        """Messages about ``workflow_id`` (its id is in every subject this API makes)."""
        return [
            m
            for m in read_inbox(self.stack.inbox)
            if workflow_id in str(m["Subject"]) and (approver is None or approver in str(m["To"]))
        ]

    def wait_email(self, workflow_id: str, approver: str = "alice@example.com", timeout: float = 15.0) -> dict[str, str]:
        """The approve/reject links of the email to ``approver`` about ``workflow_id``."""
        messages = wait_until(lambda: self.emails(workflow_id, approver), timeout=timeout, what=f"email for {workflow_id}")
        return links_in(messages[0])

    # -- unblock ------------------------------------------------------------------------

    def open(self, link: str, method: str = "GET") -> requests.Response:
        return requests.request(method, link, timeout=TIMEOUT)

    def page_tokens(self, link: str) -> dict[str, str]:
        """The Approve and Reject tokens the decision page offers."""
        html = self.open(link).text
        values = re.findall(r'name="token"\s+value="([^"]+)"', html)
        return {claims_of(v)[2]: v for v in values}

    def submit(self, token: str, comment: str = "") -> requests.Response:
        return requests.post(self.unblock_url, data={"token": token, "comment": comment}, timeout=TIMEOUT)

    def decide(self, link: str, decision: str = "approve", comment: str = "") -> requests.Response:
        """Open the emailed link and press a button, as a person would."""
        return self.submit(self.page_tokens(link)[decision], comment)
