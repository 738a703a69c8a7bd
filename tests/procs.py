"""Process helpers for tests (the implementation lives in :mod:`devstack.stack`)."""

from devstack.stack import PYTHON, ROOT, LocalServerProc, Proc, free_port, wait_until

__all__ = ["PYTHON", "ROOT", "LocalServerProc", "Proc", "free_port", "wait_until"]
