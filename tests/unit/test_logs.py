import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hitl import logs
from hitl.security.tokens import Claims, sign

TOKEN = sign(b"k" * 32, Claims("hitl:approval:wf-1:decision", "alice@example.com", "approve", 2_000_000_000))
TRACE = "105445aa7843bc8bf206b12000100000"

log = logging.getLogger("hitl.test")

Setup = Callable[..., io.StringIO]


@pytest.fixture
def setup() -> Iterator[Setup]:
    """Calls logs.setup with a fresh stream; restores the root logger afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def _setup(component: str, fmt: Any = "json", **kwargs: Any) -> io.StringIO:
        stream = io.StringIO()
        logs.setup(component, fmt, stream, **kwargs)
        return stream

    yield _setup
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_fields(setup: Setup) -> None:
    stream = setup("start")
    log.info("hello %s", "world")
    (entry,) = lines(stream)
    assert entry["severity"] == "INFO"
    assert entry["message"] == "hello world"
    assert entry["logging.googleapis.com/labels"] == {"python_logger": "hitl.test", "component": "start"}
    location = entry["logging.googleapis.com/sourceLocation"]
    assert location["file"].endswith("test_logs.py") and location["function"] == "test_json_line_fields"
    assert entry["logging.googleapis.com/trace"] == "" and "workflow_id" not in entry


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
    ],
)
def test_severity(setup: Setup, level: int, severity: str) -> None:
    stream = setup("worker", level=1)
    log.log(level, "m")
    assert lines(stream)[0]["severity"] == severity


def test_level(setup: Setup) -> None:
    stream = setup("worker")
    log.debug("hidden")
    log.info("shown")
    assert [e["message"] for e in lines(stream)] == ["shown"]


def test_bound_fields(setup: Setup) -> None:
    stream = setup("unblock")
    with logs.bind(trace=f"projects/p/traces/{TRACE}", workflow_id="wf-1"):
        with logs.bind(promise_id="hitl:approval:wf-1:decision"):
            log.info("inner")
        log.info("outer")
    log.info("unbound")
    inner, outer, unbound = lines(stream)
    assert inner["logging.googleapis.com/trace"] == f"projects/p/traces/{TRACE}"
    assert (inner["workflow_id"], inner["promise_id"]) == ("wf-1", "hitl:approval:wf-1:decision")
    assert outer["workflow_id"] == "wf-1" and "promise_id" not in outer
    assert "workflow_id" not in unbound and unbound["logging.googleapis.com/trace"] == ""


def test_bindings_are_per_task(setup: Setup) -> None:
    stream = setup("unblock")

    async def handle(workflow_id: str) -> None:
        with logs.bind(workflow_id=workflow_id):
            await asyncio.sleep(0)
            log.info("handled")

    async def main() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(main())
    assert sorted(e["workflow_id"] for e in lines(stream)) == ["a", "b"]


def test_extra_fields(setup: Setup) -> None:
    stream = setup("worker")
    log.info(
        "sent",
        extra={"fields": {"approvers": 2, "ids": ["x"], "severity": "forged", "at": object()}},
    )
    (entry,) = lines(stream)
    assert entry["approvers"] == 2 and entry["ids"] == ["x"]
    assert entry["severity"] == "INFO"  # reserved keys are not overridden
    assert entry["at"].startswith("<object")


def test_exceptions_are_in_the_message(setup: Setup) -> None:
    stream = setup("worker")
    try:
        raise RuntimeError(f"bad link {TOKEN}")
    except RuntimeError:
        log.exception("failed")
    (entry,) = lines(stream)
    assert entry["severity"] == "ERROR"
    assert entry["message"].startswith("failed\nTraceback")
    assert "RuntimeError: bad link [REDACTED]" in entry["message"]
    assert TOKEN not in stream.getvalue()


def test_tokens_are_redacted(setup: Setup) -> None:
    stream = setup("unblock")
    with logs.bind(workflow_id=f"token={TOKEN}"):
        log.info(
            "GET /?token=%s&x=1 and %s",
            TOKEN,
            TOKEN,
            extra={"fields": {"url": f"/?token={TOKEN}", "nested": {"t": [TOKEN]}}},
        )
        log.warning("Token=abc; access_token=xyz")
    first, second = lines(stream)
    assert first["message"] == "GET /?token=[REDACTED]&x=1 and [REDACTED]"
    assert first["url"] == "/?token=[REDACTED]"
    assert first["nested"] == {"t": ["[REDACTED]"]}
    assert first["workflow_id"] == "token=[REDACTED]"
    assert second["message"] == "Token=[REDACTED]; access_token=[REDACTED]"
    assert TOKEN not in stream.getvalue()


def test_ordinary_text_is_not_redacted(setup: Setup) -> None:
    stream = setup("unblock")
    text = "hitl.approval wf-1.2 example.com alice@example.com projects/p/traces/" + TRACE
    log.info(text)
    assert lines(stream)[0]["message"] == text


def test_secrets_are_redacted(setup: Setup) -> None:
    password = "p@ss word/with&chars"
    stream = setup("worker", secrets=[password, b"signing-key-" * 3, None, "", "abc"])
    log.info("login %s quoted=%s key=%s", password, "p%40ss%20word%2Fwith%26chars", "signing-key-" * 3)
    log.info("abc is too short to redact")
    first, second = lines(stream)
    assert first["message"] == "login [REDACTED] quoted=[REDACTED] key=[REDACTED]"
    assert second["message"] == "abc is too short to redact"


def test_secrets_from_env() -> None:
    env = {"HITL_SIGNING_KEY": "k" * 32, "SMTP_PASSWORD": "", "SMTP_HOST": "smtp.example.com"}
    assert logs.secrets_from_env(env) == ["k" * 32]


def test_setup_is_idempotent(setup: Setup) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first = setup("start")
    second = setup("start")
    assert len(root.handlers) == before + 1
    log.info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_setup_keeps_other_handlers(setup: Setup) -> None:
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    setup("start")
    setup("start")
    assert other in logging.getLogger().handlers


def test_text_format(setup: Setup) -> None:
    stream = setup("worker", "text")
    with logs.bind(workflow_id="wf-1"):
        log.warning("sent %s", TOKEN, extra={"fields": {"n": 2}})
    line = stream.getvalue()
    assert line.endswith(" WARNING  worker hitl.test: sent [REDACTED] workflow_id=wf-1 n=2\n")


def test_unknown_format(setup: Setup) -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup("worker", "xml")


@pytest.mark.parametrize(
    ("header", "project", "trace"),
    [
        (f"{TRACE}/1;o=1", "proj", f"projects/proj/traces/{TRACE}"),
        (f"{TRACE}/1", None, TRACE),
        (f"{TRACE};o=0", "proj", f"projects/proj/traces/{TRACE}"),
        (TRACE.upper(), "proj", f"projects/proj/traces/{TRACE}"),
        (f" {TRACE}/123 ", "", TRACE),
        (None, "proj", None),
        ("", "proj", None),
        ("nonsense", "proj", None),
        (TRACE[:-1] + "/1", "proj", None),
        (TRACE + "0/1", "proj", None),
        ("0" * 32 + "/1", "proj", None),
        ("g" * 32, "proj", None),
    ],
)
def test_trace_from_header(header: str | None, project: str | None, trace: str | None) -> None:
    assert logs.trace_from_header(header, project) == trace


LIBRARY_CASES = {
    "plain": ({}, None),
    "bound and fields": ({"trace": f"projects/p/traces/{TRACE}", "workflow_id": "wf-1", "promise_id": "wf-1:2"},
                         {"decision": "approved", "n": 3, "nested": {"a": [1, "x"]}}),
    "a field named like an entry key": ({}, {"severity": "nope", "message": "nope", "time": "nope", "ok": 1}),
    "an exception": ({"workflow_id": "wf-2"}, None),
}  # fmt: skip


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_the_functions_lines_are_the_librarys_field_by_field(setup: Setup, case: str) -> None:
    """The functions' light formatter writes what google-cloud-logging's StructuredLogHandler
    (the worker's) writes for the same record, so the two can never drift."""
    context, fields = LIBRARY_CASES[case]
    light, library = io.StringIO(), io.StringIO()

    def emit() -> None:
        extra = {"fields": fields} if fields else {}
        with logs.bind(**context):
            if case == "an exception":
                try:
                    raise ValueError("boom")
                except ValueError:
                    log.exception("failed %s", "once")
            else:
                log.warning("line %s", case, extra=extra)

    for stream, library_mode in ((light, False), (library, True)):
        setup("start")  # the fixture restores the root logger afterwards
        logs.setup("start", "json", stream, library=library_mode)
        emit()
    (ours,), (theirs,) = lines(light), lines(library)
    assert ours == theirs
