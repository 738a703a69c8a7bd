"""hitl: durable human-in-the-loop approvals on Resonate durable promises.

This package is exactly what runs in production: the functions' bundle and the
worker image take it whole. Development tools (the local Resonate server, the
SMTP sink, the stack runner) live in ``devstack`` and are never imported here.

    model/       the request and its rules: parsing, the promise layout, the tally, typed records
    security/    link tokens, webhook signatures, host allowlists
    client/      talking to the Resonate server (the edges' send-only client, the worker's client, runs)
                 and to the start function (the CLI as a start caller)
    notify/      asking approvers: the dispatcher and every channel (email, Slack, webhooks)
    edges/       the HTTP functions (start, unblock), their pages, and the operator CLI
    approval.py  the workflow and its steps (runs on the worker)
    bindings.py  which promises a request may settle: a caller's own, bound to it alone
    delivery.py  delivering a decision to its callers (on_decision)
    operations.py  what the edges ask of the server: start, status, read, decide, cancel
    settings.py logs.py clock.py  configuration, structured logs, time
"""
