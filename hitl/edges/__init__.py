"""The edges: the HTTP functions ``start`` and ``unblock``, their pages, and the operator CLI.

They parse, ask :mod:`hitl.operations`, and answer; they hold no state. The
workflow (:mod:`hitl.approval`) and the notifiers are the worker's: an edge
must never import them (the cold-start import test holds the functions to it).
"""
