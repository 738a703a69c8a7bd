"""The local development stack: never deployed, installed with the ``devstack`` extra.

    localserver/  a local Resonate server speaking the real server's protocol (durable with --db)
    smtpsink.py   an SMTP sink that stores messages in a folder and prints their links
    stack.py      the whole system as OS processes on chosen ports (``make run``, the e2e tests)
    dev.py        ``make run``: the stack, durable in ``state/``, until Ctrl-C
    procstats.py  CPU time and memory of processes from /proc (the benchmark and the load tests)

It imports ``hitl`` (to run it); ``hitl`` never imports it.
"""
