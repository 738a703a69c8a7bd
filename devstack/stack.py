"""The local stack as real OS processes: used by ``devstack.dev`` and the e2e tests.

Each component runs as its own process with its output in a log file;
``Stack`` starts them on the ports and folders it is given. Every wait is
bounded and polls a condition; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: The Cloud Run functions' local server, from this interpreter's environment.
FUNCTIONS_FRAMEWORK = str(Path(PYTHON).parent / "functions-framework")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessExited(RuntimeError):
    """A process being waited for has exited: no amount of waiting will make it ready."""


def wait_until[T](
    check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    An exception from ``check`` counts as "not yet" (the thing polled may not be
    up yet), except :class:`ProcessExited`, which fails the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except ProcessExited:
            raise
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


class Proc:
    """A child process whose output goes to a log file (read back on failure)."""

    def __init__(self, name: str, args: list[str], *, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        #: Where this process's output starts (a restart appends to the same log).
        self._offset = self._log.tell()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(  # noqa: S603 - an argv list of this repo's own commands, no shell
            args, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        """What this process has printed (not earlier runs logged to the same file)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def check_alive(self) -> None:
        """Raise :class:`ProcessExited` (with the end of its output) if the process has exited."""
        if self.popen.poll() is not None:
            raise ProcessExited(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-3000:]}")

    def ready_or_stop[T](self, wait: Callable[[], T]) -> T:
        """``wait()`` for the process to be ready; if that fails, stop it (nothing is left running) and re-raise."""
        try:
            return wait()
        except BaseException:
            self.stop()
            raise

    def wait_for_line(self, prefix: str, timeout: float = 15.0) -> str:
        def find() -> str | None:
            self.check_alive()
            for line in self.output().splitlines():
                if line.startswith(prefix):
                    return line
            return None

        return wait_until(find, timeout=timeout, what=f"{self.name} to print {prefix!r}")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """kill -9, no chance to clean up."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


#: The command that runs the local Resonate server (``--port``, ``--db`` and any extra arguments follow).
LOCALSERVER = (PYTHON, "-m", "devstack.localserver")
#: The command that runs the SMTP sink (``--port`` and ``--inbox`` follow).
SMTPSINK = (PYTHON, "-m", "devstack.smtpsink")


class LocalServerProc(Proc):
    """The local Resonate server on ``port`` (0: a free one), ready once it prints where it listens.

    ``command`` runs it: ``python -m devstack.localserver`` unless told otherwise
    (the benchmark runs the same server under a profiler); it takes the server's arguments.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        db: Path | None = None,
        port: int = 0,
        extra: list[str] | None = None,
        name: str = "localserver",
        command: Sequence[str] = LOCALSERVER,
        timeout: float = 15.0,
    ) -> None:
        args = [*command, "--port", str(port)]
        if db is not None:
            args += ["--db", str(db)]
        super().__init__(name, args + (extra or []), log_dir=log_dir)
        line = self.ready_or_stop(lambda: self.wait_for_line("listening on ", timeout))
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``url`` answers 2xx (used to wait for a process to be ready)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URLs only
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class SmtpSinkProc(Proc):
    """The SMTP sink storing messages in ``inbox``, on ``port`` (0: a free one).

    ``command`` runs it: ``python -m devstack.smtpsink`` unless told otherwise (any
    sink that takes ``--port`` and ``--inbox`` and prints ``SMTP sink listening on HOST:PORT``).
    """

    def __init__(
        self, log_dir: Path, inbox: Path, *, port: int = 0, name: str = "smtpsink", command: Sequence[str] = SMTPSINK
    ) -> None:
        super().__init__(name, [*command, "--port", str(port), "--inbox", str(inbox)], log_dir=log_dir)
        line = self.ready_or_stop(lambda: self.wait_for_line("SMTP sink listening on "))
        self.port = int(line.rsplit(":", 1)[1])
        self.inbox = inbox


class WorkerProc(Proc):
    """``python -m worker.main``; ready when it listens to the server."""

    def __init__(self, log_dir: Path, env: Mapping[str, str], *, name: str = "worker", wait: bool = True) -> None:
        self.port = int(env.get("PORT") or free_port())
        super().__init__(name, [PYTHON, "-m", "worker.main"], log_dir=log_dir, env={**env, "PORT": str(self.port)})
        if wait:
            self.ready_or_stop(self.wait_ready)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            self.check_alive()
            return http_ok(f"http://127.0.0.1:{self.port}/ready")

        wait_until(ready, timeout=timeout, what=f"{self.name} to connect")


class FunctionProc(Proc):
    """One Cloud Run function served by ``functions-framework`` (ASGI)."""

    def __init__(self, log_dir: Path, target: str, env: Mapping[str, str], *, port: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            FUNCTIONS_FRAMEWORK,
            "--source", str(ROOT / "functions" / "main.py"), "--target", target,
            "--host", "127.0.0.1", "--port", str(self.port), "--asgi",
        ]  # fmt: skip
        super().__init__(target, args, log_dir=log_dir, env=env)

        def up() -> bool:
            self.check_alive()
            return tcp_open(self.port)

        self.ready_or_stop(lambda: wait_until(up, timeout=20.0, what=f"{target} to listen"))


#: The command that runs the development sign-in (devstack.signin; its arguments follow).
SIGNIN = (PYTHON, "-m", "devstack.signin")
#: The audience the development sign-in's assertions carry (unblock's HITL_IAP_AUDIENCE).
DEV_AUDIENCE = "/projects/0/locations/local/services/hitl-unblock"


