"""Host allowlists for notification URLs (``HITL_SLACK_ALLOWED_HOSTS``, ``HITL_WEBHOOK_ALLOWED_HOSTS``).

Settings parse them at start, so a malformed list stops a component at once;
:func:`hitl.notify.urls.check_url` holds URLs to them. This module imports
nothing but ``re``: ``start`` reads these settings on its first request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A host name (``.example.com`` allows its subdomains), or an IP literal (IPv6 in brackets).
_ENTRY = re.compile(r"\.?[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\]|[0-9a-f:]+")
_SEPARATORS = re.compile(r"[\s,]+")


def parse_allowed_hosts(raw: str | None, default: Iterable[str] = ()) -> frozenset[str]:
    """The host allowlist in ``raw`` (comma- or space-separated), or ``default`` when unset.

    Entries are lowercased; ``.example.com`` (leading dot) allows every
    subdomain of ``example.com`` (not ``example.com`` itself); IPv6 literals
    are written in brackets. Raises :class:`ValueError` on a malformed entry.
    """
    if raw is None or not raw.strip():
        return frozenset(host.lower() for host in default)
    hosts = frozenset(part.lower() for part in _SEPARATORS.split(raw.strip()) if part)
    bad = next((host for host in sorted(hosts) if not _ENTRY.fullmatch(host) or ".." in host), None)
    if bad is not None:
        raise ValueError(f"not a host name: {bad!r}")
    return hosts
