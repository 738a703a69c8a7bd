"""Resilience under many workflows at once: workers killed at random, the server killed
and restarted while decisions arrive, the SMTP relay down, a slow relay.

Real processes on 127.0.0.1 (``devstack.stack``), FAST_WORKER (3 s task leases)
so a killed worker's tasks come back in seconds. The tests see the system as
its users do: the public HTTP API and the relay (inbox, sink log, or a relay
the test plays itself). Single-workflow faults are in tests/e2e/test_faults.py.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from support.api import Api, Click, Target, token_of, unique
from support.relays import DownRelay, SlowRelay
from support.sink import SinkWatch, inbox_count, inbox_messages
from support.stacks import FAST_WORKER, make_stack

from devstack.smtpsink import links_in
from devstack.stack import SmtpSinkProc, Stack, wait_until

TTL = int(FAST_WORKER["HITL_TASK_TTL"])


def statuses(api: Api, ids: list[str], threads: int = 16) -> dict[str, tuple[int, Any]]:
    def one(wf: str) -> tuple[int, Any]:
        r = api.status(wf)
        return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)

    with ThreadPoolExecutor(threads) as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


def wait_all_done(api: Api, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    def done() -> dict[str, dict[str, Any]] | None:
        found = statuses(api, ids)
        return (
            {wf: body["result"] for wf, (s, body) in found.items()}
            if all(s == 200 for s, _ in found.values())
            else None
        )

    try:
        return wait_until(done, timeout=timeout, interval=0.5, what=f"{len(ids)} runs to finish")
    except TimeoutError:
        pending = [wf for wf, (s, _) in statuses(api, ids).items() if s != 200]
        raise AssertionError(f"{len(pending)} runs never finished: {pending[:10]}") from None


def decision_of(click: str) -> str:
    return "approved" if click == "approve" else "rejected"


# -- workers killed at random moments -----------------------------------------------------------


KILL_IDS = re.compile(r"kill-[0-9a-f]{12}")
#: A copy of an email later than this after the first one was sent by a run that was
#: waiting (or finishing): a crash-retry of the send itself comes within a lease or two.
RESEND_GRACE = 2 * TTL + 2.0


def test_workers_killed_at_random_moments_across_50_workflows(tmp_path: Path, measure: Callable[[str], None]) -> None:
    """50 runs started over ~10 s and decided 0-6 s after their email arrives, while one of the
    two workers is killed with SIGKILL every 0.5-1.5 s (and replaced, ~1.5 s to start): runs are killed before
    their email, while sending it, while waiting and while finishing."""
    rng, kill_rng = random.Random(50), random.Random(51)
    stack = make_stack(tmp_path, workers=2)
    watch = SinkWatch(stack)
    stop = threading.Event()
    #: Runs started, emailed, clicked so far (read by the killer to tell what each kill hit).
    progress = {"started": 0, "emailed": 0, "clicked": 0}
    kills: list[tuple[float, str, dict[str, int]]] = []
    errors: list[BaseException] = []

    def killer() -> None:
        try:
            while not stop.wait(kill_rng.uniform(0.5, 1.5)):
                live = [w for w in stack.workers if w.alive()]
                victim = kill_rng.choice(live)
                victim.kill()
                kills.append((time.monotonic(), victim.name, dict(progress)))
                if not stop.is_set():
                    stack.add_worker()  # the other one keeps running meanwhile
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    killing = threading.Thread(target=killer, daemon=True)
    try:
        api = Api(Target.local(stack))
        ids = [unique("kill") for _ in range(50)]
        clicks = {wf: (rng.choice(["approve", "reject"]), f"decided {wf}") for wf in ids}
        t0 = time.monotonic()
        killing.start()

        started: list[Future[requests.Response]] = []
        decided: dict[str, Future[requests.Response]] = {}
        due: dict[str, float] = {}
        links: dict[str, dict[str, str]] = {}
        seen: set[str] = set()
        with ThreadPoolExecutor(8) as pool:
            next_start = time.monotonic()
            while len(decided) < len(ids):
                assert time.monotonic() - t0 < 120, f"only {len(decided)} of {len(ids)} decided after 120 s"
                if len(started) < len(ids) and time.monotonic() >= next_start:
                    started.append(pool.submit(api.start, api.request_body(ids[len(started)])))
                    progress["started"] = len(started)
                    next_start += 0.2
                for name, message in inbox_messages(stack.inbox).items():
                    if name not in seen:
                        seen.add(name)
                        wf = KILL_IDS.search(str(message["Subject"]))
                        assert wf is not None, message["Subject"]
                        links[wf.group()] = links_in(message)
                        due[wf.group()] = time.monotonic() + rng.uniform(0, 6)
                        progress["emailed"] = len(seen)
                for wf, at in list(due.items()):
                    if time.monotonic() >= at:
                        del due[wf]
                        decision, comment = clicks[wf]
                        decided[wf] = pool.submit(api.decide, links[wf][decision], decision, comment)
                        progress["clicked"] = len(decided)
                time.sleep(0.1)
            assert [f.result().status_code for f in started] == [202] * len(ids)
            replies = {wf: f.result() for wf, f in decided.items()}
        t1 = time.monotonic()
        results = wait_all_done(api, ids, timeout=max(5.0, 150 - (t1 - t0)))
        t2 = time.monotonic()
        stop.set()
        assert not errors, errors

        hit = [(p["started"] - p["emailed"], p["emailed"] - p["clicked"], p["clicked"]) for _, _, p in kills]
        measure(f"kill -9 across 50 runs: {len(kills)} kills; all decided {t1 - t0:.1f} s, all done {t2 - t0:.1f} s; "
                f"runs (before email, waiting, decided) at each kill: {hit}")  # fmt: skip
        assert len(kills) >= 4, kills
        # Every click was accepted and every run finished with it.
        assert {wf: r.status_code for wf, r in replies.items() if r.status_code != 200} == {}
        for wf in ids:
            decision, comment = clicks[wf]
            assert (results[wf]["decision"], results[wf]["comment"]) == (decision_of(decision), comment), wf

        # One email per run; no run sent its email again once it was waiting or finishing.
        stored = inbox_messages(stack.inbox)
        name_of = {KILL_IDS.search(str(m["Subject"])).group(): n for n, m in stored.items()}  # type: ignore[union-attr]
        assert sorted(name_of) == sorted(ids)
        by_name = {n: wf for wf, n in name_of.items()}
        # The watcher tails the sink's log: let it reach every stored email before reading it.
        wait_until(lambda: len(watch.arrivals(by_name, KILL_IDS)) == len(ids), timeout=10, what="the log watcher")
        arrivals = watch.arrivals(by_name, KILL_IDS)
        late = {wf: [round(t - ts[0], 1) for t in ts[1:] if t - ts[0] > RESEND_GRACE] for wf, ts in arrivals.items()}
        late = {wf: v for wf, v in late.items() if v}
        copies = sum(len(ts) - 1 for ts in arrivals.values())
        measure(f"  email copies beyond the first (crash-retries of a send): {copies}")
        assert late == {}, f"emails sent again while waiting (seconds after the first copy): {late}"
    finally:
        stop.set()
        if killing.is_alive():
            killing.join(30)  # it may be starting a replacement worker: let it, then stop them all
        watch.stop()
        stack.stop()


# -- the server killed and restarted -----------------------------------------------------------


def quiet_sink(sink: SmtpSinkProc, *, for_seconds: float, timeout: float) -> str:
    """The sink's log once nothing new arrived for ``for_seconds`` (every send settled)."""
    last = {"text": sink.output(), "since": time.monotonic()}

    def settled() -> str | None:
        text = sink.output()
        if text != last["text"]:
            last.update(text=text, since=time.monotonic())
        return text if time.monotonic() - float(last["since"]) >= for_seconds else None  # type: ignore[arg-type]

    return wait_until(settled, timeout=timeout, interval=0.2, what="the relay to go quiet")


