"""Settings: read once from a plain mapping, typed, and refusing what is malformed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hitl.settings import (
    ENV_VARS,
    CliSettings,
    ConfigError,
    StartCaller,
    StartSettings,
    UnblockSettings,
    WorkerSettings,
)

KEY = "k" * 32
BASE = {"RESONATE_URL": "http://127.0.0.1:8001/"}
WORKER = {**BASE, "HITL_SIGNING_KEY": KEY, "HITL_UNBLOCK_URL": "https://unblock.example.com", "SMTP_HOST": "smtp"}


def test_defaults() -> None:
    start = StartSettings.from_env(BASE)
    assert (start.resonate.url, start.resonate.group, start.resonate.timeout) == (
        "http://127.0.0.1:8001",
        "worker",
        5.0,
    )
    assert start.project is None and start.webhook_secret is None
    worker = WorkerSettings.from_env(WORKER)
    assert worker.delivery_retry_for == timedelta(days=1)
    assert (worker.smtp.port, worker.smtp.security, worker.port) == (587, "starttls", 8080)


@pytest.mark.parametrize("settings", [StartSettings, UnblockSettings, WorkerSettings])
def test_the_project_names_the_trace_of_every_component(settings: type) -> None:
    """Cloud Run functions (gen2, Python 3.12) set no GOOGLE_CLOUD_PROJECT: the deployment
    does, and each component reads it once, so its log lines carry a trace Cloud Logging
    correlates (``projects/P/traces/T``)."""
    env = {**WORKER, "GOOGLE_CLOUD_PROJECT": "acme-prod"}
    assert settings.from_env(env).project == "acme-prod"
    assert all("GOOGLE_CLOUD_PROJECT" in ENV_VARS[c] for c in ("start", "unblock", "worker"))


def test_delivery_retry_time_is_configurable() -> None:
    assert WorkerSettings.from_env({**WORKER, "HITL_DELIVERY_RETRY_FOR": "3600"}).delivery_retry_for == timedelta(
        hours=1
    )
    with pytest.raises(ConfigError, match="HITL_DELIVERY_RETRY_FOR"):
        WorkerSettings.from_env({**WORKER, "HITL_DELIVERY_RETRY_FOR": "soon"})


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({}, "RESONATE_URL"),
        ({"RESONATE_URL": "ftp://x"}, "RESONATE_URL"),
        ({**BASE, "HITL_WORKER_GROUP": "Workers"}, "HITL_WORKER_GROUP"),
        ({**BASE, "HITL_SERVER_TIMEOUT": "0"}, "HITL_SERVER_TIMEOUT"),
        ({**BASE, "HITL_LOG_FORMAT": "xml"}, "HITL_LOG_FORMAT"),
        ({**BASE, "HITL_SLACK_ALLOWED_HOSTS": "bad host!"}, "HITL_SLACK_ALLOWED_HOSTS"),
    ],
)
def test_a_malformed_variable_is_named(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StartSettings.from_env(env)
    assert caught.value.var == var


def test_the_signing_key_must_be_long_enough() -> None:
    with pytest.raises(ConfigError, match="HITL_SIGNING_KEY"):
        UnblockSettings.from_env({**BASE, "HITL_SIGNING_KEY": "short"})
    with pytest.raises(ConfigError, match="SMTP_PASSWORD"):
        WorkerSettings.from_env({**WORKER, "SMTP_USERNAME": "u"})


def test_the_cli_is_an_operators_or_a_start_callers() -> None:
    operator = CliSettings.from_env({"RESONATE_URL": "http://server:8001", "RESONATE_TOKEN": "t"})
    assert operator.resonate is not None and operator.start is None
    pipeline = CliSettings.from_env({"HITL_START_URL": "https://start.example/", "HITL_WEBHOOK_SECRET": "s"})
    assert pipeline.resonate is None
    assert pipeline.start == StartCaller("https://start.example", webhook_secret=b"s")
    google = CliSettings.from_env({"HITL_START_URL": "https://start.example", "HITL_START_AUTH": "google"})
    assert google.start is not None and google.start.google
    with pytest.raises(ConfigError) as both:
        CliSettings.from_env({"HITL_START_URL": "https://s", "HITL_START_AUTH": "google", "HITL_START_TOKEN": "t"})
    assert both.value.var == "HITL_START_AUTH"
    with pytest.raises(ConfigError) as neither:
        CliSettings.from_env({})
    assert neither.value.var == "RESONATE_URL"
    with pytest.raises(ConfigError):
        CliSettings.from_env({"HITL_START_URL": "https://s", "HITL_START_AUTH": "aws"})
