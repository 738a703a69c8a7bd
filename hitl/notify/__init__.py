"""Asking approvers: the dispatcher and every channel.

- :mod:`~hitl.notify.dispatcher`: signs an approver's links and hands them to a channel;
- channels: :mod:`~hitl.notify.email` (over :mod:`~hitl.notify.smtp_sessions`),
  :mod:`~hitl.notify.slack`, :mod:`~hitl.notify.webhook`, the last two POSTing
  through :mod:`~hitl.notify.post`;
- :mod:`~hitl.notify.urls`: which URLs may be POSTed to (the allowlist, no
  internal addresses), light enough for ``start`` to check them at once.

The worker runs it; the edges import only :mod:`~hitl.notify.urls`. It must
never import ``hitl.client``, ``hitl.edges`` or ``hitl.approval``.
"""
