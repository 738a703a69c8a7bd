"""Helpers shared by the test suites (``tests/`` is on ``sys.path``, see ``tests/conftest.py``).

api.py             what a user does (start, status, email, links, decide) against a local stack or a deployment
stacks.py          the stacks the process suites run against: make_stack, targets, FAST_WORKER leases
server_records.py  the local Resonate server's own records (a run's task), read directly
sink.py            what the stack's SMTP sink received: its inbox folder and its log
relays.py          SMTP relays that misbehave on purpose: hung, down, slow
receivers.py       local HTTP endpoints standing in for Slack and webhook receivers
ports.py           a port that refuses connections, for as long as a test needs it
measurements.py    the ``measure`` fixture and its terminal summary (a plugin, loaded by tests/conftest.py)
listener.py        a TCP listener base for fake relays
inprocess.py       the edges' real send-only client over the local server's engine, in-process
"""
