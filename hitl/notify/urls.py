"""Notification URLs: which the worker may POST to, and the links it puts in messages.

The URLs come from the body of a ``start`` call, so the worker would POST
wherever a caller says: :func:`check_url` holds them to an allowlist of
hosts (server-side request forgery). ``start`` checks them too, so a bad URL
is a 400 and not a failed step; this module therefore imports no HTTP client
(:mod:`hitl.notify.post` imports aiohttp, ~200 ms of a function's cold start).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from urllib.parse import urlsplit

import yarl

__all__ = ["MAX_LINK_CHARS", "MAX_URL_CHARS", "NotifyError", "check_link", "check_url", "host_of", "parse_deadline"]

#: Longest notification URL accepted (Slack's are about 80 characters).
MAX_URL_CHARS = 2000
#: Longest approval link accepted (Slack's limit on a button's ``url``).
MAX_LINK_CHARS = 3000

_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f\\]")


class NotifyError(Exception):
    """A notification could not be sent, or its URL is not acceptable.

    ``permanent``: retrying unchanged will not help (a refused URL, a 4xx
    other than 408 and 429, a redirect, a certificate that does not verify).
    Otherwise (5xx, 408, 429, timeouts, connection errors) a retry may.
    ``status`` is the HTTP status when there was an answer; ``retry_after``
    the wait a 429 or 503 asked for, when it said.
    """

    def __init__(
        self, message: str, *, permanent: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        #: Seconds the receiver asked to wait before the next try (``Retry-After`` on a 429 or 503).
        self.retry_after = retry_after


def check_url(url: str, *, allowed_hosts: frozenset[str]) -> str:
    """Return ``url`` unchanged if the worker may POST to it, else raise :class:`NotifyError`.

    It must be ``https`` (``http`` only to a loopback host that is itself in
    ``allowed_hosts``, for local development and tests), carry no user
    information, and name a host in ``allowed_hosts``: an exact entry, or a
    ``.suffix`` entry matching any subdomain. Messages name the host at
    most, never the path or query. Errors are ``permanent``.
    """
    if not isinstance(url, str) or not url:
        raise _refused("the URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise _refused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if _CONTROL_OR_SPACE.search(url):
        raise _refused("the URL contains whitespace, control characters or backslashes")
    try:
        # Checked with both the standard parser and yarl (what aiohttp sends with):
        # a URL on which they disagree is refused rather than guessed at.
        parts = urlsplit(url)
        parsed = yarl.URL(url)
        std_host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise _refused("the URL is malformed") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("https", "http"):
        raise _refused("the URL must be https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refused("the URL must not carry a user name or password")
    if parsed.user is not None or parsed.password is not None:
        raise _refused("the URL must not carry a user name or password")
    host = (parsed.raw_host or "").lower()
    if not host or not std_host:
        raise _refused("the URL has no host")
    if _bare(host) != _bare(std_host.lower()) and host != _idna(std_host):
        raise _refused("the URL is malformed")
    if not _allowed(host, allowed_hosts):
        raise _refused(f"host {host} is not allowed")
    if scheme == "http" and not (_is_loopback(host) and _listed_exactly(host, allowed_hosts)):
        raise _refused(f"the URL must be https (host {host})")
    return url


def host_of(url: str) -> str:
    """The host of ``url``, lowercased, for logs and messages (never the path or query)."""
    try:
        return (yarl.URL(url).raw_host or "?").lower()
    except (ValueError, TypeError):
        return "?"


def check_link(name: str, url: str) -> None:
    """Raise :class:`ValueError` unless ``url`` is an absolute http(s) approval link."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(url) > MAX_LINK_CHARS
        or _CONTROL_OR_SPACE.search(url)
    ):
        raise ValueError(f"{name} must be an absolute http(s) URL")


def parse_deadline(deadline_at_iso: str) -> datetime:
    """``deadline_at_iso`` as an aware datetime; :class:`ValueError` without a timezone."""
    deadline = datetime.fromisoformat(deadline_at_iso)
    if deadline.tzinfo is None:
        raise ValueError(f"deadline_at_iso must carry a timezone, got {deadline_at_iso!r}")
    return deadline


def _refused(reason: str) -> NotifyError:
    return NotifyError(f"notification URL refused: {reason}", permanent=True)


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return ""


def _listed_exactly(host: str, allowed: frozenset[str]) -> bool:
    return host in allowed or f"[{host}]" in allowed or _bare(host) in allowed


def _allowed(host: str, allowed: frozenset[str]) -> bool:
    if _listed_exactly(host, allowed):
        return True
    return any(entry.startswith(".") and len(entry) > 1 and host.endswith(entry) for entry in allowed)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(_bare(host)).is_loopback
    except ValueError:
        return False
