"""Reading a promise that may not exist, which the server answers with a 404.

Callers ask "is it there?" often (a caller's promise, a claim, a request's root,
an inbox's fence): a missing promise is an answer, not an error. Any other error
is raised as the client raised it.
"""

from __future__ import annotations

from resonate.error import ServerError
from resonate.promises import Promises
from resonate.types import PromiseRecord


async def find(promises: Promises, id: str) -> PromiseRecord | None:
    """The promise ``id``, or ``None`` when the server has none by that id."""
    try:
        return await promises.get(id)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise
