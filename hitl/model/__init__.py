"""The request and its rules: request parsing, the promise layout and tally, the decision records.

Pure: no I/O, no clock of its own (times are passed in), no Resonate client.
It must never import ``hitl.client``, ``hitl.notify``, ``hitl.edges`` or
``hitl.approval``; everything else builds on it.
"""