class SignInProc(Proc):
    """The development sign-in (``devstack.signin``) on ``port``, in front of ``upstream``."""

    def __init__(self, log_dir: Path, *, port: int, upstream: str, key: Path) -> None:
        args = [*SIGNIN, "--port", str(port), "--upstream", upstream, "--audience", DEV_AUDIENCE, "--key", str(key)]
        super().__init__("signin", args, log_dir=log_dir)
        line = self.ready_or_stop(lambda: self.wait_for_line("dev sign-in listening on "))
        self.url = line.split()[-1]
        self.keys_url = self.url + "/_dev_iap/jwk"


class Stack:
    """The whole local system: server, SMTP sink, workers, ``start`` and ``unblock``.

    ``state`` holds the logs, the inbox and (when ``durable``) the server's
    database. Port 0 means "any free port". With ``sign_in``, approvers sign in:
    ``unblock`` checks IAP assertions, and the development sign-in
    (:mod:`devstack.signin`) stands where IAP would, on the unblock port, in front of
    the function (which then listens on a port of its own). ``server_command`` and
    ``sink_command`` replace the commands that run the server and the sink
    (see :class:`LocalServerProc` and :class:`SmtpSinkProc`); ``server_timeout``
    bounds the server's start.
    """

    def __init__(
        self,
        state: Path,
        *,
        signing_key: str,
        durable: bool = False,
        server_port: int = 0,
        smtp_port: int = 0,
        start_port: int = 0,
        unblock_port: int = 0,
        server_args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        server_command: Sequence[str] = LOCALSERVER,
        server_timeout: float = 15.0,
        sink_command: Sequence[str] = SMTPSINK,
        sign_in: bool = False,
    ) -> None:
        self.state = state
        self.logs = state / "logs"
        self.inbox = state / "inbox"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.signing_key = signing_key
        self.db = state / "resonate.db" if durable else None
        self._ports = {"server": server_port, "smtp": smtp_port, "start": start_port, "unblock": unblock_port}
        self._server_args = server_args or []
        self._server_command = server_command
        self._server_timeout = server_timeout
        self._sink_command = sink_command
        self._env = dict(env or {})
        self.sign_in = sign_in
        self.signin: SignInProc | None = None
        self.server: LocalServerProc | None = None
        self.sink: SmtpSinkProc | None = None
        self.start_fn: FunctionProc | None = None
        self.unblock_fn: FunctionProc | None = None
        self.workers: list[WorkerProc] = []

    @property
    def unblock_url(self) -> str:
        return f"http://127.0.0.1:{self._ports['unblock']}/"

    def start_server(self) -> LocalServerProc:
        self.server = LocalServerProc(
            self.logs,
            db=self.db,
            port=self._ports["server"],
            extra=self._server_args,
            command=self._server_command,
            timeout=self._server_timeout,
        )
        self._ports["server"] = self.server.port  # a restart comes back on the same port
        return self.server

    def function_env(self) -> dict[str, str]:
        assert self.server is not None
        return {
            "RESONATE_URL": self.server.url,
            "HITL_SIGNING_KEY": self.signing_key,
            "HITL_LOG_FORMAT": "text",
            **({"HITL_SIGN_IN": "iap"} if self.sign_in else {}),
            **self._env,
        }

    def unblock_env(self) -> dict[str, str]:
        """The function's environment, and with sign-in where its assertions' keys are."""
        env = self.function_env()
        if self.sign_in:
            env["HITL_IAP_AUDIENCE"] = DEV_AUDIENCE
            env["HITL_IAP_KEYS_URL"] = f"http://127.0.0.1:{self._ports['unblock']}/_dev_iap/jwk"
        return env

    def worker_env(self) -> dict[str, str]:
        assert self.sink is not None
        return {
            **self.function_env(),
            "HITL_UNBLOCK_URL": self.unblock_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.sink.port),
            "SMTP_SECURITY": "none",
            "SMTP_FROM": "approvals@hitl.localhost",
            "PORT": "0",
        }

    def add_worker(self, name: str | None = None, **env: str) -> WorkerProc:
        worker_env = {**self.worker_env(), **env}
        if worker_env.get("PORT") == "0":
            worker_env["PORT"] = str(free_port())
        worker = WorkerProc(self.logs, worker_env, name=name or f"worker{len(self.workers) + 1}")
        self.workers.append(worker)
        return worker

    def start_sink(self) -> SmtpSinkProc:
        return SmtpSinkProc(self.logs, self.inbox, port=self._ports["smtp"], command=self._sink_command)

    def start(self, *, workers: int = 1) -> Stack:
        """Start every process; if one fails to start, stop those already running and re-raise."""
        try:
            self.start_server()
            self.sink = self.start_sink()
            if not self._ports["unblock"]:
                self._ports["unblock"] = free_port()
            self.start_fn = FunctionProc(self.logs, "start", self.function_env(), port=self._ports["start"])
            function_port = free_port() if self.sign_in else self._ports["unblock"]
            self.unblock_fn = FunctionProc(self.logs, "unblock", self.unblock_env(), port=function_port)
            if self.sign_in:
                self.signin = SignInProc(
                    self.logs, port=self._ports["unblock"], upstream=self.unblock_fn.url, key=self.state / "signin.pem"
                )
            for _ in range(workers):
                self.add_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def processes(self) -> list[Proc]:
        procs: list[Proc | None] = [*self.workers, self.start_fn, self.signin, self.unblock_fn, self.sink, self.server]
        return [p for p in procs if p is not None]

    def stop(self) -> None:
        for proc in self.processes():
            proc.stop()
