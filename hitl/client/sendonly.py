"""The edges' Resonate client (functions, CLI): promises over HTTP, and nothing else.

It assembles the SDK's request-side pieces (``Promises`` over ``Sender`` over
``Transport``) on :class:`~hitl.client.network.StdlibNetwork`, without
``resonate.Resonate`` and its runtime, and without aiohttp (see
:mod:`hitl.client.network` for why). There is no stream, no background task and no
retry: the caller bounds every call and answers 503.

It always names the server explicitly: with no URL the SDK would silently run
everything in-process, which must never happen here. (The worker's client,
which polls and runs workflows, is :mod:`hitl.client.polling`.)
"""

from __future__ import annotations

from resonate.codec import Codec, NoopEncryptor
from resonate.promises import Promises
from resonate.send import Sender
from resonate.transport import Transport
from resonate_base.connections import Network

from hitl.client.network import StdlibNetwork
from hitl.settings import ResonateSettings


class SendOnlyClient:
    """Creates, reads and settles promises; listens to nothing. :meth:`close` when done."""

    def __init__(self, network: Network, token: str | None) -> None:
        self._network = network
        self.promises = Promises(Sender(Transport(network), token), Codec(NoopEncryptor()))

    async def close(self) -> None:
        await self._network.stop()


def send_only(settings: ResonateSettings) -> SendOnlyClient:
    """The client for ``settings``: one pooled HTTP connection set per process, opened on first use."""
    network = StdlibNetwork(settings.url, token=settings.token, timeout=settings.timeout)
    return SendOnlyClient(network, settings.token)
