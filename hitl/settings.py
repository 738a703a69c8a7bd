"""Configuration: read once from the environment into typed, frozen settings.

Each component (the ``start`` and ``unblock`` functions, the worker) has its
own settings class and reads only the variables it declares in
:data:`ENV_VARS`, so the deployment can give every component exactly what it
reads and nothing more (``tests/infra`` holds Terraform to that list).

Every loader takes the environment as a parameter (default: ``os.environ``),
so tests pass a plain dict and never touch process-wide state. A missing or
malformed value raises :class:`ConfigError` naming the variable: a worker
with no server URL must fail at start, never fall back to the SDK's silent
in-process mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, get_args
from urllib.parse import urlsplit

from hitl.security.hosts import parse_allowed_hosts

#: The variables each component reads. The loaders below read nothing else.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "start": (
        "RESONATE_URL",
        "RESONATE_TOKEN",
        "HITL_WORKER_GROUP",
        "HITL_SERVER_TIMEOUT",
        "HITL_WEBHOOK_SECRET",
        "HITL_SLACK_ALLOWED_HOSTS",
        "HITL_WEBHOOK_ALLOWED_HOSTS",
        "HITL_SIGN_IN",
        "HITL_LOG_FORMAT",
        "GOOGLE_CLOUD_PROJECT",
    ),
    "unblock": (
        "RESONATE_URL",
        "RESONATE_TOKEN",
        "HITL_SERVER_TIMEOUT",
        "HITL_SIGNING_KEY",
        "HITL_SIGN_IN",
        "HITL_IAP_AUDIENCE",
        "HITL_IAP_KEYS_URL",
        "HITL_APPROVER_ALIASES",
        "HITL_LOG_FORMAT",
        "GOOGLE_CLOUD_PROJECT",
    ),
    "worker": (
        "RESONATE_URL",
        "RESONATE_TOKEN",
        "HITL_WORKER_GROUP",
        "HITL_SIGNING_KEY",
        "HITL_UNBLOCK_URL",
        "HITL_TASK_TTL",
        "HITL_SSE_TIMEOUT",
        "HITL_SLACK_ALLOWED_HOSTS",
        "HITL_WEBHOOK_ALLOWED_HOSTS",
        "HITL_NOTIFY_TIMEOUT",
        "HITL_NOTIFY_WEBHOOK_SECRET",
        "HITL_DELIVERY_RETRY_FOR",
        "HITL_SIGN_IN",
        "HITL_LOG_FORMAT",
        "GOOGLE_CLOUD_PROJECT",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_SECURITY",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "SMTP_FROM",
        "PORT",
    ),
    # The CLI (hitl.edges.cli): an operator's, over the server (RESONATE_*), or a start
    # caller's, over the start function (HITL_START_*, HITL_WEBHOOK_SECRET).
    "cli": (
        "RESONATE_URL",
        "RESONATE_TOKEN",
        "HITL_WORKER_GROUP",
        "HITL_SERVER_TIMEOUT",
        "HITL_START_URL",
        "HITL_START_TOKEN",
        "HITL_START_TOKEN_COMMAND",
        "HITL_START_AUTH",
        "HITL_WEBHOOK_SECRET",
    ),
}

#: The secrets among them: never logged, delivered from Secret Manager in production.
SECRET_VARS = frozenset(
    {
        "RESONATE_TOKEN", "HITL_SIGNING_KEY", "HITL_WEBHOOK_SECRET", "HITL_NOTIFY_WEBHOOK_SECRET", "SMTP_PASSWORD",
        "HITL_START_TOKEN",
    }
)  # fmt: skip

MIN_SIGNING_KEY_BYTES = 32

LogFormat = Literal["json", "text"]
SmtpSecurity = Literal["starttls", "tls", "none"]
#: How approvers are identified: by their signed link alone, or signed in through IAP as well.
SignInMode = Literal["none", "iap"]


class ConfigError(ValueError):
    """A configuration variable is missing or malformed."""

    def __init__(self, var: str, reason: str) -> None:
        self.var = var
        self.reason = reason
        super().__init__(f"{var}: {reason}")


class _Reader:
    """Reads the variables of one component, refusing any it did not declare."""

    def __init__(self, component: str, env: Mapping[str, str]) -> None:
        self._allowed = ENV_VARS[component]
        self._env = env

    def declares(self, var: str) -> bool:
        return var in self._allowed

    def get(self, var: str, default: str | None = None) -> str | None:
        assert var in self._allowed, f"{var} is not declared in ENV_VARS"
        value = self._env.get(var, "")
        return value if value != "" else default

    def require(self, var: str) -> str:
        value = self.get(var)
        if value is None:
            raise ConfigError(var, "is required")
        return value

    def url(self, var: str) -> str:
        value = self.require(var)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(var, f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def number(self, var: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self.get(var)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(var, f"must be a number, got {raw!r}") from None
        if value <= minimum:
            raise ConfigError(var, f"must be greater than {minimum:g}, got {raw!r}")
        return value

    def choice[T: str](self, var: str, default: T, choices: tuple[T, ...]) -> T:
        raw = self.get(var, default)
        for c in choices:
            if raw == c:
                return c
        raise ConfigError(var, f"must be one of {', '.join(choices)}, got {raw!r}")

    def signing_key(self, var: str) -> bytes:
        key = self.require(var).encode()
        if len(key) < MIN_SIGNING_KEY_BYTES:
            raise ConfigError(var, f"must be at least {MIN_SIGNING_KEY_BYTES} bytes long")
        return key

    def log_format(self) -> LogFormat:
        return self.choice("HITL_LOG_FORMAT", "json", ("json", "text"))

    def project(self) -> str | None:
        """The Google Cloud project (log lines name their trace as ``projects/P/traces/T``)."""
        return self.get("GOOGLE_CLOUD_PROJECT")


@dataclass(frozen=True, slots=True)
class ResonateSettings:
    """How to reach the Resonate server."""

    url: str
    token: str | None = None
    #: The worker group approvals run on (``poll://any@<group>``).
    group: str = "worker"
    #: The longest a function waits on the server before answering 503.
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class ChannelHosts:
    """Where Slack and webhook notifications may be sent (the URLs come from requests)."""

    slack: frozenset[str] = frozenset({"hooks.slack.com"})
    #: Empty: no webhook URL is accepted until the operator lists hosts.
    webhook: frozenset[str] = frozenset()

    def for_channel(self, channel: str) -> frozenset[str]:
        return self.slack if channel == "slack" else self.webhook


@dataclass(frozen=True, slots=True)
class StartSettings:
    resonate: ResonateSettings
    #: When set, every POST must carry a valid ``X-Hitl-Signature`` header.
    webhook_secret: bytes | None = None
    hosts: ChannelHosts = ChannelHosts()
    #: How this deployment's approvers are identified (a request may require sign-in only with ``iap``).
    sign_in: SignInMode = "none"
    log_format: LogFormat = "json"
    project: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StartSettings:
        r = _Reader("start", os.environ if env is None else env)
        secret = r.get("HITL_WEBHOOK_SECRET")
        return cls(
            resonate=_resonate(r),
            webhook_secret=secret.encode() if secret else None,
            hosts=_hosts(r),
            sign_in=r.choice("HITL_SIGN_IN", "none", get_args(SignInMode)),
            log_format=r.log_format(),
            project=r.project(),
        )


@dataclass(frozen=True, slots=True)
class SignIn:
    """Approvers sign in through Identity-Aware Proxy: ``unblock`` checks IAP's assertion."""

    #: The assertion's audience: ``/projects/NUMBER/global/backendServices/ID``, the load
    #: balancer's backend service IAP guards (Terraform sets it).
    audience: str
    #: Where the signing keys are published (a JWK set); ``None``: IAP's own.
    keys_url: str | None = None
    #: An approver's other addresses, by address (casefolded): a person signed in with any
    #: of them is that approver.
    aliases: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def same_person(self, signed_in: str, approver: str) -> bool:
        """Whether the account ``signed_in`` is ``approver`` (case-insensitive, or an alias)."""
        a, b = signed_in.casefold(), approver.casefold()
        return a == b or a in self.aliases.get(b, frozenset())


