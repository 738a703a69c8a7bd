"""The Resonate server's client side: everything that speaks its protocol.

- :mod:`~hitl.client.sendonly` over :mod:`~hitl.client.network`: the edges'
  (functions', CLI's) client: promises only, over ``http.client`` (no aiohttp
  on their cold-start path);
- :mod:`~hitl.client.polling`: the worker's client, long-polling its group;
- :mod:`~hitl.client.runs`: creating durable runs by hand.

It must never import ``hitl.model``, ``hitl.notify`` or ``hitl.edges``: it
moves promises, it does not know what they mean.
"""