def test_server_killed_and_restarted_while_100_wait_and_decisions_arrive(
    tmp_path: Path, measure: Callable[[str], None]
) -> None:
    """Durable server killed with SIGKILL while 100 runs wait and clicks keep coming, about 10
    a second; back 2 s later on the same port and database. Every acknowledged decision is
    the one its run finishes with; every click that got an error is retried and then counts once."""
    rng = random.Random(100)
    stack = make_stack(tmp_path, durable=True, workers=2)
    try:
        api = Api(Target.local(stack))
        ids = [unique("restart") for _ in range(100)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            assert {r.status_code for r in pool.map(lambda wf: api.start(api.request_body(wf)), ids)} == {202}
        wait_until(lambda: inbox_count(stack.inbox) >= len(ids), timeout=120, interval=0.5, what="100 emails")
        assert stack.sink is not None
        sink = stack.sink
        quiet = quiet_sink(sink, for_seconds=2 * TTL + 1, timeout=60)
        measure(f"server restart: 100 runs waiting after {time.monotonic() - t0:.1f} s "
                f"({quiet.count('duplicate ignored')} email copies resent during the start burst)")  # fmt: skip
        by_wf = {
            re.search(r"restart-[0-9a-f]{12}", str(m["Subject"])).group(): m
            for m in inbox_messages(stack.inbox).values()
        }  # type: ignore[union-attr]
        assert sorted(by_wf) == sorted(ids)
        plan = []
        for wf in rng.sample(ids, len(ids)):
            decision = rng.choice(["approve", "reject"])
            plan.append(Click(wf, decision, f"{decision} {wf}", token_of(links_in(by_wf[wf])[decision])))

        def submit(click: Click) -> requests.Response:
            return api.submit(click.token, click.comment)

        assert stack.server is not None
        acknowledged = threading.Event()
        down: list[float] = []

        def crash_and_restart() -> None:
            acknowledged.wait(30)
            assert stack.server is not None
            stack.server.kill()
            down.append(time.monotonic())
            time.sleep(2.0)
            stack.start_server()  # same port, same database
            down.append(time.monotonic())

        crasher = threading.Thread(target=crash_and_restart, daemon=True)
        crasher.start()
        first: dict[str, Future[requests.Response]] = {}
        with ThreadPoolExecutor(16) as pool:
            t1 = time.monotonic()
            for i, click in enumerate(plan):
                while time.monotonic() < t1 + i * 0.1:  # ~10 clicks a second, whatever the replies
                    time.sleep(0.01)
                first[click.workflow_id] = pool.submit(submit, click)
                if i == 30:
                    acknowledged.set()
            replies = {wf: f.result() for wf, f in first.items()}
        crasher.join(30)
        assert len(down) == 2, "the server was not restarted"
        failed = [c for c in plan if replies[c.workflow_id].status_code != 200]
        assert {replies[c.workflow_id].status_code for c in failed} <= {503}, {
            c.workflow_id: (replies[c.workflow_id].status_code, replies[c.workflow_id].text[:200]) for c in failed
        }
        assert failed, "no click hit the downtime: the crash came too late to test anything"
        assert len(failed) < len(plan)

        # Retry each click that got an error, until it gets an answer (bounded).
        t2 = time.monotonic()
        retried: dict[str, requests.Response] = {}
        while len(retried) < len(failed):
            assert time.monotonic() - t2 < 60, f"retries still failing: {len(failed) - len(retried)}"
            for c in failed:
                if c.workflow_id not in retried:
                    r = submit(c)
                    if r.status_code != 503:
                        retried[c.workflow_id] = r
            time.sleep(0.2)
        measure(
            f"  {len(failed)} clicks got 503 in {down[1] - down[0]:.1f} s of downtime; retried OK after {time.monotonic() - t2:.1f} s"
        )
        for c in failed:
            r = retried[c.workflow_id]
            # 200: applied now; 409: the failed click had reached the server after all. Either way, once.
            assert r.status_code in (200, 409), (c, r.status_code, r.text[:300])
            if r.status_code == 409:
                assert ("Approved" if c.decision == "approve" else "Rejected") in r.text, (c, r.text[:500])

        results = wait_all_done(api, ids, timeout=90)
        measure(f"  all 100 done {time.monotonic() - t2:.1f} s after the retries began")
        for c in plan:
            got = results[c.workflow_id]
            assert (got["decision"], got["comment"]) == (decision_of(c.decision), c.comment), (c, got)
        assert inbox_count(stack.inbox) == len(ids)
        assert sink.output() == quiet, "emails were sent again after the runs were waiting"
    finally:
        stack.stop()


# -- the SMTP relay: down, slow ---------------------------------------------------------------------


def test_relay_down_the_email_step_retries_with_backoff_then_sends_once(
    tmp_path: Path, measure: Callable[[str], None]
) -> None:
    bare = make_stack(tmp_path, workers=0)
    api = Api(Target.local(bare))
    relay = DownRelay()
    late_sink: SmtpSinkProc | None = None
    worker = bare.add_worker("worker-relay-down", SMTP_PORT=str(relay.port))
    try:
        wf = unique("relay")
        assert api.start(api.request_body(wf)).status_code == 202
        # Down: each attempt is refused (421, transient), and the next one waits longer.
        wait_until(lambda: len(relay.attempts) >= 3, timeout=30, interval=0.1, what="3 delivery attempts")
        gaps = [round(b - a, 2) for a, b in zip(relay.attempts, relay.attempts[1:], strict=False)]
        assert gaps[0] >= 0.5 and gaps[1] > 1.5 * gaps[0], gaps
        # Nothing was marked sent: no email, the run is waiting.
        assert api.emails(wf) == []
        assert api.status(wf).json() == {"workflow_id": wf, "status": "pending"}

        # The relay comes back on the same port: the next attempt delivers, once.
        down_for = time.monotonic() - relay.attempts[0]
        relay.close()
        late_sink = SmtpSinkProc(bare.logs, bare.inbox, port=relay.port, name="smtpsink-back")
        t0 = time.monotonic()
        links = api.wait_email(wf, timeout=60)
        measure(f"relay down {down_for:.1f} s ({len(relay.attempts)} attempts, gaps {gaps} s); "
                f"email {time.monotonic() - t0:.1f} s after it came back")  # fmt: skip
        assert api.decide(links["approve"], comment="relay back").status_code == 200
        result = api.wait_done(wf)["result"]
        assert (result["decision"], result["comment"]) == ("approved", "relay back")
        assert len(api.emails(wf)) == 1
        assert late_sink.output().count("mail to=") == 1
        assert "duplicate ignored" not in late_sink.output()
    finally:
        worker.stop()
        relay.close()
        if late_sink is not None:
            late_sink.stop()
        bare.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack without workers: each test adds the one it needs (pointed at its relay) and kills it."""
    stack = make_stack(tmp_path_factory.mktemp("slow"), workers=0)
    yield stack
    stack.stop()


SLOW = 5.0  # seconds the slow relay takes per message: longer than a task lease (3 s)


def test_a_send_slower_than_the_lease_is_sent_once(bare: Stack) -> None:
    """One run on the worker: the heartbeat keeps its lease while the relay takes 5 s."""
    api = Api(Target.local(bare))
    relay = SlowRelay(SLOW)
    worker = bare.add_worker("worker-slow-one", SMTP_PORT=str(relay.port))
    try:
        wf = unique("slow")
        assert api.start(api.request_body(wf)).status_code == 202
        key = wait_until(lambda: relay.key_of(wf), timeout=15, what="the send to start")
        wait_until(lambda: relay.accepted[key] >= 1, timeout=15, what="the send to finish")
        time.sleep(2 * TTL)  # a lapsed lease would have re-run the step by now
        assert (relay.started[key], relay.accepted[key]) == (1, 1)
        assert sum(relay.started.values()) == 1
    finally:
        worker.kill()
        relay.close()


def test_two_concurrent_sends_slower_than_the_lease_are_each_sent_once(bare: Stack) -> None:
    """Two runs on one worker, both in their email step for 5 s (lease 3 s, heartbeat every 1.5 s)."""
    api = Api(Target.local(bare))
    relay = SlowRelay(SLOW)
    worker = bare.add_worker("worker-slow-two", SMTP_PORT=str(relay.port))
    try:
        ids = [unique("slow2"), unique("slow2")]
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda wf: api.start(api.request_body(wf)).status_code, ids)) == [202, 202]
        keys = [wait_until(lambda wf=wf: relay.key_of(wf), timeout=15, what="the sends to start") for wf in ids]
        wait_until(lambda: all(relay.accepted[k] >= 1 for k in keys), timeout=15, what="the sends to finish")
        time.sleep(2 * TTL)
        assert {k: relay.started[k] for k in keys} == dict.fromkeys(keys, 1), (
            f"deliveries started per message: {dict(relay.started)}"
        )
    finally:
        worker.kill()
        relay.close()