@dataclass(frozen=True, slots=True)
class UnblockSettings:
    resonate: ResonateSettings
    signing_key: bytes
    #: ``None``: the signed link alone identifies an approver.
    sign_in: SignIn | None = None
    log_format: LogFormat = "json"
    project: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> UnblockSettings:
        r = _Reader("unblock", os.environ if env is None else env)
        sign_in = None
        if r.choice("HITL_SIGN_IN", "none", get_args(SignInMode)) == "iap":
            keys_url = r.url("HITL_IAP_KEYS_URL") if r.get("HITL_IAP_KEYS_URL") else None
            sign_in = SignIn(r.require("HITL_IAP_AUDIENCE"), keys_url, _aliases(r.get("HITL_APPROVER_ALIASES")))
        return cls(
            resonate=_resonate(r),
            signing_key=r.signing_key("HITL_SIGNING_KEY"),
            sign_in=sign_in,
            log_format=r.log_format(),
            project=r.project(),
        )


def _aliases(raw: str | None) -> dict[str, frozenset[str]]:
    """``HITL_APPROVER_ALIASES``: groups of one person's addresses, ``a@x=b@y``, separated by
    spaces or commas; each address maps to the others of its group (casefolded)."""
    out: dict[str, frozenset[str]] = {}
    for group in (raw or "").replace(",", " ").split():
        addresses = [a.strip().casefold() for a in group.split("=")]
        if len(addresses) < 2 or any("@" not in a or not a for a in addresses):
            raise ConfigError(
                "HITL_APPROVER_ALIASES", f"must be groups like a@example.com=b@example.com, got {group!r}"
            )
        for a in addresses:
            out[a] = out.get(a, frozenset()) | frozenset(x for x in addresses if x != a)
    return out


