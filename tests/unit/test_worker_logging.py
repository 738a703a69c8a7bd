"""worker.main's logging: hitl's records, not the SDK's per-promise trace."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from resonate.observability import BackgroundTaskFailed, PromiseCreateRequested, logging_observer

from worker.main import SDK_TRACE_LOGGER, setup_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """setup_logging into a fresh stream; restores the root and the SDK trace logger afterwards."""
    root, trace = logging.getLogger(), logging.getLogger(SDK_TRACE_LOGGER)
    saved = (root.handlers[:], root.level, trace.level)
    out = io.StringIO()
    setup_logging("json", ["s3cret-value"], out)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    trace.setLevel(saved[2])


def test_the_sdk_promise_trace_is_not_logged(stream: io.StringIO) -> None:
    logging_observer(PromiseCreateRequested(id="wf-1:1", invocation="run"))
    logging.getLogger("hitl.worker").info("worker started")
    logging_observer(BackgroundTaskFailed(cause="boom"))  # the SDK's errors still are

    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["worker started", "background task failed: boom"]


def test_secrets_are_still_redacted(stream: io.StringIO) -> None:
    logging.getLogger("hitl.worker").warning("value s3cret-value")
    assert "s3cret-value" not in stream.getvalue()
