"""Outgoing HTTP for the Slack and webhook notifiers: one POST, its errors classified.

The URL was held to the allowlist by :func:`hitl.notify.urls.check_url`;
:func:`post_json` never follows a redirect away from that checked host.

A Slack incoming-webhook URL is itself a secret (its path is the
credential), and the bodies carry the signed approval links: neither is
logged nor put into an exception message. Only the host and the status are.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

import aiohttp

from hitl.notify.urls import NotifyError, host_of

__all__ = ["post_json", "retry_after"]

log = logging.getLogger(__name__)

#: A response body shown in an error: Slack's short error codes (``invalid_payload``) only.
_ERROR_CODE = re.compile(r"[a-z][a-z_]{0,63}")


async def post_json(
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    what: str = "notification",
    clock: Callable[[], float] = time.time,
) -> int:
    """POST the JSON ``body`` to ``url`` once; return the (2xx) status.

    Does not follow redirects, ignores proxy settings from the environment,
    and raises :class:`NotifyError` on anything but a 2xx answer (with the
    ``Retry-After`` of a 429 or 503, read against ``clock``). ``what`` names the
    message in logs and errors (``"slack message"``).
    """
    host = host_of(url)
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False) as session,
            session.post(url, data=body, headers=sent_headers, allow_redirects=False) as response,
        ):
            status = response.status
            answer = await response.content.read(256) if not 200 <= status < 300 else b""
            wait = retry_after(response.headers.get("Retry-After"), now=clock()) if status in (429, 503) else None
    except aiohttp.InvalidURL:
        raise NotifyError(f"sending the {what} to {host} failed: invalid URL", permanent=True) from None
    except (aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError):
        raise NotifyError(
            f"sending the {what} to {host} failed: its TLS certificate does not verify", permanent=True
        ) from None
    except TimeoutError:
        raise NotifyError(
            f"sending the {what} to {host} failed: timed out after {timeout:g}s", permanent=False
        ) from None
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        # No chaining, no str(exc): aiohttp puts the full URL into some of its messages.
        raise NotifyError(f"sending the {what} to {host} failed: {type(exc).__name__}", permanent=False) from None
    if not 200 <= status < 300:
        code = answer.decode("ascii", "replace").strip()
        detail = f" ({code})" if _ERROR_CODE.fullmatch(code) else ""
        raise NotifyError(
            f"sending the {what} to {host} failed: HTTP {status}{detail}",
            permanent=_is_permanent(status),
            status=status,
            retry_after=wait,
        )
    log.info(f"{what} sent", extra={"fields": {"host": host, "status": status}})
    return status


def retry_after(value: str | None, *, now: float) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait (RFC 9110 10.2.3): a number of
    seconds, or an HTTP date (a date already past: 0). ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a date without a zone is read as such
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


def _is_permanent(status: int) -> bool:
    """3xx (not followed) and the 4xx but 408 and 429: retrying unchanged cannot help."""
    return not (status in (408, 429) or status >= 500)