@dataclass(frozen=True, slots=True)
class StartCaller:
    """How the CLI reaches the ``start`` function as a start caller (a CI pipeline), with
    what ``start`` checks: an identity token (fixed, minted from Google's default
    credentials, or printed by a command) or the webhook secret."""

    url: str
    token: str | None = None
    #: A command printing a fresh identity token (``gcloud auth print-identity-token ...``).
    token_command: str | None = None
    #: Mint identity tokens for ``url`` from Google's Application Default Credentials.
    google: bool = False
    webhook_secret: bytes | None = None
    #: Seconds one call may take (a long poll adds its own minute).
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class CliSettings:
    """The CLI's settings: the server (an operator's token) and/or the ``start`` function
    (a start caller's credentials). With ``start`` set, ``start``, ``status``, ``wait`` and
    ``cancel`` go through the function; ``decide`` and ``list`` always need the server."""

    resonate: ResonateSettings | None
    start: StartCaller | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CliSettings:
        r = _Reader("cli", os.environ if env is None else env)
        start = None
        if r.get("HITL_START_URL") is not None:
            secret = r.get("HITL_WEBHOOK_SECRET")
            google = r.choice("HITL_START_AUTH", "token", ("token", "google")) == "google"
            sources = [v for v in ("HITL_START_TOKEN", "HITL_START_TOKEN_COMMAND") if r.get(v)]
            if len(sources) + google > 1:
                raise ConfigError(
                    "HITL_START_AUTH",
                    "choose one of HITL_START_TOKEN, HITL_START_TOKEN_COMMAND and HITL_START_AUTH=google",
                )
            start = StartCaller(
                url=r.url("HITL_START_URL"),
                token=r.get("HITL_START_TOKEN"),
                token_command=r.get("HITL_START_TOKEN_COMMAND"),
                google=google,
                webhook_secret=secret.encode() if secret else None,
                timeout=r.number("HITL_SERVER_TIMEOUT", 10.0),
            )
        if start is not None and r.get("RESONATE_URL") is None:
            return cls(resonate=None, start=start)
        return cls(resonate=_resonate(r), start=start)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: SmtpSecurity = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str = "hitl@localhost"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    resonate: ResonateSettings
    signing_key: bytes
    #: Public base URL of the ``unblock`` function; emailed links point here.
    unblock_url: str
    smtp: SmtpSettings
    #: Health-check port (Cloud Run sets ``PORT``).
    port: int = 8080
    #: Task lease; the SDK heartbeats at half of it.
    task_ttl: timedelta = timedelta(seconds=60)
    #: Longest life of one SSE poll connection before it is reopened.
    sse_timeout: float = 240.0
    hosts: ChannelHosts = ChannelHosts()
    #: Seconds one Slack or webhook POST may take.
    notify_timeout: float = 10.0
    #: Signs outgoing webhook events (``X-Hitl-Signature``) when set.
    notify_webhook_secret: bytes | None = None
    #: How long a decision's delivery to a caller's webhook or promise is retried.
    delivery_retry_for: timedelta = timedelta(days=1)
    #: With ``iap``, approvers sign in and have inboxes: the run keeps their entries.
    sign_in: SignInMode = "none"
    log_format: LogFormat = "json"
    project: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        r = _Reader("worker", os.environ if env is None else env)
        security: SmtpSecurity = r.choice("SMTP_SECURITY", "starttls", get_args(SmtpSecurity))
        smtp = SmtpSettings(
            host=r.require("SMTP_HOST"),
            port=_port(r, "SMTP_PORT", 465 if security == "tls" else 587),
            security=security,
            username=r.get("SMTP_USERNAME"),
            password=r.get("SMTP_PASSWORD"),
            sender=r.get("SMTP_FROM", "hitl@localhost") or "hitl@localhost",
        )
        if (smtp.username is None) != (smtp.password is None):
            raise ConfigError("SMTP_PASSWORD", "SMTP_USERNAME and SMTP_PASSWORD go together")
        return cls(
            resonate=_resonate(r),
            signing_key=r.signing_key("HITL_SIGNING_KEY"),
            unblock_url=r.url("HITL_UNBLOCK_URL"),
            smtp=smtp,
            port=_port(r, "PORT", 8080),
            task_ttl=timedelta(seconds=r.number("HITL_TASK_TTL", 60.0, minimum=1.0)),
            sse_timeout=r.number("HITL_SSE_TIMEOUT", 240.0, minimum=0.0),
            hosts=_hosts(r),
            notify_timeout=r.number("HITL_NOTIFY_TIMEOUT", 10.0),
            notify_webhook_secret=(r.get("HITL_NOTIFY_WEBHOOK_SECRET") or "").encode() or None,
            delivery_retry_for=timedelta(seconds=r.number("HITL_DELIVERY_RETRY_FOR", 86_400.0, minimum=0.0)),
            sign_in=r.choice("HITL_SIGN_IN", "none", get_args(SignInMode)),
            log_format=r.log_format(),
            project=r.project(),
        )


