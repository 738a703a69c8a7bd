"""Helpers shared by the test suites (``tests/`` is on ``sys.path``, see ``tests/conftest.py``).

listener.py   a TCP listener base for fake relays (SMTP blackholes and the like)
inprocess.py  the edges' real send-only client over the local server's engine, in-process
"""
