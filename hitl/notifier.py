"""Turns "ask this approver" into a sent message: signs the links, composes, delivers.

Given to the worker's steps as a dependency, so a test can hand the workflow
a notifier with another ``send``. One call delivers on one channel; the
workflow makes one durable step per approver and channel, so a failure on
one channel never repeats a message already delivered on another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import urlencode

from hitl import tokens
from hitl.clock import iso
from hitl.notify import email
from hitl.request import ApprovalRequest
from hitl.settings import SmtpSettings

Send = Callable[[SmtpSettings, EmailMessage], Awaitable[None]]


def link(unblock_url: str, token: str) -> str:
    return f"{unblock_url}?{urlencode({'token': token})}"


@dataclass(frozen=True)
class Notifier:
    signing_key: bytes
    unblock_url: str
    smtp: SmtpSettings
    send: Send = field(default=email.send)

    def links(self, promise_id: str, approver: str, expires_at_ms: int) -> dict[str, str]:
        """The approver's Approve and Reject links, valid until the deadline."""
        return {
            decision: link(
                self.unblock_url,
                tokens.sign(
                    self.signing_key,
                    tokens.Claims(
                        promise_id=promise_id, approver=approver, decision=decision, expires_at=expires_at_ms // 1000
                    ),
                ),
            )
            for decision in ("approve", "reject")
        }

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
        links = self.links(promise_id, approver, deadline_at_ms)
        kind = "approval" if reminder is None else f"reminder-{reminder}"
        if channel != "email":
            raise NotImplementedError(f"channel {channel}")
        message = email.compose(
            sender=self.smtp.sender,
            approver=approver,
            subject=req.subject,
            details=req.details,
            approve_url=links["approve"],
            reject_url=links["reject"],
            deadline_at_iso=iso(deadline_at_ms),
            message_id=email.message_id_for(promise_id, approver, kind),
            reminder=reminder is not None,
        )
        await self.send(self.smtp, message)
