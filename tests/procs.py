"""Process helpers for tests (the implementation lives in :mod:`hitl.stack`)."""

from hitl.stack import PYTHON, ROOT, LocalServerProc, Proc, free_port, wait_until

__all__ = ["PYTHON", "ROOT", "LocalServerProc", "Proc", "free_port", "wait_until"]
