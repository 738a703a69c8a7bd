"""Who is signed in, for ``unblock`` with sign-in on: the gate every request passes first.

With ``HITL_SIGN_IN=iap`` every request to ``unblock`` (the page, the decision,
the inbox) must carry an assertion IAP signed (:mod:`hitl.security.iap`); a
link's approver must be the signed-in person (case-insensitive, or one of their
aliases). This module turns the verifier's answers into people and pages:

- no assertion, or one that fails a check: ``401``, nothing shown or decided,
  one log line naming the check that failed (never the token);
- a person signed in as someone else than the link's approver: ``403``, naming
  both accounts and offering to switch (``/_gcp_iap/clear_login_cookie``, IAP's
  sign-out, which the development sign-in serves too).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse

from hitl.edges import pages
from hitl.model.records import Identity
from hitl.settings import SignIn

if TYPE_CHECKING:
    from hitl.security.iap import SignedIn, Verifier

logger = logging.getLogger("hitl.edges.signin")

#: IAP's sign-out: clears its login cookie, so the next visit asks which account to use.
SWITCH_ACCOUNT_PATH = "/_gcp_iap/clear_login_cookie"


class Gate:
    """Verifies who is signed in (one per function instance: it keeps IAP's keys)."""

    def __init__(self, settings: SignIn, verifier: Verifier | None = None) -> None:
        from hitl.security import iap  # google-auth and cryptography: only with sign-in on

        self.settings = settings
        self.verifier = verifier or iap.Verifier(iap.KeySet(settings.keys_url or iap.KEYS_URL), settings.audience)
        self._refused = iap.Refused
        self._fetch_due = iap.FetchDue
        self._header = iap.HEADER

    async def who(self, request: Request) -> SignedIn | HTMLResponse:
        """The signed-in person, or the 401 page (logged with the check that failed)."""
        token = request.headers.get(self._header)
        try:
            try:
                return self.verifier.verify(token, may_fetch=False)  # keys cached: ~0.1 ms, inline
            except self._fetch_due:  # the first request, and one after IAP rotates its keys: fetch off the loop
                return await asyncio.to_thread(self.verifier.verify, token)
        except self._refused as exc:
            logger.warning("sign-in refused", extra={"fields": {"check": exc.reason}})
            return pages.response(401, pages.signin_page())

    def acting_for(self, person: SignedIn, approver: str) -> HTMLResponse | None:
        """``None`` when ``person`` is ``approver``; else the 403 page naming both accounts."""
        if self.settings.same_person(person.email, approver):
            return None
        logger.warning("signed in as someone else", extra={"fields": {"signed_in": person.email, "approver": approver}})
        return pages.response(
            403, pages.wrong_account_page(signed_in=person.email, approver=approver, switch=SWITCH_ACCOUNT_PATH)
        )


def identity(person: SignedIn) -> Identity:
    """How a vote records a person IAP vouched for."""
    return Identity("iap", email=person.email, subject=person.subject)