def _resonate(r: _Reader) -> ResonateSettings:
    group = "worker"
    if r.declares("HITL_WORKER_GROUP"):
        group = r.get("HITL_WORKER_GROUP", "worker") or "worker"
        if not group.isascii() or group != group.lower() or "/" in group or "@" in group:
            # The server lowercases the host part of poll:// addresses.
            raise ConfigError("HITL_WORKER_GROUP", f"must be lowercase ASCII, got {group!r}")
    timeout = 5.0
    if r.declares("HITL_SERVER_TIMEOUT"):
        timeout = r.number("HITL_SERVER_TIMEOUT", 5.0)
    return ResonateSettings(
        url=r.url("RESONATE_URL"),
        token=r.get("RESONATE_TOKEN"),
        group=group,
        timeout=timeout,
    )


def _hosts(r: _Reader) -> ChannelHosts:
    default = ChannelHosts()
    try:
        slack = parse_allowed_hosts(r.get("HITL_SLACK_ALLOWED_HOSTS"), default.slack)
    except ValueError as exc:
        raise ConfigError("HITL_SLACK_ALLOWED_HOSTS", str(exc)) from None
    try:
        webhook = parse_allowed_hosts(r.get("HITL_WEBHOOK_ALLOWED_HOSTS"), default.webhook)
    except ValueError as exc:
        raise ConfigError("HITL_WEBHOOK_ALLOWED_HOSTS", str(exc)) from None
    return ChannelHosts(slack, webhook)


def _port(r: _Reader, var: str, default: int) -> int:
    raw = r.get(var)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(var, f"must be a TCP port, got {raw!r}")
    return int(raw)
