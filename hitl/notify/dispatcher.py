"""Turns "ask this approver" into a sent message: signs the links, composes, delivers.

Given to the worker's steps as a dependency, so a test can hand the workflow
a notifier with another ``send``. One call delivers on one channel; the
workflow makes one durable step per approver and channel, so a failure on
one channel never repeats a message already delivered on another.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from hitl.clock import iso
from hitl.model.request import ApprovalRequest
from hitl.notify import email, slack, webhook
from hitl.notify.urls import NotifyError, check_url
from hitl.security import tokens
from hitl.settings import ChannelHosts, SmtpSettings

logger = logging.getLogger("hitl.notify.dispatcher")

Send = Callable[[SmtpSettings, email.Email], Awaitable[None]]


def link(unblock_url: str, token: str) -> str:
    return f"{unblock_url}?{urlencode({'token': token})}"


@dataclass(frozen=True)
class Notifier:
    signing_key: bytes
    unblock_url: str
    smtp: SmtpSettings
    hosts: ChannelHosts = field(default_factory=ChannelHosts)
    notify_timeout: float = 10.0
    webhook_secret: bytes | None = None
    send: Send = field(default=email.send)

    def links(self, promise_id: str, approver: str, expires_at_ms: int, *, sign_in: bool = False) -> dict[str, str]:
        """The approver's Approve and Reject links, valid until the deadline (``sign_in``: for
        a request that requires signing in, so ``unblock`` refuses them without an identity)."""
        return {
            decision: link(
                self.unblock_url,
                tokens.sign(
                    self.signing_key,
                    tokens.Claims(
                        promise_id=promise_id, approver=approver, decision=decision,
                        expires_at=expires_at_ms // 1000, sign_in=sign_in,
                    ),
                ),
            )
            for decision in ("approve", "reject")
        }  # fmt: skip

    async def ask(
        self,
        req: ApprovalRequest,
        *,
        channel: str,
        url: str | None,
        approver: str,
        promise_id: str,
        deadline_at_ms: int,
        reminder: int | None = None,
    ) -> None:
        """Ask ``approver`` to decide (or remind them, ``reminder`` seconds before the deadline)."""
        links = self.links(promise_id, approver, deadline_at_ms, sign_in=req.sign_in_required)
        kind = "approval" if reminder is None else f"reminder-{reminder}"
        deadline = iso(deadline_at_ms)
        try:
            if channel == "email":
                await self._email(
                    req, approver, links, deadline, email.message_id_for(promise_id, approver, kind), reminder
                )
            elif channel == "slack":
                assert url is not None
                payload = slack.slack_message(
                    approver=approver, subject=req.subject, details=req.details, approve_url=links["approve"],
                    reject_url=links["reject"], deadline_at_iso=deadline, reminder=reminder is not None,
                )  # fmt: skip
                await slack.post_slack(
                    check_url(url, allowed_hosts=self.hosts.slack), payload, timeout=self.notify_timeout
                )
            elif channel == "webhook":
                assert url is not None
                event = webhook.webhook_event(
                    kind="approval.requested" if reminder is None else "approval.reminder",
                    workflow_id=req.workflow_id, approver=approver, subject=req.subject, details=req.details,
                    approve_url=links["approve"], reject_url=links["reject"], deadline_at_iso=deadline,
                    idempotency_key=email.message_id_for(promise_id, approver, f"webhook-{kind}"),
                )  # fmt: skip
                await webhook.post_webhook(
                    check_url(url, allowed_hosts=self.hosts.webhook), event, secret=self.webhook_secret,
                    timeout=self.notify_timeout,
                )  # fmt: skip
            else:
                raise ValueError(f"unknown channel {channel!r}")
        except (NotifyError, email.EmailError) as exc:
            if not exc.permanent:
                raise  # the durable step retries with backoff
            # Retrying cannot help (refused URL, 4xx, bad address): record it and go on.
            logger.error("notification failed for good", extra={"fields": {"channel": channel, "error": str(exc)}})

    async def _email(
        self,
        req: ApprovalRequest,
        approver: str,
        links: dict[str, str],
        deadline: str,
        message_id: str,
        reminder: int | None,
    ) -> None:
        message = email.compose(
            sender=self.smtp.sender,
            approver=approver,
            subject=req.subject,
            details=req.details,
            approve_url=links["approve"],
            reject_url=links["reject"],
            deadline_at_iso=deadline,
            message_id=message_id,
            reminder=reminder is not None,
        )
        await self.send(self.smtp, message)
