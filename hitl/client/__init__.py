"""The client side: everything that speaks the Resonate server's protocol, and hitl's ``start``.

- :mod:`~hitl.client.sendonly` over :mod:`~hitl.client.network`: the edges'
  (functions', CLI's) client: promises only, over ``http.client`` (no aiohttp
  on their cold-start path);
- :mod:`~hitl.client.polling`: the worker's client, long-polling its group;
- :mod:`~hitl.client.runs`: creating durable runs by hand;
- :mod:`~hitl.client.reads`: reading a promise that may not exist;
- :mod:`~hitl.client.start_function`: hitl's own ``start`` function over HTTP, for
  the CLI as a start caller (a CI pipeline holds no server token).

It must never import ``hitl.model``, ``hitl.notify`` or ``hitl.edges``: it
moves promises, it does not know what they mean.
"""
